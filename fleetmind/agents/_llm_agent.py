"""LLMAgent: an agent that thinks with a language model, step by step, using the fleet's tools.

Its loop is a LangGraph ``StateGraph`` of two nodes::

    START -> reason --(tool calls)--> act -> reason -> ... --(an answer)--> END

``reason`` asks the :class:`StepRouter` which tier's model takes the step, calls that model
with the conversation and the tools' schemas, and either answers or asks for tool calls;
``act`` runs the calls through the fleet's tool registry (local ``@tool`` functions and MCP
tools) and adds their results to the conversation. Every step is recorded in the task's log
(model, tokens, cost, latency, tool calls, outcome) and streamed as a progress event.

The loop is checkpointed after every node with LangGraph's checkpointer, in the checkpoint
store the engine keeps beside the task store: an agent killed mid-loop resumes from its last
finished node when the task is resumed, and does not pay for its earlier steps again.

Budgets: ``max_steps`` model calls, ``max_tokens`` tokens and ``max_cost`` cost per subtask;
when one runs out before an answer the subtask fails with :class:`BudgetExhausted` (not
retried on this agent; another candidate, or the planner, may take it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

from pydantic import BaseModel, ValidationError

from fleetmind._extras import require
from fleetmind._task_model import Subtask
from fleetmind._validation import describe_validation_error
from fleetmind.agents._agent import TASK_KEY, Agent, SubtaskContext
from fleetmind.agents._conversation import READ_OUTPUT_SCHEMA, READ_OUTPUT_TOOL, Conversation
from fleetmind.agents._llm import ChatMessage, Completion, LLMClient, ToolCall, extract_json
from fleetmind.agents._models import ModelConfig, default_models_file
from fleetmind.agents._profile import AgentProfile
from fleetmind.agents._step_features import hashed_ngrams, step_text, structural_features
from fleetmind.agents._steps import (
    FixedStepRouter,
    StepChoice,
    StepRecord,
    StepRouter,
    StepState,
    ToolOutcome,
)
from fleetmind.errors import (
    AgentError,
    BudgetExhausted,
    ConfigError,
    FleetmindError,
    ModelError,
    SubtaskFailed,
)
from fleetmind.tools import ToolRegistry, ToolResult, ToolSpec

GIVE_UP_TOOL = "give_up"
_API_NAME = re.compile(r"[^A-Za-z0-9_-]")


class _LoopState(TypedDict, total=False):
    """The loop's state, as checkpointed: plain data only."""

    messages: list[dict[str, Any]]
    step: int
    tokens: int
    cost: float
    cloud_steps: int
    pending_step: dict[str, Any] | None
    """The record of a step whose tool calls have not run yet (kept across a crash)."""
    answer: Any
    outputs: dict[str, str]
    """Full texts of the tool outputs the model was shown summarised, by pointer."""


@dataclass
class _Run:
    """What one subtask's run hands the loop's nodes (LangGraph's runtime context)."""

    agent: LLMAgent
    ctx: SubtaskContext
    tools: dict[str, tuple[str, ToolRegistry]] = field(default_factory=dict)
    """API name -> (the tool's name in its registry, the registry)."""
    schemas: list[dict[str, Any]] = field(default_factory=list)
    conversation: Conversation | None = None
    goal: str = ""
    spent: list[tuple[int, float]] = field(default_factory=list)
    """Tokens and cost of model calls that are not steps (summaries of folded turns)."""


