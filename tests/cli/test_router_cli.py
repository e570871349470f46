"""`fleetmind router eval|train`, and `fleetmind run --step-router/--cloud-budget`.

The router commands run in-process (``fleetmind.cli.main`` with argv) on small synthetic
outcome files; one end-to-end `fleetmind run` drives an LLM agent with a device and a cloud
model (two scripted servers on loopback) as a real console script in a subprocess.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from fleetmind.agents import CascadeRouter, LearnedStepRouter, StepRouterModel, load_outcomes
from fleetmind.cli import main
from fleetmind.orchestrator import draft_rows
from fleetmind.testing import Reply, ScriptedLLMServer

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
TIMEOUT_S = 120

HARD = "hard {group} problem {i}: prove the bound on the error term of the series"
EASY = "easy {group} problem {i}: add the two small numbers and say the sum"
RIGHT = "9 * 2 = 18, so there are 18.\n#### 18"
WRONG = "9 * 2 = 20, so there are 20.\n#### 20"


def outcome_rows(group: str, n: int = 24) -> list[list[Any]]:
    """Prompts where the device model ("small") fails the hard ones, with its responses (wrong
    arithmetic when it failed); the cloud model ("big") misses a few."""
    rows = []
    for i in range(n):
        hard = i % 3 == 0
        prompt = (HARD if hard else EASY).format(group=group, i=i)
        rows.append([prompt, not hard, i % 8 != 1, WRONG if hard else RIGHT])
    return rows


def write_csv(path: Path, rows: list[list[Any]], responses: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["prompt", "small", "big", "small_response"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header if responses else header[:3])
        writer.writerows(rows if responses else [r[:3] for r in rows])
    return path


@pytest.fixture
def outcomes(tmp_path: Path) -> Path:
    """A folder of two groups (files) of outcomes with the device model's responses."""
    folder = tmp_path / "outcomes"
    for group in ("algebra", "history"):
        write_csv(folder / f"mmlu_{group}.csv", outcome_rows(group))
    return folder


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run `fleetmind ARGS` in this process: (exit code, stdout, stderr). Strings are split
    into words at spaces; paths are kept whole."""
    argv = [w for a in args for w in ([str(a)] if isinstance(a, Path) else a.split())]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str | Path, says: str) -> str:
    """Run a command that must fail in one line with exit code 2; its stderr."""
    code, _, err = cli(capsys, *args)
    assert code == 2, err
    assert err.startswith("fleetmind: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert says in err, err
    return err


def write_rows(path: Path, n: int = 20) -> Path:
    """Labeled rows (JSONL): the hard prompts need the cloud."""
    path.write_text(
        "".join(
            json.dumps({"prompt": (HARD if i % 2 else EASY).format(group="g", i=i),
                        "needs_cloud": i % 2 == 1}) + "\n"
            for i in range(n)
        )
        + "\n"
    )  # fmt: skip
    return path


# router eval ----------------------------------------------------------------------------------


def test_eval_scores_policies_against_random_and_the_oracle(
    capsys: pytest.CaptureFixture[str], outcomes: Path, tmp_path: Path
) -> None:
    plot = tmp_path / "figures" / "curves.png"
    code, out, err = cli(
        capsys,
        "router eval --data",
        outcomes,
        "--policy cascade --policy hashed --policy random --policy oracle --json --plot",
        plot,
        "--data-dir",
        tmp_path / "data",
    )
    assert code == 0, err
    report = json.loads(out)
    results = {r["policy"]: r for r in report["results"]}
    assert list(results) == ["cascade", "hashed", "random", "oracle"]
    assert {r["data"] for r in report["results"]} == {"outcomes"}
    assert results["random"]["apgr"] == pytest.approx(0.5, abs=1e-9)
    assert results["random"]["prompts"] == results["oracle"]["prompts"] == 48
    # Learned on one group (file), scored on the other.
    assert results["hashed"]["prompts"] == results["cascade"]["prompts"] == 24
    assert results["random"]["device_accuracy"] == pytest.approx(32 / 48)
    assert results["random"]["cloud_accuracy"] == pytest.approx(42 / 48)
    assert results["oracle"]["apgr"] > 1.0  # the device is right on a few the cloud is not
    assert results["hashed"]["apgr"] > 0.8 and results["cascade"]["apgr"] > 0.8
    assert 0 < results["oracle"]["cpt80"] < results["random"]["cpt80"]
    # The curves as an image.
    assert report["plot"] == str(plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_without_responses_leaves_the_cascade_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = write_csv(tmp_path / "plain.csv", outcome_rows("algebra"), responses=False)
    policies = "--policy cascade --policy structural --policy random --json"
    code, out, err = cli(capsys, "router eval --data", data, policies)
    assert code == 0, err
    assert [r["policy"] for r in json.loads(out)["results"]] == ["structural", "random"]


def test_train_a_hashed_router_and_score_its_file(
    capsys: pytest.CaptureFixture[str], outcomes: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "r.json"
    code, out, err = cli(
        capsys,
        "router train --features hashed --cloud-share 0.3 --data",
        outcomes,
        "--out",
        out_file,
    )
    assert code == 0, err
    assert "trained a step router on 48 rows" in out
    model = StepRouterModel.load(out_file)
    assert (model.kind, model.text, model.cloud_share) == ("step", "hashed", 0.3)
    assert model.trained_on["rows"] == 48 and model.trained_on["source"] == str(outcomes)
    LearnedStepRouter(out_file)  # loads with no embedder: hashed text features
    code, out, err = cli(
        capsys, "router eval --json --router", out_file, "--data", outcomes, "--data-dir", tmp_path
    )
    assert code == 0, err
    results = {r["policy"]: r for r in json.loads(out)["results"]}
    assert list(results) == ["router", "random", "oracle"]
    assert results["router"]["prompts"] == 48 and results["router"]["apgr"] > 0.8


def test_train_a_cascade_draft_model(
    capsys: pytest.CaptureFixture[str], outcomes: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "c.json"
    code, out, err = cli(capsys, "router train --cascade --data", outcomes, "--out", out_file)
    assert code == 0, err
    assert "trained a cascade (draft) router on 48 rows (16 needed the cloud)" in out
    model = StepRouterModel.load(out_file)
    assert model.kind == "draft" and model.text == "none"
    assert CascadeRouter(out_file).threshold == model.threshold
    # Every wrong draft scores above every right one.
    rows = draft_rows(load_outcomes(outcomes))
    scores = model.scores(rows.numeric)
    assert rows.labels.sum() == 16
    assert scores[rows.labels].min() > scores[~rows.labels].max()


def test_train_from_labeled_rows(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = write_rows(tmp_path / "rows.jsonl")
    out_file = tmp_path / "rows-router.json"
    code, out, err = cli(capsys, "router train --features hashed --data", rows, "--out", out_file)
    assert code == 0, err
    assert "on 20 rows (10 needed the cloud)" in out
    model = StepRouterModel.load(out_file)
    assert model.trained_on["rows"] == 20 and model.trained_on["needed_cloud"] == 10


async def test_train_with_the_light_embedding_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The one test here that loads an embedding model (the light one)."""
    from fleetmind.agents import StepRouterFileError, prompt_state
    from fleetmind.orchestrator import load_step_router

    rows = write_rows(tmp_path / "rows.jsonl")
    out_file = tmp_path / "embedded.json"
    code, _, err = cli(
        capsys,
        "router train --embedding-model minilm --cloud-share 0.5 --data",
        rows,
        "--out",
        out_file,
    )
    assert code == 0, err
    model = StepRouterModel.load(out_file)
    assert model.text == "embedding:all-MiniLM-L6-v2" and model.text_weights.size == 384
    with pytest.raises(StepRouterFileError, match="embedded by all-MiniLM-L6-v2"):
        LearnedStepRouter(out_file)
    router = load_step_router(out_file)
    hard = prompt_state(HARD.format(group="g", i=99))
    easy = prompt_state(EASY.format(group="g", i=98))
    assert (await router.choose(hard)).tier == "cloud"
    assert (await router.choose(easy)).tier == "device"


