"""The forms MCP servers ask users to fill in (elicitation's requested schema): reading their
fields, parsing what a person types, and checking an answer against the schema; and which
configured model answers a sampling request."""

from __future__ import annotations

from typing import Any

import pytest

from fleetmind.agents import ModelEndpoint, OpenAICompatibleClient
from fleetmind.orchestrator import MCPRequests
from fleetmind.protocols import (
    FormField,
    SamplingMessage,
    SamplingRequest,
    check_form_answer,
    form_fields,
)

FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email", "title": "E-mail"},
        "count": {"type": "integer", "minimum": 1, "maximum": 9},
        "ratio": {"type": "number"},
        "agree": {"type": "boolean", "default": False},
        "size": {
            "type": "string",
            "oneOf": [{"const": "s", "title": "Small"}, {"const": "l", "title": "Large"}],
        },
        "legacy": {"type": "string", "enum": ["x", "y"], "enumNames": ["Ex", "Why"]},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}},
    },
    "required": ["email", "count"],
}


def test_the_fields_of_a_form_in_order_with_their_kinds() -> None:
    fields = {f.name: f for f in form_fields(FORM)}
    assert list(fields) == ["email", "count", "ratio", "agree", "size", "legacy", "tags"]
    assert [f.kind for f in fields.values()] == [
        "string",
        "integer",
        "number",
        "boolean",
        "choice",
        "choice",
        "choices",
    ]
    assert fields["email"].title == "E-mail" and fields["email"].format == "email"
    assert fields["email"].required and not fields["ratio"].required
    assert fields["size"].options == (("s", "Small"), ("l", "Large"))
    assert fields["legacy"].options == (("x", "Ex"), ("y", "Why"))
    assert fields["agree"].default is False


@pytest.mark.parametrize(
    "schema, problem",
    [
        ({"type": "array"}, "not an object with properties"),
        ({"type": "object", "properties": {"a": {"type": "object"}}}, "field 'a' is not"),
        (
            {"type": "object", "properties": {"a": {"type": "array", "items": {}}}},
            "field 'a' is a list of something other than choices",
        ),
    ],
)
def test_a_form_that_is_not_flat_is_refused(schema: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        form_fields(schema)


def test_what_a_person_types_becomes_the_fields_value() -> None:
    fields = {f.name: f for f in form_fields(FORM)}
    assert fields["count"].parse(" 3 ") == 3
    assert fields["ratio"].parse("0.5") == 0.5
    assert fields["agree"].parse("Yes") is True
    assert fields["agree"].parse("n") is False
    assert fields["size"].parse("Large") == "l"
    assert fields["size"].parse("1") == "s"
    assert fields["tags"].parse("a, 3") == ["a", "c"]
    for field, text, problem in [
        ("count", "three", "'three' is not a whole number"),
        ("ratio", "half", "'half' is not a number"),
        ("agree", "maybe", "'maybe' is not yes or no"),
        ("size", "medium", "'medium' is not one of: s, l"),
    ]:
        with pytest.raises(ValueError, match=problem):
            fields[field].parse(text)


def test_an_answer_is_checked_against_the_schema() -> None:
    good = {"email": "ada@example.com", "count": 3, "size": "l", "tags": ["a"]}
    assert check_form_answer(FORM, good) is None
    assert check_form_answer(FORM, {**good, "count": 10}) == (
        "field 'count': 10 is greater than the maximum of 9"
    )
    assert check_form_answer(FORM, {"count": 3}) == "'email' is a required property"
    assert check_form_answer(FORM, {**good, "email": "not an address"}) == (
        "field 'email': 'not an address' is not a 'email'"
    )
    assert check_form_answer(FORM, {**good, "extra": 1}) == (
        "the answer has fields the form does not ask for: extra"
    )
    assert check_form_answer(FORM, ["a"]) == "the answer is list, not an object of fields"


def test_a_field_made_by_hand_parses_too() -> None:
    field = FormField(name="n", kind="integer", title="N")
    assert field.parse("7") == 7


def client(tier: str, model: str) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(
        ModelEndpoint(name=tier, base_url="http://127.0.0.1:9/v1", model=model)
    )


def request(**preferences: Any) -> SamplingRequest:
    return SamplingRequest(
        server="s", messages=(SamplingMessage("user", "hi"),), max_tokens=8, **preferences
    )


def test_the_servers_preferences_pick_among_the_configured_models() -> None:
    small, large = client("device", "gemma-small"), client("cloud", "big-model")
    answers = MCPRequests(lambda: [], _never_run, models={"cloud": large, "device": small})
    assert answers.pick_model(request()) is large
    assert answers.pick_model(request(model_hints=("gemma",))) is small
    assert answers.pick_model(request(model_hints=("nothing", "cloud"))) is large
    assert answers.pick_model(request(cost_priority=0.9, intelligence_priority=0.2)) is small
    assert answers.pick_model(request(speed_priority=0.8)) is small
    assert answers.pick_model(request(intelligence_priority=0.9, cost_priority=0.1)) is large


async def _never_run(graph: Any) -> Any:
    raise AssertionError("no task runs here")