class LLMAgent(Agent):
    """An agent whose work is a loop of model calls and tool calls.

    ```python
    analyst = LLMAgent(
        AgentProfile(id="analyst", description="Answers questions about log files"),
        model=OpenAICompatibleClient(endpoint),            # or {"device": small, "cloud": big}
        tools=["grep", "read_file", summarise],            # fleet tools by name, or functions
    )
    ```

    Args:
        profile: The agent's profile (routing reads it; the default instructions use it).
        model: One client, or one per tier (``{"device": ..., "cloud": ...}``), or tier names
            (``"cloud"``, ``["device", "cloud"]``) whose endpoints are read from the model
            configuration (``FLEETMIND_<TIER>_*`` variables or models.yaml) on first use.
        tools: Fleet tools by name (from ``ctx.tools``: local and MCP), and/or functions or
            :class:`ToolSpec` objects of its own. None: every tool of the fleet.
        instructions: The system prompt (default: from the profile's name and description).
        step_router: Chooses the tier for each step (default: always the largest tier given).
        max_steps: Model calls per subtask before :class:`BudgetExhausted`.
        max_tokens: Tokens per subtask (prompt and completion of every step), None: no limit.
        max_cost: Cost per subtask, None: no limit.
        answer_tokens: The longest answer per model call (the server's default when None).
        temperature: Sampling temperature (the server's default when None).
        output_type: A pydantic model the final answer must be (JSON); the output is its
            ``model_dump()``. A non-matching answer is sent back once per step with the errors.
        max_tool_output_chars: The longest tool result kept (a longer one is cut).
        context_tokens: The working memory: the most tokens of conversation sent per step;
            older turns are folded into one compressed note past it (None: no limit).
        tool_output_tokens: Tool results longer than this reach the model as an extractive
            summary with a pointer; the ``read_output`` tool reads the full text.
        summarize_context: Fold older turns with a summary by the agent's smallest model
            instead of extractively (its tokens and cost count in the subtask's).
        allow_give_up: Offer the model a ``give_up`` tool; calling it fails the subtask with the
            model's reason (not retried here; another agent or a replan may follow).
        checkpoint: Checkpoint the loop after every node (resumable after a crash).
        shadow_rate: The share of steps that also run on the other tier's model, to record
            whether the device and the cloud model agree (training labels for a learned step
            router; each shadow call is paid, and recorded as a ``shadow`` record that counts
            in the task's cost but not as a step).
        recall: How many items of the fleet's memory (``ctx.memory``) relevant to the
            subtask the model sees before its first step (0: none).
    """

    def __init__(
        self,
        profile: AgentProfile,
        *,
        model: LLMClient | Mapping[str, LLMClient] | str | Sequence[str],
        tools: Iterable[str | Callable[..., Any] | ToolSpec] | None = None,
        instructions: str | None = None,
        step_router: StepRouter | None = None,
        max_steps: int = 12,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        answer_tokens: int | None = None,
        temperature: float | None = None,
        output_type: type[BaseModel] | None = None,
        max_tool_output_chars: int = 200_000,
        context_tokens: int | None = 16_000,
        tool_output_tokens: int = 800,
        summarize_context: bool = False,
        allow_give_up: bool = True,
        checkpoint: bool = True,
        shadow_rate: float = 0.0,
        recall: int = 3,
    ) -> None:
        super().__init__(profile)
        self.models: dict[str, LLMClient] = {}
        self._configured: tuple[str, ...] = ()
        if isinstance(model, LLMClient):
            self.models = {model.name: model}
        elif isinstance(model, str):
            self._configured = (model,)
        elif isinstance(model, Mapping):
            self.models = dict(model)
        else:
            self._configured = tuple(model)
        tiers = self._configured or tuple(self.models)
        if not tiers or not all(isinstance(m, LLMClient) for m in self.models.values()):
            raise AgentError(
                f"LLMAgent {profile.id!r} needs a model: an LLMClient, {{tier: client}} or a tier"
            )
        if max_steps < 1:
            raise AgentError(f"LLMAgent {profile.id!r}: max_steps must be at least 1")
        order = {"device": 0, "edge": 1, "cloud": 2}
        self.tiers = tuple(sorted(tiers, key=lambda t: (order.get(t, 3), t)))
        self.step_router: StepRouter = step_router or FixedStepRouter(self.tiers[-1])
        self.instructions = instructions
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.answer_tokens = answer_tokens
        self.temperature = temperature
        self.output_type = output_type
        self.max_tool_output_chars = max_tool_output_chars
        if context_tokens is not None and context_tokens < 4 * tool_output_tokens:
            raise AgentError(
                f"LLMAgent {profile.id!r}: context_tokens ({context_tokens}) must be at least "
                f"four times tool_output_tokens ({tool_output_tokens})"
            )
        self.context_tokens = context_tokens
        self.tool_output_tokens = tool_output_tokens
        self.summarize_context = summarize_context
        self.allow_give_up = allow_give_up
        self.checkpoint = checkpoint
        if not 0.0 <= shadow_rate <= 1.0:
            raise AgentError(f"LLMAgent {profile.id!r}: shadow_rate is a share between 0 and 1")
        self.shadow_rate = shadow_rate
        self.recall = recall
        self._fleet_tool_names: list[str] | None = None
        self._own_tools = ToolRegistry()
        if tools is not None:
            self._fleet_tool_names = []
            for item in tools:
                if isinstance(item, str):
                    self._fleet_tool_names.append(item)
                else:
                    self._own_tools.register(item)
        self._builder = _loop_builder()
        self._plain_loop = self._builder.compile()

    # The run ------------------------------------------------------------------------------

    async def run(self, subtask: Subtask, ctx: SubtaskContext) -> Any:
        self._connect_configured()
        run = _Run(self, ctx, goal=subtask.description or subtask.id)
        run.conversation = self._conversation(run)
        await self._bind_tools(run)
        saver = None
        if self.checkpoint and ctx.checkpoints is not None:
            saver = await ctx.checkpoints.saver()
            ctx.checkpoints.thread(f"{ctx.task_id}/{subtask.id}/{self.id}")
        loop = self._builder.compile(checkpointer=saver) if saver is not None else self._plain_loop
        config: dict[str, Any] = {
            "configurable": {"thread_id": f"{ctx.task_id}/{subtask.id}/{self.id}"},
            "metadata": {TASK_KEY: ctx.task_id},
            "recursion_limit": 2 * self.max_steps + 8,
        }
        start: _LoopState | None = {
            "messages": [
                m.to_openai()
                for m in [*self.first_messages(subtask, ctx), *await self._recalled(ctx)]
            ],
            "step": 0,
            "tokens": 0,
            "cost": 0.0,
            "cloud_steps": 0,
            "pending_step": None,
            "answer": None,
            "outputs": {},
        }
        if saver is not None:
            snapshot = await loop.aget_state(config)
            if snapshot.values and snapshot.next:
                start = None  # resume after the last finished node
            elif snapshot.values and snapshot.values.get("answer") is not None:
                return snapshot.values["answer"]  # finished before a crash: nothing to pay again
        if saver is None:
            final = await loop.ainvoke(start, config, context=run)
        else:  # each node's state is on disk before the next node starts
            final = await loop.ainvoke(start, config, context=run, durability="sync")
        return final["answer"]

    async def _recalled(self, ctx: SubtaskContext) -> list[ChatMessage]:
        """What the fleet's memory holds about this subtask, as one note for the model
        (nothing when the fleet keeps no memory or ``recall`` is 0)."""
        if ctx.memory is None or self.recall <= 0:
            return []
        try:
            found = await ctx.memory.recall(
                ctx.subtask.description or ctx.subtask.id, limit=self.recall
            )
        except FleetmindError:
            return []  # memory helps; it is never a reason to fail the work
        if not found:
            return []
        lines = "\n".join(f"- {item.text[:400]}" for item in found)
        return [ChatMessage.user(f"From the fleet's memory (may help, may not):\n{lines}")]

    def _conversation(self, run: _Run) -> Conversation | None:
        """The run's working memory (None when the context is unbounded)."""
        if self.context_tokens is None:
            return None
        summarize = None
        if self.summarize_context:
            model = self.models[self.tiers[0]]

            async def summarize(text: str, goal: str, budget: int) -> str:
                prompt = (
                    f"Summarise these earlier steps of an agent working on: {goal}\n"
                    "Keep every error, decision, identifier and number that may matter. "
                    f"At most {budget} tokens.\n\n{text}"
                )
                completion = await model.complete([ChatMessage.user(prompt)], max_tokens=budget)
                run.spent.append((completion.usage.total_tokens, completion.cost))
                return completion.content

        return Conversation(
            self.context_tokens,
            tool_output_tokens=self.tool_output_tokens,
            summarize=summarize,
        )

    def _connect_configured(self) -> None:
        """Make clients for tiers named by the model configuration (once, on first use)."""
        missing = [t for t in self._configured if t not in self.models]
        if not missing:
            return
        from fleetmind.agents._openai import OpenAICompatibleClient

        try:
            config = ModelConfig.load(default_models_file())
            for tier in missing:
                self.models[tier] = OpenAICompatibleClient(config.endpoint(tier))
        except ConfigError as exc:
            raise SubtaskFailed(f"agent {self.id!r}: {exc.message}", retryable=False) from None

    def first_messages(self, subtask: Subtask, ctx: SubtaskContext) -> list[ChatMessage]:
        """The conversation a subtask starts with: instructions, then the work and its inputs."""
        system = self.instructions or _default_instructions(self.profile, self.allow_give_up)
        if self.output_type is not None:
            schema = json.dumps(self.output_type.model_json_schema(), separators=(",", ":"))
            system += (
                "\nYour final answer must be one JSON object matching this JSON Schema, "
                f"with nothing around it: {schema}"
            )
        parts = [subtask.description or f"Do the subtask {subtask.id!r}."]
        if ctx.inputs:
            parts.append("Inputs:\n" + _clip(_json(ctx.inputs), _INPUT_CHARS))
        return [ChatMessage.system(system), ChatMessage.user("\n\n".join(parts))]

    async def _bind_tools(self, run: _Run) -> None:
        """The tools this run offers the model, with names the chat API accepts."""
        specs: list[tuple[ToolSpec, ToolRegistry]] = []
        fleet = run.ctx.tools
        if self._fleet_tool_names is None:
            if fleet.pending_sources:
                await fleet.load()
            specs.extend((spec, fleet) for spec in fleet.specs())
        else:
            missing = [n for n in self._fleet_tool_names if n not in fleet]
            if missing and fleet.pending_sources:
                await fleet.load()
                missing = [n for n in self._fleet_tool_names if n not in fleet]
            if missing:
                raise SubtaskFailed(
                    f"agent {self.id!r} needs tool(s) {', '.join(missing)}, which the fleet "
                    f"does not have (it has: {', '.join(fleet.names()) or 'none'})",
                    retryable=False,
                )
            specs.extend((fleet.get(n), fleet) for n in self._fleet_tool_names)  # type: ignore[misc]
        specs.extend((spec, self._own_tools) for spec in self._own_tools.specs())
        for spec, registry in specs:
            api_name = _api_name(spec.name)
            run.tools[api_name] = (spec.name, registry)
            run.schemas.append(
                {
                    "type": "function",
                    "function": {
                        "name": api_name,
                        "description": spec.description,
                        "parameters": spec.input_schema,
                    },
                }
            )
        if self.allow_give_up:
            run.schemas.append(_GIVE_UP_SCHEMA)

    # The loop's nodes ---------------------------------------------------------------------

    async def _reason(self, state: _LoopState, run: _Run) -> _LoopState:
        step = state.get("step", 0) + 1
        tokens, cost = state.get("tokens", 0), state.get("cost", 0.0)
        self._check_budget(step, tokens, cost)
        current = state["messages"]
        if run.conversation is not None:
            current = await run.conversation.fit(current, run.goal)
            tokens += sum(t for t, _ in run.spent)
            cost += sum(c for _, c in run.spent)
            run.spent.clear()
        if state.get("outputs") and READ_OUTPUT_SCHEMA not in run.schemas:
            run.schemas.append(READ_OUTPUT_SCHEMA)
        messages = tuple(ChatMessage.from_openai(m) for m in current)
        ctx = run.ctx
        step_state = StepState(
            task_id=ctx.task_id,
            subtask_id=ctx.subtask.id,
            agent_id=self.id,
            step=step,
            messages=messages,
            tiers=self.tiers,
            steps_left=self.max_steps - step + 1,
            tokens_left=None if self.max_tokens is None else self.max_tokens - tokens,
            cost_left=None if self.max_cost is None else self.max_cost - cost,
            local_data=_local_data(self.profile, ctx.subtask),
            cloud_steps=state.get("cloud_steps", 0),
        )
        trace: dict[str, Any] = {
            "features": structural_features(step_state),
            "text_buckets": tuple(hashed_ngrams(step_text(step_state))),
        }
        choice = await self.step_router.choose(step_state)
        completion = await self._call(choice, step, messages, run, trace)
        if choice.draft:  # a cascade: look at the draft, keep it or escalate
            drafted = choice
            choice = await self.step_router.choose(replace(step_state, draft=completion))
            if choice.tier != drafted.tier:
                ctx.record_step(
                    StepRecord.of(
                        step,
                        completion,
                        drafted,
                        outcome="escalated",
                        cloud_cost=self._cloud_cost(completion),
                        **trace,
                    )
                )
                tokens += completion.usage.total_tokens
                cost += completion.cost
                completion = await self._call(choice, step, messages, run, trace)
        agreement = None
        if self._shadowed(ctx, step) and len(self.tiers) > 1:
            other = self.tiers[0] if choice.tier == self.tiers[-1] else self.tiers[-1]
            try:
                shadow = await self.models[other].complete(
                    messages,
                    tools=run.schemas,
                    max_tokens=self.answer_tokens,
                    temperature=self.temperature,
                )
            except ModelError:
                shadow = None
            if shadow is not None:
                agreement = _same_action(completion, shadow)
                tokens += shadow.usage.total_tokens
                cost += shadow.cost
                ctx.record_step(
                    StepRecord.of(
                        step,
                        shadow,
                        StepChoice(other, "shadow: both models answer this step"),
                        outcome="shadow",
                    )
                )
        extra: dict[str, Any] = {
            "cloud_cost": self._cloud_cost(completion),
            "agreement": agreement,
            **trace,
        }
        tokens += completion.usage.total_tokens
        cost += completion.cost
        history = [*current, completion.message().to_openai()]
        update: _LoopState = {
            "messages": history,
            "step": step,
            "tokens": tokens,
            "cost": cost,
            "cloud_steps": state.get("cloud_steps", 0)
            + (choice.tier == self.tiers[-1] != self.tiers[0]),
        }
        if completion.tool_calls:
            update["pending_step"] = StepRecord.of(
                step, completion, choice, outcome="tool_calls", **extra
            ).to_dict()
            return update
        answer, problem = self._final_answer(completion.content)
        if problem is None:
            ctx.record_step(StepRecord.of(step, completion, choice, outcome="answer", **extra))
            update["answer"] = answer
            return update
        # An answer of the wrong shape: show the model its mistake and let it try again.
        ctx.record_step(
            StepRecord.of(step, completion, choice, outcome="error", error=problem, **extra)
        )
        history.append(
            ChatMessage.user(
                f"That answer is not valid: {problem}. Answer again with the JSON object only."
            ).to_openai()
        )
        return update

    async def _call(
        self,
        choice: StepChoice,
        step: int,
        messages: Sequence[ChatMessage],
        run: _Run,
        trace: Mapping[str, Any],
    ) -> Completion:
        """One model call for a step on the tier ``choice`` names (a failure is recorded)."""
        model = self.models.get(choice.tier)
        if model is None:
            raise SubtaskFailed(
                f"agent {self.id!r}: the step router chose the {choice.tier!r} model, but the "
                f"agent has only {', '.join(self.tiers)}",
                retryable=False,
            )
        try:
            return await model.complete(
                messages,
                tools=run.schemas,
                max_tokens=self.answer_tokens,
                temperature=self.temperature,
            )
        except ModelError as exc:
            run.ctx.record_step(
                StepRecord(
                    step=step,
                    tier=choice.tier,
                    model=model.model_name or model.name,
                    reason=choice.reason,
                    outcome="error",
                    error=exc.message,
                    features=dict(trace.get("features") or {}),
                    text_buckets=tuple(trace.get("text_buckets") or ()),
                )
            )
            raise

    def _cloud_cost(self, completion: Completion) -> float | None:
        """What ``completion``'s tokens would have cost on the largest tier's model."""
        largest = self.models.get(self.tiers[-1])
        if largest is None:
            return None
        return largest.price(completion.usage.prompt_tokens, completion.usage.completion_tokens)

    def _shadowed(self, ctx: SubtaskContext, step: int) -> bool:
        """Whether this step also runs on the other tier, to record whether the two agree
        (the labels a learned router trains on); a fixed share of steps, chosen by hash."""
        if self.shadow_rate <= 0:
            return False
        key = f"{ctx.task_id}/{ctx.subtask.id}/{step}".encode()
        draw = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
        return draw < self.shadow_rate

    async def _act(self, state: _LoopState, run: _Run) -> _LoopState:
        last = ChatMessage.from_openai(state["messages"][-1])
        outcomes: list[ToolOutcome] = []
        replies: list[dict[str, Any]] = []
        gave_up: str | None = None
        outputs = dict(state.get("outputs") or {})
        for call in last.tool_calls:
            if call.name == READ_OUTPUT_TOOL and outputs:
                try:
                    ok, text = Conversation.read_output(outputs, call.parsed_arguments())
                except ValueError as exc:
                    ok, text = False, str(exc)
                outcomes.append(ToolOutcome(call.name, ok, None if ok else text))
                reply = text if ok else f"error: {text}"
                replies.append(ChatMessage.tool(call.id, reply, call.name).to_openai())
                continue
            if call.name == GIVE_UP_TOOL and self.allow_give_up:
                try:
                    gave_up = str(call.parsed_arguments().get("reason") or "no reason given")
                except ValueError:
                    gave_up = "no reason given"
                outcomes.append(ToolOutcome(GIVE_UP_TOOL, True))
                continue
            result = await self._call_tool(call, run)
            outcomes.append(ToolOutcome(call.name, result.ok, result.error))
            text = _clip(
                _json(result.value) if result.ok else f"error: {result.error}",
                self.max_tool_output_chars,
            )
            if run.conversation is not None:
                text, outputs = run.conversation.tool_output(call.name, text, run.goal, outputs)
            replies.append(ChatMessage.tool(call.id, text, call.name).to_openai())
        pending = StepRecord.from_dict(
            state.get("pending_step") or {"step": 0, "tier": "", "model": ""}
        )
        record = StepRecord(**{**pending.__dict__, "tool_calls": tuple(outcomes)})
        run.ctx.record_step(record)
        if gave_up is not None:
            raise SubtaskFailed(f"agent {self.id!r} cannot go on: {gave_up}", retryable=False)
        return {
            "messages": [*state["messages"], *replies],
            "pending_step": None,
            "outputs": outputs,
        }

    async def _call_tool(self, call: ToolCall, run: _Run) -> ToolResult:
        target = run.tools.get(call.name)
        if target is None:
            known = ", ".join(run.tools) or "none"
            return ToolResult(ok=False, error=f"unknown tool {call.name!r} (known tools: {known})")
        try:
            arguments = call.parsed_arguments()
        except ValueError as exc:
            return ToolResult(ok=False, error=str(exc))
        name, registry = target
        return await registry.call(name, arguments)

    def _final_answer(self, content: str) -> tuple[Any, str | None]:
        if self.output_type is None:
            return content, None
        try:
            value = self.output_type.model_validate(extract_json(content))
        except ValueError as exc:  # includes pydantic's ValidationError
            if isinstance(exc, ValidationError):
                return None, describe_validation_error(exc)
            return None, str(exc)
        return value.model_dump(mode="json"), None

    def _check_budget(self, step: int, tokens: int, cost: float) -> None:
        used = {"steps": step - 1, "tokens": tokens, "cost": cost}
        if step > self.max_steps:
            raise BudgetExhausted(
                f"agent {self.id!r} used its {self.max_steps} steps without an answer",
                details=used,
            )
        if self.max_tokens is not None and tokens >= self.max_tokens:
            raise BudgetExhausted(
                f"agent {self.id!r} used {tokens} of its {self.max_tokens} tokens without an "
                "answer",
                details=used,
            )
        if self.max_cost is not None and cost >= self.max_cost:
            raise BudgetExhausted(
                f"agent {self.id!r} spent {cost:.4g} of its budget {self.max_cost:g} without "
                "an answer",
                details=used,
            )


