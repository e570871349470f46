"""The command line explains itself: every command's help, a mistyped command, shell completion.

Help pages come from the real console script (``COLUMNS=80``), walked from ``fleetmind --help``
down through every group, so a command added later is checked too. What the pages must show:
whole one-sentence summaries, metavars that say what to give (``TASK_ID``, ``0..1``) rather than
Python types (``<str>``, ``<float range>``), an example of each command, and lines that fit an
80-column terminal.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
ENV = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}

PYTHON_TYPES = re.compile(
    r"<(?:str|int|float|bool|path|file|dir|directory|uuid|datetime|text)>|<list\[|range>"
)
"""How typer shows a parameter that has no metavar."""

SUMMARY_MAX = 45
"""A summary this short shows whole in a help list and in a shell's completion menu."""


def fleetmind(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLEETMIND, *args], capture_output=True, text=True, timeout=60, env={**ENV, **env}
    )


@dataclass(frozen=True)
class Page:
    """One ``--help`` page."""

    path: tuple[str, ...]
    text: str

    @property
    def name(self) -> str:
        return " ".join(("fleetmind", *self.path))

    def section(self, title: str) -> list[str]:
        """The lines of a section (``Commands:``, ``Examples:`` ...), without its title."""
        lines = self.text.splitlines()
        for i, line in enumerate(lines):
            if line.strip() == title:
                body = []
                for rest in lines[i + 1 :]:
                    if not rest.strip():
                        break
                    body.append(rest)
                return body
        return []

    def commands(self) -> dict[str, str]:
        """The commands a group lists, with their summaries (continuation lines joined)."""
        listed: dict[str, str] = {}
        last = ""
        for line in self.section("Commands:"):
            name, _, summary = line.strip().partition(" ")
            if line.startswith("  ") and not line.startswith("   "):
                last = name
                listed[name] = summary.strip()
            else:
                listed[last] += " " + line.strip()
        return listed

    def summary(self) -> str:
        """The first paragraph after the usage line."""
        paragraphs = self.text.split("\n\n")
        return " ".join(paragraphs[1].split())

    def examples(self) -> list[str]:
        return [line.strip() for line in self.section("Example:") + self.section("Examples:")]


