"""The OpenAI-compatible client against a scripted server over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import BaseModel

from fleetmind.agents import ChatMessage, ModelEndpoint, OpenAICompatibleClient
from fleetmind.errors import (
    FleetStateError,
    ModelRateLimited,
    ModelRejected,
    ModelResponseInvalid,
    ModelUnavailable,
    StructuredOutputError,
)
from fleetmind.testing import Reply, ScriptedLLMServer, free_port

HELLO = [ChatMessage.system("be brief"), ChatMessage.user("hello")]


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as running:
        yield running


class Sleeps:
    """Records back-off waits instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(
    server: ScriptedLLMServer, sleeps: Sleeps | None = None, **fields: object
) -> OpenAICompatibleClient:
    endpoint = ModelEndpoint(name="cloud", base_url=server.url, model="m", **fields)  # type: ignore[arg-type]
    return OpenAICompatibleClient(endpoint, rng=random.Random(7), sleep=sleeps or Sleeps())


async def test_completion_with_usage_and_cost(server: ScriptedLLMServer) -> None:
    server.push(Reply.text("hi there", usage={"prompt_tokens": 1000, "completion_tokens": 500}))
    prices = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
    async with client_for(server, prices=prices) as model:
        answer = await model.complete(HELLO, max_tokens=20, temperature=0.0, stop=["\n"])
    assert answer.content == "hi there"
    assert answer.finish_reason == "stop"
    assert (answer.prompt_tokens, answer.completion_tokens) == (1000, 500)
    assert answer.cost == pytest.approx((1000 * 2 + 500 * 8) / 1e6)
    assert answer.endpoint == "cloud" and answer.attempts == 1 and answer.latency_s > 0
    sent = server.requests[0]
    assert sent["model"] == "m" and sent["max_tokens"] == 20 and sent["stop"] == ["\n"]
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]


async def test_usage_is_estimated_when_the_server_gives_none(server: ScriptedLLMServer) -> None:
    server.push(Reply.text("x" * 40, usage=False))
    async with client_for(server) as model:
        answer = await model.complete(HELLO)
    assert answer.usage.estimated
    assert answer.completion_tokens == 10 and answer.prompt_tokens >= 1


async def test_several_tool_calls_in_one_turn(server: ScriptedLLMServer) -> None:
    server.push(
        Reply(
            tool_calls=[
                {"name": "search", "arguments": {"q": "mqtt"}},
                {"name": "read", "arguments": {"path": "a.txt"}},
            ]
        )
    )
    tools = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
    async with client_for(server) as model:
        answer = await model.complete(HELLO, tools=tools, tool_choice="auto")
    assert [c.name for c in answer.tool_calls] == ["search", "read"]
    assert answer.tool_calls[0].parsed_arguments() == {"q": "mqtt"}
    assert answer.finish_reason == "tool_calls"
    assert server.requests[0]["tools"] == tools and server.requests[0]["tool_choice"] == "auto"
    # The answer continues the conversation in the API's own format.
    assert answer.message().to_openai()["tool_calls"][1]["function"]["name"] == "read"


async def test_streaming_text_tool_call_deltas_and_usage(server: ScriptedLLMServer) -> None:
    server.push(
        Reply(
            content="streamed answer, in pieces",
            tool_calls=[{"name": "lookup", "arguments": {"key": "value", "n": 3}}],
            usage={"prompt_tokens": 11, "completion_tokens": 7},
        )
    )
    async with client_for(server) as model, model.stream(HELLO) as stream:
        deltas = [d async for d in stream]
        answer = stream.completion
    assert "".join(d.text for d in deltas) == "streamed answer, in pieces"
    assert len([d for d in deltas if d.text]) > 1  # really in pieces
    argument_parts = [d.tool_arguments for d in deltas if d.tool_index == 0]
    assert len(argument_parts) == 2
    assert answer.tool_calls[0].parsed_arguments() == {"key": "value", "n": 3}
    assert (answer.prompt_tokens, answer.completion_tokens) == (11, 7)
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["stream_options"] == {"include_usage": True}


async def test_429_waits_as_long_as_retry_after_says(server: ScriptedLLMServer) -> None:
    server.push(
        Reply.error(429, "slow down", headers={"Retry-After": "2"}),
        Reply.error(429, "slow down", headers={"retry-after-ms": "1500"}),
        Reply.text("ok"),
    )
    sleeps = Sleeps()
    async with client_for(server, sleeps) as model:
        answer = await model.complete(HELLO)
    assert answer.content == "ok" and answer.attempts == 3
    assert sleeps.waits == [2.0, 1.5]


