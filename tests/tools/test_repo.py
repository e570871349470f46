"""Tests for fleetmind/tools/_repo.py, on small real repositories built in tmp_path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleetmind.errors import ConfigError
from fleetmind.tools import (
    ToolRegistry,
    count_lines,
    declared_dependencies,
    find_todos,
    largest_files,
)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

PLAIN_FILES: dict[str, bytes] = {
    "app/main.py": (
        b"#!/usr/bin/env python\n"
        b"# a comment\n"
        b"\n"
        b"import os  # TODO inline comment counts as code\n"
        b"\n"
        b"def main():\n"
        b"    # TODO: handle errors\n"
        b"    return os.getcwd()  # FIXME(bob): later\n"
    ),
    "README.md": b"# Title\n\nSome text about todo and TODOS.\nXXX: not done\n",
    "web/app.js": b"// header\nconst x = 1;\n\nconsole.log(x); // HACK quick fix\n",
    # CRLF endings and no final newline; MY_TODO is not a whole-word marker.
    "scripts/run.sh": b"#!/bin/sh\r\necho hi\r\n\r\necho MY_TODO",
    "notes.xyz": b"line one\nTODO: unknown types are still searched\n",
    "data.bin": b"TODO\n" + b"\x00" * 5995,
    # Under directories that are always skipped.
    ".venv/lib/site.py": b"# TODO: ignored\nx = 1\n",
    "node_modules/pkg/index.js": b"// TODO ignored\n",
    "demo.egg-info/top.py": b"x = 1  # TODO ignored\n",
    "__pycache__/cached.py": b"# TODO ignored\n",
    ".hg/store/data.py": b"# TODO ignored\n",
}


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def plain_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory that is not a git work tree, even if tmp_path happens to sit inside one."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "plain"
    write_files(root, PLAIN_FILES)
    # A symlink is not followed, so main.py is not counted twice.
    (root / "link.py").symlink_to(root / "app" / "main.py")
    return root


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "gitrepo"
    write_files(
        root,
        {
            ".gitignore": b"ignored/\n*.log\n",
            "src/lib.py": b"def f():\n    return 1  # TODO: tracked\n",
            "untracked.py": b"# FIXME: untracked but not ignored\nx = 2\n",
            "ignored/big.py": b"# TODO: ignored\n" * 50,
            "debug.log": b"TODO in a log\n",
            "gone.py": b"# TODO: deleted from the work tree\n",
            "build/gen.py": b"# TODO: generated, committed\n",
        },
    )
    git(root, "-c", "init.defaultBranch=main", "init", "-q")
    git(root, "add", ".gitignore", "src/lib.py", "gone.py", "build/gen.py")
    (root / "gone.py").unlink()
    return root


def test_count_lines_plain_directory(plain_repo: Path) -> None:
    # cloc 1.96 gives these figures for the same files (it would also read .venv/ and the other
    # directories the tools skip). A script's "#!" line is code; a line with code and a comment
    # is code; run.sh has CRLF endings and no final newline, and is a Bourne Shell script.
    assert count_lines(str(plain_repo)) == {
        "languages": [
            {"language": "Python", "files": 1, "code": 4, "comment": 2, "blank": 2},
            {"language": "Bourne Shell", "files": 1, "code": 3, "comment": 0, "blank": 1},
            {"language": "Markdown", "files": 1, "code": 3, "comment": 0, "blank": 1},
            {"language": "JavaScript", "files": 1, "code": 2, "comment": 1, "blank": 1},
        ],
        "total": {"files": 4, "code": 12, "comment": 3, "blank": 5},
    }


def test_count_lines_follows_cloc_on_comments_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cloc 1.96 gives the same figures for this tree.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    # A docstring is comment, as is any other triple-quoted string.
    module = b'"""Module.\n\nMore.\n"""\n\n\ndef f():\n    """Doc."""\n    return 1\n'
    write_files(
        tmp_path,
        {
            "pkg/mod.py": module,
            "pkg/copy.py": module,
            "pkg/__init__.py": b"",  # empty: not counted
            ".config/tool.py": b"x = 1\n",  # cloc always skips .config/
            "web/app.js": b"/* a block\n   comment */\nlet x = 1;\n",
            "bin/tool": b"#!/usr/bin/env bash\n# comment\necho hi\n",  # a script, by its #!
            "LICENSE": b"MIT\n",  # not source code
        },
    )
    result = count_lines(str(tmp_path))
    # mod.py and copy.py hold the same bytes: cloc counts them once.
    assert result["languages"] == [
        {"language": "Bourne Again Shell", "files": 1, "code": 2, "comment": 1, "blank": 0},
        {"language": "Python", "files": 1, "code": 2, "comment": 4, "blank": 3},
        {"language": "JavaScript", "files": 1, "code": 1, "comment": 2, "blank": 0},
    ]


def test_find_todos_plain_directory(plain_repo: Path) -> None:
    assert find_todos(str(plain_repo)) == {
        "count": 6,
        "by_tag": {"TODO": 3, "FIXME": 1, "XXX": 1, "HACK": 1},
        "items": [
            {"file": "README.md", "line": 4, "tag": "XXX", "text": "not done"},
            {
                "file": "app/main.py",
                "line": 4,
                "tag": "TODO",
                "text": "inline comment counts as code",
            },
            {"file": "app/main.py", "line": 7, "tag": "TODO", "text": "handle errors"},
            {"file": "app/main.py", "line": 8, "tag": "FIXME", "text": "(bob): later"},
            {
                "file": "notes.xyz",
                "line": 2,
                "tag": "TODO",
                "text": "unknown types are still searched",
            },
            {"file": "web/app.js", "line": 4, "tag": "HACK", "text": "quick fix"},
        ],
    }


def test_find_todos_with_chosen_tags(plain_repo: Path) -> None:
    result = find_todos(str(plain_repo), tags=["FIXME", "HACK", "FIXME"])
    assert result["by_tag"] == {"FIXME": 1, "HACK": 1}
    assert [(item["file"], item["line"]) for item in result["items"]] == [
        ("app/main.py", 8),
        ("web/app.js", 4),
    ]
    with pytest.raises(ConfigError, match="tags is empty"):
        find_todos(str(plain_repo), tags=[])
    with pytest.raises(ConfigError, match="tag 'a b' is not a word"):
        find_todos(str(plain_repo), tags=["a b"])


def test_largest_files_plain_directory(plain_repo: Path) -> None:
    assert largest_files(str(plain_repo), limit=4) == {
        "files": [
            {"file": "data.bin", "bytes": 6000, "lines": None},
            {"file": "app/main.py", "bytes": 166, "lines": 8},
            {"file": "web/app.js", "bytes": 58, "lines": 4},
            {"file": "README.md", "bytes": 55, "lines": 4},
        ]
    }
    everything = largest_files(str(plain_repo))["files"]
    assert [entry["file"] for entry in everything] == [
        "data.bin",
        "app/main.py",
        "web/app.js",
        "README.md",
        "notes.xyz",
        "scripts/run.sh",
    ]
    assert everything[-1] == {"file": "scripts/run.sh", "bytes": 34, "lines": 4}
    with pytest.raises(ConfigError, match="limit must be at least 1, got 0"):
        largest_files(str(plain_repo), limit=0)


@needs_git
def test_git_work_tree_uses_git_file_list(git_repo: Path) -> None:
    # Ignored files (ignored/, *.log), a deleted tracked file and build/ are left out; the
    # untracked but not ignored file counts.
    assert count_lines(str(git_repo)) == {
        "languages": [{"language": "Python", "files": 2, "code": 3, "comment": 1, "blank": 0}],
        "total": {"files": 2, "code": 3, "comment": 1, "blank": 0},
    }
    assert find_todos(str(git_repo))["items"] == [
        {"file": "src/lib.py", "line": 2, "tag": "TODO", "text": "tracked"},
        {"file": "untracked.py", "line": 1, "tag": "FIXME", "text": "untracked but not ignored"},
    ]
    assert [entry["file"] for entry in largest_files(str(git_repo))["files"]] == [
        "untracked.py",
        "src/lib.py",
        ".gitignore",
    ]


@needs_git
def test_ignored_directory_asked_for_explicitly_is_walked(git_repo: Path) -> None:
    result = find_todos(str(git_repo / "ignored"))
    assert result["count"] == 50
    assert result["items"][-1] == {"file": "big.py", "line": 50, "tag": "TODO", "text": "ignored"}


@needs_git
def test_git_subdirectory_paths_are_relative_to_it(git_repo: Path) -> None:
    assert find_todos(str(git_repo / "src"))["items"] == [
        {"file": "lib.py", "line": 2, "tag": "TODO", "text": "tracked"}
    ]
    assert count_lines(str(git_repo / "src"))["total"] == {
        "files": 1,
        "code": 2,
        "comment": 0,
        "blank": 0,
    }


MANIFESTS: dict[str, bytes] = {
    "pyproject.toml": b"""
