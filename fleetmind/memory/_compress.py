"""Extractive compression: fit text into a token budget without losing what must survive.

Operational text (logs, tool output, long conversations) repeats itself: the same message
with different numbers, clients or times. The compressor works line by line:

1. Each line loses its leading timestamp and is reduced to a *template*: quoted strings,
   dates and times, addresses, paths and every word that holds a digit (a number, a version,
   an id such as ``pi-7`` or ``libssl3:amd64``) become ``<*>``. Where a template differs from
   another only by a plain word in place of a ``<*>`` (``Setting up perl (<*>)`` beside
   ``Setting up <*> (<*>)``), that word is a value too.
2. Lines with the same template collapse into one: the first line as written, how many times
   it occurred, and the distinct values that varied (``x37; values: pi-2, pi-7, …``). Which
   client disconnected survives; the 37 copies do not. A long list on one line (``Install:
   a (1.0), b (2.1), …``) is a line whose items are its values.
3. Each collapsed line is *pinned* when it carries what must not be lost — an error, a
   failure, a decision, the goal, a pointer to a full text — and otherwise scored by how much
   it shares with the current goal and how rare its words are.
4. The budget goes to pinned lines first. When they alone are over it, the lowest-scoring
   pinned lines go, the oldest first among equals. Then come the other lines (and list
   items) by score per token, then the values of collapsed lines by score per token. A value
   is worth most where it was said last (the line that gives a package's or a client's
   latest state); a value said again later is a repeat and waits. Whatever does not fit is
   skipped and the rest still tried, so the budget is filled, not just respected.
5. With room left, collapsed lines of a few distinct lines are written out again word for
   word.

The result keeps the original order of first occurrences. Nothing here calls a model.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fleetmind.memory._tokens import default_tokenizer

_TIMESTAMP = re.compile(
    r"^\s*(?:"
    r"\d{9,10}(?:\.\d+)?:\s*"  # epoch seconds (Mosquitto)
    r"|\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"  # ISO 8601
    r"(?:Z|[+-]\d{2}:?\d{2})?(?: (?:UTC|GMT|[A-Z]{1,3}T)\b)?\]?\s*"
    r"|[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}\s*"  # syslog
    r")"
)
_DELIMITERS = r"\s()\[\]{},;=<>\"'"
"""What ends a word when looking for values: space, brackets, separators and quotes."""
_VARIABLE = re.compile(
    r"(?P<quoted>'[^']*'|\"[^\"]*\")"
    # A date, a date and time, or a time: one value, not three numbers.
    r"|(?P<time>\b\d{4}-\d{2}-\d{2}(?:(?:T| {1,2})\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?)?(?!\d)|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?!\d))"
    r"|(?P<addr>\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b)"
    r"|(?P<path>(?<![\w.])/[\w./-]+)"
    # Any other word that holds a digit, whole (a version, an id, a number with its unit),
    # without the full stop or colon that ends a sentence or a label.
    rf"|(?P<word>(?<![^{_DELIMITERS}])[^{_DELIMITERS}]*\d[^{_DELIMITERS}]*?"
    rf"(?=[.:]*(?:[{_DELIMITERS}]|$)))"
)
_JOINER = r"[-_.:/@]"
PIN_PATTERN = re.compile(
    # Not inside an identifier: no word character, nor a joiner that leads to one, on either
    # side (``libgpg-error-dev``, ``error.log``, ``/var/log/failed`` do not pin; ``ERROR:``
    # and ``failed.`` do).
    rf"(?<!\w)(?<!\w{_JOINER})"
    r"(?:error|errors|fail(?:ed|ure|s)?|fatal|panic|exception|traceback|refused|denied|"
    r"timed? ?out|timeout|abort(?:ed)?|killed|crash(?:ed)?|corrupt(?:ed)?|invalid|"
    r"unauthori[sz]ed|not authori[sz]ed|disconnect(?:ed)?|lost|unreachable|warning|"
    r"decided|decision|chose|must|goal)"
    rf"(?!\w)(?!{_JOINER}\w)",
    re.IGNORECASE,
)
"""Words that pin a line: errors and failures, decisions, the goal."""
POINTER_PATTERN = re.compile(r"\bfull text: \S+")
"""A line that says where a full text is kept (working memory's summary header, ``… full
text: tool-output:3):``): pinned, and the last pinned line to go, as the only way back to
what a summary left out."""
POINTER_BONUS = 2.0
PINNED_BONUS = 1.0
"""Added to the score of a pinned line's values (and of a pinned line dropped for room)."""
REPEAT_WEIGHT = 0.25
"""What a value is worth in a line where it was not said last, against 1 where it was."""
VALUES_KEPT = 4096
"""At most this many distinct values are kept per collapsed line (all are counted)."""
VARIANTS_KEPT = 8
"""A collapsed line of at most this many distinct lines can be written out again in full."""
RUN_MIN = 3
"""Numbered values (``pi-1``, ``pi-2``, ``pi-3``) this many in a row are written as a range."""
_NUMBERED = re.compile(r"(.*?)(0|[1-9]\d{0,17})")
LIST_ITEMS = 8
"""A line of at least this many comma-separated items is a list (its items are values)."""
_LABEL = re.compile(r"[^\s,()\[\]{}]+:\s+")
"""A list's label (``Install: ``), kept with the list."""
_BARE = re.compile(r"([(\[]*)([^\s()\[\],;]+?)([)\],;:.]*)")
"""A word as its opening brackets, the name that can be a value, and closing punctuation."""
_MAX_WORDS = 64
"""Longer templates are not generalised (the search is quadratic in words)."""
_REFILLS = 3
"""Passes over what is left, while ranges keep freeing room."""
_TIER_HEAD, _TIER_VALUE = 0, 1
"""Lines and list items are chosen before the values of collapsed lines."""
_WORD = re.compile(r"[a-z][a-z0-9_]+")
_STOP = frozenset(
    {
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "from",
        "by",
        "at",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "this",
        "that",
        "it",
        "as",
        "not",
        "no",
    }
)


