"""The agents of the repository-audit example (the task itself is in repo_audit.yaml).

Four auditors run in parallel, each with one real tool; the dependency auditor adds a follow-up
subtask at run time (a pinning check of what it found), and the reporter joins every output,
through data dependencies, into one Markdown report. The tools are fleetmind's own
(fleetmind.tools): lines of code are counted by cloc's rules, so the report agrees with cloc.

    fleetmind run examples/repo_audit.yaml                  # the task as written
    fleetmind run "audit this repository and tell me what to fix first" \
        --fleet examples/repo_audit.py                      # planned by the configured model
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fleetmind import Fleet, SubtaskContext, SubtaskFailed, ToolRegistry, agent
from fleetmind.orchestrator import Dependency
from fleetmind.tools import count_lines, declared_dependencies, find_todos, largest_files

tools = ToolRegistry([count_lines, find_todos, largest_files, declared_dependencies])


async def use(tool_name: str, **arguments: Any) -> Any:
    """Call a tool; a tool error fails the subtask with the tool's own message."""
    result = await tools.call(tool_name, arguments)
    if not result.ok:
        raise SubtaskFailed(result.error or f"{tool_name} failed", retryable=False)
    return result.value


@agent(id="loc-counter", skills=[{"name": "code-metrics", "tags": ["lines-of-code"]}])
async def loc_counter(path: str) -> dict[str, Any]:
    """Counts lines of code, comments and blanks per language."""
    return await use("count_lines", path=path)


@agent(id="todo-finder", skills=[{"name": "todo-scan", "tags": ["todo", "fixme"]}])
async def todo_finder(path: str) -> dict[str, Any]:
    """Finds TODO, FIXME, XXX and HACK markers."""
    return await use("find_todos", path=path)


@agent(id="size-auditor", skills=["file-sizes"])
async def size_auditor(path: str, limit: int = 10) -> dict[str, Any]:
    """Lists the largest files."""
    return await use("largest_files", path=path, limit=limit)


@agent(id="dependency-auditor", skills=["dependencies"])
async def dependency_auditor(path: str, ctx: SubtaskContext) -> dict[str, Any]:
    """Reads declared dependencies; asks for a pinning check when it found any."""
    found = await use("declared_dependencies", path=path)
    if any(m["dependencies"] for m in found["manifests"]):
        me = ctx.subtask.id
        check = "pin-check"
        ctx.add_subtask(
            check,
            description="Check how tightly each declared dependency is pinned",
            agent="pin-checker",
            depends_on=[Dependency(source=me, target=check, kind="data", input="found")],
        )
        # The report (whatever a planner called it) waits for this subtask: it gets the pins.
        for report in ctx.dependents:
            ctx.add_dependency(check, report, kind="data", input="pins")
    return found


def pin_level(spec: str) -> str:
    """exact (``==1.2``), bounded (``>=1,<2``, ``~=``, ``^``), floor (``>=1``) or unpinned."""
    spec = spec.split(";")[0].strip()
    if not spec or spec in ("*", "latest"):
        return "unpinned"
    if spec.startswith("==") or (spec[0].isdigit() and not any(c in spec for c in "<>^~*")):
        return "exact"
    if spec.startswith(("~", "^")) or ("<" in spec and ">" in spec):
        return "bounded"
    return "floor"


@agent(id="pin-checker", skills=["dependency-pinning"])
async def pin_checker(found: dict[str, Any]) -> dict[str, Any]:
    """Classifies every declared dependency by how tightly its version is pinned."""
    levels: dict[str, list[str]] = {"exact": [], "bounded": [], "floor": [], "unpinned": []}
    for manifest in found["manifests"]:
        for dep in manifest["dependencies"]:
            levels[pin_level(dep["spec"])].append(f"{dep['name']} ({manifest['file']})")
    return {level: sorted(names) for level, names in levels.items()}


@agent(id="reporter", skills=["report-writing"])
async def reporter(
    path: str,
    loc: dict[str, Any],
    todos: dict[str, Any],
    largest: dict[str, Any],
    deps: dict[str, Any],
    pins: dict[str, list[str]] | None = None,
) -> str:
    """Joins the auditors' findings into one Markdown report."""
    root = await asyncio.to_thread(os.path.realpath, path)  # resolving symlinks reads the disk
    total = loc["total"]
    out = [
        f"# Repository audit of {root}",
        "",
        "## Lines of code",
        "",
        "| language | files | code | comment | blank |",
        "|---|---:|---:|---:|---:|",
    ]
    out += [
        f"| {r['language']} | {r['files']} | {r['code']} | {r['comment']} | {r['blank']} |"
        for r in loc["languages"]
    ]
    out += [
        f"| **total** | {total['files']} | {total['code']} | {total['comment']} "
        f"| {total['blank']} |",
        "",
        f"## Markers ({todos['count']})",
        "",
    ]
    out += [f"- {tag}: {n}" for tag, n in sorted(todos["by_tag"].items())]
    out += [f"- `{i['file']}:{i['line']}` {i['tag']} {i['text']}" for i in todos["items"][:10]]
    out += ["", "## Largest files", ""]
    out += [
        f"- `{f['file']}` {f['bytes']:,} bytes"
        + (f", {f['lines']:,} line{'s' * (f['lines'] != 1)}" if f["lines"] is not None else "")
        for f in largest["files"]
    ]
    out += ["", "## Declared dependencies", ""]
    for manifest in deps["manifests"]:
        names = ", ".join(f"{d['name']}{d['spec']}" for d in manifest["dependencies"])
        out.append(f"- `{manifest['file']}` ({manifest['ecosystem']}): {names or 'none'}")
    if pins is not None:
        out += ["", "## Dependency pinning", ""]
        out += [
            f"- {level}: {len(names)}" + (f" — {', '.join(names)}" if names else "")
            for level, names in pins.items()
        ]
    return "\n".join(out) + "\n"


fleet = Fleet([loc_counter, todo_finder, size_auditor, dependency_auditor, pin_checker, reporter])