[project]
name = "demo"
dependencies = [
    "pydantic>=2.7",
    "torch==2.13.0",
    "foo[bar]>=1; python_version<'3.12'",
    "requests",
    "Django >= 4.2, < 5",
    "pkg @ https://example.com/pkg-1.0.whl ; sys_platform == 'linux'",
]

[project.optional-dependencies]
dev = ["pytest>=8"]

[dependency-groups]
lint = ["ruff>=0.6", {include-group = "dev"}]

[tool.poetry.dependencies]
python = "^3.11"
httpx = "^0.27"
mylib = { git = "https://github.com/x/mylib.git", tag = "v1" }

[tool.poetry.group.test.dependencies]
pytest-cov = { version = "^5.0", optional = true }
""",
    "requirements.txt": b"""# pinned for production
-r requirements-dev.txt
--index-url https://pypi.org/simple
-e ./local
numpy>=1.26  # inline comment
scipy==1.13.0 \\
    --hash=sha256:abc
git+https://github.com/x/y.git#egg=y
./vendor/thing
attrs
""",
    "requirements-dev.txt": b"black==24.1.0\n",
    "web/package.json": json.dumps(
        {"name": "web", "dependencies": {"react": "^18.2.0"}, "devDependencies": {"vite": "^5"}}
    ).encode(),
    "node_modules/x/package.json": b'{"dependencies": {"left-pad": "1.0.0"}}',
    "broken/package.json": b"{not json",
    "crate/Cargo.toml": b"""