@dataclass(eq=False)
class Line:
    """One collapsed line: its first occurrence, repetitions and varying values."""

    first: str
    template: str
    order: int
    count: int = 1
    values: list[str] = field(default_factory=list)
    """The distinct values of the slots that varied, first seen first (``VALUES_KEPT`` at
    most; ``distinct`` counts them all)."""
    pinned: bool = False
    score: float = 0.0
    max_values: int = 8
    """How many values ``render`` shows when not told which."""
    lead: str | None = None
    """For a long list (a line of at least ``LIST_ITEMS`` comma-separated items, once): what
    comes before the items, which are then its values. None for other lines."""
    latest: set[str] = field(default_factory=set)
    """The values said last in this line (their latest state is here)."""
    slots: list[str] = field(default_factory=list)
    """The first line's values, slot by slot."""
    at: int = 0
    """Where it first came: its line number among the text's non-blank lines."""
    variants: dict[str, tuple[int, int]] | None = None
    """The distinct lines as written, each with where it first came and how often, while
    there are at most ``VARIANTS_KEPT`` (None past that, or when not tracked)."""
    _varying: set[int] = field(default_factory=set, repr=False)
    _seen: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._seen.update(self.values)

    @property
    def distinct(self) -> int:
        """How many distinct values varied (``values`` may hold fewer)."""
        return len(self._seen)

    def repeat(self, line: str, values: Sequence[str], at: int = 0) -> None:
        """Count one more occurrence: the line as written (line number ``at``), and the
        values in its slots."""
        self.count += 1
        if self.variants is not None:
            came, times = self.variants.get(line, (at, 0))
            self.variants[line] = (came, times + 1)
            if len(self.variants) > VARIANTS_KEPT:
                self.variants = None
        for slot, (first, value) in enumerate(zip(self.slots, values, strict=False)):
            if value == first:
                continue
            if slot not in self._varying:  # the first line's value varies too, from now on
                self._varying.add(slot)
                self.note(first)
            self.note(value)

    def note(self, value: str) -> None:
        """Add a distinct value (counted always, kept up to ``VALUES_KEPT``)."""
        if value not in self._seen:
            self._seen.add(value)
            if len(self.values) < VALUES_KEPT:
                self.values.append(value)

    def expanded(self) -> list[tuple[int, str]] | None:
        """The distinct lines as written, each with where it first came and with its count
        when repeated (None when there were too many to keep)."""
        if self.variants is None:
            return None
        return [(at, f"{v} (x{n})" if n > 1 else v) for v, (at, n) in self.variants.items()]

    def render(self, shown: Sequence[str] | None = None) -> str:
        """The line as written, with its count and ``shown`` values (default: the first
        ``max_values``); how many more there were is said, not listed."""
        if self.lead is not None:
            shown = self.values if shown is None else shown
            more = self.distinct - len(shown)
            return self.lead + ", ".join([*shown, f"… {more} more"] if more > 0 else shown)
        if self.count == 1:
            return self.first
        if not self.distinct:
            return f"{self.first} (x{self.count})"
        shown = self.values[: self.max_values] if shown is None else shown
        more = self.distinct - len(shown)
        if not shown:
            return f"{self.first} (x{self.count}; {more} values)"
        listed = ", ".join(runs(shown)) + (f", … {more} more" if more > 0 else "")
        return f"{self.first} (x{self.count}; values: {listed})"


