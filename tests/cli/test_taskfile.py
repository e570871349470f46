"""Tests for fleetmind/orchestrator/_taskfile.py: task files read into task graphs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetmind.errors import ConfigError
from fleetmind.orchestrator import TaskGraph
from fleetmind.orchestrator._taskfile import TaskFile, graph_from_entries, read_task_file


def _write(tmp_path: Path, text: str, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _deps(graph: TaskGraph) -> list[dict[str, Any]]:
    return sorted(
        (d.model_dump(mode="json") for d in graph.dependencies),
        key=lambda d: (d["target"], d["source"], d["input"] or ""),
    )


def _data(source: str, target: str, input: str, output: str | None = None, condition="success"):
    return {
        "source": source,
        "target": target,
        "kind": "data",
        "condition": condition,
        "output": output,
        "input": input,
    }


def _control(source: str, target: str, condition: str = "success") -> dict[str, Any]:
    return {
        "source": source,
        "target": target,
        "kind": "control",
        "condition": condition,
        "output": None,
        "input": None,
    }


FULL = """
name: audit
description: an example
fleet: agents.py:fleet
params: {path: ., limit: 8}
subtasks:
  - id: scan
    description: scan it
    skill: scanning
    inputs: {path: "${params.path}", limit: "${params.limit}"}
    timeout_s: 5
    retry: {max_attempts: 2, initial_backoff_s: 0.01}
    constraints: {device: "${params.path}"}
  - id: count
    agent: counter
    inputs: {path: "${params.path}"}
  - id: report
    agent: reporter
    depends_on: [count]
    inputs:
      all: ${scan}
      items: "${scan.items}"
      spaced: "${ count }"
      title: "Report for ${params.path} (top ${params.limit})"
      mention: "see ${scan} later"
"""


def test_reads_subtasks_fields_and_params(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL)
    task = read_task_file(path)
    assert isinstance(task, TaskFile)
    assert task.path == path.resolve()
    assert task.fleet_ref == "agents.py:fleet"
    assert task.params == {"path": ".", "limit": 8}
    graph = task.graph
    assert graph.name == "audit"
    assert [s.id for s in graph.subtasks] == ["scan", "count", "report"]
    scan = graph.subtask("scan")
    assert scan.description == "scan it"
    assert scan.skill == "scanning"
    assert scan.agent is None
    assert scan.timeout_s == 5
    assert scan.retry.max_attempts == 2
    assert scan.retry.initial_backoff_s == 0.01
    assert scan.constraints == {"device": "."}
    assert graph.subtask("count").agent == "counter"


def test_data_references_become_data_dependencies(tmp_path: Path) -> None:
    graph = read_task_file(_write(tmp_path, FULL)).graph
    assert _deps(graph) == [
        _data("count", "report", "spaced"),  # ${ count }: spaces inside the braces are fine
        _data("scan", "report", "all"),  # ${scan}: the whole output
        _data("scan", "report", "items", output="items"),  # ${scan.items}: one field of it
    ]
    # A data dependency on `count` replaces the control one that depends_on asked for.
    report = graph.subtask("report")
    # Only inputs that are exactly a reference are references; the rest stay literal.
    assert report.inputs == {"title": "Report for . (top 8)", "mention": "see ${scan} later"}


def test_param_substitution_keeps_the_type_of_a_whole_value(tmp_path: Path) -> None:
    text = """
params: {n: 3, flag: true, items: [1, 2], opts: {a: 1}, name: x}
subtasks:
  - id: a
    inputs:
      n: "${params.n}"
      padded: "  ${params.n} "
      flag: "${params.flag}"
      items: "${params.items}"
      opts: "${params.opts}"
      inside: "n=${params.n}, items=${params.items}, name=${params.name}"
      nested: ["${params.n}", {deep: "${params.name}-${params.n}"}]
      number: 7
"""
    graph = read_task_file(_write(tmp_path, text)).graph
    assert graph.subtask("a").inputs == {
        "n": 3,
        "padded": 3,
        "flag": True,
        "items": [1, 2],
        "opts": {"a": 1},
        "inside": "n=3, items=[1, 2], name=x",
        "nested": [3, {"deep": "x-3"}],
        "number": 7,
    }
    assert graph.dependencies == []


def test_params_given_override_the_defaults(tmp_path: Path) -> None:
    text = """
params: {n: 3, word: hi}
subtasks:
  - {id: a, inputs: {n: "${params.n}", text: "${params.word}!"}}
"""
    task = read_task_file(_write(tmp_path, text), {"n": 10})
    assert task.params == {"n": 10, "word": "hi"}
    assert task.graph.subtask("a").inputs == {"n": 10, "text": "hi!"}


def test_depends_on_conditions_apply_to_data_dependencies_too(tmp_path: Path) -> None:
    text = """
