"""What the terminal prompt for an MCP server's question shows and returns, with the typing
given as text: links, refusals, optional fields and defaults, choices, and input that ends."""

from __future__ import annotations

import io
from typing import Any

from fleetmind.cli._elicit import ask
from fleetmind.tools import ElicitationReply, ElicitationRequest

FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "title": "City"},
        "nights": {"type": "integer", "title": "Nights", "default": 2},
        "note": {"type": "string", "title": "Note", "description": "Anything else"},
        "breakfast": {"type": "boolean", "title": "Breakfast"},
        "extras": {
            "type": "array",
            "title": "Extras",
            "items": {"anyOf": [{"const": "bike", "title": "A bike"}, {"const": "cot"}]},
        },
    },
    "required": ["city", "breakfast"],
}


def asked(typed: str, request: ElicitationRequest) -> tuple[ElicitationReply, str]:
    out = io.StringIO()
    reply = ask(request, io.StringIO(typed), out)
    return reply, out.getvalue()


def form(message: str = "Where to?") -> ElicitationRequest:
    return ElicitationRequest(server="hotel", message=message, schema=FORM)


def test_every_field_is_asked_with_what_to_type() -> None:
    reply, shown = asked("a\n\nOslo\n\n\nmaybe\ny\n1, cot\n", form())
    assert reply == ElicitationReply(
        "accept", {"city": "Oslo", "nights": 2, "breakfast": True, "extras": ["bike", "cot"]}
    )
    assert "MCP server 'hotel' asks: Where to?" in shown
    assert "  City: " in shown
    assert "    an answer is needed" in shown
    assert "  Nights [a whole number; default 2]: " in shown
    assert "  Note (Anything else) [optional]: " in shown
    assert "    'maybe' is not yes or no" in shown
    assert "  Extras [any of 1) A bike 2) cot, separated by commas; optional]: " in shown


def test_the_user_may_decline_or_cancel() -> None:
    assert asked("d\n", form())[0] == ElicitationReply("decline")
    assert asked("x\nc\n", form())[0] == ElicitationReply("cancel")
    assert "type one of: a, d, c" in asked("x\nc\n", form())[1]


def test_input_that_ends_cancels() -> None:
    reply, shown = asked("a\nOslo\n", form())
    assert reply == ElicitationReply("cancel")
    assert "(no more input: the question was cancelled)" in shown


def test_a_link_is_shown_and_the_user_says_whether_they_will_open_it() -> None:
    link = ElicitationRequest(
        server="pay", message="Pay the deposit", mode="url", url="https://pay.example/d/1"
    )
    reply, shown = asked("y\n", link)
    assert reply == ElicitationReply("accept")
    assert "It wants you to open: https://pay.example/d/1" in shown
    assert asked("n\n", link)[0] == ElicitationReply("decline")