def runs(values: Sequence[str]) -> list[str]:
    """Values with numbered runs written as ranges: ``pi-1, pi-2, pi-3, pi-4`` is
    ``pi-1 to pi-4`` (a run of at least ``RUN_MIN`` consecutive numbers under one prefix, no
    leading zeros), in the place of its first value; the other values as they are."""
    numbered: dict[str, set[int]] = {}
    for value in values:
        match = _NUMBERED.fullmatch(value)
        if match:
            numbered.setdefault(match[1], set()).add(int(match[2]))
    run_of: dict[str, str] = {}
    for prefix, numbers in numbered.items():
        ordered = sorted(numbers)
        start = 0
        for i in range(1, len(ordered) + 1):
            if i < len(ordered) and ordered[i] == ordered[i - 1] + 1:
                continue
            if i - start >= RUN_MIN:
                text = f"{prefix}{ordered[start]} to {prefix}{ordered[i - 1]}"
                run_of.update((f"{prefix}{n}", text) for n in ordered[start:i])
            start = i
    written: list[str] = []
    for value in values:
        run = run_of.get(value)
        if run is None:
            written.append(value)
        elif run not in run_of:  # the run's first value: the run; its others: nothing
            run_of[run] = run
            written.append(run)
    return written


@dataclass(frozen=True)
class Compressed:
    """What compression kept, and how much it saved."""

    text: str
    tokens_before: int
    tokens_after: int
    lines_before: int
    lines_after: int

    @property
    def ratio(self) -> float:
        """Share of tokens removed (0.75: a quarter is left)."""
        return 1.0 - self.tokens_after / self.tokens_before if self.tokens_before else 0.0


def template_of(line: str) -> tuple[str, list[str]]:
    """A line's template and the values that fill its ``<*>`` slots."""
    values: list[str] = []

    def slot(match: re.Match[str]) -> str:
        values.append(match.group(0))
        return "<*>"

    return _VARIABLE.sub(slot, line), values


def strip_timestamp(line: str) -> str:
    """The line without a leading timestamp (epoch, ISO 8601 or syslog)."""
    return _TIMESTAMP.sub("", line, count=1)


