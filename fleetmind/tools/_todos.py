"""Where a file holds a TODO, FIXME, XXX or HACK note, as opposed to merely naming the tag.

A marker is a tag as a whole, upper-case word where a note starts:

- at the start of a comment, after its ``#``, ``//``, ``/*``, ``--``, ``;`` or ``<!--`` (also of
  a second comment at the end of one, after whitespace: ``# type: ignore  # TODO``), or anywhere
  in a comment with ``:`` or ``(`` right after it (``# as upstream does. TODO: ...``);
- at the start of a line of a Python docstring;
- at the start of a line of prose (Markdown, reStructuredText, text, files of unknown type),
  after any list bullet or quote mark, when ``:`` or ``(`` follows it (``TODO: ...``).

A tag elsewhere (in other strings, in code, in the middle of a sentence: "finds TODO markers")
is only mentioned, which is what a tool that looks for markers says about itself all the time.
Comments are found per language: Python's by its tokenizer, C-like ones by a scanner that skips
string literals, the others line by line.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable, Iterator

from fleetmind.errors import ConfigError
from fleetmind.tools._line_counts import Language

__all__ = ["DEFAULT_TAGS", "markers", "tag_pattern"]

DEFAULT_TAGS = ("TODO", "FIXME", "XXX", "HACK")
_MAX_TEXT = 200

_C_LIKE_TOKENS = re.compile(
    r"//[^\n]*|/\*.*?(?:\*/|\Z)|\"(?:\\.|[^\"\\\n])*\"?|'(?:\\.|[^'\\\n])*'?|`(?:\\.|[^`\\])*`?",
    re.S,
)
_C_LIKE_RULES = frozenset({"c", "c++", "php", "sql", "lua"})
_HTML_COMMENTS = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_LINE_COMMENT = {
    **dict.fromkeys(("python", "cython", "hash", "php", "ruby", "perl", "pwsh"), "#"),
    **dict.fromkeys(("sql", "lua", "haskell"), "--"),
    "ini": "[;#]",
}
_ANY_LINE_COMMENT = r"#|//|/\*|;|--|<!--"  # in a file of unknown type
_PROSE_LANGUAGES = frozenset({"Markdown", "Text", "reStructuredText"})
_NESTED_COMMENT = re.compile(r"(?<=\s)(?:#|//)")
_COMMENT_TOKEN = re.compile(r"[ \t]*(?:#+|//+|/\*+|\*+|--+|<!--|;+)?[ \t]*")
_PROSE_START = re.compile(r"[ \t]*(?:>[ \t]*)*(?:[-*+][ \t]+|\d+[.)][ \t]+)?")
_CLOSER = re.compile(r"\s*(?:\*/|-->|\"\"\"|''')\s*$")


def tag_pattern(tags: list[str] | None) -> tuple[list[str], re.Pattern[str]]:
    """The tags asked for (defaults filled in, duplicates dropped) and a regex for any of them."""
    wanted = list(DEFAULT_TAGS) if tags is None else list(dict.fromkeys(tags))
    if not wanted:
        raise ConfigError("tags is empty: name at least one marker, e.g. TODO")
    for tag in wanted:
        if not re.fullmatch(r"\w+", tag):
            raise ConfigError(f"tag {tag!r} is not a word (letters, digits, '_')")
    # Longest first, so a tag that is a prefix of another cannot shadow it.
    alternatives = "|".join(re.escape(tag) for tag in sorted(wanted, key=len, reverse=True))
    return wanted, re.compile(rf"\b({alternatives})\b")


def markers(
    text: str, language: Language | None, tag: re.Pattern[str]
) -> list[tuple[int, str, str]]:
    """``(line, tag, rest of the line)`` of each marker in a file, by line; one per line at most.

    ``language`` (``None`` for a file of unknown type) decides where comments are.
    """
    found: dict[int, tuple[str, str]] = {}
    for number, note, kind in _notes(text, language):
        if number not in found and (tag_and_rest := _marker(tag, note, kind)):
            found[number] = tag_and_rest
    return [(number, name, rest) for number, (name, rest) in sorted(found.items())]


def _marker(tag: re.Pattern[str], note: str, kind: str) -> tuple[str, str] | None:
    """``(tag, rest of the line)`` of the first marker in a note, if it holds one."""
    if kind == "prose":
        starts = [_end_of(_PROSE_START, note, 0)]
    elif kind == "docstring":
        starts = [len(note) - len(note.lstrip())]
    else:  # a comment, and the comments within it
        nested = (m.start() for m in _NESTED_COMMENT.finditer(note))
        starts = [_end_of(_COMMENT_TOKEN, note, i) for i in (0, *nested)]
    # In a comment a tag anywhere may start a note; elsewhere only one at a start.
    candidates: Iterable[re.Match[str] | None] = (
        tag.finditer(note) if kind == "comment" else (tag.match(note, i) for i in starts)
    )
    for match in candidates:
        if match is None:
            continue
        rest = note[match.end() :].lstrip(" \t")
        # Prose must show it is a note (a colon or a name in brackets); a docstring line or a
        # comment that starts with a tag is one.
        at_start = match.start() in starts and kind != "prose"
        if at_start or rest[:1] in (":", "("):
            return match[1], _CLOSER.sub("", rest.lstrip(":")).strip()[:_MAX_TEXT]
    return None


def _end_of(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where an optional prefix (``pattern``) that may start at ``pos`` ends."""
    match = pattern.match(text, pos)
    return pos if match is None else match.end()


