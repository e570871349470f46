"""The planner: a request in plain words becomes a task graph, and a failure becomes an edit.

```python
planner = Planner(OpenAICompatibleClient(endpoint))
fleet = Fleet(agents, planner=planner)
result = await fleet.run("audit this repository and tell me what to fix first")
```

:meth:`Planner.plan` shows the model the fleet (as the router sees it, see
:class:`FleetView`) and the request, and asks for subtasks in the task-file form: ids, plain
descriptions the router can match, agents or skills when the model is sure, and ``${id}``
inputs for data between subtasks. The answer is checked against the graph's schema and
invariants and against the fleet (unknown agents or skills, cycles, missing inputs, too many
subtasks); every problem is sent back for repair, for a bounded number of rounds. A plan that
is still invalid is refused with :class:`PlanningError` — never executed.

:meth:`Planner.replan` is asked by the engine when a subtask fails for good: given the graph
as it stands, the model answers with subtasks to add, remove or rewire among those that have
not started (or gives up); the answer is checked the same way and applied as a live edit.

Every round is kept (answer, problems, tokens, cost) for the task's log.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetmind._task_log import GraphEdit, TaskPlanned
from fleetmind.agents import ChatMessage, Completion, LLMClient
from fleetmind.errors import FleetmindError, ModelError, PlanningError
from fleetmind.orchestrator._fleet_view import FleetView
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._plan_check import (
    EditDraft,
    PlanDraft,
    build_edits,
    build_plan,
    graph_summary,
    plan_entries,
    read_answer,
)
from fleetmind.orchestrator._replan import ReplanDecision, ReplanRequest

_ANSWER_CHARS = 20_000
"""How much of each answer the log keeps."""


@dataclass(frozen=True)
class Plan:
    """A valid plan: its graph, its task-file form, and how it was reached."""

    request: str
    graph: TaskGraph
    entries: list[dict[str, Any]]
    """The subtasks as task-file entries (``${id}`` inputs for data)."""
    rounds: int
    exchanges: tuple[dict[str, Any], ...]
    model: str = ""

    @property
    def cost(self) -> float:
        """What the planning rounds cost together."""
        return sum(float(e.get("cost") or 0) for e in self.exchanges)

    @property
    def tokens(self) -> int:
        """Tokens of every round together."""
        return sum(
            int(e.get("prompt_tokens") or 0) + int(e.get("completion_tokens") or 0)
            for e in self.exchanges
        )

    def task_file(self, fleet: str | None = None) -> dict[str, Any]:
        """The plan as a task file (``fleetmind run`` runs it again without a model)."""
        data: dict[str, Any] = {"name": self.graph.name, "description": self.request}
        if fleet is not None:
            data["fleet"] = fleet
        data["subtasks"] = self.entries
        return data


@dataclass
class _Conversation:
    """The rounds of one planning (or replanning) exchange with the model."""

    messages: list[ChatMessage]
    exchanges: list[dict[str, Any]] = field(default_factory=list)


class Planner:
    """Turns requests into task graphs, and failures into graph edits, with a model.

    Args:
        model: The model that plans (usually the cloud tier).
        max_subtasks: The most subtasks one plan may have.
        max_rounds: Answers the model may give for one plan or edit (the first and its
            repairs); after that the planning fails with :class:`PlanningError`.
        max_replans: How many times one task may be replanned.
        fleet_chars: How much of the prompt the fleet's description may take.
        answer_tokens: The longest answer per round.
        temperature: Sampling temperature (0: the most likely plan).
    """

    def __init__(
        self,
        model: LLMClient,
        *,
        max_subtasks: int = 20,
        max_rounds: int = 3,
        max_replans: int = 3,
        fleet_chars: int = 12_000,
        answer_tokens: int | None = 4096,
        temperature: float | None = 0.0,
    ) -> None:
        if max_rounds < 1 or max_subtasks < 1 or max_replans < 0:
            raise ValueError("max_rounds and max_subtasks must be at least 1, max_replans >= 0")
        self.model = model
        self.max_subtasks = max_subtasks
        self.max_rounds = max_rounds
        self.max_replans = max_replans
        self.fleet_chars = fleet_chars
        self.answer_tokens = answer_tokens
        self.temperature = temperature

    def __repr__(self) -> str:
        return f"<Planner {self.model.name} {self.model.model_name}>"

    # Planning ----------------------------------------------------------------------------

    async def plan(
        self,
        request: str,
        fleet: FleetView,
        *,
        name: str | None = None,
        past: Sequence[str] = (),
    ) -> Plan:
        """A valid task graph for ``request`` on ``fleet``.

        ``past``: what happened to similar requests before (episodes from the fleet's memory:
        what worked, what failed), shown to the model after the request.

        Raises:
            PlanningError: the model gave no valid plan within ``max_rounds`` answers.
            ModelError: the model could not be reached (after its client's retries).
        """
        request = request.strip()
        if not request:
            raise PlanningError("there is nothing to plan: the request is empty")
        fleet_text = await asyncio.to_thread(fleet.render, request, self.fleet_chars)
        talk = _Conversation(
            [
                ChatMessage.system(_plan_instructions(self.max_subtasks, fleet_text)),
                ChatMessage.user(request + _past_episodes(past)),
            ]
        )
        for round_ in range(1, self.max_rounds + 1):
            completion = await self._ask(talk, PlanDraft)
            value, problems = read_answer(completion.content, completion.truncated)
            graph = draft = None
            if value is not None:
                graph, draft, problems = await asyncio.to_thread(
                    build_plan, value, fleet, self.max_subtasks
                )
            self._keep(talk, round_, completion, problems)
            if graph is not None and draft is not None:
                if name:
                    graph.name = name
                graph.apply(
                    TaskPlanned(
                        request=request,
                        model=completion.model,
                        rounds=round_,
                        exchanges=tuple(talk.exchanges),
                        at=time.time(),
                    )
                )
                return Plan(
                    request=request,
                    graph=graph,
                    entries=plan_entries(draft),
                    rounds=round_,
                    exchanges=tuple(talk.exchanges),
                    model=completion.model,
                )
            self._send_back(talk, completion, problems, "plan")
        raise PlanningError(
            f"no valid plan after {self.max_rounds} rounds; the last answer had "
            f"{len(talk.exchanges[-1]['problems'])} problem(s), the first: "
            f"{talk.exchanges[-1]['problems'][0]}",
            details={"exchanges": talk.exchanges},
        )

    # Replanning --------------------------------------------------------------------------

    async def replan(self, request: ReplanRequest, fleet: FleetView) -> ReplanDecision:
        """Edits that work round a failed subtask, or none when the model gives up.

        Raises:
            PlanningError: no valid edit within ``max_rounds`` answers.
            ModelError: the model could not be reached.
        """
        graph = request.graph
        failed = request.subtask_id
        error = request.error
        fleet_text = await asyncio.to_thread(
            fleet.render, graph.request or graph.subtask(failed).description, self.fleet_chars
        )
        state = graph.state(failed)
        tried = [*state.excluded_agents, *([state.agent] if state.agent else [])]
        failure = (
            f"The subtask {failed!r} failed for good: {error.get('type', 'Error')}: "
            f"{error.get('message', '')}"
            + (f" (agents that tried it: {', '.join(dict.fromkeys(tried))})" if tried else "")
        )
        talk = _Conversation(
            [
                ChatMessage.system(_replan_instructions(fleet_text)),
                ChatMessage.user(
                    f"Request: {graph.request or graph.name}\n\nThe plan as it stands:\n"
                    f"{graph_summary(graph)}\n\n{failure}"
                ),
            ]
        )
        for round_ in range(1, self.max_rounds + 1):
            completion = await self._ask(talk, EditDraft)
            value, problems = read_answer(completion.content, completion.truncated)
            edits: list[GraphEdit] = []
            draft = None
            if value is not None:
                draft, edits, problems = await asyncio.to_thread(
                    build_edits, value, graph, failed, fleet
                )
            self._keep(talk, round_, completion, problems)
            if draft is not None and not problems:
                return ReplanDecision(tuple(edits), draft.reason, tuple(talk.exchanges))
            self._send_back(talk, completion, problems, "edit")
        raise PlanningError(
            f"no valid edit after {self.max_rounds} rounds; the first problem of the last: "
            f"{talk.exchanges[-1]['problems'][0]}",
            details={"exchanges": talk.exchanges},
        )

    # Rounds ------------------------------------------------------------------------------

    async def _ask(
        self, talk: _Conversation, schema: type[PlanDraft] | type[EditDraft]
    ) -> Completion:
        try:
            return await self.model.complete(
                talk.messages,
                max_tokens=self.answer_tokens,
                temperature=self.temperature,
                response_schema=schema.model_json_schema(),
            )
        except ModelError:
            raise
        except FleetmindError:
            raise
        except Exception as exc:  # a user's own client failing its own way
            raise PlanningError(f"the planning model failed: {exc!r}") from exc

    @staticmethod
    def _keep(
        talk: _Conversation, round_: int, completion: Completion, problems: Sequence[str]
    ) -> None:
        exchange: dict[str, Any] = {
            "round": round_,
            "model": completion.model,
            "prompt_tokens": completion.usage.prompt_tokens,
            "completion_tokens": completion.usage.completion_tokens,
            "cost": completion.cost,
            "latency_s": round(completion.latency_s, 4),
            "finish_reason": completion.finish_reason,
            "answer": completion.content[:_ANSWER_CHARS],
            "problems": list(problems),
        }
        if round_ == 1:
            exchange["prompt"] = [
                {"role": m.role, "content": m.content[:_ANSWER_CHARS]} for m in talk.messages
            ]
        talk.exchanges.append(exchange)

    @staticmethod
    def _send_back(
        talk: _Conversation, completion: Completion, problems: Sequence[str], what: str
    ) -> None:
        listed = "\n".join(f"- {p}" for p in problems)
        talk.messages.append(ChatMessage.assistant(completion.content))
        talk.messages.append(
            ChatMessage.user(
                f"The {what} is not valid:\n{listed}\n"
                f"Answer with the whole corrected {what} as one JSON object and nothing else."
            )
        )


def _plan_instructions(max_subtasks: int, fleet_text: str) -> str:
    example = {
        "name": "short-name",
        "subtasks": [
            {"id": "collect", "description": "what to do, in plain words", "inputs": {"path": "."}},
            {
                "id": "report",
                "description": "what to do with it",
                "agent": "an-agent-id",
                "inputs": {"findings": "${collect}"},
            },
        ],
    }
    return f"""You plan work for a fleet of agents. Split the request into subtasks that the \
agents below can do, and answer with one JSON object and nothing else, shaped like:
{json.dumps(example)}
Rules:
- ids: lowercase letters, digits, '-' or '_'; each used once.
- description: the work in plain words; the fleet's router matches it to an agent.
- agent / skill: only ids and skills listed below, and only when you are sure; else leave them out.
- inputs: literal values, or "${{id}}" (or "${{id.field}}") to pass another subtask's output.
- depends_on: ids that must finish first when no data is passed.
- give every input an agent "needs"; no cycles; at most {max_subtasks} subtasks.
The fleet's agents:
{fleet_text}"""


def _replan_instructions(fleet_text: str) -> str:
    example = {
        "reason": "why this change works round the failure",
        "add": [{"id": "new-id", "description": "...", "inputs": {"x": "${done-id}"}}],
        "rewire": [{"subtask": "waiting-id", "inputs": {"input-name": "${new-id}"}}],
        "remove": ["not-started-id"],
    }
    return f"""You repair the plan of a running task for a fleet of agents. One subtask \
failed for good. Change only subtasks that have not started (pending or ready): add new \
subtasks, rewire the inputs of waiting subtasks to them, or remove ones that are no longer \
needed. Finished subtasks' outputs can be used with "${{id}}". Subtasks that still wait for \
the failed one must be rewired or removed. Answer with one JSON object and nothing else:
{json.dumps(example)}
If nothing can work round the failure, answer {{"reason": "why", "give_up": true}}.
New subtasks follow the plan's rules: new ids, plain descriptions, agents and skills only from \
the list, every input an agent needs.
The fleet's agents:
{fleet_text}"""


class BoundReplanner:
    """The planner together with the fleet it plans for: the engine's :class:`Replanner`.

    Args:
        planner: The planner.
        view: Gives the fleet's current view (agents come and go while a task runs).
    """

    def __init__(self, planner: Planner, view: Callable[[], FleetView]) -> None:
        self.planner = planner
        self._view = view

    async def replan(self, request: ReplanRequest) -> ReplanDecision:
        return await self.planner.replan(request, self._view())


def describe_plan(plan: Plan) -> Mapping[str, Any]:
    """The plan as plain data (``fleetmind plan --format json``)."""
    return {
        "request": plan.request,
        "name": plan.graph.name,
        "rounds": plan.rounds,
        "model": plan.model,
        "tokens": plan.tokens,
        "cost": plan.cost,
        "subtasks": plan.entries,
    }


def _past_episodes(past: Sequence[str]) -> str:
    """The memory of similar past requests, as a note under the request."""
    if not past:
        return ""
    lines = "\n".join(f"- {p[:300]}" for p in past)
    return (
        "\n\nFrom the fleet's memory, how similar requests went before (plan around what "
        f"failed):\n{lines}"
    )
