"""How a fleet answers what its MCP servers ask while they serve a tool call.

A server may ask for a model's answer (sampling) or for the user's answer to a form or a link
(elicitation). A fleet answers:

- sampling with its configured model: one per tier, picked by the server's model hints (a
  part of the model's or the tier's name), else by its priorities (cost or speed: the
  smallest tier; intelligence: the largest). Without a model the fleet does not declare the
  capability, and a server that asks anyway gets a JSON-RPC error.
- a question with, in this order: the user, when someone set :attr:`MCPRequests.ask_user` (the
  command line does on a terminal); else an agent of the fleet whose profile offers the skill
  ``answer-questions`` (:data:`ANSWER_SKILL`), run as a one-subtask task; else a refusal
  (``decline``). A link (URL mode) is only ever shown to the user, never to an agent.

An answering agent gets the inputs ``message`` (the server's question), ``schema`` (the JSON
Schema of the fields wanted: flat strings, numbers, booleans and choices) and ``server`` (the
server's name). It returns the fields' values as an object (or a JSON text of one), or None to
refuse. An answer that does not fit the schema is refused on the agent's behalf.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fleetmind.agents import Agent, ChatMessage, LLMClient, ToolCall, extract_json
from fleetmind.errors import FleetmindError, ModelNotConfigured
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._task_result import TaskResult
from fleetmind.tools import ToolRegistry

if TYPE_CHECKING:
    # Loaded when a server first asks: a fleet without MCP servers never loads the protocols.
    from fleetmind.tools import (
        ElicitationHandler,
        ElicitationReply,
        ElicitationRequest,
        SamplingMessage,
        SamplingReply,
        SamplingRequest,
    )

__all__ = ["ANSWER_SKILL", "MCPRequests"]

logger = logging.getLogger(__name__)

ANSWER_SKILL = "answer-questions"
"""The skill of agents that answer MCP servers' questions for the fleet."""

_TIERS = ("device", "edge", "cloud")