def default_pin(line: str) -> bool:
    """Whether a line must survive: it names a failure or a decision, or points to a full
    text."""
    return bool(PIN_PATTERN.search(line) or POINTER_PATTERN.search(line))


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _generalise(templates: dict[str, int]) -> dict[str, tuple[str, int]]:
    """Templates that are another one with a plain word where it has a ``<*>`` slot
    (``Setting up perl (<*>)`` beside ``Setting up <*> (<*>)``), mapped to that one: the
    template it joins and the word's position. Names without a digit are values too, once
    other lines show that the place holds values."""
    joins: dict[str, tuple[str, int]] = {}
    for template in templates:
        words = template.split(" ")
        if len(words) > _MAX_WORDS:
            continue
        best: tuple[int, str, int] | None = None
        for i, word in enumerate(words):
            if "<*>" in word:
                continue
            bare = _BARE.fullmatch(word)
            if bare is None:
                continue
            target = " ".join([*words[:i], f"{bare[1]}<*>{bare[3]}", *words[i + 1 :]])
            size = templates.get(target)
            if size is not None and (best is None or size > best[0]):
                best = (size, target, i)
        if best is not None:
            joins[template] = (best[1], best[2])
    return joins


def collapse(text: str, *, pin: Callable[[str], bool] | None = None) -> list[Line]:
    """The text's lines, timestamps removed, repeated templates collapsed (first-seen order)."""
    is_pinned = pin or default_pin
    parsed: list[tuple[str, str, list[str]]] = []
    sizes: Counter[str] = Counter()
    firsts: dict[str, str] = {}
    for raw in text.splitlines():
        line = strip_timestamp(raw).rstrip()
        if line.strip():
            template, values = template_of(line)
            parsed.append((line, template, values))
            sizes[template] += 1
            firsts.setdefault(template, line)
    joins = _generalise(sizes)
    groups: dict[str, Line] = {}
    occurrences: list[tuple[Line, list[str]]] = []
    for at, (line, template, values) in enumerate(parsed):
        pinned = is_pinned(line)
        # A line joins a wider template only where both are pinned or neither is.
        while template in joins and pinned == is_pinned(firsts[joins[template][0]]):
            template, values = _join(template, values, *joins[template])
        group = groups.get(template)
        if group is None:
            group = Line(line, template, len(groups), pinned=pinned, slots=values, at=at)
            group.variants = {line: (at, 1)}
            groups[template] = group
        else:
            group.repeat(line, values, at)
        occurrences.append((group, values))
    _mark_latest(occurrences)
    for group in groups.values():
        if group.count == 1:
            _as_list(group)
    return list(groups.values())


def _as_list(line: Line) -> None:
    """Make a long list of distinct items (``Install: a (1.0), b (2.1), …``) a line whose
    values are its items, so that the items that fit can be kept when the whole does not."""
    items: list[str] = []
    depth = start = 0
    text = line.first
    for i, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0 and text.startswith(", ", i):
            items.append(text[start:i])
            start = i + 2
    items.append(text[start:])
    if len(items) < LIST_ITEMS or len(set(items)) < len(items):
        return
    label = _LABEL.match(items[0])
    lead = label[0] if label else ""
    items[0] = items[0][len(lead) :]
    line.lead = lead
    line.values = []
    line.latest = set(items)
    for item in items:
        line.note(item)


def _mark_latest(occurrences: Sequence[tuple[Line, list[str]]]) -> None:
    """Note in each line the values whose latest word is there: a value is said again later
    when a later line holds it with one of the values it came with (the same package and
    version, say; a version shared by another package is not the same thing), or holds it at
    all when it came alone."""
    later: dict[str, set[str]] = {}
    """Each value seen so far (going backwards), with the values seen beside it."""
    for group, values in reversed(occurrences):
        present = set(values)
        for value in present:
            beside = later.get(value)
            others = present - {value}
            if beside is None or (others and not others & beside):
                group.latest.add(value)
        for value in present:
            later.setdefault(value, set()).update(present - {value})


def _join(template: str, values: list[str], target: str, position: int) -> tuple[str, list[str]]:
    """A line's template and values under the template it joins (its word becomes a value)."""
    words = template.split(" ")
    slot = sum(word.count("<*>") for word in words[:position])
    bare = _BARE.fullmatch(words[position])
    value = bare[2] if bare else words[position]
    return target, [*values[:slot], value, *values[slot:]]


