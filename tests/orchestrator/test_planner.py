"""The planner: requests to valid graphs (with repair), and failures to live edits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fleetmind import Fleet, SubtaskFailed, agent
from fleetmind.agents import ModelEndpoint, OpenAICompatibleClient
from fleetmind.errors import ModelNotConfigured, ModelUnavailable, PlanningError
from fleetmind.orchestrator import (
    GraphEditedEvent,
    SkillRouter,
    SQLiteStore,
    SubtaskReplannedEvent,
)
from fleetmind.orchestrator._fleet_view import AgentSummary, FleetView
from fleetmind.orchestrator._planner import Planner
from fleetmind.testing import Reply, ScriptedLLMServer, request_text


@agent(id="counter", skills=[{"name": "code-metrics", "tags": ["lines-of-code"]}])
async def counter(path: str) -> dict[str, int]:
    """Counts lines of code."""
    return {"lines": 120, "path_len": len(path)}


@agent(id="todo-finder", skills=["todo-scan"])
async def todo_finder(path: str) -> list[str]:
    """Finds TODO markers."""
    return ["a.py:3 TODO"]


@agent(id="flaky-todos", skills=["todo-scan-fast"])
async def flaky_todos(path: str) -> list[str]:
    """Finds TODO markers quickly, when it works."""
    raise SubtaskFailed("disk unreadable", retryable=False)


@agent(id="reporter", skills=["report-writing"])
async def reporter(loc: dict[str, int], todos: list[str], note: str = "") -> str:
    """Writes the report."""
    return f"{loc['lines']} lines, {len(todos)} todos"


AGENTS = [counter, todo_finder, flaky_todos, reporter]


def plan_json(*subtasks: dict[str, Any], name: str = "audit") -> str:
    return json.dumps({"name": name, "subtasks": list(subtasks)})


GOOD = plan_json(
    {"id": "loc", "description": "count lines", "agent": "counter", "inputs": {"path": "."}},
    {"id": "todos", "description": "find todos", "skill": "todo-scan", "inputs": {"path": "."}},
    {
        "id": "report",
        "description": "write the report",
        "agent": "reporter",
        "inputs": {"loc": "${loc}", "todos": "${todos}"},
    },
)


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as running:
        yield running


@pytest.fixture
async def model(server: ScriptedLLMServer) -> AsyncIterator[OpenAICompatibleClient]:
    endpoint = ModelEndpoint(name="cloud", base_url=server.url, model="planner", max_retries=0)
    async with OpenAICompatibleClient(endpoint) as client:
        yield client


def fleet_with(model: OpenAICompatibleClient, **options: Any) -> Fleet:
    return Fleet(AGENTS, router=SkillRouter(), planner=Planner(model, **options))


async def test_a_valid_plan_in_one_round(
    server: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    server.push(Reply.text(GOOD))
    plan = await fleet_with(model).plan("audit this repository")
    graph = plan.graph
    assert [s.id for s in graph] == ["loc", "todos", "report"]
    assert {(d.source, d.target, d.input) for d in graph.dependencies} == {
        ("loc", "report", "loc"),
        ("todos", "report", "todos"),
    }
    assert plan.rounds == 1 and graph.request == "audit this repository"
    assert plan.entries[2]["inputs"] == {"loc": "${loc}", "todos": "${todos}"}
    # The model saw the fleet compactly: ids, tiers, skills, needed inputs.
    system = server.requests[0]["messages"][0]["content"]
    assert (
        "- reporter [device, cost 0] skills: report-writing; needs: loc, todos; optional: note"
        in system
    )
    assert server.requests[0]["messages"][1]["content"] == "audit this repository"
    assert server.requests[0]["response_format"]["type"] == "json_schema"
    assert plan.graph.log[-1].kind == "task_planned"


async def test_prose_and_code_fences_around_the_json(
    server: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    server.push(Reply.text(f"Here is the plan you asked for:\n```json\n{GOOD}\n```\nGood luck!"))
    plan = await fleet_with(model).plan("audit")
    assert plan.rounds == 1 and len(plan.graph) == 3


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            plan_json({"id": "loc", "agent": "counter", "inputs": {"path": "."}}),
            "description: Field required",
        ),
        (
            plan_json(
                {"id": "loc", "description": "x", "agent": "countr", "inputs": {"path": "."}}
            ),
            "there is no agent 'countr' (did you mean 'counter'?)",
        ),
        (
            plan_json(
                {"id": "loc", "description": "x", "skill": "todo-scna", "inputs": {"path": "."}}
            ),
            "no agent offers skill 'todo-scna' (did you mean 'todo-scan'?)",
        ),
        (
            plan_json(
                {"id": "a", "description": "x", "agent": "counter", "inputs": {"path": "${b}"}},
                {"id": "b", "description": "y", "agent": "counter", "inputs": {"path": "${a}"}},
            ),
            "the plan has a cycle",
        ),
        (
            plan_json(
                {"id": "report", "description": "x", "agent": "reporter", "inputs": {"loc": {}}}
            ),
            "agent 'reporter', which needs input(s) todos",
        ),
        (
            plan_json(
                {"id": "r", "description": "x", "agent": "reporter", "inputs": {"loc": "${nope}"}}
            ),
            "refers to unknown subtask 'nope'",
        ),
        (
            plan_json(
                {"id": "Bad Id!", "description": "x", "agent": "counter", "inputs": {"path": "."}}
            ),
            "is not valid",
        ),
        (json.dumps({"steps": []}), "steps: is not a field"),
        ("I cannot help with that.", "the answer has no JSON object"),
    ],
)
async def test_invalid_plans_are_sent_back_with_their_exact_problems(
    server: ScriptedLLMServer, model: OpenAICompatibleClient, broken: str, expected: str
) -> None:
    server.push(Reply.text(broken), Reply.text(GOOD))
    plan = await fleet_with(model).plan("audit")
    assert plan.rounds == 2
    repair = server.requests[1]["messages"][-1]["content"]
    assert expected in repair
    assert server.requests[1]["messages"][-2] == {"role": "assistant", "content": broken}
    assert plan.exchanges[0]["problems"] and expected in " ".join(plan.exchanges[0]["problems"])
    assert plan.exchanges[1]["problems"] == []


async def test_a_truncated_answer_is_asked_to_be_shorter(
    server: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    server.push(Reply.text(GOOD[:60], finish_reason="length"), Reply.text(GOOD))
    plan = await fleet_with(model).plan("audit")
    assert "cut off at the token limit" in server.requests[1]["messages"][-1]["content"]
    assert plan.rounds == 2


async def test_too_many_subtasks(server: ScriptedLLMServer, model: OpenAICompatibleClient) -> None:
    many = plan_json(
        *[
            {"id": f"c{i}", "description": "x", "agent": "counter", "inputs": {"path": "."}}
            for i in range(4)
        ]
    )
    server.push(Reply.text(many), Reply.text(GOOD))
    plan = await fleet_with(model, max_subtasks=3).plan("audit")
    assert (
        "the plan has 4 subtasks; the limit is 3" in server.requests[1]["messages"][-1]["content"]
    )
    assert plan.rounds == 2


async def test_never_valid_is_refused_and_never_run(
    server: ScriptedLLMServer, model: OpenAICompatibleClient, tmp_path
) -> None:
    server.push(*[Reply.text("no plan, sorry")] * 3)
    store = SQLiteStore(tmp_path / "tasks.db")
    fleet = Fleet(AGENTS, router=SkillRouter(), store=store, planner=Planner(model, max_rounds=3))
    with pytest.raises(PlanningError, match="no valid plan after 3 rounds") as caught:
        await fleet.run("audit")
    assert len(caught.value.details["exchanges"]) == 3
    assert store.tasks() == []  # nothing was executed


async def test_run_text_end_to_end_with_the_exchanges_in_the_log(
    server: ScriptedLLMServer, model: OpenAICompatibleClient, tmp_path
) -> None:
    server.push(Reply.text("not json"), Reply.text(GOOD))
    store = SQLiteStore(tmp_path / "tasks.db")
    fleet = Fleet(AGENTS, router=SkillRouter(), store=store, planner=Planner(model))
    result = await fleet.run("audit this repository")
    assert result.ok and result.outputs["report"] == "120 lines, 1 todos"
    _, entries = store.load(result.task_id)
    planned = [e for e in entries if e.kind == "task_planned"]
    assert len(planned) == 1
    assert planned[0].request == "audit this repository" and planned[0].rounds == 2
    assert planned[0].exchanges[0]["answer"] == "not json"
    assert planned[0].exchanges[0]["prompt"][1]["content"] == "audit this repository"


async def test_no_planner_says_how_to_configure_one() -> None:
    with pytest.raises(ModelNotConfigured, match="planner=Planner"):
        await Fleet(AGENTS, router=SkillRouter()).run("audit")


async def test_a_planning_model_that_is_down(tmp_path) -> None:
    from fleetmind.testing import free_port

    endpoint = ModelEndpoint(
        base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=0
    )
    async with OpenAICompatibleClient(endpoint) as down:
        with pytest.raises(ModelUnavailable, match="cannot connect"):
            await fleet_with(down).run("audit")


# Replanning -----------------------------------------------------------------------------------

FLAKY_PLAN = plan_json(
    {"id": "loc", "description": "count lines", "agent": "counter", "inputs": {"path": "."}},
    {"id": "todos", "description": "find todos", "agent": "flaky-todos", "inputs": {"path": "."}},
    {
        "id": "report",
        "description": "write the report",
        "agent": "reporter",
        "inputs": {"loc": "${loc}", "todos": "${todos}"},
    },
)

FIX = json.dumps(
    {
        "reason": "flaky-todos cannot read the disk; todo-finder can",
        "add": [
            {
                "id": "todos2",
                "description": "find todos",
                "agent": "todo-finder",
                "inputs": {"path": "."},
            }
        ],
        "rewire": [{"subtask": "report", "inputs": {"todos": "${todos2}"}}],
    }
)


async def test_a_subtask_that_fails_for_good_is_replanned_live(
    server: ScriptedLLMServer, model: OpenAICompatibleClient, tmp_path
) -> None:
    server.push(Reply.text(FLAKY_PLAN), Reply.text(FIX))
    store = SQLiteStore(tmp_path / "tasks.db")
    fleet = Fleet(AGENTS, router=SkillRouter(), store=store, planner=Planner(model))
    async with fleet:
        handle = fleet.submit((await fleet.plan("audit")).graph)
        events = [e async for e in handle.events()]
        result = await handle.result()
    assert result.ok and result.outputs["report"] == "120 lines, 1 todos"
    assert result.graph.state("todos").status == "failed"  # it failed, and was worked round
    replanned = [e for e in events if isinstance(e, SubtaskReplannedEvent)]
    assert [(e.subtask_id, e.outcome, e.edits) for e in replanned] == [("todos", "edited", 3)]
    assert "todo-finder can" in replanned[0].reason
    assert {e.by for e in events if isinstance(e, GraphEditedEvent)} == {"planner"}
    # What the replanner was told: the plan's state and the failure.
    told = request_text(server.requests[1])
    assert "- todos [running] agent flaky-todos" in told
    assert "failed for good: SubtaskFailed: disk unreadable" in told
    assert "- loc [done]" in told or "- loc [running]" in told or "- loc [ready]" in told
    # The log keeps the decision and its exchanges for audit.
    _, entries = store.load(result.task_id)
    logged = [e for e in entries if e.kind == "subtask_replanned"]
    assert logged[0].outcome == "edited" and logged[0].exchanges[0]["answer"] == FIX
    assert store.tasks()[0].status == "done"


async def test_the_replanner_may_give_up(
    server: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    server.push(
        Reply.text(FLAKY_PLAN),
        Reply.text(json.dumps({"reason": "no other agent", "give_up": True})),
    )
    result = await fleet_with(model).run("audit")
    assert result.status == "failed"
    state = result.graph.state("todos")
    assert state.replanned == "gave_up"
    assert result.graph.state("report").status == "failed"  # upstream failed


async def test_an_invalid_edit_is_repaired_within_rounds(
    server: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    only_add = json.dumps(
        {
            "reason": "try the other finder",
            "add": [
                {
                    "id": "todos2",
                    "description": "x",
                    "agent": "todo-finder",
                    "inputs": {"path": "."},
                }
            ],
        }
    )
    server.push(Reply.text(FLAKY_PLAN), Reply.text(only_add), Reply.text(FIX))
    result = await fleet_with(model).run("audit")
    assert result.ok
    repair = server.requests[2]["messages"][-1]["content"]
    assert "report still wait for the failed subtask 'todos'" in repair


async def test_replans_per_task_are_bounded(
    server: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    retry_flaky = json.dumps(
        {
            "reason": "try again",
            "add": [
                {
                    "id": "todos2",
                    "description": "x",
                    "agent": "flaky-todos",
                    "inputs": {"path": "."},
                }
            ],
            "rewire": [{"subtask": "report", "inputs": {"todos": "${todos2}"}}],
        }
    )
    server.push(Reply.text(FLAKY_PLAN), Reply.text(retry_flaky))
    result = await fleet_with(model, max_replans=1).run("audit")
    assert result.status == "failed"
    assert len(server.requests) == 2  # the second failure was not replanned
    assert result.graph.state("todos2").replanned is None


async def test_a_hand_written_graph_is_not_replanned_unless_asked(
    server: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    from fleetmind import TaskGraph

    graph = TaskGraph("manual")
    graph.add_subtask("todos", agent="flaky-todos", inputs={"path": "."})
    result = await fleet_with(model).run(graph)
    assert result.status == "failed" and not server.requests


def test_a_large_fleet_fits_its_budget_ranked_by_the_router() -> None:
    summaries = [
        AgentSummary(
            f"agent-{n:03d}", "cloud", 0.01, 1.0, (f"skill-{n}",), "does things " * 5, ("x",), ()
        )
        for n in range(500)
    ]

    def route(subtask):  # the router ranks agent-499 first for this request
        from fleetmind.orchestrator import RoutingDecision

        return RoutingDecision(("agent-499", "agent-250"))

    text = FleetView(summaries, route).render("something", budget_chars=4000)
    assert len(text) <= 4000
    lines = text.splitlines()
    assert lines[0].startswith("- agent-499") and lines[1].startswith("- agent-250")
    assert "more agents are not listed" in lines[-1]
    assert "does things" not in text  # descriptions go first


async def test_a_cut_off_plan_is_never_read_as_its_first_subtask(
    server: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    cut = GOOD[: GOOD.index('"todos"') + 20]  # the first subtask is complete, the rest is not
    server.push(Reply.text(cut), Reply.text(GOOD))
    plan = await fleet_with(model).plan("audit")
    assert plan.exchanges[0]["problems"] == [
        "your answer was cut off at the token limit before the JSON ended; "
        "answer with a shorter plan"
    ]
    assert plan.rounds == 2


def test_extract_json_finds_the_answer_not_a_piece_of_it() -> None:
    from fleetmind.agents import extract_json

    assert extract_json('use {x} like this: {"a": [1, {"b": 2}]} ok') == {"a": [1, {"b": 2}]}
    with pytest.raises(ValueError, match="cut off"):
        extract_json('{"plan": [{"id": "a"}, {"id": "b", "desc')
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json("nothing here")