async def test_retry_after_as_a_date(server: ScriptedLLMServer) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    server.push(Reply.error(503, "busy", headers={"Retry-After": later}), Reply.text("ok"))
    sleeps = Sleeps()
    async with client_for(server, sleeps) as model:
        await model.complete(HELLO)
    assert 3.0 < sleeps.waits[0] <= 5.0


async def test_retry_after_longer_than_allowed_gives_up_at_once(
    server: ScriptedLLMServer,
) -> None:
    server.push(Reply.error(429, "quota", headers={"Retry-After": "3600"}))
    sleeps = Sleeps()
    async with client_for(server, sleeps, max_backoff_s=30) as model:
        with pytest.raises(ModelRateLimited, match="3600 s"):
            await model.complete(HELLO)
    assert sleeps.waits == [] and len(server.requests) == 1


async def test_5xx_backs_off_exponentially_then_fails_retryable(
    server: ScriptedLLMServer,
) -> None:
    server.push(*[Reply.error(500, "boom")] * 4)
    sleeps = Sleeps()
    async with client_for(server, sleeps, max_retries=3) as model:
        with pytest.raises(ModelUnavailable, match=r"500: boom .after 4 attempts") as caught:
            await model.complete(HELLO)
    assert caught.value.retryable
    assert len(server.requests) == 4
    assert len(sleeps.waits) == 3
    # Jittered exponential: each wait within [base/2, base] for base 0.5, 1, 2.
    for wait, base in zip(sleeps.waits, (0.5, 1.0, 2.0), strict=True):
        assert base / 2 <= wait <= base


async def test_4xx_is_not_retried(server: ScriptedLLMServer) -> None:
    server.push(Reply.error(400, "messages must not be empty"))
    async with client_for(server) as model:
        with pytest.raises(ModelRejected, match=r"400.*messages must not be empty") as caught:
            await model.complete(HELLO)
    assert not caught.value.retryable
    assert len(server.requests) == 1


