"""Start-up time of the ``fleetmind`` command beside the interpreter, bare Typer and the SDK.

What is measured
    The wall time of whole processes, from ``subprocess.run`` to their exit, for the real console
    script (``.venv/bin/fleetmind``): ``--help``, ``--version``, three subcommands' ``--help`` and
    a mistyped command (``fleetmind rnu``, exit status 2). The baselines are what any Python
    command pays: the interpreter alone (``python -c pass``), a one-command Typer app printing its
    help (written to a temporary file by this script), and importing the whole SDK
    (``import fleetmind; fleetmind.Fleet``), which is what the help once loaded. The cases run
    interleaved, one of each per round, so that a noisy neighbour weighs on all of them alike.
    Then the number of modules each of ``fleetmind --help`` and the SDK import loads, counted from
    ``-X importtime`` (the console script run as ``python -X importtime .venv/bin/fleetmind``).

How to run
    .venv/bin/python benchmarks/cli_startup.py                  # 15 rounds, about 1 min
    .venv/bin/python benchmarks/cli_startup.py --repeat 40 --json cli_startup.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import (
    FLEETMIND_CLI,
    _cleanup,
    _progress,
    _table,
    _temp_dir,
    _version,
    machine_base,
    percentile,
    require_fleetmind_cli,
    write_json,
)

BARE_TYPER_APP = '''\
import typer

app = typer.Typer()


@app.command()
def hello(name: str) -> None:
    """Say hello."""
    print(f"hello {name}")


app()
'''

SDK_IMPORT = "import fleetmind; fleetmind.Fleet"


def cases(typer_app: Path) -> list[tuple[str, list[str], int]]:
    """(name, command, expected exit status) of every measured process, fleetmind's first."""
    py = sys.executable
    return [
        ("fleetmind --help", [FLEETMIND_CLI, "--help"], 0),
        ("fleetmind --version", [FLEETMIND_CLI, "--version"], 0),
        ("fleetmind run --help", [FLEETMIND_CLI, "run", "--help"], 0),
        ("fleetmind devices --help", [FLEETMIND_CLI, "devices", "--help"], 0),
        ("fleetmind mcp serve --help", [FLEETMIND_CLI, "mcp", "serve", "--help"], 0),
        ("fleetmind rnu (a mistake)", [FLEETMIND_CLI, "rnu"], 2),
        ("baseline: python -c pass", [py, "-c", "pass"], 0),
        ("baseline: bare Typer app --help", [py, str(typer_app), "--help"], 0),
        (f'baseline: python -c "{SDK_IMPORT}"', [py, "-c", SDK_IMPORT], 0),
    ]


def run_once(command: list[str], expected: int, env: dict[str, str] | None = None) -> float:
    """Seconds one process took from start to exit; fails if its exit status is not ``expected``."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env, check=False, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != expected:
        tail = done.stderr.decode(errors="replace")[-500:]
        raise SystemExit(f"{command} exited {done.returncode}, not {expected}:\n{tail}")
    return elapsed


def modules_imported(arguments: list[str], expected: int) -> int:
    """How many modules ``python -X importtime <arguments>`` imports, from the lines it writes."""
    command = [sys.executable, "-X", "importtime", *arguments]
    done = subprocess.run(command, capture_output=True, check=False, timeout=120)
    if done.returncode != expected:
        raise SystemExit(f"{command} exited {done.returncode} under -X importtime")
    lines = done.stderr.decode(errors="replace").splitlines()
    return sum(1 for line in lines if line.startswith("import time:") and "[us]" not in line)


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median_ms": statistics.median(samples) * 1e3,
        "p90_ms": percentile(samples, 90) * 1e3,
        "samples_s": samples,
    }


def measure(repeat: int) -> dict[str, Any]:
    """Every case ``repeat`` times, interleaved (one warm-up round first, not counted)."""
    typer_app = _temp_dir("fleetmind-cli-startup-") / "bare_typer_app.py"
    typer_app.write_text(BARE_TYPER_APP)
    measured = cases(typer_app)
    samples: dict[str, list[float]] = {name: [] for name, _, _ in measured}
    for round_ in range(repeat + 1):
        if round_ % 5 == 0:
            _progress(f"round {round_} of {repeat}")
        for name, command, expected in measured:
            elapsed = run_once(command, expected)
            if round_:
                samples[name].append(elapsed)
    _progress("counting imported modules")
    return {
        "cases": {name: _summary(runs) for name, runs in samples.items()},
        "modules_fleetmind_help": modules_imported([FLEETMIND_CLI, "--help"], 0),
        "modules_sdk_import": modules_imported(["-c", SDK_IMPORT], 0),
        "modules_python_pass": modules_imported(["-c", "pass"], 0),
    }


def render(figures: dict[str, Any], repeat: int, machine: dict[str, Any]) -> str:
    """The results as a plain, aligned text table, each row beside the named baselines."""
    measured = figures["cases"]
    interpreter = measured["baseline: python -c pass"]["median_ms"]
    sdk = measured[f'baseline: python -c "{SDK_IMPORT}"']["median_ms"]
    rows: list[tuple[str, ...]] = [
        ("command", "median ms", "p90 ms", "over python -c pass", "share of SDK import")
    ]
    for name, figure in measured.items():
        median = figure["median_ms"]
        rows.append(
            (
                name,
                f"{median:.0f}",
                f"{figure['p90_ms']:.0f}",
                f"+{median - interpreter:.0f} ms",
                f"{median / sdk:.0%}",
            )
        )
    lines = [
        f"Command-line start-up: wall time per process in ms over {repeat} interleaved rounds "
        "(lower is better)",
        f"python {machine['python']}, typer {machine['typer']}, {machine['cpu_count']} CPU(s), "
        f"load average at start {machine['load_average']}",
        "",
        *_table(rows),
        "",
        f"modules imported: fleetmind --help {figures['modules_fleetmind_help']}, "
        f"{SDK_IMPORT} {figures['modules_sdk_import']}, "
        f"python -c pass {figures['modules_python_pass']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--repeat", type=int, default=15, metavar="N", help="rounds (default 15)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    require_fleetmind_cli()
    machine = machine_base()
    machine["typer"] = _version("typer")
    machine["fleetmind"] = _version("fleetmind")
    try:
        figures = measure(args.repeat)
    finally:
        _cleanup()
    print(render(figures, args.repeat, machine))
    write_json(args.json, {"machine": machine, "repeat": args.repeat, **figures})


if __name__ == "__main__":
    main()
