"""What the benchmark scripts share: the processes and directories they make (and always remove),
ports, Mosquitto, helper processes, timing, tables, progress lines, and where figures were taken.

The scripts import it as ``_harness``: ``python benchmarks/<name>.py`` puts this folder first on
``sys.path``. It imports the standard library only, so that each script still decides when numpy
and fleetmind load (memory.py and routing_scale.py set ``OPENBLAS_NUM_THREADS`` before numpy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

FLEETMIND_CLI = str(Path(sys.executable).parent / "fleetmind")
"""The ``fleetmind`` command of the interpreter that runs the benchmark."""

# ---------------------------------------------------------------------------------------------
# Processes and directories: every one a benchmark registers is removed at exit, whatever happened
# ---------------------------------------------------------------------------------------------

_CHILDREN: list[subprocess.Popen[bytes]] = []
_DIRS: list[Path] = []


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _temp_dir(prefix: str) -> Path:
    """A new temporary directory, removed by :func:`_cleanup`."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _DIRS.append(path)
    return path


def _track(process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Register a process for :func:`_cleanup`; returns it."""
    _CHILDREN.append(process)
    return process


def _spawn(
    command: list[str], log: Path, stdout: Path | None = None, **options: Any
) -> subprocess.Popen[bytes]:
    """Start a process, its stderr (and its stdout, unless ``stdout`` names another file)
    appended to ``log``; registered for :func:`_cleanup`."""
    with log.open("ab") as err, (stdout or log).open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=err, **options)
    return _track(process)


def _stop(process: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` (SIGTERM: as a service manager stops a process), wait up to 20 s, then
    SIGKILL; waits for the process either way."""
    if process is None:
        return
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _cleanup() -> None:
    """Kill every registered process still running and remove every registered directory."""
    for process in _CHILDREN:
        with contextlib.suppress(Exception):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)  # a frozen device must be able to die
                process.kill()
            process.wait(timeout=10)
    for path in _DIRS:
        shutil.rmtree(path, ignore_errors=True)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_cleaned_up(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` with SIGTERM handled as Ctrl-C; whatever happens, every registered
    process and directory is removed (an interrupted run exits with status 130)."""
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        return asyncio.run(main)
    except KeyboardInterrupt:
        print(
            "interrupted: every process and directory of the benchmark is removed", file=sys.stderr
        )
        raise SystemExit(130) from None
    finally:
        _cleanup()


def require_fleetmind_cli() -> None:
    if not shutil.which(FLEETMIND_CLI):
        raise SystemExit(f"{FLEETMIND_CLI} not found: install fleetmind in this environment")


def _role_command(script: str, role: str, **role_args: Any) -> list[str]:
    """``script`` re-run as one of its helper processes (its ``--role``, with JSON arguments)."""
    return [sys.executable, script, "--role", role, "--role-args", json.dumps(role_args)]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.02) -> bool:
    """Wait (without blocking the loop) until ``predicate()`` holds; whether it did."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step_s)
    return True


# ---------------------------------------------------------------------------------------------
# Ports and Mosquitto
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on loopback that nobody holds right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, process: subprocess.Popen[Any] | None = None, deadline_s: float = 30.0
) -> None:
    """Return once something listens on ``port``; fail if ``process`` exits or time runs out."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            exited = process is not None and process.poll() is not None
            if exited or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


def require_mosquitto() -> str:
    """Mosquitto's binary; the run ends with a message if it is not installed."""
    found = mosquitto_binary()
    if found is None:
        raise SystemExit("Mosquitto is not installed: apt-get install mosquitto")
    return found


def mosquitto_version() -> str:
    binary = mosquitto_binary()
    if binary is None:
        return "not installed"
    banner = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False).stdout
    return banner.split("version", 1)[1].split()[0] if "version" in banner else "?"


class MosquittoProcess:
    """Mosquitto on ``port`` from the config file ``conf``, its output to ``output``; it can be
    stopped and started again."""

    def __init__(self, binary: str, port: int, conf: Path, output: Path) -> None:
        self.binary = binary
        self.port = port
        self.conf = conf
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = _spawn([self.binary, "-c", str(self.conf)], self.output)
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        """As a service manager stops it (SIGTERM: it saves its state and says so)."""
        _stop(self.process)
        self.process = None


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def percentile(samples: list[float], q: int) -> float:
    """The q-th percentile (inclusive method)."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


@contextlib.contextmanager
def frozen_gc() -> Iterator[None]:
    """Collect, then move every object that exists out of the cyclic collector's reach for the
    block: what the block allocates is collected as usual."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def profile_calls(
    call: Callable[[], Awaitable[Any]], runs: int
) -> tuple[cProfile.Profile, float]:
    """``runs`` awaited calls under cProfile: the profile and the wall time they took."""
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for _ in range(runs):
        await call()
    profiler.disable()
    return profiler, time.perf_counter() - start


def profile_report(profiler: cProfile.Profile, top: int, fleetmind_top: int = 0) -> str:
    """The ``top`` functions by own time, then (if ``fleetmind_top``) fleetmind's functions by
    cumulative time."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    if fleetmind_top:
        stats.sort_stats("cumulative").print_stats(r"fleetmind[/\\]", fleetmind_top)
    return out.getvalue()


def _rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


# ---------------------------------------------------------------------------------------------
# Command line and output
# ---------------------------------------------------------------------------------------------


def benchmark_parser(
    doc: str | None, quick_help: str, json_help: str = "also write figures as JSON"
) -> argparse.ArgumentParser:
    """A script's command line: described by its docstring's first line, with ``--json PATH``
    and ``--quick``; the script adds its own options after them."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help=json_help)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def comma_list(text: str) -> list[str]:
    """An option's comma-separated words (``--only a,b``)."""
    return [x.strip() for x in text.split(",") if x.strip()]


def sizes_arg(minimum: int) -> Callable[[str], list[int]]:
    """An argparse type: comma-separated whole numbers (``1_000`` too), each >= ``minimum``."""

    def parse(text: str) -> list[int]:
        try:
            sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
        if not sizes or min(sizes) < minimum:
            raise argparse.ArgumentTypeError(f"sizes must be at least {minimum}")
        return sizes

    return parse


def write_json(path: Path | None, document: dict[str, Any]) -> None:
    """Write the figures to ``path`` as JSON, and say so (nothing without a path: no ``--json``)."""
    if path is None:
        return
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {path}")


def _table(rows: list[tuple[str, ...]], left: int = 1, indent: str = "") -> list[str]:
    """Aligned text: the first ``left`` columns flush left, the others flush right, a rule
    under the header row, every line after ``indent``."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(indent + "  ".join(cells).rstrip())
        if n == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return lines


def _version(package: str) -> str:
    """An installed distribution's version, or ``unknown``."""
    try:
        return package_version(package)
    except PackageNotFoundError:
        return "unknown"


def hnswlib_version(missing: str = "unknown") -> str:
    """hnswlib's version, whichever distribution provides ``import hnswlib``."""
    for distribution in ("chroma-hnswlib", "hnswlib"):
        found = _version(distribution)
        if found != "unknown":
            return f"{distribution} {found}"
    return missing


def machine_base(*, implementation: bool = False) -> dict[str, Any]:
    """Where the figures were taken: the interpreter, the platform, CPUs and load at the start
    (each script adds the versions that matter to it)."""
    info: dict[str, Any] = {"python": platform.python_version()}
    if implementation:
        info["implementation"] = platform.python_implementation()
    info["platform"] = platform.platform()
    info["cpu_count"] = os.cpu_count()
    info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info
