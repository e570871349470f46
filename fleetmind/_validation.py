"""One way to say what pydantic found wrong, in one line, for every entry point.

By default the line keeps pydantic's wording with a dotted location (``models.cloud.base_url:
Field required``), which suits messages read by developers and models. ``plain=True`` words it
for a person editing a file: ``subtasks[2]: unknown key 'agnet' (did you mean 'agent'?)``, with
one-based list positions, and a caller may name locations its own way (``subtask 2 (id 'a')``).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from fleetmind._suggest import did_you_mean

Location = tuple[int | str, ...]
"""Where in the input a problem is: keys and (zero-based) list positions, as pydantic gives it."""

_SECRETS = ("key", "token", "password", "secret")

# Plain words for pydantic's error types whose own message is about Python rather than the file.
_PLAIN = {
    "float_parsing": "should be a number",
    "float_type": "should be a number",
    "int_parsing": "should be a whole number",
    "int_type": "should be a whole number",
    "int_from_float": "should be a whole number",
    "bool_parsing": "should be true or false",
    "bool_type": "should be true or false",
    "string_type": "should be text",
    "list_type": "should be a list",
    "tuple_type": "should be a list",
    "dict_type": "should be a mapping (key: value)",
    "model_type": "should be a mapping (key: value)",
    "model_attributes_type": "should be a mapping (key: value)",
}


def describe_validation_error(
    exc: ValidationError,
    *,
    show_input: bool = True,
    plain: bool = False,
    model: type[BaseModel] | None = None,
    where: Callable[[Location], str] | None = None,
    count_more: bool = False,
    all_errors: bool = False,
    noun: str | None = None,
) -> str:
    """The first problem pydantic found (or every one), as ``where: what (got value)``.

    Args:
        exc: What pydantic raised.
        show_input: Show a short scalar input, so the user sees the value that was refused
            (never for fields whose name says they hold a secret).
        plain: Plain words (``unknown key 'x'``, ``missing key 'id'``, ``should be a number``)
            and one-based list positions (``subtasks[1]``) instead of pydantic's wording.
        model: The model that was validated: an unknown key then comes with the nearest known
            keys at that place (``did you mean 'agent'?``).
        where: Names a location (the one of the problem, or of the mapping holding an unknown
            or missing key); "" for the top level.
        count_more: Say how many other problems there are (``(and 2 more)``), for a caller
            that fixes one at a time and should know it is not the last.
        all_errors: Every problem, joined by ``"; "``, for a caller whose user fixes them all
            at once (a model calling a tool, a config given on one line).
        noun: What the keys are called (``argument``, ``field``): an unknown or missing one is
            ``unknown argument 'x'``, and another problem is ``argument 'x': what``.
    """
    errors = exc.errors()
    if all_errors:
        return "; ".join(
            describe_error(
                e, show_input=show_input, plain=plain, model=model, where=where, noun=noun
            )
            for e in errors
        )
    first = errors[0]
    if plain and first["type"] == "missing":
        # A key that is missing beside an unknown one is most likely that key misspelt.
        parent = tuple(first["loc"][:-1])
        first = next(
            (
                e
                for e in errors
                if e["type"] == "extra_forbidden" and tuple(e["loc"][:-1]) == parent
            ),
            first,
        )
    line = describe_error(
        first, show_input=show_input, plain=plain, model=model, where=where, noun=noun
    )
    if count_more and len(errors) > 1:
        line += f" (and {len(errors) - 1} more)"
    return line


def describe_error(
    err: ErrorDetails,
    *,
    show_input: bool = True,
    plain: bool = False,
    model: type[BaseModel] | None = None,
    where: Callable[[Location], str] | None = None,
    noun: str | None = None,
) -> str:
    """One of pydantic's errors as one line (see :func:`describe_validation_error`)."""
    loc: Location = tuple(err["loc"])
    kind = err["type"]
    keyed = bool(loc) and isinstance(loc[-1], str) and kind in ("extra_forbidden", "missing")
    place: Location
    if keyed and noun is not None:
        place = ()
        path = format_location(loc) if plain else ".".join(str(part) for part in loc)
        message = f"{'unknown' if kind == 'extra_forbidden' else 'missing'} {noun} {path!r}"
    elif keyed and plain:
        place, key = loc[:-1], str(loc[-1])
        message = f"{'unknown' if kind == 'extra_forbidden' else 'missing'} key {key!r}"
    else:
        place = loc
        message = _plain_message(err) if plain else str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden" and model is not None and loc:
        message += did_you_mean(str(loc[-1]), known_keys(model, loc[:-1]))
    value = err.get("input")
    if (
        show_input
        and isinstance(value, str | int | float | bool)
        and kind not in ("extra_forbidden", "missing", "json_invalid")
        and len(repr(value)) <= 80
        and not any(secret in str(part).lower() for part in loc for secret in _SECRETS)
    ):
        message += f" (got {value!r})"
    if where is not None:
        label = where(place)
    else:
        label = format_location(place) if plain else ".".join(str(part) for part in place)
        if noun is not None and label:
            label = f"{noun} {label!r}"
    return f"{label}: {message}" if label else message


def format_location(loc: Location) -> str:
    """``subtasks[1].retry`` for pydantic's ``("subtasks", 0, "retry")``: one-based positions."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part + 1}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def known_keys(model: type[BaseModel], loc: Location) -> list[str]:
    """The keys a mapping at ``loc`` inside ``model``'s input may have (empty when unknown)."""
    current: Any = model
    for part in loc:
        current = _inner(current, part)
        if current is None:
            return []
    keys: list[str] = []
    for candidate in _alternatives(current):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            for name, info in candidate.model_fields.items():
                keys.append(info.alias or name)
    return keys


def _plain_message(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind in _PLAIN:
        return _PLAIN[kind]
    context = err.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        return f"should match the pattern {context.get('pattern', '')}".rstrip()
    message = str(err["msg"]).removeprefix("Value error, ")
    for prefix in ("Input ", "String ", "List ", "Dictionary ", "Tuple "):
        if message.startswith(prefix + "should"):
            message = message.removeprefix(prefix)
            break
    return message.replace(" after validation", "")


def _alternatives(annotation: Any) -> list[Any]:
    """The types an annotation may stand for: ``A | B`` is both, ``Annotated[A, ...]`` is A."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _alternatives(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [alt for arg in get_args(annotation) for alt in _alternatives(arg)]
    return [annotation]


def _inner(annotation: Any, part: int | str) -> Any:
    """The type found at ``part`` (a key or a list position) inside a value of ``annotation``."""
    for candidate in _alternatives(annotation):
        origin = get_origin(candidate)
        args = get_args(candidate)
        if isinstance(part, int):
            if origin in (list, tuple, set, frozenset) or (
                isinstance(origin, type) and issubclass(origin, Sequence)
            ):
                return args[0] if args else None
            continue
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            for name, info in candidate.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
            if part == candidate.__name__:  # pydantic names a union member by its class
                return candidate
            continue
        if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
            return args[1] if len(args) == 2 else None
    return None