subtasks:
  - {id: a}
  - {id: b}
  - {id: c}
  - id: d
    depends_on: [{id: a, condition: always}, {id: b, condition: failure}, c]
    inputs: {x: "${a}", y: "${a.field}"}
"""
    graph = read_task_file(_write(tmp_path, text)).graph
    assert _deps(graph) == [
        _data("a", "d", "x", condition="always"),
        _data("a", "d", "y", output="field", condition="always"),
        _control("b", "d", condition="failure"),
        _control("c", "d"),
    ]


def test_data_reference_without_depends_on_waits_for_success(tmp_path: Path) -> None:
    graph = read_task_file(
        _write(tmp_path, 'subtasks: [{id: a}, {id: b, inputs: {x: "${a}"}}]')
    ).graph
    assert _deps(graph) == [_data("a", "b", "x")]


def test_json_task_file(tmp_path: Path) -> None:
    data = {
        "name": "from-json",
        "fleet": "agents.py",
        "params": {"n": 2},
        "subtasks": [
            {"id": "one", "agent": "doubler", "inputs": {"n": "${params.n}"}},
            {
                "id": "two",
                "agent": "doubler",
                "inputs": {"n": "${one}"},
                "depends_on": [{"id": "one", "condition": "always"}],
            },
        ],
    }
    task = read_task_file(_write(tmp_path, json.dumps(data), "task.json"), {"n": 5})
    assert task.fleet_ref == "agents.py"
    assert task.graph.name == "from-json"
    assert task.graph.subtask("one").inputs == {"n": 5}
    assert _deps(task.graph) == [_data("one", "two", "n", condition="always")]


def test_defaults_without_name_fleet_or_params(tmp_path: Path) -> None:
    task = read_task_file(_write(tmp_path, "subtasks: [{id: only}]"))
    assert task.graph.name == "task"
    assert task.fleet_ref is None
    assert task.params == {}


def _error(tmp_path: Path, text: str, name: str = "task.yaml", **kwargs: Any) -> str:
    path = _write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        read_task_file(path, **kwargs)
    message = info.value.message
    assert "\n" not in message
    assert str(path.name) in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"task file not found: .*nosuch\.yaml"):
        read_task_file(tmp_path / "nosuch.yaml")


def test_a_directory_is_not_a_task_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="task file not found"):
        read_task_file(tmp_path)


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_bytes(b"subtasks: [\xff\xfe]\n")
    with pytest.raises(ConfigError, match=r"cannot read task file .*task\.yaml"):
        read_task_file(path)


@pytest.mark.parametrize(
    ("name", "text", "params", "expected"),
    [
        pytest.param(
            "task.yaml",
            "name: t\nsubtasks:\n  - {id: a}\n  - {id: b]\n",
            None,
            ["task.yaml:4:", "malformed YAML"],
            id="malformed-yaml-names-the-line",
        ),
        pytest.param(
            "task.json",
            '{"subtasks": [\n  {"id": "a"}\n  {"id": "b"}\n]}',
            None,
            ["task.json:3:", "malformed JSON"],
            id="malformed-json-names-the-line",
        ),
        pytest.param("task.yaml", "- a\n- b\n", None, ["mapping"], id="a-list"),
        pytest.param("task.yaml", "", None, ["mapping"], id="empty"),
        pytest.param(
            "task.json",
            "[1, 2]",
            None,
            ["mapping"],
            id="json-list",
        ),
        pytest.param("task.yaml", "name: t\n", None, ["missing key 'subtasks'"], id="no-subtasks"),
        pytest.param("task.yaml", "subtasks: []\n", None, ["subtasks", "at least 1"], id="none"),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a}]\nfleeet: x\n",
            None,
            ["unknown key 'fleeet' (did you mean 'fleet'?)"],
            id="top-field",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a, agnet: x}]\n",
            None,
            ["subtask 1 (id 'a'): unknown key 'agnet' (did you mean 'agent'?)"],
            id="subtask-field",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: fetch}, {id: b}, {id: c, retry: {max_atempts: 2}}]\n",
            None,
            ["subtask 3 (id 'c'): retry: unknown key 'max_atempts' (did you mean 'max_attempts'?)"],
            id="retry-key-typo-one-based",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a, constraints: {teir: [device]}}]\n",
            None,
            ["subtask 1 (id 'a'): constraints: unknown key 'teir' (did you mean 'tier'?)"],
            id="constraint-key-typo",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a}, {id: b, depends_on: [{id: a, conditon: always}]}]\n",
            None,
            ["subtask 2 (id 'b'): depends_on[1]: unknown key 'conditon' (did you mean "],
            id="depends-on-key-typo",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a}, {description: no id}]\n",
            None,
            ["subtask 2: missing key 'id'"],
            id="subtask-without-id",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a, timeout_s: soon}]\n",
            None,
            ["subtask 1 (id 'a'): timeout_s: should be a number (got 'soon')"],
            id="plain-type-wording",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a}, just-a-name]\n",
            None,
            ["subtask 2: should be a mapping"],
            id="subtask-not-a-mapping",
        ),
        pytest.param(
            "task.yaml",
            "subtaks: [{id: a}]\n",
            None,
            ["unknown key 'subtaks' (did you mean 'subtasks'?)"],
            id="misspelt-subtasks-beats-missing",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: fetch}, {id: b, depends_on: [fetc]}]\n",
            None,
            ["unknown subtask 'fetc' (did you mean 'fetch'?)"],
            id="depends-on-id-typo",
        ),
        pytest.param(
            "task.yaml",
            "params: {path: .}\nsubtasks: [{id: a}]\n",
            {"pth": "x"},
            ["unknown parameter(s) pth (did you mean 'path'?)"],
            id="param-typo",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a, depends_on: [{id: b, when: always}]}, {id: b}]\n",
            None,
            ["when"],
            id="depends-on-field",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a, retry: {max_attempts: 0}}]\n",
            None,
            ["max_attempts"],
            id="bad-retry",
        ),
        pytest.param(
            "task.yaml",
            "params: {n: 1}\nsubtasks: [{id: a}]\n",
            {"zzz": 1, "aaa": 2},
            ["unknown parameter(s) aaa, zzz", "declares: n"],
            id="unknown-param-given",
        ),
        pytest.param(
            "task.yaml",
            'subtasks: [{id: a, inputs: {x: "v${params.nope}"}}]\n',
            None,
            ["params.nope"],
            id="unknown-param-used",
        ),
        pytest.param(
            "task.yaml",
            'subtasks: [{id: a, inputs: {x: "${ghost.out}"}}]\n',
            None,
            ["input 'x'", "subtask 'a'", "unknown subtask 'ghost'"],
            id="unknown-data-ref",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a, depends_on: [ghost]}]\n",
            None,
            ["'a'", "unknown subtask 'ghost'"],
            id="unknown-depends-on",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a, depends_on: [b]}, {id: b, depends_on: [c]}, {id: c, "
            'inputs: {x: "${a}"}}]\n',
            None,
            ["cycle"],
            id="cycle",
        ),
        pytest.param(
            "task.yaml", "subtasks: [{id: a}, {id: a}]\n", None, ["'a'", "already"], id="dup-id"
        ),
        pytest.param("task.yaml", "subtasks: [{id: 'a b'}]\n", None, ["'a b'", "id"], id="bad-id"),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a, depends_on: [{id: b, condition: sometimes}]}, {id: b}]\n",
            None,
            ["condition", "sometimes"],
            id="bad-condition",
        ),
        pytest.param(
            "task.yaml",
            "subtasks: [{id: a, depends_on: [a]}]\n",
            None,
            ["'a'", "itself"],
            id="self-dependency",
        ),
        pytest.param(
            "task.yaml",
            'subtasks: [{id: a, inputs: {x: "${a}"}}]\n',
            None,
            ["'a'", "itself"],
            id="self-data-reference",
        ),
    ],
)
def test_errors_are_config_errors_naming_the_problem(
    tmp_path: Path, name: str, text: str, params: dict[str, Any] | None, expected: list[str]
) -> None:
    message = _error(tmp_path, text, name, params=params)
    for needle in expected:
        assert needle in message, message


def test_no_error_speaks_pydantic(tmp_path: Path) -> None:
    message = _error(tmp_path, "subtasks: [{id: a, agnet: x, retry: {max_attempts: x}}]\n")
    for pydantic_words in ("Extra inputs", "Field required", "Input should", "subtasks.0"):
        assert pydantic_words not in message, message


def test_every_constraint_key_the_routers_read_is_accepted(tmp_path: Path) -> None:
    text = (
        "params: {where: pi-1}\nsubtasks:\n  - id: a\n    constraints: {tier: [device], "
        'device: "${params.where}", data: [notes], max_cost: 0.1, max_latency_s: 2, '
        "weights: {cost: 2}}\n"
    )
    graph = read_task_file(_write(tmp_path, text)).graph
    assert graph.subtask("a").constraints == {
        "tier": ["device"],
        "device": "pi-1",
        "data": ["notes"],
        "max_cost": 0.1,
        "max_latency_s": 2,
        "weights": {"cost": 2},
    }


def test_planned_entries_are_named_by_position_and_id() -> None:
    with pytest.raises(ConfigError) as caught:
        graph_from_entries("plan", [{"id": "a"}, {"id": "b", "skil": "x"}])
    assert caught.value.message == "subtask 2 (id 'b'): unknown key 'skil' (did you mean 'skill'?)"
