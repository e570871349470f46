"""Built-in tools that look at a source repository: languages, TODOs, big files, dependencies.

The repository-audit example fleet hands these to its agents as tools: one agent sizes up the
code, another collects TODOs, another lists what the project depends on, and an LLM writes the
report from their outputs. They only read files (they never run anything from the repository)
and return plain JSON-serialisable data, so a result goes straight into a prompt, a subtask's
outputs or the store.

Which files count is decided once, in :func:`_repository_files`:

- Inside a git work tree, the files ``git ls-files -co --exclude-standard`` lists: tracked files
  plus untracked ones that are not ignored, so a ``.venv`` or build output named in
  ``.gitignore`` is left out.
- Elsewhere, every file found by walking the directory; also when git shows nothing, which
  means the directory itself is ignored and was asked for explicitly.
- In both cases files under ``.git`` (and other version control directories), ``.venv``,
  ``venv``, ``node_modules``, ``__pycache__``, ``.mypy_cache``, ``.pytest_cache``,
  ``.ruff_cache``, ``.hypothesis``, ``dist``, ``build`` and ``*.egg-info`` directories are
  skipped, so a vendored ``node_modules`` committed by mistake does not swamp the numbers;
  symbolic links are not followed, so nothing is counted twice.

Lines of code are counted by cloc's rules (:mod:`fleetmind.tools._line_counts`), on those files
less the ones cloc leaves out (binary ones by cloc's own test among them); TODOs are told from
mere mentions of a tag by :mod:`fleetmind.tools._todos`. ``find_todos`` and ``largest_files``
take a file with a NUL byte in its first 8 KiB as binary. Text is read as UTF-8, with
undecodable bytes replaced rather than failing the whole audit.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from fleetmind.errors import ConfigError
from fleetmind.tools._line_counts import CLOC_SKIPPED_DIRS, count_file, language_of, source_bytes
from fleetmind.tools._registry import tool
from fleetmind.tools._todos import markers, tag_pattern

__all__ = ["count_lines", "declared_dependencies", "find_todos", "largest_files"]

_EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".bzr",
        ".cvs",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        "dist",
        "build",
    }
)
_SNIFF_BYTES = 8192
_GIT_TIMEOUT_S = 120


@tool
def count_lines(path: str) -> dict[str, Any]:
    """Count blank, comment and code lines per language in a repository, as cloc 1.96 does.

    The files are the repository's (see the module's docstring), less those cloc leaves out:
    empty, binary and over-100-MB files, files under ``.config``, ``.snapshot`` and version
    control directories, and second copies of a file (counted once). The language comes from
    the file name, its extension or, for a script without one, its ``#!`` line; files of other
    types are not counted. Comments are found as cloc finds them: a Python docstring (any
    triple-quoted string) is comment, so are block comments (``/* */``, ``<!-- -->``), and
    JSON, CSV and text have none.

    Args:
        path: The repository's directory.

    Returns:
        ``{"languages": [{"language", "files", "code", "comment", "blank"}, ...], "total": {"files",
        "code", "comment", "blank"}}``, languages sorted by lines of code, most first, named as
        cloc names them (``Python``, ``Bourne Shell``, ``C/C++ Header``...).
    """
    root = _directory(path)
    # cloc counts files with the same contents once: the last (by path) of each set of copies.
    counted: dict[tuple[int, str], tuple[str, tuple[int, int, int]]] = {}
    for rel in _repository_files(root):
        if any(part in CLOC_SKIPPED_DIRS for part in rel.split("/")[:-1]):
            continue
        language = language_of(root / rel)
        if language is None:
            continue
        data = source_bytes(root / rel)
        if data is None:
            continue
        copies = len(data), hashlib.md5(data, usedforsecurity=False).hexdigest()
        counted[copies] = language.name, count_file(data, language)

    per_language: dict[str, dict[str, int]] = {}
    for name, (blank, comment, code) in counted.values():
        totals = per_language.setdefault(name, {"files": 0, "code": 0, "comment": 0, "blank": 0})
        totals["files"] += 1
        totals["code"] += code
        totals["comment"] += comment
        totals["blank"] += blank
    languages: list[dict[str, Any]] = [
        {"language": name, **counts} for name, counts in per_language.items()
    ]
    languages.sort(key=lambda entry: (-entry["code"], entry["language"]))
    total = {
        key: sum(counts[key] for counts in per_language.values())
        for key in ("files", "code", "comment", "blank")
    }
    return {"languages": languages, "total": total}


@tool
def find_todos(path: str, tags: list[str] | None = None) -> dict[str, Any]:
    """Find TODO, FIXME, XXX and HACK notes in a repository's text files.

    A marker is the tag as a whole, upper-case word at the start of a comment (``# TODO``,
    ``// FIXME``, ``/* XXX``, ``<!-- HACK``), anywhere in a comment with ``:`` or ``(`` right
    after it, at the start of a line of a Python docstring, or at the start of a line of prose
    with ``:`` or ``(`` after it (``TODO: ...`` in Markdown, text or a file of unknown type). A
    tag in code, in other strings or in the middle of a sentence is only mentioned and does not
    count. Only the first marker on a line is reported. Every text file is searched.

    Args:
        path: The repository's directory.
        tags: The markers to look for; defaults to TODO, FIXME, XXX and HACK.

    Returns:
        ``{"count": n, "by_tag": {tag: n, ...}, "items": [{"file", "line", "tag", "text"}, ...]}``
        with file paths relative to ``path``, items sorted by file then line, and ``text`` the rest
        of the line after the marker.
    """
    root = _directory(path)
    wanted, tag = tag_pattern(tags)
    items: list[dict[str, Any]] = []
    for rel in _repository_files(root):
        try:
            data = (root / rel).read_bytes()
        except OSError:
            continue  # unreadable (permissions, vanished mid-walk): leave it out, audit the rest
        if b"\0" in data[:_SNIFF_BYTES]:
            continue  # binary
        text = data.decode("utf-8-sig", errors="replace")
        if not tag.search(text):
            continue  # the quick way past most files
        items += [
            {"file": rel, "line": line, "tag": found, "text": rest}
            for line, found, rest in markers(text, language_of(root / rel), tag)
        ]
    by_tag = dict.fromkeys(wanted, 0)
    for item in items:
        by_tag[item["tag"]] += 1
    # Files come sorted and markers by line, so items are already sorted by file, then line.
    return {"count": len(items), "by_tag": by_tag, "items": items}


@tool
def largest_files(path: str, limit: int = 10) -> dict[str, Any]:
    """List the biggest files in a repository.

    Args:
        path: The repository's directory.
        limit: How many files to list, at least 1.

    Returns:
        ``{"files": [{"file", "bytes", "lines"}, ...]}``, biggest first (ties by path), with
        ``lines`` ``None`` for binary files.
    """
    if limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    root = _directory(path)
    sizes: list[tuple[int, str]] = []
    for rel in _repository_files(root):
        try:
            sizes.append(((root / rel).stat().st_size, rel))
        except OSError:
            continue
    sizes.sort(key=lambda entry: (-entry[0], entry[1]))
    files: list[dict[str, Any]] = []
    for size, rel in sizes[:limit]:
        try:
            lines = _count_newlines(root / rel)
        except OSError:
            lines = None
        files.append({"file": rel, "bytes": size, "lines": lines})
    return {"files": files}


@tool
def declared_dependencies(path: str) -> dict[str, Any]:
    """List the dependencies that a repository's manifests declare.

    Reads ``pyproject.toml`` (PEP 621 ``[project]`` dependencies and optional-dependencies, PEP 735
    ``[dependency-groups]``, Poetry's dependency tables), ``requirements*.txt``, ``package.json``
    (dependencies, devDependencies, peerDependencies, optionalDependencies), ``Cargo.toml``
    (dependencies, dev-, build- and target-specific ones, workspace dependencies) and ``go.mod``
    (``require`` lines and blocks), wherever they are in the repository.

    ``spec`` is the version constraint as declared (for Python, the PEP 508 specifier and any
    environment marker, e.g. ``>=1; python_version<'3.12'``; extras are left out); ``""`` when
    the dependency is unconstrained. ``group`` is ``main`` for ordinary dependencies, else the
    group, extra or section it belongs to (``dev``, ``build``, ``indirect`` for Go...).
    ``ecosystem`` uses the OSV names (``PyPI``, ``npm``, ``crates.io``, ``Go``), so an agent can
    look the dependencies up in a vulnerability database directly.

    Args:
        path: The repository's directory.

    Returns:
        ``{"manifests": [{"file", "ecosystem", "dependencies": [{"name", "spec", "group"}, ...]},
        ...], "errors": [{"file", "error"}, ...]}``: manifests sorted by path, dependencies in
        declaration order, and the manifests that could not be parsed in ``errors``.
    """
    root = _directory(path)
    manifests: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for rel in _repository_files(root):
        kind = _manifest_kind(PurePosixPath(rel).name)
        if kind is None:
            continue
        ecosystem, parse = kind
        try:
            text = (root / rel).read_text(encoding="utf-8-sig")
            dependencies = parse(text, PurePosixPath(rel).name)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors.
            errors.append({"file": rel, "error": " ".join(f"{type(exc).__name__}: {exc}".split())})
            continue
        manifests.append({"file": rel, "ecosystem": ecosystem, "dependencies": dependencies})
    return {"manifests": manifests, "errors": errors}


# --- which files ----------------------------------------------------------------------------


def _directory(path: str) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise ConfigError(f"path {path!r} does not exist", details={"path": str(path)})
    if not root.is_dir():
        raise ConfigError(f"path {path!r} is not a directory", details={"path": str(path)})
    return root


def _repository_files(root: Path) -> list[str]:
    """The files to look at under ``root``, as sorted POSIX paths relative to it."""
    listed = _git_files(root)
    # git showing nothing means ``root`` is an ignored directory (or an empty one): asked for
    # explicitly, its files count, so walk it.
    candidates = listed if listed else _walked_files(root)
    files: set[str] = set()
    for rel in candidates:
        if any(_is_excluded_dir(part) for part in rel.split("/")[:-1]):
            continue
        full = root / rel
        # git also lists tracked files deleted from the work tree, and submodules as entries.
        if full.is_symlink() or not full.is_file():
            continue
        files.add(rel)
    return sorted(files)


def _git_files(root: Path) -> list[str] | None:
    """The files git would show under ``root``, or ``None`` when it is not in a git work tree."""
    try:
        proc = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=root,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git installed, or it hung: walking the tree still gives an answer
    if proc.returncode != 0:
        return None
    # Run in ``root``, git prints paths relative to it, already limited to its subtree.
    return [os.fsdecode(entry) for entry in proc.stdout.split(b"\0") if entry]


def _walked_files(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if not _is_excluded_dir(name)]
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            yield (rel_dir / name).as_posix()


def _is_excluded_dir(name: str) -> bool:
    return name in _EXCLUDED_DIRS or name.endswith(".egg-info")


def _is_binary(file: Path) -> bool:
    with file.open("rb") as fh:
        return b"\0" in fh.read(_SNIFF_BYTES)


def _count_newlines(file: Path) -> int | None:
    """Lines in a file (a last line without a newline counts), or ``None`` if it is binary."""
    if _is_binary(file):
        return None
    lines = 0
    last = b"\n"
    with file.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines if last == b"\n" else lines + 1


# --- manifests ------------------------------------------------------------------------------

_Dependency = dict[str, str]
_Parser = Callable[[str, str], list[_Dependency]]

# A PEP 508 name, optional extras, and the rest; the rest must start like a specifier, a marker
# or a URL, which rejects "git+https://...", "./local/path" and other non-requirements.
_REQUIREMENT_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*(?P<rest>.*?)\s*$"
)
_REQUIREMENT_OPTION_RE = re.compile(r"\s(?:--[A-Za-z]|-C\b)")


def _manifest_kind(name: str) -> tuple[str, _Parser] | None:
    if name == "pyproject.toml":
        return "PyPI", _parse_pyproject
    if fnmatch.fnmatchcase(name, "requirements*.txt"):
        return "PyPI", _parse_requirements
    if name == "package.json":
        return "npm", _parse_package_json
    if name == "Cargo.toml":
        return "crates.io", _parse_cargo
    if name == "go.mod":
        return "Go", _parse_go_mod
    return None


def _dep(name: str, spec: str, group: str) -> _Dependency:
    return {"name": name, "spec": spec, "group": group}


def _split_requirement(requirement: str) -> tuple[str, str] | None:
    """``(name, spec)`` of a PEP 508 requirement, or ``None`` if it is not one."""
    match = _REQUIREMENT_RE.match(requirement)
    if match is None:
        return None
    rest = match["rest"]
    if rest and rest[0] not in "<>=!~;@(":
        return None
    if rest.startswith("@"):
        # In the URL form the marker must follow whitespace, since a URL may contain ";".
        url, *marker = re.split(r"\s+;", rest, maxsplit=1)
        version = "@ " + url[1:].strip()
    else:
        version, *marker = rest.split(";", 1)
        version = "".join(version.split())
        if version.startswith("(") and version.endswith(")"):  # old style: name (>=1.0)
            version = version[1:-1]
    condition = marker[0].strip() if marker else ""
    spec = f"{version}; {condition}" if condition else version
    return match["name"], spec


def _requirement_deps(requirements: object, group: str) -> list[_Dependency]:
    deps: list[_Dependency] = []
    if not isinstance(requirements, list):
        return deps
    for requirement in requirements:
        # PEP 735 groups may hold {include-group = "..."} tables: no new dependency there.
        if isinstance(requirement, str) and (split := _split_requirement(requirement)):
            deps.append(_dep(split[0], split[1], group))
    return deps


def _parse_pyproject(text: str, _filename: str) -> list[_Dependency]:
    data = tomllib.loads(text)
    deps: list[_Dependency] = []
    project = data.get("project")
    if isinstance(project, dict):
        deps += _requirement_deps(project.get("dependencies"), "main")
        optional = project.get("optional-dependencies")
        if isinstance(optional, dict):
            for group, requirements in optional.items():
                deps += _requirement_deps(requirements, group)
    groups = data.get("dependency-groups")
    if isinstance(groups, dict):
        for group, requirements in groups.items():
            deps += _requirement_deps(requirements, group)
    tool_table = data.get("tool")
    poetry = tool_table.get("poetry") if isinstance(tool_table, dict) else None
    if isinstance(poetry, dict):
        deps += _poetry_deps(poetry.get("dependencies"), "main")
        deps += _poetry_deps(poetry.get("dev-dependencies"), "dev")  # Poetry < 1.2
        poetry_groups = poetry.get("group")
        if isinstance(poetry_groups, dict):
            for group, table in poetry_groups.items():
                if isinstance(table, dict):
                    deps += _poetry_deps(table.get("dependencies"), group)
    return deps


def _poetry_deps(table: object, group: str) -> list[_Dependency]:
    if not isinstance(table, dict):
        return []
    # "python" is the interpreter constraint, not a package.
    return [
        _dep(name, _source_spec(value), group)
        for name, value in table.items()
        if name.lower() != "python"
    ]


def _source_spec(value: object) -> str:
    """The spec of a Poetry or Cargo dependency: a version string, or a table saying where from."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # Poetry's multiple constraints, chosen by markers
        return " || ".join(_source_spec(item) for item in value)
    if not isinstance(value, dict):
        return str(value)
    if "version" in value:
        return str(value["version"])
    if value.get("workspace") is True:
        return "workspace"
    for source in ("git", "path", "url"):
        if source in value:
            ref = next((f"@{value[key]}" for key in ("rev", "tag", "branch") if key in value), "")
            return f"{source} {value[source]}{ref}"
    return ""


def _parse_requirements(text: str, filename: str) -> list[_Dependency]:
    # requirements-dev.txt -> "dev"; requirements.txt -> "main".
    group = filename[len("requirements") : -len(".txt")].lstrip("-_.") or "main"
    deps: list[_Dependency] = []
    for line in _logical_lines(text):
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        # -r/-c/-e lines and global options (--index-url...) name no requirement of their own.
        if not line or line.startswith("-"):
            continue
        line = _REQUIREMENT_OPTION_RE.split(line, maxsplit=1)[0]  # drop --hash=... and friends
        split = _split_requirement(line)
        if split is not None:
            deps.append(_dep(split[0], split[1], group))
    return deps


def _logical_lines(text: str) -> Iterator[str]:
    """Lines of a requirements file with backslash continuations joined."""
    pending = ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def _parse_package_json(text: str, _filename: str) -> list[_Dependency]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("package.json is not a JSON object")
    deps: list[_Dependency] = []
    sections = (
        ("dependencies", "main"),
        ("devDependencies", "dev"),
        ("peerDependencies", "peer"),
        ("optionalDependencies", "optional"),
    )
    for key, group in sections:
        table = data.get(key)
        if isinstance(table, dict):
            deps += [_dep(name, str(spec), group) for name, spec in table.items()]
    return deps


def _parse_cargo(text: str, _filename: str) -> list[_Dependency]:
    data = tomllib.loads(text)
    sections = (
        ("dependencies", "main"),
        ("dev-dependencies", "dev"),
        ("build-dependencies", "build"),
    )
    tables: list[tuple[object, str]] = [(data.get(key), group) for key, group in sections]
    targets = data.get("target")
    if isinstance(targets, dict):  # [target.'cfg(unix)'.dependencies] and friends
        for target in targets.values():
            if isinstance(target, dict):
                tables += [(target.get(key), group) for key, group in sections]
    workspace = data.get("workspace")
    if isinstance(workspace, dict):
        tables.append((workspace.get("dependencies"), "workspace"))
    deps: list[_Dependency] = []
    for table, group in tables:
        if not isinstance(table, dict):
            continue
        for key, value in table.items():
            # A renamed dependency (foo = { package = "bar" }) is the crate "bar".
            name = value.get("package", key) if isinstance(value, dict) else key
            deps.append(_dep(str(name), _source_spec(value), group))
    return deps


def _parse_go_mod(text: str, _filename: str) -> list[_Dependency]:
    deps: list[_Dependency] = []
    block: str | None = None  # the directive of the "( ... )" block we are in
    for raw in text.splitlines():
        line, _, comment = raw.partition("//")
        line = line.strip()
        if block is not None:
            if line == ")":
                block = None
            elif block == "require" and line:
                deps += _go_require(line, comment)
            continue
        if opened := re.fullmatch(r"(\w+)\s*\(", line):
            block = opened[1]
        elif single := re.fullmatch(r"require\s+(.+)", line):
            deps += _go_require(single[1], comment)
    return deps


def _go_require(line: str, comment: str) -> list[_Dependency]:
    parts = line.split()
    if len(parts) < 2:
        return []
    group = "indirect" if re.search(r"\bindirect\b", comment) else "main"
    return [_dep(parts[0].strip('"'), parts[1], group)]
