"""Loading users' Python code by path or dotted name, with errors a person can act on."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from fleetmind.errors import ConfigError


def load_module(ref: str | Path, *, relative_to: Path | None = None) -> ModuleType:
    """Import a module from a ``.py`` file path or a dotted module name.

    A file is imported under a name derived from its absolute path, so loading the same file
    twice gives the same module, and its directory is put on ``sys.path`` so that it can import
    its neighbours.
    """
    text = str(ref)
    path = Path(text)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if text.endswith(".py") or path.exists():
        return _load_file(path)
    try:
        return importlib.import_module(text)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import module {text!r}: {exc}") from exc


def _load_file(path: Path) -> ModuleType:
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"Python file not found: {path}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_fleetmind_user_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        del sys.modules[name]
        raise
    except SyntaxError as exc:
        del sys.modules[name]
        raise ConfigError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        # The user's module failed while being imported: say where, in one line.
        del sys.modules[name]
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        raise ConfigError(f"{where}: importing it failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_attr(ref: str, *, default_attr: str | None = None, relative_to: Path | None = None) -> Any:
    """Resolve ``module:attr`` or ``path/to/file.py:attr`` (``default_attr`` when no ``:``)."""
    module_ref, sep, attr = ref.rpartition(":")
    if not sep or (len(module_ref) == 1 and module_ref.isalpha()):
        module_ref, attr = ref, default_attr or ""
    module = load_module(module_ref, relative_to=relative_to)
    if not attr:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{module_ref} has no attribute {attr!r}") from None
