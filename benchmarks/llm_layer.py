"""The LLM layer: what an LLMAgent step costs beside bare HTTP and LangGraph, and how the planner
copes with the answers real models give.

What is measured
    (a) Per-step overhead of an LLM agent. The model is a ``ScriptedLLMServer`` (fleetmind's
    OpenAI-compatible test server) run as a separate process (this script, ``--serve-model``),
    so that it does not share the GIL with the client being measured. It answers from the
    request alone: while the conversation holds fewer than 9 tool results (messages with role
    ``tool``) it asks for one call of the ``lookup`` tool (``{"key": "k<n>"}``), then it answers
    ``done``. One run is therefore 10 steps: 9 model calls that each call the tool once, and a
    final answer. Usage figures are the server's defaults (counted from the text).

    Four sides, all against that one server, in this process and event loop:

      - bare httpx: one ``httpx.AsyncClient`` (keep-alive, made once) POSTs a chat request to
        ``{url}/chat/completions`` and decodes the JSON answer; one request is one sample. The
        body is what an agent sends at its middle step (step 5): a system message, a user
        message, four assistant tool calls with their tool results, and a ``tools`` list with
        one function. Its size is printed beside the size of the request the LLMAgent and the
        ReAct agent actually sent at their step 5 (recorded once, before timing, by an httpx
        transport that counts bytes; the timed clients use the plain network transport).
      - LLMAgent step (SQLite checkpoints): an ``LLMAgent`` (a profile with one skill,
        ``OpenAICompatibleClient(ModelEndpoint(name="cloud", ..., max_retries=0))``, ``tools=
        [lookup]``, a plain synchronous ``@fleetmind.tool`` function returning a string) in a
        ``Fleet`` with the SQLite store in a temporary directory, which turns on the step loop's
        checkpoints in SQLite beside it (what users get by default from the CLI). One subtask
        per task, routed by skill (``SkillRouter``: routing happens once per task, never per
        step, and this keeps the semantic router's embedding model out of the process).
      - LLMAgent step (in-memory): the same agent in a ``Fleet(store=None)``: the task log and
        the loop's checkpoints (LangGraph's ``InMemorySaver``) stay in memory.
      - LangGraph ReAct: LangGraph's prebuilt agent, ``create_react_agent(ChatOpenAI(base_url=
        url, api_key="unused", model="m", max_retries=0), [lookup])`` with a ``langchain_core``
        ``@tool`` that is also a plain synchronous function, no checkpointer.

    A step's time, for the LLMAgent: the time between consecutive step records. Every step is
    recorded as a ``SubtaskProgressEvent`` event carrying the step's record (a model call that asked
    for tools is recorded when its tool calls have run; the final answer when the model call
    returns); the engine stamps each event with its clock (``at``) when it handles the agent's
    report, before writing it to the store. Those stamps are used rather than the time the
    event reaches the benchmark's subscriber, which is woken through two queues and only when
    the agent's task yields (on this machine the two agree to within 0.05 ms at p50 and p99,
    but the stamps cannot carry the subscriber's own scheduling delay). The first step is
    measured from the ``SubtaskStartedEvent`` event's stamp, so it includes what the agent does once
    per run (binding tools, opening the checkpointer, compiling the loop). For the ReAct agent:
    ``astream(stream_mode="updates")`` is read directly, with ``time.perf_counter()`` at each
    update: a step ends with each ``tools`` update and with the final ``agent`` update (the
    same boundaries as the LLMAgent's records); the first step is measured from the call to
    ``astream``. Also reported: the time each LLMAgent step spent in its model call (the
    record's ``latency_s``: ``OpenAICompatibleClient.complete``), the first step apart from the
    later ones, and the wall time of a whole run (submit to result, or the whole ``astream``).

    Each side gets warm-up runs first; then the timed runs go in blocks that alternate the
    sides (A B C D, D C B A, ...), so that noise from the shared machine falls on all alike.
    Objects that exist before timing are moved out of the cyclic garbage collector's reach
    (``gc.freeze()``); what the runs allocate is collected as usual. Ratios use p50s:
    ``step_vs_bare_httpx`` = LLMAgent step (SQLite) / bare httpx request (goal: within 1.2x),
    ``step_vs_langgraph_react`` = LLMAgent step (SQLite) / ReAct step (goal: below 1).

    (b) Planner robustness. A fleet of six ``@agent`` functions (different skills, most with
    required inputs; none ever runs) with ``SkillRouter`` and ``Planner(model)`` (3 rounds).
    Requests are generated from a seeded RNG; each has a valid plan built from one of four
    templates, and a script of the model's answers that starts with a failure mode real
    models produce:

      - read as they are: ``valid`` (a clean answer), ``prose`` (sentences around the JSON),
        ``code_fence`` (the JSON in a Markdown fence);
      - to be repaired: ``missing_field`` (a subtask without a description), ``unknown_agent``,
        ``unknown_skill``, ``unknown_ref`` (an input ``${nope}``), ``missing_input`` (the chosen
        agent's required input left out), ``cycle``, ``truncated`` (cut mid-JSON, with
        ``finish_reason="length"``), ``too_many`` (more subtasks than the planner's limit of
        20), ``not_json`` (prose only), ``json_list`` (the subtasks as a bare JSON list).

    A repairable request gets 1 or 2 bad answers, then the valid one; about 10% of them never
    get a valid one within the planner's 3 rounds and must be refused with ``PlanningError``.
    The script is served by an in-process ``ScriptedLLMServer`` (a responder that picks the
    answer by the request's text and the round, counted from the conversation). Each request's
    outcome: ``valid``, ``refused`` (``PlanningError`` with a one-line message), or ``ERROR``
    (any other exception, a refusal whose message is not one line, or a plan whose graph fails
    the checks: ``fleet.check(graph)`` routes every subtask and checks required inputs, and
    ``TaskGraph.from_log(graph.log)`` must rebuild the same subtasks and dependencies). Nothing
    is ever run: the fleet's store is checked to hold no task at the end. Besides, each outcome
    is compared with what the script meant (valid in round k+1 after k bad answers, or
    refused), and the first round's feedback is checked for naming the actual fault.

    Reported: ``planner_valid_share`` = valid / requests meant to be repairable,
    ``planner_refused_share`` = refused / all, ``planner_clear_share`` = (valid or refused with
    a one-line error) / all (goal: 100%), ``planner_mean_rounds`` over valid plans, and a table
    per failure mode.

Baselines
    Bare httpx to the same server (the floor of one model call over HTTP from Python), and
    LangGraph's own prebuilt ReAct agent on LangChain's ``ChatOpenAI``. Both run against the
    same server process, interleaved with the LLMAgent runs.

How to run
    .venv/bin/python benchmarks/llm_layer.py                 # full run, about 2-3 min
    .venv/bin/python benchmarks/llm_layer.py --quick         # a smoke run, about 10 s
    .venv/bin/python benchmarks/llm_layer.py --json out.json
    .venv/bin/python benchmarks/llm_layer.py --profile       # cProfile the LLMAgent sides

    The model server process is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from _harness import _progress, benchmark_parser, write_json
from _llm_layer_planner import MODES, bench_planner
from _llm_layer_report import machine_info, render
from _llm_layer_steps import STEPS_PER_RUN, bench_steps, model_server, profile_steps, serve_model

T = TypeVar("T")
DEFAULT_RUNS = 800
QUICK_RUNS = 20


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Both parts; prints the tables and returns the JSON document."""
    machine = machine_info()
    runs = args.runs if args.runs is not None else (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    warmup = 1 if args.quick else 3
    start = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="fleetmind-bench-llm-") as tmp,
        model_server(STEPS_PER_RUN - 1) as url,
    ):
        _progress(f"model server at {url}; {runs} timed runs per side")
        steps = await bench_steps(url, Path(tmp), runs, warmup)
    _progress("planner robustness")
    planner = await bench_planner(args.plan_requests, args.seed)
    document: dict[str, Any] = {
        **steps,
        **planner,
        "quick": args.quick,
        "elapsed_s": round(time.monotonic() - start, 1),
        "machine": machine,
    }
    print(render(document))
    return document


