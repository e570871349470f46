"""The report of benchmarks/llm_layer.py: its tables as text, and where the figures were taken."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any

from _harness import _table, machine_base
from _llm_layer_planner import MAX_ROUNDS
from _llm_layer_steps import GOAL_VS_BARE, GOAL_VS_REACT, MIDDLE_STEP

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _goal(ok: bool) -> str:
    return "goal met" if ok else "goal NOT met"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(d: dict[str, Any]) -> str:
    """The figures as plain, aligned text tables."""
    machine = d["machine"]
    sides = d["step_sides"]
    sizes = d["step_request_bytes"]
    bare_p50 = sides["bare_httpx"]["ms_p50"]
    lines = [
        "The LLM layer: LLMAgent steps beside bare httpx and LangGraph's ReAct agent; planner "
        "repair",
        f"python {machine['python']}, langgraph {machine['langgraph']}, langchain-openai "
        f"{machine['langchain_openai']}, httpx {machine['httpx']}, {machine['cpu_count']} "
        f"CPU(s), load average at start {machine['load_average']}",
        "",
        f"(a) ms per step, lower is better: {d['steps_per_run']} steps per run (9 tool calls, "
        "then the answer); scripted model server in its own process",
    ]
    rows: list[tuple[str, ...]] = [
        ("side", "p50", "p99", "mean", "step 1 p50", "steps 2+ p50", "run p50", "samples",
         "vs bare p50", "vs ReAct p50")
    ]  # fmt: skip
    for key in ("bare_httpx", "step", "step_in_memory", "react"):
        s = sides[key]
        rows.append(
            (
                s["label"],
                f"{s['ms_p50']:.2f}",
                f"{s['ms_p99']:.2f}",
                f"{s['ms_mean']:.2f}",
                f"{s['first_step_ms_p50']:.2f}",
                f"{s['later_steps_ms_p50']:.2f}",
                f"{s['run_ms_p50']:.1f}",
                str(s["samples"]),
                f"{s['ms_p50'] / bare_p50:.2f}x",
                f"{s['ms_p50'] / sides['react']['ms_p50']:.2f}x",
            )
        )
    lines += _table(rows, indent="  ")
    lines += [
        "",
        f"  step_vs_bare_httpx = {d['step_vs_bare_httpx']:.2f} (goal <= {GOAL_VS_BARE}): "
        f"{_goal(d['goal_vs_bare_met'])}",
        f"  step_vs_langgraph_react = {d['step_vs_langgraph_react']:.2f} (goal < "
        f"{GOAL_VS_REACT:g}): {_goal(d['goal_vs_react_met'])}",
        "  the model call inside an LLMAgent step (OpenAICompatibleClient.complete): "
        f"{sides['step']['model_call_ms_p50']:.2f} ms p50 (SQLite side), "
        f"{sides['step_in_memory']['model_call_ms_p50']:.2f} ms (in-memory side)",
        f"  request body at step {MIDDLE_STEP}: bare httpx {sizes['bare_httpx']} B, LLMAgent "
        f"{sizes['llm_agent']} B, ReAct {sizes['langgraph_react']} B",
        "  LLMAgent: engine event stamps between step records (step 1 from SubtaskStartedEvent); "
        "ReAct: perf_counter at astream updates; bare: one request; run = submit to result",
        "",
        f"(b) Planner robustness: {d['planner_requests']} requests (seed {d['planner_seed']}), "
        f"{d['planner_meant_refused']} scripted never to become valid in {MAX_ROUNDS} rounds; "
        f"{d['planner_seconds']:.1f} s",
        f"  valid after repair: {_share(d['planner_valid_share'])} of the "
        f"{d['planner_meant_repairable']} meant to be repairable; refused: "
        f"{_share(d['planner_refused_share'])} of all; errors: {d['planner_errors']}",
        f"  valid, or refused with a one-line error: {_share(d['planner_clear_share'])} "
        f"(goal 100%): {_goal(d['planner_clear_share'] >= 1.0)}",
        f"  mean rounds over valid plans: {_num(d['planner_mean_rounds'])}; outcome and round "
        f"as scripted: {_share(d['planner_as_scripted_share'])}",
        "",
    ]
    rows = [
        ("failure mode", "requests", "never valid", "valid", "refused", "errors", "mean rounds",
         "feedback names it", "as scripted")
    ]  # fmt: skip
    for m in d["planner_per_mode"]:
        rows.append(
            (
                m["mode"],
                str(m["requests"]),
                str(m["meant_refused"]),
                str(m["valid"]),
                str(m["refused"]),
                str(m["errors"]),
                _num(m["mean_rounds"]),
                _share(m["feedback_on_target"]),
                f"{m['as_scripted']}/{m['requests']}",
            )
        )
    lines += _table(rows, indent="  ")
    lines.append(
        "  feedback names it: the first round's problems name the fault the answer had "
        "(read-as-is modes have none)"
    )
    for title, items, show in (
        ("not as scripted", d["planner_not_as_scripted"], lambda u: f"expected {u['expected']}, "
         f"got {u['got']}: {u['detail']}"),
        ("first-round feedback that misses the fault", d["planner_feedback_misses"],
         lambda u: "; ".join(u["first_problems"])),
    ):  # fmt: skip
        if items:
            lines.append(f"  {title}: {len(items)} request(s); the first 3:")
            lines += [f"    #{u['request']} {u['mode']}: {show(u)[:160]}" for u in items[:3]]
    if d["planner_refusals"]:
        lines.append(f"  a refusal reads: {d['planner_refusals'][0][:160]}")
    lines.append(f"\nwhole run: {d['elapsed_s']:.0f} s")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """Where the figures were taken."""
    return {
        **machine_base(),
        "fleetmind": package_version("fleetmind"),
        "httpx": package_version("httpx"),
        "langgraph": package_version("langgraph"),
        "langchain_openai": package_version("langchain-openai"),
        "openai": package_version("openai"),
    }
