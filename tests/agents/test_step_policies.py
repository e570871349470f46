"""Step router policies on constructed states: fixed, per task, rules, cascade, learned."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fleetmind.agents import (
    STRUCTURAL_FEATURES,
    AlwaysCloud,
    AlwaysDevice,
    CascadeRouter,
    ChatMessage,
    Completion,
    LearnedStepRouter,
    PerTaskRouter,
    RulesRouter,
    StepChoice,
    StepRouter,
    StepRouterFileError,
    StepRouterModel,
    StepState,
    ToolCall,
    cloud_for_tools,
    default_draft_model,
    fit_step_router,
    hashed_matrix,
    hashed_ngrams,
    keep_local_data,
    prompt_state,
    step_text,
    structural_features,
    within_budget,
)

QUESTION = "Tom has 9 boxes with 2 apples in each box. How many apples does he have?"


def state(
    step: int = 1,
    *messages: ChatMessage,
    subtask: str = "s1",
    **fields: object,
) -> StepState:
    """A state of a two-tier agent; the conversation is the question unless given."""
    return StepState(
        task_id="t1",
        subtask_id=subtask,
        agent_id="solver",
        step=step,
        messages=messages
        or (ChatMessage.system("You solve problems."), ChatMessage.user(QUESTION)),
        tiers=("device", "cloud"),
        **fields,  # type: ignore[arg-type]
    )


def draft(content: str, finish_reason: str = "stop", **fields: object) -> Completion:
    return Completion(content=content, model="small", finish_reason=finish_reason, **fields)  # type: ignore[arg-type]


class Scripted:
    """A router that answers from a list of tiers and remembers what it was asked."""

    def __init__(self, *tiers: str) -> None:
        self.tiers = list(tiers)
        self.seen: list[StepState] = []

    async def choose(self, state: StepState) -> StepChoice:
        self.seen.append(state)
        tier = self.tiers.pop(0)
        return StepChoice(tier, f"scripted {tier}")


# Fixed ------------------------------------------------------------------------------------


async def test_fixed_policies() -> None:
    device, cloud = await AlwaysDevice().choose(state()), await AlwaysCloud().choose(state())
    assert (device.tier, device.draft) == ("device", False)
    assert (cloud.tier, cloud.draft) == ("cloud", False)
    assert device.reason == "always device" and cloud.reason == "always cloud"
    assert isinstance(AlwaysDevice(), StepRouter) and isinstance(CascadeRouter(), StepRouter)


# Per task ---------------------------------------------------------------------------------


async def test_per_task_router_keeps_the_first_choice_for_the_subtask() -> None:
    inner = Scripted("cloud", "device")
    router = PerTaskRouter(inner)
    first = await router.choose(state(1))
    assert first.tier == "cloud"
    later = [await router.choose(state(n)) for n in (2, 3, 4)]
    assert {c.tier for c in later} == {"cloud"}
    assert all(c.reason == "per task: scripted cloud" for c in later)
    assert len(inner.seen) == 1  # later steps of the subtask do not ask again
    other = await router.choose(state(1, subtask="s2"))
    assert other.tier == "device" and len(inner.seen) == 2
    # The first subtask still follows its own first choice.
    assert (await router.choose(state(5))).tier == "cloud"
    assert (await router.choose(state(2, subtask="s2"))).tier == "device"


async def test_per_task_router_drafts_nothing() -> None:
    router = PerTaskRouter(CascadeRouter())
    choice = await router.choose(state(1))
    assert choice.tier == "device" and choice.draft is False


# Rules ------------------------------------------------------------------------------------


async def test_keep_local_data_wins_over_a_cloud_policy() -> None:
    router = RulesRouter([keep_local_data()], otherwise=AlwaysCloud())
    kept = await router.choose(state(local_data=("health-records",)))
    assert kept.tier == "device" and "health-records stays local" in kept.reason
    assert (await router.choose(state())).tier == "cloud"


def tool_turn(name: str, result: str = "42") -> tuple[ChatMessage, ...]:
    call = ToolCall(id="call_1", name=name, arguments="{}")
    return (
        ChatMessage.user(QUESTION),
        ChatMessage.assistant("", [call]),
        ChatMessage.tool("call_1", result, name),
    )


async def test_cloud_for_tools_after_a_listed_tool_only() -> None:
    router = RulesRouter([cloud_for_tools(["read_scan"])], otherwise="device")
    after = await router.choose(state(2, *tool_turn("read_scan")))
    assert after.tier == "cloud" and "read_scan needs the cloud" in after.reason
    other = await router.choose(state(2, *tool_turn("word_count")))
    assert other.tier == "device" and other.reason == "default: device"
    # A user message after the tool result: the rule no longer applies.
    later = (*tool_turn("read_scan"), ChatMessage.user("and now?"))
    assert (await router.choose(state(3, *later))).tier == "device"


async def test_within_budget_holds_the_cloud_share() -> None:
    rule = within_budget(cloud_share=0.4)
    router = RulesRouter([rule], otherwise=AlwaysCloud())
    # (step, cloud steps so far) -> the tier. The first cloud step is always allowed; then the
    # cloud's steps, this one included, stay within 40% of the steps so far.
    expected = {
        (1, 0): "cloud",
        (2, 1): "device",
        (3, 1): "device",
        (4, 1): "device",
        (5, 1): "cloud",
        (6, 2): "device",
        (7, 2): "device",
        (8, 2): "cloud",
        (9, 3): "device",
    }
    got = {key: (await router.choose(state(key[0], cloud_steps=key[1]))).tier for key in expected}
    assert got == expected
    refused = await router.choose(state(2, cloud_steps=1))
    assert "cloud budget 40% spent (1 of 1 steps)" in refused.reason
    # Simulated over a whole subtask, the share never passes the budget after the first step.
    cloud_steps = 0
    for step in range(1, 31):
        if (await router.choose(state(step, cloud_steps=cloud_steps))).tier == "cloud":
            cloud_steps += 1
        assert cloud_steps <= max(1, 0.4 * step)
    assert cloud_steps == 12


async def test_within_budget_of_zero_never_allows_the_cloud() -> None:
    router = RulesRouter([within_budget(cloud_share=0.0)], otherwise=AlwaysCloud())
    assert (await router.choose(state(1))).tier == "device"


async def test_cost_and_step_budgets_send_steps_to_the_device() -> None:
    router = RulesRouter(
        [within_budget(min_cost_left=0.01, min_steps_left=2)], otherwise=AlwaysCloud()
    )
    poor = await router.choose(state(cost_left=0.005, steps_left=10))
    assert poor.tier == "device" and "cost budget spent" in poor.reason
    hurried = await router.choose(state(cost_left=1.0, steps_left=1))
    assert hurried.tier == "device" and "step budget spent (1 left)" in hurried.reason
    fine = await router.choose(state(cost_left=1.0, steps_left=5))
    assert fine.tier == "cloud"
    unknown = await router.choose(state())  # no limits: the rule does not apply
    assert unknown.tier == "cloud"


async def test_a_budget_rule_keeps_a_device_choice_s_own_reason() -> None:
    router = RulesRouter([within_budget(cloud_share=0.4)], otherwise=Scripted("device"))
    choice = await router.choose(state(2, cloud_steps=1))
    assert choice.tier == "device" and choice.reason == "scripted device"
    # ... but overrides a cloud choice with its own.
    router = RulesRouter([within_budget(cloud_share=0.4)], otherwise=Scripted("cloud"))
    choice = await router.choose(state(2, cloud_steps=1))
    assert choice.tier == "device" and choice.reason.startswith("rule: cloud budget")


async def test_rules_in_order_and_a_string_default() -> None:
    router = RulesRouter([keep_local_data(), cloud_for_tools(["read_scan"])], otherwise="cloud")
    local = await router.choose(state(2, *tool_turn("read_scan"), local_data=("scans",)))
    assert local.tier == "device" and "stays local" in local.reason
    assert (await router.choose(state())).reason == "default: cloud"
    # A default tier the agent does not have falls back to its cheapest.
    one_tier = replace(state(), tiers=("device",))
    assert (await RulesRouter([], otherwise="cloud").choose(one_tier)).tier == "device"


# Cascade ----------------------------------------------------------------------------------

GOOD_DRAFT = "He has 9 boxes of 2 apples: 9 * 2 = 18 apples.\n#### 18"


async def test_cascade_drafts_on_the_device_first() -> None:
    choice = await CascadeRouter().choose(state())
    assert choice == StepChoice("device", "cascade: device drafts first", draft=True)


async def test_cascade_keeps_a_good_draft() -> None:
    choice = await CascadeRouter().choose(state(draft=draft(GOOD_DRAFT)))
    assert choice.tier == "device" and not choice.draft
    assert choice.reason.startswith("cascade: draft kept, risk")


@pytest.mark.parametrize(
    ("content", "finish_reason"),
    [
        ("He has 9 boxes of 2 apples: 9 * 2 = 20 apples.\n#### 20", "stop"),  # wrong sum
        ("He has 9 boxes of 2 apples: 9 * 2 = 18 apples, so the answer", "length"),  # cut off
        ("", "stop"),  # empty
        ("   ", "stop"),
    ],
    ids=["wrong-arithmetic", "truncated", "empty", "blank"],
)
async def test_cascade_escalates_a_risky_draft(content: str, finish_reason: str) -> None:
    router = CascadeRouter()
    choice = await router.choose(state(draft=draft(content, finish_reason)))
    assert choice.tier == "cloud" and not choice.draft
    assert "draft risk" in choice.reason and "escalated" in choice.reason
    good = router.draft_risk(state(draft=draft(GOOD_DRAFT)))
    assert router.draft_risk(state(draft=draft(content, finish_reason))) > good


async def test_cascade_escalates_a_tool_call_that_does_not_parse() -> None:
    broken = draft("", "tool_calls", tool_calls=(ToolCall("c1", "calc", "{broken"),))
    choice = await CascadeRouter().choose(state(draft=broken))
    assert choice.tier == "cloud"


async def test_cascade_keeps_a_device_draft_that_calls_a_tool_properly() -> None:
    """A draft that is a well-formed tool call has no text, but it is not an empty answer
    (escalating it would pay for every tool-calling step twice)."""
    call = draft("", "tool_calls", tool_calls=(ToolCall("c1", "calc", '{"expression": "9 * 2"}'),))
    choice = await CascadeRouter().choose(state(draft=call))
    assert choice.tier == "device", choice.reason


async def test_cascade_with_one_tier() -> None:
    one = replace(state(), tiers=("device",))
    assert await CascadeRouter().choose(one) == StepChoice("device", "cascade: one tier only")


async def test_rules_keep_a_device_draft_without_escalating() -> None:
    router = RulesRouter([keep_local_data()], otherwise=CascadeRouter())
    first = await router.choose(state(local_data=("notes",)))
    assert first.tier == "device"
    bad = draft("9 * 2 = 20\n#### 20")
    second = await router.choose(state(local_data=("notes",), draft=bad))
    assert second.tier == "device" and "stays local" in second.reason


def test_cascade_refuses_a_step_model() -> None:
    with pytest.raises(StepRouterFileError, match="LearnedStepRouter"):
        CascadeRouter(trained_step_model())


# Learned ----------------------------------------------------------------------------------

HARD = "hard: prove the theorem about prime gaps and bound the error term, case {i}"
EASY = "easy: say hello to my friend and wish a nice day, note {i}"


def trained_step_model(text_kind: str = "hashed") -> StepRouterModel:
    prompts = [HARD.format(i=i) for i in range(20)] + [EASY.format(i=i) for i in range(20)]
    labels = [True] * 20 + [False] * 20
    states = [prompt_state(p) for p in prompts]
    numeric = np.array([[structural_features(s)[f] for f in STRUCTURAL_FEATURES] for s in states])
    text = hashed_matrix([hashed_ngrams(step_text(s)) for s in states])
    return fit_step_router(numeric, labels, text=text, text_kind=text_kind, cloud_share=0.5, l2=0.1)


async def test_a_learned_router_sends_hard_steps_to_the_cloud(tmp_path: Path) -> None:
    model = trained_step_model()
    path = model.save(tmp_path / "router.json")
    for router in (LearnedStepRouter(model), LearnedStepRouter(path)):
        hard = state(
            1,
            ChatMessage.system("You solve problems."),
            ChatMessage.user(HARD.format(i=99)),
        )
        easy = state(1, ChatMessage.system("You help."), ChatMessage.user(EASY.format(i=99)))
        to_cloud, to_device = await router.choose(hard), await router.choose(easy)
        assert to_cloud.tier == "cloud" and to_cloud.reason.startswith("learned: needs cloud")
        assert "≥" in to_cloud.reason
        assert to_device.tier == "device" and "<" in to_device.reason
        assert await router.score(hard) > await router.score(easy)
    # A cloud share asks for another threshold: all or nothing at the ends.
    assert (await LearnedStepRouter(model, cloud_share=0.0).choose(hard)).tier == "device"
    assert (await LearnedStepRouter(model, cloud_share=1.0).choose(easy)).tier == "cloud"


def test_a_router_that_needs_an_embedder_says_so_in_one_line() -> None:
    model = trained_step_model(text_kind="embedding:all-MiniLM-L6-v2")
    with pytest.raises(StepRouterFileError) as caught:
        LearnedStepRouter(model)
    message = str(caught.value)
    assert "all-MiniLM-L6-v2" in message and "embedder=" in message and "\n" not in message


def test_a_draft_model_is_not_a_learned_step_router(tmp_path: Path) -> None:
    with pytest.raises(StepRouterFileError, match="CascadeRouter"):
        LearnedStepRouter(default_draft_model())
    path = default_draft_model().save(tmp_path / "draft.json")
    with pytest.raises(StepRouterFileError, match="reads device drafts"):
        LearnedStepRouter(path)
    assert CascadeRouter(path).threshold == pytest.approx(0.5)
