"""Tables that fit: on a terminal, in a pipe, and as JSON for scripts.

A cell is never broken inside a word. On a terminal a table takes the terminal's width: text
wraps at spaces, and what still does not fit is cut with an ellipsis (``…``). Off a terminal (a
pipe, a file, a log) nothing is cut unless ``COLUMNS`` asks for a width: each row stays whole, so
``grep`` and ``awk`` see every identifier. ``--json`` prints the same rows as a list of objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

_UNBOUNDED = 100_000
"""The width off a terminal without ``COLUMNS``: wider than any table, which keeps its own."""


def plain_table(*headers: str, title: str | None = None) -> Table:
    """A table whose first column (an id) stays on one line and whose other cells wrap at
    spaces; a word too long for its column is cut with an ellipsis, never folded (print it
    with :func:`print_table`, or :func:`fit_table` first)."""
    table = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, overflow="ellipsis", no_wrap=i == 0)
    return table


def fit_table(table: Table, console: Console) -> Table:
    """Give each column a fair share of the console's width when the table is wider.

    Rich alone would keep an id column whole and squeeze the others to nothing. Here the first
    column (the row's id) keeps up to half of the width; of the other columns, those that fit
    in an equal share keep their width, and the space they leave is shared among the rest,
    which wrap at spaces and cut what is left with an ellipsis.
    """
    columns = table.columns
    if not columns:
        return table
    wide = console.options.update_width(_UNBOUNDED)
    natural = [
        max(console.measure(cell, options=wide).maximum for cell in (column.header, *column.cells))
        for column in columns
    ]
    frame = 3 * len(columns) + 1  # a space either side of each cell, and the rules between
    room = console.width - frame
    if sum(natural) <= room:
        return table
    # The first column names the row (an id): it keeps up to half of the room.
    widths = {0: max(1, min(natural[0], room // 2))}
    left = max(room - widths[0], len(columns) - 1)
    rest = sorted(range(1, len(columns)), key=natural.__getitem__)
    for place, i in enumerate(rest):
        widths[i] = min(natural[i], max(1, left // (len(rest) - place)))
        left -= widths[i]
    for i, width in widths.items():
        if width < natural[i]:
            columns[i].width = width
            columns[i].overflow = "ellipsis"
    return table


def table_console(*, stderr: bool = False, highlight: bool = True) -> Console:
    """A console to print tables on: the terminal's width, ``COLUMNS`` when set, else unbounded."""
    console = Console(stderr=stderr, highlight=highlight)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").strip().isdigit():
        console.width = _UNBOUNDED
    return console


def print_table(table: Table, console: Console | None = None) -> None:
    """Print a table fitted to the console (a :func:`table_console` by default)."""
    console = console or table_console()
    console.print(fit_table(table, console))


def print_json(rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> None:
    """Rows (or one object) as indented JSON on stdout, for scripts."""
    print(json.dumps(rows, indent=2, default=str, ensure_ascii=False))