def _loop_builder() -> Any:
    """The reason -> act -> reason graph (compiled per run, with or without a checkpointer)."""
    require("langgraph.graph", "llm", "an LLM agent's step loop")
    from langgraph.graph import END, START, StateGraph
    from langgraph.runtime import Runtime

    async def reason(state: _LoopState, runtime: Runtime[_Run]) -> _LoopState:
        return await runtime.context.agent._reason(state, runtime.context)

    async def act(state: _LoopState, runtime: Runtime[_Run]) -> _LoopState:
        return await runtime.context.agent._act(state, runtime.context)

    def after_reason(state: _LoopState) -> str:
        if state.get("answer") is not None:
            return END
        return "act" if state.get("pending_step") else "reason"

    builder = StateGraph(_LoopState, context_schema=_Run)
    builder.add_node("reason", reason)
    builder.add_node("act", act)
    builder.add_edge(START, "reason")
    builder.add_conditional_edges("reason", after_reason, ["act", "reason", END])
    builder.add_edge("act", "reason")
    return builder


_GIVE_UP_SCHEMA = {
    "type": "function",
    "function": {
        "name": GIVE_UP_TOOL,
        "description": (
            "Stop: the subtask cannot be done with the tools and inputs you have. "
            "Say why, so the work can be planned another way."
        ),
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string"}},
            "required": ["reason"],
        },
    },
}