async def until_terminated(work: Awaitable[T]) -> T:
    """Run ``work``; SIGTERM cancels it as Ctrl-C does, so every ``finally`` runs."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await work


async def profile(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="fleetmind-bench-llm-") as tmp,
        model_server(STEPS_PER_RUN - 1) as url,
    ):
        await profile_steps(url, Path(tmp), args.runs or 50)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, "few runs (a smoke run)")
    parser.add_argument(
        "--runs",
        type=int,
        help=f"timed runs per side in (a) (default {DEFAULT_RUNS}; quick {QUICK_RUNS})",
    )
    parser.add_argument(
        "--plan-requests", type=int, default=130, help="planning requests in (b) (default 130)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of (b)'s requests")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the LLMAgent side of (a) instead"
    )
    parser.add_argument("--serve-model", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tool-calls", type=int, default=STEPS_PER_RUN - 1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (args.runs is not None and args.runs < 1) or args.plan_requests < len(MODES):
        parser.error(f"--runs must be at least 1 and --plan-requests at least {len(MODES)}")
    if args.serve_model:
        serve_model(args.tool_calls)
        return
    try:
        if args.profile:
            asyncio.run(until_terminated(profile(args)))
            return
        document = asyncio.run(until_terminated(benchmark(args)))
    except asyncio.CancelledError:
        raise SystemExit("stopped (SIGTERM or Ctrl-C); the model server is stopped") from None
    write_json(args.json, document)


if __name__ == "__main__":
    main()