class MCPRequests:
    """The fleet's answers to its MCP servers' sampling requests and questions.

    A fleet makes one (``fleet.mcp_requests``) and gives it to the MCP servers of its tools.

    Args:
        agents: The fleet's agents now (an agent may join or leave at any time).
        run: Runs a task graph on the fleet to its end.
        models: The models that answer sampling requests, by tier (or one model).
    """

    def __init__(
        self,
        agents: Callable[[], list[Agent]],
        run: Callable[[TaskGraph], Awaitable[TaskResult]],
        *,
        models: LLMClient | Mapping[str, LLMClient] | None = None,
    ) -> None:
        self._agents = agents
        self._run = run
        self._models: dict[str, LLMClient] = {}
        self._sources: list[Any] = []
        self.ask_user: ElicitationHandler | None = None
        """Asks the user a server's question (the command line sets it on a terminal)."""
        self.models = models

    @property
    def models(self) -> dict[str, LLMClient]:
        """The models that answer sampling requests, by tier (or by name); may be empty."""
        return dict(self._models)

    @models.setter
    def models(self, models: LLMClient | Mapping[str, LLMClient] | None) -> None:
        if models is None:
            self._models = {}
        elif isinstance(models, LLMClient):
            self._models = {models.name: models}
        else:
            self._models = dict(models)
        for source in self._sources:
            self._give(source)

    def bind(self, source: Any) -> None:
        """Answer the requests of ``source``'s MCP server (a source that is not one is left)."""
        if not callable(getattr(source, "serve_requests", None)):
            return
        if not any(s is source for s in self._sources):
            self._sources.append(source)
        self._give(source)

    def bind_all(self, tools: ToolRegistry) -> None:
        """Answer the requests of every MCP server among the sources of ``tools``."""
        for source in tools.sources:
            self.bind(source)

    def _give(self, source: Any) -> None:
        source.serve_requests(
            sampling=self.sample if self._models else None, elicitation=self.elicit
        )

    # Sampling ---------------------------------------------------------------------------------

    async def sample(self, request: SamplingRequest) -> SamplingReply:
        """Answer a sampling request with the model that fits the server's preferences.

        Tools the server offers go to the model as tools it may call; the calls it makes go
        back to the server, which runs them and samples again with their results.

        Raises:
            ModelNotConfigured: The fleet has no model.
            ModelError: The model could not answer.
        """
        from fleetmind.tools import SamplingReply, SamplingToolCall

        model = self.pick_model(request)
        messages: list[ChatMessage] = []
        if request.system_prompt:
            messages.append(ChatMessage.system(request.system_prompt))
        for turn in request.messages:
            messages.extend(_chat_messages(turn))
        tools = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.input_schema or {"type": "object"},
                },
            }
            for t in request.tools
        ]
        completion = await model.complete(
            messages,
            tools=tools,
            tool_choice=request.tool_choice if tools else None,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stop=request.stop_sequences,
        )
        calls = []
        for call in completion.tool_calls:
            try:
                arguments = call.parsed_arguments()
            except ValueError:
                arguments = {}  # the server checks the arguments against its tool's schema
            calls.append(SamplingToolCall(call.id, call.name, arguments))
        if calls:
            stop_reason = "toolUse"
        elif completion.finish_reason == "length":
            stop_reason = "maxTokens"
        else:
            stop_reason = "endTurn"
        return SamplingReply(
            text=completion.content,
            model=completion.model or model.model_name or model.name,
            stop_reason=stop_reason,
            tool_calls=tuple(calls),
        )

    def pick_model(self, request: SamplingRequest) -> LLMClient:
        """The model for a request: the first hint that names one, else by priorities.

        Raises:
            ModelNotConfigured: The fleet has no model.
        """
        if not self._models:
            raise ModelNotConfigured("this fleet has no model to answer sampling requests")
        for hint in request.model_hints:
            wanted = hint.lower()
            for key, model in self._models.items():
                if wanted in key.lower() or (
                    model.model_name and wanted in model.model_name.lower()
                ):
                    return model
        ordered = sorted(
            self._models.items(),
            key=lambda item: _TIERS.index(item[0]) if item[0] in _TIERS else len(_TIERS),
        )
        thrift = max(request.cost_priority or 0.0, request.speed_priority or 0.0)
        if thrift > (request.intelligence_priority or 0.0):
            return ordered[0][1]
        return ordered[-1][1]

    # Elicitation ------------------------------------------------------------------------------

    async def elicit(self, request: ElicitationRequest) -> ElicitationReply:
        """Answer a server's question: by the user, else by an answering agent, else decline."""
        from fleetmind.tools import ElicitationReply

        if self.ask_user is not None:
            return await self.ask_user(request)
        if request.mode == "url":
            logger.info(
                "MCP server %r asked the user to visit a link, and no user is here: declined",
                request.server,
            )
            return ElicitationReply.decline()
        agent = self._answering_agent()
        if agent is None:
            logger.info(
                "MCP server %r asked a question that nobody here can answer (no user, no agent "
                "with the skill %r): declined",
                request.server,
                ANSWER_SKILL,
            )
            return ElicitationReply.decline()
        return await self._ask_agent(agent, request)

    def _answering_agent(self) -> Agent | None:
        candidates = [a for a in self._agents() if a.online and a.profile.offers(ANSWER_SKILL)]
        return candidates[0] if candidates else None

    async def _ask_agent(self, agent: Agent, request: ElicitationRequest) -> ElicitationReply:
        from fleetmind.tools import ElicitationReply, check_form_answer

        graph = TaskGraph(f"answer {request.server}")
        graph.add_subtask(
            "answer",
            agent=agent.id,
            description=_describe_question(request),
            inputs={"message": request.message, "schema": request.schema, "server": request.server},
        )
        try:
            result = await self._run(graph)
        except FleetmindError as exc:
            logger.warning("agent %r could not answer a question: %s", agent.id, exc.message)
            return ElicitationReply.decline()
        if not result.ok:
            logger.warning(
                "agent %r did not answer MCP server %r (task %s %s): declined",
                agent.id,
                request.server,
                result.task_id,
                result.status,
            )
            return ElicitationReply.decline()
        answer = _as_object(result.outputs.get("answer"))
        if answer is None:
            return ElicitationReply.decline()
        problem = check_form_answer(request.schema, answer)
        if problem is not None:
            logger.warning(
                "agent %r answered MCP server %r with what its form does not take (%s): declined",
                agent.id,
                request.server,
                problem,
            )
            return ElicitationReply.decline()
        return ElicitationReply("accept", dict(answer))


def _chat_messages(turn: SamplingMessage) -> list[ChatMessage]:
    """One turn of a sampling conversation as chat messages (tool results are their own)."""
    if turn.role == "assistant":
        calls = [ToolCall(c.id, c.name, json.dumps(c.arguments)) for c in turn.tool_calls]
        return [ChatMessage.assistant(turn.text, calls)]
    out = [ChatMessage.tool(call_id, text) for call_id, text in turn.tool_results]
    if turn.text or not out:
        out.append(ChatMessage.user(turn.text))
    return out


def _describe_question(request: ElicitationRequest) -> str:
    fields = json.dumps(request.schema, separators=(",", ":"))
    return (
        f"MCP server {request.server!r} asks: {request.message}\n"
        f"Answer with one JSON object of these fields (JSON Schema): {fields}\n"
        "Answer null to refuse."
    )


def _as_object(output: Any) -> Mapping[str, Any] | None:
    """An agent's answer as an object of fields, or None for a refusal."""
    if isinstance(output, str):
        try:
            output = extract_json(output)
        except ValueError:
            return None
    if isinstance(output, Mapping):
        return output
    if hasattr(output, "model_dump"):
        dumped = output.model_dump(mode="json")
        return dumped if isinstance(dumped, Mapping) else None
    return None