def _notes(text: str, language: Language | None) -> Iterator[tuple[int, str, str]]:
    """``(line number, text, kind)`` of each place where a note may start."""
    rules = language.rules if language else ""
    name = language.name if language else ""
    if rules in ("python", "cython"):
        try:
            yield from _python_notes(text)
            return
        except (tokenize.TokenError, SyntaxError):
            pass  # not valid Python 3 (Python 2, a template...): comments line by line
    if rules in _C_LIKE_RULES:
        for found in _C_LIKE_TOKENS.finditer(text):
            if found[0].startswith(("//", "/*")):
                yield from _lines_of(text, found)
    elif rules in ("html", "markdown"):
        for found in _HTML_COMMENTS.finditer(text):
            yield from _lines_of(text, found)
    line_comment = _LINE_COMMENT.get(rules, "" if language else _ANY_LINE_COMMENT)
    prose = language is None or name in _PROSE_LANGUAGES
    for number, line in enumerate(text.split("\n"), start=1):
        if line_comment and (opened := re.search(rf"(?:^|(?<=\s))(?:{line_comment})", line)):
            yield number, line[opened.start() :], "comment"
        elif name == "reStructuredText" and (directive := re.match(r"\s*\.\.\s", line)):
            yield number, line[directive.end() :], "comment"
        if prose:
            yield number, line, "prose"


def _python_notes(text: str) -> Iterator[tuple[int, str, str]]:
    """Comments, and the lines of strings that are statements of their own (docstrings)."""
    tokens = [
        t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type != tokenize.NL
    ]
    statement_start = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    for i, token in enumerate(tokens):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string, "comment"
        elif token.type == tokenize.STRING:
            before = tokens[i - 1].type if i else tokenize.NEWLINE
            after = next((t.type for t in tokens[i + 1 :] if t.type != tokenize.COMMENT), None)
            if before in statement_start and after in (tokenize.NEWLINE, tokenize.ENDMARKER):
                body = re.sub(r"^[A-Za-z]*('''|\"\"\"|'|\")", "", token.string)
                for offset, line in enumerate(body.split("\n")):
                    yield token.start[0] + offset, line, "docstring"


def _lines_of(text: str, found: re.Match[str]) -> Iterator[tuple[int, str, str]]:
    """The lines of a (block) comment found in ``text``, numbered."""
    first = text.count("\n", 0, found.start()) + 1
    for offset, line in enumerate(found[0].split("\n")):
        yield first + offset, line, "comment"