def read_page(path: tuple[str, ...]) -> Page:
    done = fleetmind(*path, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return Page(path, done.stdout)


@pytest.fixture(scope="module")
def pages() -> dict[tuple[str, ...], Page]:
    """Every help page of the command line, the groups' and the commands'."""
    found = {(): read_page(())}
    todo = [()]
    with ThreadPoolExecutor(max_workers=4) as pool:
        while todo:
            children = [(*path, name) for path in todo for name in found[path].commands() if name]
            for page in pool.map(read_page, children):
                found[page.path] = page
            todo = children
    return found


def listings(pages: dict[tuple[str, ...], Page]) -> Iterator[tuple[Page, str, str]]:
    for page in pages.values():
        for name, summary in page.commands().items():
            yield page, name, summary


COMMANDS = [
    *("run", "resume", "tasks", "show", "agents", "devices", "submit", "plan", "route"),
    *("agent serve", "orchestrator serve", "broker config", "broker serve", "mcp serve"),
    *("a2a serve", "a2a add", "a2a list", "a2a remove", "llm check"),
    *("router eval", "router train"),
    *("memory search", "memory stats", "memory export", "memory import"),
    *("memory consolidate", "memory forget"),
]


def test_the_walk_finds_every_command(pages: dict[tuple[str, ...], Page]) -> None:
    found = {" ".join(path) for path, page in pages.items() if not page.commands()}
    assert set(COMMANDS) <= found


def test_each_summary_is_one_whole_sentence_and_the_page_starts_with_it(
    pages: dict[tuple[str, ...], Page],
) -> None:
    for page, name, summary in listings(pages):
        where = f"{page.name} {name}"
        assert summary.endswith("."), where
        assert not summary.endswith("..."), where
        assert summary.count(". ") == 0, f"{where}: {summary!r} is more than one sentence"
        assert len(summary) <= SUMMARY_MAX, f"{where}: {summary!r} is cut in completion menus"
        assert pages[(*page.path, name)].summary() == summary, where


def test_every_command_has_an_example_of_itself(pages: dict[tuple[str, ...], Page]) -> None:
    for page in pages.values():
        if page.commands():
            continue
        examples = page.examples()
        assert examples, f"{page.name} has no example"
        for example in examples:
            assert shlex.split(example)[: len(page.path) + 1] == shlex.split(page.name), example


def test_help_shows_what_to_give_not_python_types(pages: dict[tuple[str, ...], Page]) -> None:
    for page in pages.values():
        assert not PYTHON_TYPES.findall(page.text), page.name
        usage = page.text.splitlines()[0]
        assert usage.startswith(f"Usage: {page.name} [OPTIONS]"), usage
        assert "{" not in usage and "<" not in usage, usage
    run = pages[("run",)].text
    for shown in ("TARGET", "-p, --param KEY=VALUE", "--cloud-budget 0..1", "--data-dir DIR"):
        assert shown in run
    assert "--max-cost COST" in pages[("route",)].text
    assert "Usage: fleetmind agent serve [OPTIONS] AGENTS..." in pages[("agent", "serve")].text


def test_help_fits_an_80_column_terminal(pages: dict[tuple[str, ...], Page]) -> None:
    for page in pages.values():
        for line in page.text.splitlines():
            assert len(line) <= 80, f"{page.name}: {line!r}"


SHARED = (
    "--data-dir",
    "--fleet",
    "--username",
    "--password-file",
    "--fleet-name",
    "--models",
    "--memory",
    "--step-router",
    "--cloud-budget",
    "--param",
    "--live",
)
"""Options that several commands take, each defined once."""


def test_a_shared_option_reads_the_same_in_every_command() -> None:
    from fleetmind.cli._app import app

    seen: dict[str, set[tuple[str, str]]] = {}
    users: dict[str, set[str]] = {}

    def walk(command: typer.core.TyperCommand | typer.core.TyperGroup, path: str) -> None:
        for param in command.params:
            for flag in param.opts:
                seen.setdefault(flag, set()).add(
                    (getattr(param, "help", "") or "", str(param.metavar))
                )
                users.setdefault(flag, set()).add(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "fleetmind")
    assert len(users["--data-dir"]) >= 20
    for flag in SHARED:
        assert len(seen[flag]) == 1, f"{flag} reads differently: {seen[flag]}"
    # --broker is required by the fleet's commands and optional for run and resume; both say
    # the same of the URL.
    (first,) = {help_text.split(". ")[0].rstrip(".") for help_text, _ in seen["--broker"]}
    assert first.startswith("The fleet's MQTT broker")
    assert users["--live"] == {"fleetmind run", "fleetmind resume"}


# A mistyped command -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["rnu"], "no command 'rnu' (did you mean 'run'?)"),
        (["memroy", "search", "x"], "no command 'memroy' (did you mean 'memory'?)"),
        (["broker", "srve"], "no command 'srve' in fleetmind broker (did you mean 'serve'?)"),
        (["xyzzy"], "no command 'xyzzy'; see: fleetmind --help"),
        (
            ["tasks", "--limt", "3"],
            "no option '--limt' for fleetmind tasks (did you mean '--limit'?)",
        ),
    ],
)
def test_a_mistyped_command_is_one_line_naming_the_nearest(args: list[str], line: str) -> None:
    done = fleetmind(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"fleetmind: error: {line}\n"


# Shell completion -------------------------------------------------------------------------------


def test_bash_completion_installs_and_completes_commands(tmp_path: Path) -> None:
    # Run from bash, as a user would: the shell is detected from the parent process (the
    # trailing `true` keeps bash from replacing itself with the command).
    env = {**ENV, "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", "-c", f"{shlex.quote(FLEETMIND)} --install-completion; true"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    script = tmp_path / ".bash_completions" / "fleetmind.sh"
    assert f"bash completion installed in {script}" in done.stdout, done.stderr
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        program = (
            f"source {shlex.quote(str(script))}\n"
            f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
            "_fleetmind_completion fleetmind\n"
            'printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        path = f"{Path(FLEETMIND).parent}{os.pathsep}{env['PATH']}"
        shell = subprocess.run(
            ["bash", "-c", program],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "PATH": path},
        )
        assert shell.returncode == 0, shell.stderr
        return shell.stdout.split()

    assert complete("fleetmind", "ru") == ["run"]
    assert complete("fleetmind", "memory", "s") == ["search", "stats"]
    assert complete("fleetmind", "run", "--fl") == ["--fleet", "--fleet-name"]


def test_show_completion_prints_the_script_for_the_shell_it_runs_in() -> None:
    done = subprocess.run(
        ["bash", "-c", f"{shlex.quote(FLEETMIND)} --show-completion; true"],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    assert "complete -o default -F _fleetmind_completion fleetmind" in done.stdout


def test_zsh_and_fish_get_their_scripts_and_summaries_with_the_completions() -> None:
    zsh = fleetmind(_FLEETMIND_COMPLETE="source_zsh")
    assert zsh.stdout.lstrip().startswith("#compdef fleetmind")
    menu = fleetmind(_FLEETMIND_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="fleetmind memory s")
    assert '"search":"Find the items most like a query."' in menu.stdout
    assert '"stats":"Count what is remembered."' in menu.stdout

    fish = fleetmind(_FLEETMIND_COMPLETE="source_fish")
    assert fish.stdout.startswith("complete --command fleetmind")
    menu = fleetmind(
        _FLEETMIND_COMPLETE="complete_fish",
        _TYPER_COMPLETE_ARGS="fleetmind memory s",
        _TYPER_COMPLETE_FISH_ACTION="get-args",
    )
    assert menu.stdout.splitlines() == [
        "search\tFind the items most like a query.",
        "stats\tCount what is remembered.",
    ]
