"""The shared one-line wording of a pydantic error: every problem at once, and keys named by what
the caller calls them (an argument of a tool, a field of a config)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from fleetmind._validation import describe_validation_error


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    count: int
    inner: list[_Inner] = []


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _Config.model_validate(data)
    return caught.value


def test_every_problem_joined_with_its_noun() -> None:
    exc = _error({"count": "many", "colour": "red"})
    assert describe_validation_error(exc, all_errors=True, noun="argument") == (
        "missing argument 'name'; argument 'count': Input should be a valid integer, unable to "
        "parse string as an integer (got 'many'); unknown argument 'colour'"
    )


def test_nested_keys_keep_their_path() -> None:
    exc = _error({"name": "a", "count": 1, "inner": [{"size": 1}, {"sise": 2}]})
    assert describe_validation_error(exc, all_errors=True, noun="field") == (
        "missing field 'inner.1.size'; unknown field 'inner.1.sise'"
    )
    assert describe_validation_error(exc, all_errors=True, noun="field", plain=True) == (
        "missing field 'inner[2].size'; unknown field 'inner[2].sise'"
    )


def test_without_the_new_options_the_first_problem_reads_as_before() -> None:
    exc = _error({"count": "many", "colour": "red"})
    assert describe_validation_error(exc) == "name: Field required"
    assert describe_validation_error(exc, count_more=True) == "name: Field required (and 2 more)"