def _score(lines: Sequence[Line], goal: str) -> None:
    """Score each line: words shared with the goal, rare words (in few of the text's lines),
    few repetitions; a pointer to a full text above all."""
    goal_words = _words(goal)
    frequency: Counter[str] = Counter()
    for line in lines:
        for word in _words(line.template):
            frequency[word] += line.count
    for line in lines:
        words = _words(line.template)
        overlap = len(words & goal_words) / (1 + len(goal_words)) if goal_words else 0.0
        rarity = sum(1.0 / frequency[w] for w in words) / (1 + len(words))
        line.score = 2.0 * overlap + rarity + 0.3 / math.log2(2 + line.count)
        if POINTER_PATTERN.search(line.first):
            line.score += POINTER_BONUS


class _Budget:
    """Chooses what to keep: whole lines, and which values of each collapsed line."""

    def __init__(self, lines: Sequence[Line], budget: int, count: Callable[[str], int]) -> None:
        self.lines = lines
        self.budget = budget
        self._count = count
        self._cache: dict[str, int] = {}
        self.used = 0
        self.kept: dict[Line, list[str]] = {}
        """The lines kept, each with the values chosen for it."""
        self.added: list[tuple[Line, str | None]] = []
        """What was kept, in the order it was chosen (``None``: the line itself)."""
        self.expanded: list[Line] = []
        """The collapsed lines written out again, in the order they were chosen."""
        self.chosen: set[tuple[Line, str]] = set()

    def cost(self, text: str) -> int:
        cached = self._cache.get(text)
        if cached is None:
            cached = self._cache[text] = self._count(text)
        return cached

    def head(self, line: Line) -> int:
        """Tokens of a line without its values (with room to say how many there are), plus
        one for the line break."""
        if line.lead is not None:
            return self.cost(line.lead) + self.cost(f"… {line.distinct} more") + 1
        if line.count == 1 or not line.distinct:
            return self.cost(line.render()) + 1
        tail = f" (x{line.count}; values: … {line.distinct} more)"
        return self.cost(line.first) + self.cost(tail) + 1

    def take(self, line: Line, value: str | None = None) -> None:
        """Keep a line (and one of its values), when it fits."""
        if value is not None and (line, value) in self.chosen:
            return
        need = 0 if line in self.kept else self.head(line)
        if value is not None:
            need += self.cost(value) + 1  # and its comma
        if self.used + need > self.budget:
            return
        self.used += need
        if line not in self.kept:
            self.kept[line] = []
            self.added.append((line, None))
        if value is not None:
            self.kept[line].append(value)
            self.chosen.add((line, value))
            self.added.append((line, value))

    def choose(self) -> None:
        """Pinned lines first (the lowest-scoring go while they alone are over budget, the
        oldest first among equals); then lines and list items, then values, each by score
        per token. What does not fit is skipped, and what comes after still tried."""
        pinned = [g for g in self.lines if g.pinned]
        dropped: list[Line] = []
        while pinned and sum(self.head(g) for g in pinned) > self.budget:
            victim = min(pinned, key=lambda g: (g.score, g.order))
            pinned.remove(victim)
            dropped.append(victim)
        for line in pinned:
            self.take(line)
        units: list[tuple[int, float, int, Line, str | None]] = []
        for line in self.lines:
            weight = line.score + (PINNED_BONUS if line.pinned else 0.0)
            if not line.pinned or line in dropped:
                units.append((_TIER_HEAD, -weight / self.head(line), line.order, line, None))
            # A list's items are its content, as much as whole lines are.
            tier = _TIER_HEAD if line.lead is not None else _TIER_VALUE
            for value in line.values:
                share = 1.0 if value in line.latest else REPEAT_WEIGHT
                density = weight * share / (self.cost(value) + 1)
                units.append((tier, -density, line.order, line, value))
        units.sort(key=lambda u: u[:3])
        for _ in range(_REFILLS):
            for *_, unit_line, unit_value in units:
                self.take(unit_line, unit_value)
            self._complete()
            # Ranges make the text shorter than its pieces: what that frees is spent again.
            text = self.render()
            used = self._count(text) + text.count("\n") + 1 if text else 0
            if used >= self.used:
                break
            self.used = used

    def _complete(self) -> None:
        """Show all the values of a line where that fits, counted whole: a line's last values
        can cost less than their pieces (the "… N more" goes, a run becomes a range)."""
        for line in list(self.kept):
            shown = self.kept[line]
            if len(shown) == len(line.values):
                continue
            extra = self.cost(line.render(line.values)) - self.cost(self._collapsed(line))
            if self.used + extra <= self.budget:
                self.used += extra
                for value in line.values:
                    if (line, value) not in self.chosen:
                        shown.append(value)
                        self.chosen.add((line, value))
                        self.added.append((line, value))

    def expand(self) -> None:
        """With room left, write collapsed lines out again as their distinct lines, each in
        its place (pinned first, then by score): what was said, word for word."""
        candidates = [g for g in self.kept if g.count > 1 and len(self.kept[g]) == g.distinct]
        candidates.sort(key=lambda g: (not g.pinned, -g.score, g.order))
        for line in candidates:
            variants = line.expanded()
            if variants is None:
                continue
            written = sum(self.cost(text) + 1 for _, text in variants)
            extra = written - self.cost(self._collapsed(line)) - 1
            if self.used + extra <= self.budget:
                self.used += extra
                self.expanded.append(line)

    def _collapsed(self, line: Line) -> str:
        chosen = set(self.kept[line])
        return line.render([v for v in line.values if v in chosen])

    def render(self) -> str:
        """The kept lines, each where it first came."""
        placed: list[tuple[int, str]] = []
        for line in self.kept:
            variants = line.expanded() if line in self.expanded else None
            placed.extend(variants or [(line.at, self._collapsed(line))])
        return "\n".join(text for _, text in sorted(placed, key=lambda p: p[0]))

    def fit(self) -> str:
        """The rendered text, the last choices undone while its exact count is over budget
        (the estimate adds costs piece by piece)."""
        text = self.render()
        while (self.expanded or self.added) and self._count(text) > self.budget:
            if self.expanded:
                self.expanded.pop()
            else:
                line, value = self.added.pop()
                if value is None:
                    del self.kept[line]
                else:
                    self.kept[line].remove(value)
                    self.chosen.discard((line, value))
            text = self.render()
        return text