# Mistakes: one line, exit code 2 ---------------------------------------------------------------


def test_router_mistakes_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], outcomes: Path, tmp_path: Path
) -> None:
    data, out_file, missing = outcomes, tmp_path / "x.json", tmp_path / "nowhere"
    one_line_error(
        capsys,
        "router eval --policy random --data",
        missing,
        says=f"--data {missing}: no such file or folder",
    )
    one_line_error(
        capsys,
        "router eval --policy psychic --data",
        data,
        says="--policy 'psychic': choose from learned, hashed, structural, cascade, random, "
        "oracle or all",
    )
    one_line_error(
        capsys,
        "router train --cloud-share 1.5 --data",
        data,
        "--out",
        out_file,
        says="--cloud-share is between 0 and 1, not 1.5",
    )
    one_line_error(
        capsys,
        "router train --from-store --data",
        data,
        "--out",
        out_file,
        says="give one source: --from-store or --data PATH",
    )
    one_line_error(capsys, "router train --out", out_file, says="give one source")
    one_line_error(
        capsys,
        "router train --features bag --data",
        data,
        "--out",
        out_file,
        says="--features 'bag': choose embedding, hashed or none",
    )
    one_line_error(
        capsys,
        "router eval --router",
        out_file,
        "--data",
        data,
        says=f"--router {out_file}: no such file",
    )
    one_line_error(
        capsys,
        "router eval --policy hashed --router",
        out_file,
        "--data",
        data,
        says="--router scores one router file; leave out --policy",
    )
    assert not out_file.exists()


