"""Core of the sample application.

cloc counts a docstring as comment lines, blank lines inside it as blank.
"""

from __future__ import annotations

import os  # an inline comment: the line is still code

# A comment on a line of its own.
GREETING = "hello"
TEMPLATE = """first line of a multi-line string: code
the lines after it count as comment, as cloc treats every triple-quoted string
"""


def greet(name: str) -> str:
    """Say hello."""
    return f"{GREETING}, {name}"


class Store:
    '''A class with a docstring in single quotes.

    It spans several lines and ends with a "quoted word"'''

    def path(self) -> str:
        # Where the store lives.
        return os.path.join("data", "store")
