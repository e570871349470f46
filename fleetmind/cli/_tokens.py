"""Bearer tokens read from files, by the same rules for every command that serves over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from fleetmind.errors import ConfigError


def read_token_file(path: Path) -> str:
    """The bearer token in a file (one line; surrounding whitespace is ignored).

    A file other users can read is served anyway, with a warning on stderr.

    Raises:
        ConfigError: the file cannot be read, is empty, or holds more than one word of
            printable ASCII.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"token file {path} is not UTF-8 text") from exc
    if not token:
        raise ConfigError(f"token file {path} is empty")
    if any(c.isspace() or not c.isprintable() or ord(c) > 126 for c in token):
        raise ConfigError(f"token file {path}: the token must be one word of printable ASCII")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        # soft_wrap: a long path must not split the warning over several lines.
        Console(stderr=True, soft_wrap=True).print(
            f"warning: token file {path} can be read by other users", style="yellow"
        )
    return token