def test_training_from_an_empty_store_says_how_many_steps_it_has(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = one_line_error(
        capsys,
        "router train --from-store --out",
        tmp_path / "x.json",
        "--data-dir",
        tmp_path / "data",
        says="the store holds 0 labeled step(s) (0 needing the cloud)",
    )
    assert "at least 10" in err and "shadow_rate" in err


def test_a_malformed_jsonl_line_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "a", "needs_cloud": True}) + "\n\n" + '{"prompt": "b"}\n')
    one_line_error(
        capsys,
        "router train --features hashed --data",
        rows,
        "--out",
        tmp_path / "x.json",
        says=f"{rows}:3: expected",
    )


def test_every_row_with_the_same_label(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = tmp_path / "same.jsonl"
    rows.write_text(
        "".join(json.dumps({"prompt": f"p {i}", "needs_cloud": False}) + "\n" for i in range(12))
    )
    one_line_error(
        capsys,
        "router train --features hashed --data",
        rows,
        "--out",
        tmp_path / "x.json",
        says="every row has the same label",
    )


# fleetmind run --step-router / --cloud-budget ----------------------------------------------------

FLEET = """
from fleetmind import AgentProfile, Fleet, LLMAgent, tool


@tool
def lookup(key: str) -> str:
    \"\"\"Look a key up.\"\"\"
    return "value-of-" + key


solver = LLMAgent(
    AgentProfile(id="solver", skills=[{"name": "solve"}]),
    model=["device", "cloud"],
    tools=[lookup],
)
fleet = Fleet([solver])
"""

TASK = """
name: steps
fleet: fleet.py
subtasks:
  - {id: solve, description: "Look up a and say what it is", agent: solver}
"""


def task_folder(tmp_path: Path) -> Path:
    (tmp_path / "fleet.py").write_text(FLEET)
    (tmp_path / "task.yaml").write_text(TASK)
    return tmp_path / "task.yaml"


def test_run_refuses_a_bad_step_router_or_budget(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETMIND_HOME", str(tmp_path / "data"))  # restored after the test
    monkeypatch.delenv("FLEETMIND_MODELS", raising=False)
    task = task_folder(tmp_path)
    one_line_error(
        capsys,
        "run --no-live --step-router nosuchfile",
        task,
        says="--step-router 'nosuchfile': no such file (or give device, cloud or cascade)",
    )
    one_line_error(
        capsys,
        "run --no-live --cloud-budget 2",
        task,
        says="--cloud-budget is a share of steps between 0 and 1, not 2",
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    one_line_error(
        capsys,
        "run --no-live",
        task,
        "--step-router",
        broken,
        says="is not a fleetmind step router file",
    )


def tool_then_answer(answer: str) -> Callable[[dict[str, Any]], Reply]:
    """Call lookup first; answer once the conversation holds its result."""

    def respond(request: dict[str, Any]) -> Reply:
        if any(m["role"] == "tool" for m in request["messages"]):
            return Reply.text(answer)
        return Reply.tool("lookup", {"key": "a"})

    return respond


def test_run_with_a_step_router_keeps_steps_on_the_device(tmp_path: Path) -> None:
    task = task_folder(tmp_path)
    with ExitStack() as stack:
        device = stack.enter_context(ScriptedLLMServer(responder=tool_then_answer("on device")))
        cloud = stack.enter_context(ScriptedLLMServer(responder=tool_then_answer("on cloud")))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETMIND_")}
        env.update(
            HOME=str(tmp_path),
            FLEETMIND_HOME=str(tmp_path / "data"),
            FLEETMIND_DEVICE_BASE_URL=device.url,
            FLEETMIND_DEVICE_MODEL="small",
            FLEETMIND_CLOUD_BASE_URL=cloud.url,
            FLEETMIND_CLOUD_MODEL="big",
        )

        def fleetmind(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [FLEETMIND, *args],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
                timeout=TIMEOUT_S,
            )

        for flags in (["--step-router", "device"], ["--cloud-budget", "0"]):
            proc = fleetmind("run", str(task), "--no-live", "--json", *flags)
            assert proc.returncode == 0, proc.stderr
            assert json.loads(proc.stdout)["outputs"]["solve"] == "on device"
            assert not cloud.requests, flags
        assert len(device.requests) == 4  # two steps each: the tool call, then the answer
        assert {r["model"] for r in device.requests} == {"small"}
        # Without the flags the agent's own router (the largest tier) decides.
        proc = fleetmind("run", str(task), "--no-live", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["outputs"]["solve"] == "on cloud"
        assert len(cloud.requests) == 2 and len(device.requests) == 4
