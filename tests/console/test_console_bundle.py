"""The console's built page ships in the package, matches its sources, and loads nothing remote.

`pip install` gives the page with no Node, so the built files are committed; these tests catch a
build that is missing, one older than console/src (each built file carries the hash of the
sources it was built from, recomputed here without Node), and a page that would fetch a script
or style from another host at run time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path

import pytest
from repo_paths import REPO

CONSOLE = REPO / "console"
STATIC = REPO / "fleetmind" / "serve" / "console_static"
BUILT = ("index.html", "console.js", "console.css", "layout_worker.js")
STAMP = re.compile(r"fleetmind-console-source: ([0-9a-f]{64})")
REBUILD = "run scripts/build_console.sh and commit fleetmind/serve/console_static/"


def source_hash(console: Path = CONSOLE) -> str:
    """The hash console/build.mjs writes: sha256 over ``path NUL text NUL`` of each source."""
    names = sorted(
        [f"src/{path.name}" for path in (console / "src").iterdir() if path.is_file()]
        + ["build.mjs", "package-lock.json"]
    )
    digest = hashlib.sha256()
    for name in names:
        text = (console / name).read_text(encoding="utf-8").replace("\r\n", "\n")
        digest.update(f"{name}\0{text}\0".encode())
    return digest.hexdigest()


def test_the_built_page_is_in_the_package() -> None:
    missing = [name for name in BUILT if not (STATIC / name).is_file()]
    assert not missing, f"console_static lacks {missing}: {REBUILD}"


@pytest.mark.parametrize("name", BUILT)
def test_each_built_file_was_built_from_the_current_sources(name: str) -> None:
    stamps = STAMP.findall((STATIC / name).read_text(encoding="utf-8"))
    assert stamps, f"{name} carries no source hash: {REBUILD}"
    assert set(stamps) == {source_hash()}, f"{name} is older than console/src: {REBUILD}"


def test_a_changed_source_changes_the_hash(tmp_path: Path) -> None:
    """The freshness check can fail: the hash covers the sources' content, not just names."""
    copy = tmp_path / "console"
    sources = [*(CONSOLE / "src").iterdir(), CONSOLE / "build.mjs", CONSOLE / "package-lock.json"]
    for path in sources:
        target = copy / path.relative_to(CONSOLE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    assert source_hash(copy) == source_hash()
    (copy / "src" / "main.js").write_text(
        (copy / "src" / "main.js").read_text(encoding="utf-8") + "\n// changed\n", encoding="utf-8"
    )
    assert source_hash(copy) != source_hash()


def test_the_page_refers_only_to_its_own_files() -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    assert refs, "index.html refers to no script or style"
    remote = [ref for ref in refs if re.match(r"^(?:[a-z][a-z0-9+.-]*:|//)", ref, re.I)]
    assert not remote, f"index.html loads from other hosts: {remote}"
    for ref in refs:
        assert ref.startswith("static/"), ref
        assert (STATIC / ref.removeprefix("static/")).is_file(), f"index.html refers to {ref}"
    script = (STATIC / "console.js").read_text(encoding="utf-8")
    assert '"layout_worker.js"' in script, "the page no longer starts its layout worker"


@pytest.mark.parametrize("name", [n for n in BUILT if n != "index.html"])
def test_scripts_and_styles_name_no_remote_url(name: str) -> None:
    text = (STATIC / name).read_text(encoding="utf-8")
    urls = re.findall(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"'()]*""", text, re.I)
    assert not urls, f"{name} names remote URLs (a CDN at run time?): {urls[:5]}"


def test_pyproject_ships_every_built_file() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["fleetmind"]
    for path in STATIC.iterdir():
        relative = path.relative_to(REPO / "fleetmind").as_posix()
        shipped = any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)
        assert shipped, f"{relative} is not package data"
