"""Tests for fleetmind/agents/_agent.py: the Agent base class, FunctionAgent, the @agent
decorator, SubtaskContext and SubtaskResult (with the AgentProfile validation they rely on).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fleetmind.agents import (
    Agent,
    AgentLimits,
    AgentProfile,
    FunctionAgent,
    Skill,
    SubtaskContext,
    SubtaskResult,
    Tier,
    agent,
)
from fleetmind.errors import AgentError, MissingInput
from fleetmind.orchestrator import AddDependency, AddSubtask, Subtask


def context(subtask: Subtask, **inputs: Any) -> SubtaskContext:
    """A context as the engine builds it, for calling an agent directly."""
    return SubtaskContext(task_id="t1", subtask=subtask, inputs=inputs, agent_id="x")


# ---------------------------------------------------------------------------------------------
# @agent: profile defaults and options
# ---------------------------------------------------------------------------------------------


async def test_bare_decorator_takes_id_and_description_from_the_function() -> None:
    @agent
    async def summarise_text(text: str) -> str:
        """Summarise a text.

        In one sentence.
        """
        return text[:5]

    assert isinstance(summarise_text, FunctionAgent)
    assert isinstance(summarise_text, Agent)
    profile = summarise_text.profile
    assert profile.id == "summarise-text"
    assert summarise_text.id == "summarise-text"
    assert profile.description == "Summarise a text.\n\nIn one sentence."
    assert profile.name == ""
    assert profile.display_name == "summarise-text"
    assert profile.skills == ()
    assert profile.tier is Tier.DEVICE
    assert profile.cost_per_call == 0.0
    assert profile.limits == AgentLimits()
    assert profile.limits.max_concurrency == 4
    assert profile.version == 1
    assert repr(summarise_text) == "<FunctionAgent 'summarise-text' v1>"


async def test_function_without_docstring_has_empty_description() -> None:
    @agent()
    async def quiet() -> None:
        return None

    assert quiet.profile.id == "quiet"
    assert quiet.profile.description == ""


async def test_decorator_options_fill_the_profile() -> None:
    @agent(
        id="cloud-llm",
        name="Cloud LLM",
        description="Answers anything.",
        tier="cloud",
        cost_per_call=0.02,
        typical_latency_s=1.5,
        max_concurrency=8,
        local_data=["notes"],
        version=3,
    )
    async def llm() -> str:
        """Ignored: an explicit description wins."""
        return "answer"

    profile = llm.profile
    assert profile.id == "cloud-llm"
    assert profile.display_name == "Cloud LLM"
    assert profile.description == "Answers anything."
    assert profile.tier is Tier.CLOUD
    assert profile.cost_per_call == 0.02
    assert profile.typical_latency_s == 1.5
    assert profile.limits == AgentLimits(max_concurrency=8, local_data=("notes",))
    assert profile.version == 3
    assert repr(llm) == "<FunctionAgent 'cloud-llm' v3>"


async def test_empty_description_is_kept_over_the_docstring() -> None:
    @agent(description="")
    async def documented() -> None:
        """A docstring."""

    assert documented.profile.description == ""


async def test_skills_from_strings_dicts_and_skill_objects() -> None:
    @agent(
        skills=[
            "summarise",
            {"name": "translate", "tags": ["i18n", "language"], "description": "Any language"},
            Skill(name="classify", examples=("is this spam?",)),
        ]
    )
    async def multi() -> None:
        return None

    assert multi.profile.skills == (
        Skill(name="summarise"),
        Skill(name="translate", description="Any language", tags=("i18n", "language")),
        Skill(name="classify", examples=("is this spam?",)),
    )
    assert multi.profile.offers("summarise")
    assert multi.profile.offers("I18N")
    assert not multi.profile.offers("sing")


# ---------------------------------------------------------------------------------------------
# @agent: mistakes
# ---------------------------------------------------------------------------------------------


def test_non_async_function_raises_agent_error() -> None:
    def plain(text: str) -> str:
        return text

    with pytest.raises(AgentError, match="async"):
        agent(plain)
    with pytest.raises(AgentError, match="plain"):
        agent(skills=["x"])(plain)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cost_per_call": -1.0}, "cost_per_call"),
        ({"typical_latency_s": -0.5}, "typical_latency_s"),
        ({"id": "a b"}, "id"),
        ({"id": "-leading-dash"}, "id"),
        ({"skills": ["dup", "dup"]}, "skills"),
        ({"skills": [{"name": "dup"}, Skill(name="dup")]}, "skills"),
        ({"skills": [{"name": ""}]}, "name"),
        ({"skills": [{"name": "x", "bogus": 1}]}, "bogus"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"version": 0}, "version"),
        ({"tier": "moon"}, "moon"),
    ],
)
def test_bad_profile_values_raise_agent_error_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(AgentError) as caught:

        @agent(**options)
        async def broken() -> None:
            return None

    message = str(caught.value)
    assert "broken" in message
    assert field in message
    assert isinstance(caught.value.__cause__, ValidationError | ValueError)


def test_duplicate_skill_names_message_lists_the_repeated_names() -> None:
    with pytest.raises(AgentError, match="repeated: a, b"):

        @agent(skills=["a", "b", "a", "c", "b"])
        async def twice() -> None:
            return None


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"id": "a b"}, ("id",)),
        ({"id": "ok", "cost_per_call": -1}, ("cost_per_call",)),
        ({"id": "ok", "skills": [Skill(name="s"), Skill(name="s")]}, ("skills",)),
        ({"id": "ok", "limits": {"max_concurrency": 0}}, ("limits", "max_concurrency")),
        ({"id": "ok", "colour": "red"}, ("colour",)),
    ],
)
def test_profile_validation_errors_name_the_field(
    fields: dict[str, Any], loc: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        AgentProfile(**fields)

    assert [e["loc"] for e in caught.value.errors()] == [loc]
    assert loc[-1] in str(caught.value)


def test_profile_is_frozen() -> None:
    profile = AgentProfile(id="a")
    with pytest.raises(ValidationError):
        profile.cost_per_call = 3.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# FunctionAgent: inputs and ctx
# ---------------------------------------------------------------------------------------------


async def test_required_inputs_are_parameters_without_defaults() -> None:
    @agent
    async def fn(ctx: SubtaskContext, text: str, *, lang: str, tone: str = "plain") -> str:
        return text

    @agent
    async def anything(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    assert fn.required_inputs == frozenset({"text", "lang"})
    assert anything.required_inputs == frozenset()


async def test_inputs_are_passed_by_name_and_unknown_inputs_are_dropped() -> None:
    @agent
    async def greet(name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    sub = Subtask(id="s", agent="greet")

    assert await greet.run(sub, context(sub, name="ada", extra="ignored")) == "hello ada!"
    assert await greet.run(sub, context(sub, name="bob", punctuation="?")) == "hello bob?"
    assert await greet(name="direct") == "hello direct!"
    assert greet.function.__name__ == "greet"


async def test_var_keyword_receives_every_input() -> None:
    @agent
    async def everything(first: int, **rest: Any) -> dict[str, Any]:
        return {"first": first, **rest}

    sub = Subtask(id="s", agent="everything")

    assert await everything.run(sub, context(sub, first=1, a=2, b=3)) == {
        "first": 1,
        "a": 2,
        "b": 3,
    }


async def test_ctx_parameter_receives_the_context() -> None:
    seen: list[SubtaskContext] = []

    @agent
    async def aware(ctx: SubtaskContext, n: int) -> int:
        seen.append(ctx)
        return n * ctx.attempt

    sub = Subtask(id="s", agent="aware")
    ctx = SubtaskContext(task_id="t1", subtask=sub, inputs={"n": 2}, attempt=3, agent_id="aware")

    assert await aware.run(sub, ctx) == 6
    assert seen == [ctx]
    assert "ctx" not in aware.required_inputs


async def test_run_raises_missing_input_naming_the_inputs() -> None:
    called = False

    @agent
    async def needy(text: str, lang: str) -> str:
        nonlocal called
        called = True
        return text

    sub = Subtask(id="job", agent="needy")

    with pytest.raises(MissingInput, match="lang, text") as caught:
        await needy.run(sub, context(sub))
    assert "'job'" in str(caught.value)
    assert "'needy'" in str(caught.value)
    assert not caught.value.retryable
    assert not called


# ---------------------------------------------------------------------------------------------
# SubtaskContext
# ---------------------------------------------------------------------------------------------


def test_context_progress_reaches_its_sink() -> None:
    reports: list[tuple[str, float | None]] = []
    sub = Subtask(id="s")
    ctx = SubtaskContext(
        task_id="t", subtask=sub, inputs={}, _progress=lambda m, f: reports.append((m, f))
    )

    ctx.progress("loading", 0.25)
    ctx.progress("thinking")
    context(sub).progress("nobody listens")  # no sink: a no-op

    assert reports == [("loading", 0.25), ("thinking", None)]


def test_context_collects_graph_edits() -> None:
    sub = Subtask(id="s")
    ctx = context(sub)

    spec = ctx.add_subtask("follow", skill="review", depends_on=["s"])
    ctx.add_subtask(Subtask(id="other"))
    ctx.add_dependency("s", "other", kind="data", output="text", input="doc")

    assert spec == Subtask(id="follow", skill="review")
    assert len(ctx.edits) == 3
    first, second, third = ctx.edits
    assert isinstance(first, AddSubtask)
    assert first.subtask == spec
    assert [(d.source, d.target) for d in first.dependencies] == [("s", "follow")]
    assert isinstance(second, AddSubtask)
    assert second.dependencies == ()
    assert isinstance(third, AddDependency)
    assert third.dependency.kind == "data"
    assert (third.dependency.output, third.dependency.input) == ("text", "doc")


def test_subtask_result_defaults() -> None:
    assert SubtaskResult() == SubtaskResult(output=None, edits=())


# ---------------------------------------------------------------------------------------------
# Agent subclasses
# ---------------------------------------------------------------------------------------------


class Shouter(Agent):
    profile = AgentProfile(id="shouter", skills=(Skill(name="shout"),))

    async def run(self, subtask: Subtask, ctx: SubtaskContext) -> str:
        return str(ctx.inputs["text"]).upper()


async def test_subclass_with_a_class_profile() -> None:
    shouter = Shouter()
    sub = Subtask(id="s", skill="shout")

    assert shouter.id == "shouter"
    assert shouter.required_inputs == frozenset()
    assert await shouter.run(sub, context(sub, text="hey")) == "HEY"
    assert repr(shouter) == "<Shouter 'shouter' v1>"


async def test_profile_given_to_init_overrides_the_class_one() -> None:
    shouter = Shouter(AgentProfile(id="loud", version=2))

    assert shouter.id == "loud"
    assert repr(shouter) == "<Shouter 'loud' v2>"
    assert Shouter().id == "shouter"


def test_subclass_without_profile_raises_agent_error() -> None:
    class Nameless(Agent):
        async def run(self, subtask: Subtask, ctx: SubtaskContext) -> None:
            return None

    with pytest.raises(AgentError, match="Nameless"):
        Nameless()


def test_subclass_with_a_profile_of_the_wrong_type_raises_agent_error() -> None:
    class Confused(Agent):
        profile = {"id": "confused"}  # type: ignore[assignment]

        async def run(self, subtask: Subtask, ctx: SubtaskContext) -> None:
            return None

    with pytest.raises(AgentError, match="Confused"):
        Confused()