[package]
name = "c"

[dependencies]
serde = { version = "1.0", features = ["derive"] }
rand = "0.8"
local = { path = "../local" }
renamed = { package = "real-crate", version = "2" }

[dev-dependencies]
criterion = "0.5"

[target.'cfg(unix)'.dependencies]
libc = "0.2"
""",
    "svc/go.mod": b"""module example.com/svc

go 1.22

require github.com/pkg/errors v0.9.1

require (
\tgolang.org/x/sync v0.7.0
\tgolang.org/x/text v0.14.0 // indirect
)

replace (
\tgolang.org/x/sync => ../sync
)
""",
}


def test_declared_dependencies_of_every_manifest_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    write_files(tmp_path / "deps", MANIFESTS)

    def deps(*rows: tuple[str, str, str]) -> list[dict[str, str]]:
        return [{"name": name, "spec": spec, "group": group} for name, spec, group in rows]

    result = declared_dependencies(str(tmp_path / "deps"))
    assert result["errors"] == [
        {
            "file": "broken/package.json",
            "error": "JSONDecodeError: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        }
    ]
    assert result["manifests"] == [
        {
            "file": "crate/Cargo.toml",
            "ecosystem": "crates.io",
            "dependencies": deps(
                ("serde", "1.0", "main"),
                ("rand", "0.8", "main"),
                ("local", "path ../local", "main"),
                ("real-crate", "2", "main"),
                ("criterion", "0.5", "dev"),
                ("libc", "0.2", "main"),
            ),
        },
        {
            "file": "pyproject.toml",
            "ecosystem": "PyPI",
            "dependencies": deps(
                ("pydantic", ">=2.7", "main"),
                ("torch", "==2.13.0", "main"),
                ("foo", ">=1; python_version<'3.12'", "main"),
                ("requests", "", "main"),
                ("Django", ">=4.2,<5", "main"),
                ("pkg", "@ https://example.com/pkg-1.0.whl; sys_platform == 'linux'", "main"),
                ("pytest", ">=8", "dev"),
                ("ruff", ">=0.6", "lint"),
                ("httpx", "^0.27", "main"),
                ("mylib", "git https://github.com/x/mylib.git@v1", "main"),
                ("pytest-cov", "^5.0", "test"),
            ),
        },
        {
            "file": "requirements-dev.txt",
            "ecosystem": "PyPI",
            "dependencies": deps(("black", "==24.1.0", "dev")),
        },
        {
            "file": "requirements.txt",
            "ecosystem": "PyPI",
            "dependencies": deps(
                ("numpy", ">=1.26", "main"),
                ("scipy", "==1.13.0", "main"),
                ("attrs", "", "main"),
            ),
        },
        {
            "file": "svc/go.mod",
            "ecosystem": "Go",
            "dependencies": deps(
                ("github.com/pkg/errors", "v0.9.1", "main"),
                ("golang.org/x/sync", "v0.7.0", "main"),
                ("golang.org/x/text", "v0.14.0", "indirect"),
            ),
        },
        {
            "file": "web/package.json",
            "ecosystem": "npm",
            "dependencies": deps(("react", "^18.2.0", "main"), ("vite", "^5", "dev")),
        },
    ]
    json.dumps(result)  # plain data, ready for a prompt or the store


@pytest.mark.parametrize("tool_fn", [count_lines, find_todos, largest_files, declared_dependencies])
def test_bad_path_is_a_config_error(tool_fn: Callable[..., Any], tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match=re.escape(f"path '{missing}' does not exist")):
        tool_fn(str(missing))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x\n")
    with pytest.raises(ConfigError, match=re.escape(f"path '{a_file}' is not a directory")):
        tool_fn(str(a_file))


async def test_repository_tools_through_the_registry(plain_repo: Path) -> None:
    registry = ToolRegistry([count_lines, find_todos, largest_files, declared_dependencies])
    assert registry.names() == [
        "count_lines",
        "find_todos",
        "largest_files",
        "declared_dependencies",
    ]
    result = await registry.call("largest_files", {"path": str(plain_repo), "limit": 1})
    assert result.ok
    assert result.value == {"files": [{"file": "data.bin", "bytes": 6000, "lines": None}]}

    result = await registry.call("count_lines", {"path": 5})
    assert not result.ok
    assert result.error is not None and "argument 'path'" in result.error

    result = await registry.call("largest_files", {"path": str(plain_repo), "limit": 0})
    assert result.error == (
        "tool 'largest_files' failed: ConfigError: limit must be at least 1, got 0"
    )

    missing = os.fspath(plain_repo / "nope")
    result = await registry.call("find_todos", {"path": missing})
    assert result.error == f"tool 'find_todos' failed: ConfigError: path '{missing}' does not exist"


def test_find_todos_ignores_prose_that_only_mentions_a_tag(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "notes.py": (
                b'"""Finds TODO and FIXME markers."""\n'  # mid-sentence in a docstring: a mention
                b"x = 1  # later: TODO tidy this\n"  # mid-comment, no colon: a mention
                b"x = 1  # as before. TODO: tidy this\n"  # mid-comment with a colon: a note
                b"TODO: int = 3\n"  # code (an annotated name): not a note
                b"y = 2  # XXX(bob) check\n"  # at the start of a comment
                b'TAGS = ("TODO", "FIXME")\n'  # a string literal: not a note
                b"def f():\n"
                b'    """FIXME a docstring line that starts with a tag."""\n'
            ),
        },
    )
    found = find_todos(str(tmp_path))
    assert [(i["line"], i["tag"], i["text"]) for i in found["items"]] == [
        (3, "TODO", "tidy this"),
        (5, "XXX", "(bob) check"),
        (8, "FIXME", "a docstring line that starts with a tag."),
    ]
