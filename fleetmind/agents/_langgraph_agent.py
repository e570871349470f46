"""LangGraphAgent: any compiled LangGraph graph, run as a fleet agent.

The subtask's inputs become the graph's input state, the graph's final state becomes the
subtask's output, every node that finishes is a progress event, and cancelling the task
cancels the graph's running nodes. A graph compiled with a checkpointer gets one thread per
task and subtask, so its own state survives a retry. A graph that stops at an ``interrupt``
asks its question the fleet's way: :class:`~fleetmind.InputRequired`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from fleetmind._task_model import Subtask
from fleetmind.agents._agent import TASK_KEY, Agent, SubtaskContext
from fleetmind.agents._profile import AgentProfile
from fleetmind.errors import AgentError, InputRequired

InputMapper = Callable[[Subtask, Mapping[str, Any]], Mapping[str, Any]]
OutputMapper = Callable[[Mapping[str, Any]], Any]


class LangGraphAgent(Agent):
    """Run a compiled LangGraph graph (``StateGraph(...).compile()``, a prebuilt ReAct agent,
    ...) as an agent of the fleet.

    ```python
    agent = LangGraphAgent(builder.compile(), AgentProfile(id="researcher", skills=[...]))
    ```

    Args:
        graph: The compiled graph.
        profile: The agent's profile.
        input: Builds the graph's input state from the subtask and its inputs. By default the
            inputs whose names are channels of the graph's input schema, and — for a graph
            with a ``messages`` channel that got none — one user message made of the
            subtask's description and inputs.
        output: The key of the final state to return, or a function of the final state. By
            default the text of the last message when the state has ``messages``, else the
            whole final state.
        progress: Report every finished node as a progress event.
    """

    def __init__(
        self,
        graph: Any,
        profile: AgentProfile,
        *,
        input: InputMapper | None = None,
        output: str | OutputMapper | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(profile)
        if not hasattr(graph, "astream"):
            raise AgentError(
                f"LangGraphAgent {profile.id!r} needs a compiled graph (call .compile() on the "
                "StateGraph)"
            )
        self.graph = graph
        self._input = input
        self._output = output
        self._progress = progress
        self._channels = _input_channels(graph)

    async def run(self, subtask: Subtask, ctx: SubtaskContext) -> Any:
        state_in = dict(
            self._input(subtask, ctx.inputs) if self._input else self._default_input(subtask, ctx)
        )
        config: dict[str, Any] = {"metadata": {TASK_KEY: ctx.task_id}}
        if getattr(self.graph, "checkpointer", None) is not None:
            config["configurable"] = {"thread_id": f"{ctx.task_id}/{subtask.id}/{self.id}"}
        final: Mapping[str, Any] | None = None
        async for mode, chunk in self.graph.astream(
            state_in, config, stream_mode=["updates", "values"]
        ):
            if mode == "values":
                final = chunk
                continue
            for node, update in (chunk or {}).items():
                if node == "__interrupt__":
                    raise InputRequired(_question(update))
                if self._progress:
                    ctx.progress(f"{node} done")
        if final is None:
            return None
        if callable(self._output):
            return self._output(final)
        if isinstance(self._output, str):
            return final.get(self._output)
        return _default_output(final)

    def _default_input(self, subtask: Subtask, ctx: SubtaskContext) -> dict[str, Any]:
        inputs = dict(ctx.inputs)
        state = {k: v for k, v in inputs.items() if not self._channels or k in self._channels}
        if "messages" in self._channels and "messages" not in state:
            text = subtask.description or f"Do the subtask {subtask.id!r}."
            if inputs:
                text += "\n\nInputs:\n" + json.dumps(inputs, ensure_ascii=False, default=str)
            state["messages"] = [{"role": "user", "content": text}]
        return state


def _input_channels(graph: Any) -> frozenset[str]:
    try:
        schema = graph.get_input_jsonschema()
    except Exception:  # a graph whose schema cannot be drawn takes every input
        return frozenset()
    return frozenset((schema or {}).get("properties") or ())


def _default_output(final: Mapping[str, Any]) -> Any:
    messages = final.get("messages")
    if isinstance(messages, list) and messages:
        last = messages[-1]
        content = (
            last.get("content") if isinstance(last, Mapping) else getattr(last, "content", last)
        )
        return content if isinstance(content, str) else json.loads(json.dumps(content, default=str))
    return json.loads(json.dumps(dict(final), default=str))


def _question(interrupts: Any) -> str:
    values = [getattr(i, "value", i) for i in (interrupts or ())]
    if len(values) == 1 and isinstance(values[0], str):
        return values[0]
    return json.dumps(values, default=str) if values else "the graph asks for input"