def compress(
    text: str,
    budget_tokens: int,
    *,
    goal: str = "",
    pin: Callable[[str], bool] | None = None,
    count: Callable[[str], int] | None = None,
) -> Compressed:
    """``text`` within ``budget_tokens``, keeping pinned lines and what matters to ``goal``."""
    counter = count or default_tokenizer().count
    lines_before = sum(1 for line in text.splitlines() if line.strip())
    before = counter(text)
    lines = collapse(text, pin=pin)
    _score(lines, goal)
    budget = _Budget(lines, budget_tokens, counter)
    budget.choose()
    budget.expand()
    result = budget.fit()
    return Compressed(result, before, counter(result), lines_before, len(result.splitlines()))


def truncate(text: str, budget_tokens: int, *, count: Callable[[str], int] | None = None) -> str:
    """The baseline: the text's last lines that fit in the budget (what a plain buffer keeps)."""
    counter = count or default_tokenizer().count
    kept: list[str] = []
    used = 0
    for line in reversed(text.splitlines()):
        cost = counter(line) + 1
        if used + cost > budget_tokens:
            break
        kept.append(line)
        used += cost
    return "\n".join(reversed(kept))


def sentences(text: str) -> Sequence[str]:
    """Prose cut into sentences (for texts that are not line-oriented)."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", text) if s.strip()]
