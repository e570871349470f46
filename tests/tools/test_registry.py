"""Tests for fleetmind/tools/_registry.py: the @tool decorator, ToolSpec and ToolRegistry."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

import fleetmind.tools
from fleetmind.errors import AgentError, ConfigError
from fleetmind.tools import ToolRegistry, ToolResult, ToolSpec, tool, tool_spec


@tool
def add(a: int, b: int = 1) -> int:
    """Add two numbers.

    The second paragraph is not part of the description.

    Args:
        a: The first number.
        b (int): The second number,
            one by default.
    """
    return a + b


@tool(name="shout", description="Upper-case a text.")
async def shout_async(text: str, times: int = 1) -> str:
    return (text.upper() + " ") * times


@tool
def explode(message: str) -> None:
    """Raise a ConfigError, as a tool that rejects its input would."""
    raise ConfigError(message)


@tool
def crash() -> None:
    """Fail with a multi-line message."""
    raise RuntimeError("first line\nsecond line")


def test_public_names() -> None:
    assert sorted(fleetmind.tools.__all__) == sorted(
        [
            "tool",
            "tool_spec",
            "ToolSpec",
            "ToolRegistry",
            "ToolResult",
            "count_lines",
            "find_todos",
            "largest_files",
            "declared_dependencies",
            "MCPServerConfig",
            "MCPToolSource",
            "ToolSource",
            "ElicitationHandler",
            "ElicitationReply",
            "ElicitationRequest",
            "FormField",
            "SamplingHandler",
            "SamplingMessage",
            "SamplingReply",
            "SamplingRequest",
            "SamplingTool",
            "SamplingToolCall",
            "check_form_answer",
            "form_fields",
        ]
    )


def test_decorated_function_stays_callable() -> None:
    assert add(2, 3) == 5
    assert add(a=2) == 3
    assert asyncio.run(shout_async("hi")) == "HI "


def test_spec_from_signature_and_docstring() -> None:
    spec = tool_spec(add)
    assert spec.name == "add"
    assert spec.description == "Add two numbers."
    assert spec.fn is add
    assert spec.input_schema == {
        "additionalProperties": False,
        "properties": {
            "a": {"description": "The first number.", "title": "A", "type": "integer"},
            "b": {
                "default": 1,
                "description": "The second number, one by default.",
                "title": "B",
                "type": "integer",
            },
        },
        "required": ["a"],
        "title": "add",
        "type": "object",
    }


def test_decorator_overrides_name_and_description() -> None:
    spec = tool_spec(shout_async)
    assert (spec.name, spec.description) == ("shout", "Upper-case a text.")
    assert spec.input_schema["required"] == ["text"]


def test_parameter_names_that_shadow_basemodel_attributes() -> None:
    # "json", "schema" and "model_config" are BaseModel attributes; warnings are errors here.
    def weird(json: str, schema: int, model_config: bool = False) -> list[Any]:
        return [json, schema, model_config]

    spec = ToolSpec.from_function(weird)
    assert list(spec.input_schema["properties"]) == ["json", "schema", "model_config"]
    result = asyncio.run(ToolRegistry([spec]).call("weird", {"json": "x", "schema": "2"}))
    assert result == ToolResult(ok=True, value=["x", 2, False])


def test_undocumented_unannotated_function() -> None:
    def bare(x):  # type: ignore[no-untyped-def]
        return x

    spec = ToolSpec.from_function(bare)
    assert spec.description == ""
    assert spec.input_schema["properties"] == {"x": {"title": "X"}}


@pytest.mark.parametrize(
    "fn",
    [
        lambda *items: items,
        lambda **options: options,
        lambda x, /: x,
    ],
    ids=["var-positional", "var-keyword", "positional-only"],
)
def test_parameters_that_cannot_be_named_are_rejected(fn: Any) -> None:
    with pytest.raises(AgentError, match="named parameters only"):
        ToolSpec.from_function(fn, name="bad")


def test_bad_tool_name_is_rejected() -> None:
    with pytest.raises(AgentError, match="tool name 'has space' is not valid"):
        tool(name="has space")(lambda: None)


def test_tool_spec_of_a_plain_function() -> None:
    def plain() -> None:
        pass

    with pytest.raises(AgentError, match="is not a tool"):
        tool_spec(plain)


def test_registry_register_and_look_up() -> None:
    def plain(x: int) -> int:
        """Return x."""
        return x

    registry = ToolRegistry([add, shout_async])
    plain_spec = registry.register(plain)
    hand_made = ToolSpec(name="remote.echo", description="Echo.", input_schema={}, fn=dict)
    assert registry.register(hand_made) is hand_made

    assert registry.names() == ["add", "shout", "plain", "remote.echo"]
    assert registry.specs() == [tool_spec(add), tool_spec(shout_async), plain_spec, hand_made]
    assert registry.get("add") is tool_spec(add)
    assert registry.get("missing") is None
    assert "shout" in registry
    assert "shout_async" not in registry
    assert len(registry) == 4
    assert not hasattr(plain, "__fleetmind_tool__")


def test_registering_the_same_tool_twice_is_a_no_op() -> None:
    registry = ToolRegistry([add])
    registry.register(add)
    registry.register(tool_spec(add))
    assert registry.names() == ["add"]


def test_registering_a_different_tool_under_a_taken_name_fails() -> None:
    def other(a: int) -> int:
        return a

    registry = ToolRegistry([add])
    with pytest.raises(AgentError) as info:
        registry.register(ToolSpec.from_function(other, name="add"))
    assert "a different tool named 'add' is already registered" in str(info.value)
    assert "\n" not in str(info.value)


async def test_call_sync_tool_runs_in_a_worker_thread() -> None:
    seen: list[int] = []

    @tool
    def where(x: int) -> int:
        """Record the thread."""
        seen.append(threading.get_ident())
        return x * 2

    result = await ToolRegistry([where]).call("where", {"x": "21"})
    assert result == ToolResult(ok=True, value=42, error=None)
    assert seen and seen[0] != threading.get_ident()


async def test_call_async_tool_and_defaults() -> None:
    registry = ToolRegistry([shout_async, add])
    assert await registry.call("shout", {"text": "hi", "times": 2}) == ToolResult(
        ok=True, value="HI HI "
    )
    assert await registry.call("add", {"a": 1}) == ToolResult(ok=True, value=2)


async def test_call_tool_that_raises_gives_an_error_result() -> None:
    registry = ToolRegistry([explode, crash])
    result = await registry.call("explode", {"message": "no such thing"})
    assert result == ToolResult(
        ok=False, value=None, error="tool 'explode' failed: ConfigError: no such thing"
    )
    result = await registry.call("crash")
    assert result.error == "tool 'crash' failed: RuntimeError: first line second line"


async def test_bad_arguments_name_the_argument() -> None:
    registry = ToolRegistry([add])
    result = await registry.call("add", {"a": "many", "c": 3})
    assert not result.ok
    assert result.error == (
        "bad arguments for tool 'add': argument 'a': Input should be a valid integer, unable to "
        "parse string as an integer (got 'many'); unknown argument 'c'"
    )
    result = await registry.call("add", {})
    assert result.error == "bad arguments for tool 'add': missing argument 'a'"
    result = await registry.call("add", ["a"])  # type: ignore[arg-type]
    assert result.error == "arguments for tool 'add' must be an object, not list"


async def test_unknown_tool_is_an_error_result() -> None:
    result = await ToolRegistry([add]).call("subtract", {"a": 1})
    assert result == ToolResult(ok=False, error="unknown tool 'subtract' (known tools: add)")


async def test_spec_without_model_gets_arguments_as_keywords() -> None:
    async def remote(**arguments: Any) -> dict[str, Any]:
        return arguments

    spec = ToolSpec(name="remote", description="", input_schema={"type": "object"}, fn=remote)
    registry = ToolRegistry([spec])
    assert await registry.call("remote", {"q": 1}) == ToolResult(ok=True, value={"q": 1})
    result = await registry.call("remote", {"not an identifier": 1})
    assert result.error == (
        "bad arguments for tool 'remote': argument names must be identifiers, "
        "got 'not an identifier'"
    )


async def test_cancelling_a_call_cancels_the_tool() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @tool
    async def wait_forever() -> None:
        """Block until cancelled."""
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    call = asyncio.ensure_future(ToolRegistry([wait_forever]).call("wait_forever"))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert cancelled.is_set()


class ChangingSource:
    """A tool source whose tools change while it runs, and that says so."""

    def __init__(self, name: str, tools: list[ToolSpec]) -> None:
        self.name = name
        self.tools = tools
        self.listings = 0
        self._callbacks: list[Callable[[], None]] = []

    async def specs(self) -> list[ToolSpec]:
        self.listings += 1
        return list(self.tools)

    async def aclose(self) -> None:
        pass

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def change(self, tools: list[ToolSpec]) -> None:
        self.tools = tools
        for callback in self._callbacks:
            callback()


def spec_of(name: str, value: str) -> ToolSpec:
    async def run(arguments: Mapping[str, Any]) -> str:
        return value

    return ToolSpec(name, "", {"type": "object"}, run, arguments_as_object=True)


async def test_a_source_that_changes_is_reloaded_and_an_unknown_name_waits_for_it() -> None:
    source = ChangingSource("remote", [spec_of("a", "first a"), spec_of("b", "b")])
    registry = ToolRegistry([shout_async])
    registry.add_source(source)
    await registry.load()
    assert registry.names() == ["shout", "a", "b"]

    source.change([spec_of("a", "second a"), spec_of("c", "c")])
    # No await in between: the call finds the reload under way and waits for it.
    result = await registry.call("c", {})
    assert result.value == "c"
    assert registry.names() == ["shout", "a", "c"]
    assert (await registry.call("a", {})).value == "second a"
    assert not (await registry.call("b", {})).ok
    assert source.listings == 2


async def test_a_change_that_takes_a_name_of_another_tool_keeps_the_old_tools() -> None:
    source = ChangingSource("remote", [spec_of("a", "a")])
    registry = ToolRegistry([shout_async])
    registry.add_source(source)
    await registry.load()
    with pytest.raises(AgentError, match="offers a tool named 'shout'"):
        source.tools = [spec_of("shout", "clash")]
        await registry.reload(source)
    assert registry.names() == ["shout", "a"]
    assert (await registry.call("shout", {"text": "hi"})).value == "HI "


async def test_a_source_not_loaded_yet_is_left_to_load() -> None:
    source = ChangingSource("remote", [spec_of("a", "a")])
    registry = ToolRegistry()
    registry.add_source(source)
    assert await registry.reload(source) == []
    assert source.listings == 0
