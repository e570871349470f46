"""A "did you mean ...?" for a name given slightly wrong: a key, an agent, a skill, a command.

One helper, so that every error that names an unknown thing offers the nearest known ones in the
same words.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

_CUTOFF = 0.6
"""How alike two names must be (difflib's ratio) for one to be offered for the other."""


def close_matches(word: str, choices: Iterable[str], *, limit: int = 3) -> list[str]:
    """The known names nearest to ``word``, best first (none when nothing is close).

    Case is ignored when comparing, so ``Doubler`` finds ``doubler``.
    """
    by_folded: dict[str, str] = {}
    for choice in choices:
        by_folded.setdefault(choice.casefold(), choice)
    folded = difflib.get_close_matches(word.casefold(), list(by_folded), n=limit, cutoff=_CUTOFF)
    return [by_folded[f] for f in folded if by_folded[f] != word]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'agent'?)`` (or ``'a' or 'b'``) for the names nearest ``word``, to
    append to an error message; "" when no known name is close."""
    matches = close_matches(word, choices)
    if not matches:
        return ""
    quoted = [repr(m) for m in matches]
    names = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f" (did you mean {names}?)"