def _default_instructions(profile: AgentProfile, allow_give_up: bool) -> str:
    who = profile.display_name
    what = f" {profile.description}" if profile.description else ""
    lines = [
        f"You are {who}, an agent in a fleet.{what}",
        "Use the tools when they help; when you have the answer, reply with it in plain words "
        "and call no tool.",
    ]
    if allow_give_up:
        lines.append(f"If the subtask cannot be done, call {GIVE_UP_TOOL} with the reason.")
    return "\n".join(lines)


def _local_data(profile: AgentProfile, subtask: Subtask) -> tuple[str, ...]:
    wanted = subtask.constraints.get("data") or ()
    if isinstance(wanted, str):
        wanted = (wanted,)
    return tuple(dict.fromkeys((*profile.limits.local_data, *map(str, wanted))))


def _api_name(name: str) -> str:
    """A tool name the chat API accepts (letters, digits, ``_``, ``-``; at most 64)."""
    clean = _API_NAME.sub("_", name)
    if len(clean) > 64:
        clean = clean[:55] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return clean


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters not shown)"


def _same_action(a: Completion, b: Completion) -> bool:
    """Whether two answers to the same step take the same action: the same tool calls with the
    same arguments, or (no tool calls) the same answer once case, spacing and punctuation are
    set aside, or the same last number when the answers end in one."""
    if a.tool_calls or b.tool_calls:

        def calls(c: Completion) -> list[tuple[str, str]]:
            out = []
            for call in c.tool_calls:
                try:
                    args = json.dumps(call.parsed_arguments(), sort_keys=True)
                except ValueError:
                    args = call.arguments
                out.append((call.name, args))
            return sorted(out)

        return calls(a) == calls(b)
    words_a, words_b = (
        _ANSWER_WORDS.findall(a.content.lower()),
        _ANSWER_WORDS.findall(b.content.lower()),
    )
    if words_a == words_b:
        return True
    numbers_a, numbers_b = _LAST_NUMBER.findall(a.content), _LAST_NUMBER.findall(b.content)
    return bool(numbers_a and numbers_b) and float(numbers_a[-1].replace(",", "")) == float(
        numbers_b[-1].replace(",", "")
    )


_INPUT_CHARS = 12_000
"""The most characters of a subtask's inputs the first message shows."""
_ANSWER_WORDS = re.compile(r"[a-z0-9]+")
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