async def test_api_key_from_a_file_is_sent_and_never_shown(tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-secret-123\n")
    with ScriptedLLMServer([Reply.text("ok")], api_key="sk-secret-123") as server:
        endpoint = ModelEndpoint(
            name="cloud", base_url=server.url, model="m", api_key_file=key_file
        )
        async with OpenAICompatibleClient(endpoint) as model:
            await model.complete(HELLO)
            assert "sk-secret" not in repr(model) + repr(endpoint) + str(endpoint)
        assert server.headers[0]["Authorization"] == "Bearer sk-secret-123"
        wrong = ModelEndpoint(name="cloud", base_url=server.url, model="m", api_key="nope")
        async with OpenAICompatibleClient(wrong) as model:
            with pytest.raises(ModelRejected, match=r"refused the API key .401"):
                await model.complete(HELLO)


async def test_malformed_json_is_retried_then_reported(server: ScriptedLLMServer) -> None:
    server.push(Reply(body="{not json"), Reply(body="<html>oops</html>"))
    async with client_for(server, max_retries=1) as model:
        with pytest.raises(ModelResponseInvalid, match="not JSON") as caught:
            await model.complete(HELLO)
    assert caught.value.retryable and len(server.requests) == 2


async def test_an_answer_without_choices_is_invalid(server: ScriptedLLMServer) -> None:
    server.push(Reply(body=json.dumps({"object": "chat.completion", "choices": []})))
    async with client_for(server) as model:
        with pytest.raises(ModelResponseInvalid, match="no choices"):
            await model.complete(HELLO)


async def test_a_stream_cut_mid_way_is_an_error(server: ScriptedLLMServer) -> None:
    server.push(Reply(content="this answer never ends " * 3, cut_after=3))
    async with client_for(server) as model:
        with pytest.raises(ModelResponseInvalid, match=r"cut off|ended before") as caught:
            async with model.stream(HELLO) as stream:
                async for _ in stream:
                    pass
    assert caught.value.retryable


async def test_a_stream_is_retried_only_before_its_first_piece(
    server: ScriptedLLMServer,
) -> None:
    server.push(Reply.error(503, "warming up"), Reply.text("after the retry"))
    async with client_for(server) as model, model.stream(HELLO) as stream:
        text = "".join([d.text async for d in stream])
    assert text == "after the retry" and stream.completion.attempts == 2


async def test_a_server_that_ignores_stream_true_is_read_whole(
    server: ScriptedLLMServer,
) -> None:
    whole = Reply.text("all at once").completion({}, "1")
    server.push(Reply(body=json.dumps(whole)))
    async with client_for(server) as model, model.stream(HELLO) as stream:
        text = "".join([d.text async for d in stream])
    assert text == "all at once" and stream.completion.finish_reason == "stop"


async def test_timeout_of_a_slow_answer(server: ScriptedLLMServer) -> None:
    server.push(Reply(content="late", delay_s=1.0), Reply(content="late", delay_s=1.0))
    async with client_for(server, timeout_s=0.2, max_retries=1) as model:
        with pytest.raises(ModelUnavailable, match=r"did not answer within 0.2 s"):
            await model.complete(HELLO)


async def test_connection_refused_is_unavailable() -> None:
    endpoint = ModelEndpoint(
        name="device", base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=1
    )
    async with OpenAICompatibleClient(endpoint, sleep=Sleeps()) as model:
        with pytest.raises(ModelUnavailable, match="cannot connect to the device model"):
            await model.complete(HELLO)


async def test_cancelling_closes_the_stream(server: ScriptedLLMServer) -> None:
    server.push(Reply(content="x" * 4000, piece_delay_s=0.01))
    async with client_for(server) as model:
        first = asyncio.Event()

        async def read() -> None:
            async with model.stream(HELLO) as stream:
                async for _ in stream:
                    first.set()

        task = asyncio.create_task(read())
        await asyncio.wait_for(first.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # The server notices the closed connection at its next write.
    assert await asyncio.to_thread(server.disconnected.wait, 30)


async def test_structured_output_asks_for_a_json_schema(server: ScriptedLLMServer) -> None:
    server.push(Reply.text('{"answer": 42}'))
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    async with client_for(server) as model:
        await model.complete(HELLO, response_schema=schema)
    assert server.requests[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema},
    }


async def test_a_server_that_refuses_json_schema_is_asked_by_instructions(
    server: ScriptedLLMServer,
) -> None:
    server.push(
        Reply.error(400, "response_format json_schema is not supported"),
        Reply.text('{"answer": 1}'),
        Reply.text('{"answer": 2}'),
    )
    schema = {"type": "object"}
    async with client_for(server) as model:
        assert model.supports_json_schema
        first = await model.complete(HELLO, response_schema=schema)
        second = await model.complete(HELLO, response_schema=schema)
        assert not model.supports_json_schema
    assert (first.content, second.content) == ('{"answer": 1}', '{"answer": 2}')
    assert first.attempts == 1
    assert "response_format" in server.requests[0]
    assert "response_format" not in server.requests[1]
    assert "response_format" not in server.requests[2]  # remembered


async def test_list_models(server: ScriptedLLMServer) -> None:
    async with client_for(server) as model:
        assert await model.list_models() == ["scripted-model"]


async def test_a_closed_client_says_so(server: ScriptedLLMServer) -> None:
    model = client_for(server)
    await model.aclose()
    with pytest.raises(FleetStateError, match="closed"):
        await model.complete(HELLO)


def test_the_client_works_from_a_second_event_loop(server: ScriptedLLMServer) -> None:
    """A client made once and used by two `asyncio.run` calls (a script that runs twice)."""
    server.push(Reply.text("one"), Reply.text("two"))
    model = client_for(server)

    async def ask() -> str:
        answer = await model.complete(HELLO)
        await model.release_connections()  # as Fleet does when a run ends
        return answer.content

    assert (asyncio.run(ask()), asyncio.run(ask())) == ("one", "two")


class Answer(BaseModel):
    value: int
    unit: str


async def test_structured_output_is_validated_and_repaired(server: ScriptedLLMServer) -> None:
    server.push(
        Reply.text('Sure: {"value": "ten"}'),
        Reply.text('```json\n{"value": 10, "unit": "m"}\n```'),
    )
    async with client_for(server) as model:
        value, completions = await model.structured(HELLO, Answer)
    assert value == Answer(value=10, unit="m") and len(completions) == 2
    # The schema went both ways: as response_format, and in words for servers that ignore it.
    assert server.requests[0]["response_format"]["json_schema"]["schema"]["required"] == [
        "value",
        "unit",
    ]
    assert "JSON Schema" in server.requests[0]["messages"][-1]["content"]
    assert "value: Input should be a valid integer" in server.requests[1]["messages"][-1]["content"]


async def test_structured_output_that_never_validates(server: ScriptedLLMServer) -> None:
    server.push(Reply.text("no"), Reply.text("still no"))
    async with client_for(server) as model:
        with pytest.raises(StructuredOutputError, match="no valid Answer in 2 answers"):
            await model.structured(HELLO, Answer)
