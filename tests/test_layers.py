"""The package's rooms import one way, and only through each other's public faces.

From the top of the stack down::

    cli → serve → orchestrator → agents.remote → agents → tools | memory → protocols → vocabulary

The vocabulary is the modules at the package root (``errors``, ``_ids``, ``_task_model`` ...)
that every room speaks. ``testing`` ships fakes and may use anything but the CLI. The package
root ``fleetmind`` is the user's SDK surface: no module inside the package imports it.

Every import counts, function-local ones too (a lazy import is still an arrow); imports under
``if TYPE_CHECKING:`` do not, since they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fleetmind"

RANK = {
    "vocabulary": 0,
    "protocols": 1,
    "memory": 2,
    "tools": 2,
    "agents": 3,
    "agents.remote": 4,
    "orchestrator": 5,
    "serve": 6,
    "testing": 7,
    "root": 7,
    "cli": 8,
}
"""A room may import rooms of lower rank; rooms of equal rank stay out of each other. The
fakes in ``testing`` may use every room but the CLI, and no library room uses them."""

ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("fleetmind.protocols._a2a_client", "fleetmind.agents.remote"): (
        "a deprecated alias kept for one release at a path the docs once gave; it loads the "
        "new home only when an old name is used"
    ),
    ("fleetmind.protocols._a2a_server", "fleetmind.serve"): (
        "a deprecated alias kept for one release at a path the docs once gave; it loads the "
        "new home only when an old name is used"
    ),
}
"""(importing module, imported room) pairs allowed against the arrows, and why."""

ALLOWED_PRIVATE: dict[tuple[str, str], str] = {}
"""(importing module, imported private module) pairs allowed across rooms, and why."""


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module."""
    target: str
    """The imported module (``from a.b import c`` gives ``a.b``, or ``a.b.c`` if that is one)."""
    line: int


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, package: Path = PACKAGE) -> bool:
    relative = Path(*name.split("."))
    root = package.parent
    return (root / relative).with_suffix(".py").is_file() or (root / relative).is_dir()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of the tree except those under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imports(path: Path, package: Path = PACKAGE) -> Iterator[Import]:
    module = _module_name(path, package)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield Import(module, full if _is_module(full, package) else base, node.lineno)


def _room(module: str) -> str | None:
    """The room of a ``fleetmind`` module, or None for modules outside the package."""
    parts = module.split(".")
    if parts[0] != "fleetmind":
        return None
    if len(parts) == 1:
        return "root"
    if len(parts) >= 3 and parts[1] == "agents" and parts[2] == "remote":
        return "agents.remote"
    if (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "vocabulary"


def _room_package(room: str) -> str:
    return "fleetmind" if room in ("root", "vocabulary") else f"fleetmind.{room}"


def _all_imports() -> list[Import]:
    found = list(dict.fromkeys(i for path in sorted(PACKAGE.rglob("*.py")) for i in _imports(path)))
    assert len(found) > 300, "the scan found too few imports to be reading the package"
    return found


def _where(imp: Import) -> str:
    return f"{imp.module}:{imp.line} imports {imp.target}"


def test_every_room_is_ranked() -> None:
    rooms = {_room(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert rooms <= set(RANK), f"rooms without a rank: {sorted(rooms - set(RANK))}"


def test_arrows_point_down_the_stack() -> None:
    wrong: list[str] = []
    for imp in _all_imports():
        source, target = _room(imp.module), _room(imp.target)
        if target is None or source is None or source == target or target == "vocabulary":
            continue
        if target == "root":
            wrong.append(f"{_where(imp)} (the SDK surface: import from the room itself)")
            continue
        upward = source != "root" and RANK[target] >= RANK[source]
        if upward and (imp.module, _room_package(target)) not in ALLOWED_UPWARD:
            wrong.append(f"{_where(imp)} ({source} may not import {target})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_room_reaches_into_another_rooms_private_modules() -> None:
    wrong: list[str] = []
    for imp in _all_imports():
        source, target = _room(imp.module), _room(imp.target)
        if target in (None, "vocabulary", "root") or source == target:
            continue
        private = any(part.startswith("_") for part in imp.target.split(".")[1:])
        if private and (imp.module, imp.target) not in ALLOWED_PRIVATE:
            wrong.append(_where(imp))
    assert not wrong, "imports of another room's private modules:\n" + "\n".join(wrong)


def test_the_allow_lists_hold_only_what_is_still_there() -> None:
    seen_upward = {(i.module, _room_package(_room(i.target) or "")) for i in _all_imports()}
    seen_private = {(i.module, i.target) for i in _all_imports()}
    assert set(ALLOWED_UPWARD) <= seen_upward, "an allowed upward import is gone: drop it"
    assert set(ALLOWED_PRIVATE) <= seen_private, "an allowed private import is gone: drop it"
    assert all(ALLOWED_UPWARD.values()) and all(ALLOWED_PRIVATE.values()), "say why"


def test_the_scan_sees_local_and_relative_imports_but_not_type_checking_ones(
    tmp_path: Path,
) -> None:
    room = tmp_path / "fleetmind" / "protocols"
    room.mkdir(parents=True)
    probe = room / "_probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "import fleetmind.errors\n"
        "if TYPE_CHECKING:\n"
        "    from fleetmind.orchestrator import Fleet\n"
        "def later():\n"
        "    from fleetmind.serve import MqttFleetLink\n"
        "    from . import _mqtt\n",
        encoding="utf-8",
    )
    found = {(i.target, i.line) for i in _imports(probe, package=tmp_path / "fleetmind")}
    assert found == {
        ("typing", 1),
        ("fleetmind.errors", 2),
        ("fleetmind.serve", 6),
        ("fleetmind.protocols", 7),
    }


def test_the_orchestrator_reaches_no_wire() -> None:
    wires = [
        _where(i)
        for i in _all_imports()
        if _room(i.module) == "orchestrator" and _room(i.target) == "protocols"
    ]
    assert not wires, "the orchestrator reaches remote agents only through agents.remote"


def test_a_device_loads_no_server_and_no_a2a() -> None:
    code = (
        "import sys\n"
        "from fleetmind.agents.remote import DeviceLink, DeviceRuntime\n"
        "heavy = ('fleetmind.serve', 'a2a', 'mcp', 'uvicorn', 'starlette')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
