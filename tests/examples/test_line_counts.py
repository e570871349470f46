"""fleetmind.tools.count_lines gives cloc's figures; find_todos finds notes, not mentions.

Both are the repository-audit example's tools (examples/repo_audit.py), so its report agrees
with cloc.

CLOC_FIGURES are cloc's own output for the checked-in tree loc_sample/, taken once with cloc 1.96
(Debian package cloc 1.96-1) by

    cd tests/examples/loc_sample && cloc --json .

so these tests need no cloc; OTHER_LANGUAGES holds more files, each with cloc's figures (from
``cloc --by-file``). Where cloc is installed, two more tests check that the figures are still
what it says (after loc_sample/ or OTHER_LANGUAGES is edited, rerun cloc and update them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fleetmind.tools import count_lines, find_todos

REPO = Path(__file__).parents[2]
SAMPLE = Path(__file__).parent / "loc_sample"

# language: (files, blank, comment, code), from cloc 1.96 as the module docstring says. cloc leaves
# out app/__init__.py (empty), app/core.py (a copy of vendor/core.py), assets/ (binary),
# .config/ (a directory it always skips), LICENSE and setup.cfg (types it does not know),
# scripts/run-node (a "#!" interpreter it does not know) and scripts/deploy.sh.bak (a backup).
CLOC_FIGURES = {
    "Python": (2, 16, 11, 17),
    "Bourne Again Shell": (1, 2, 2, 5),
    "Bourne Shell": (1, 1, 1, 4),
    "JSON": (1, 1, 0, 4),
    "Markdown": (1, 3, 2, 4),
    "YAML": (1, 1, 2, 4),
    "TOML": (1, 1, 2, 3),
}
CLOC_SUM = (8, 25, 20, 41)


def _figures(result: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    return {
        row["language"]: (row["files"], row["blank"], row["comment"], row["code"])
        for row in result["languages"]
    }


def _total(result: dict[str, Any]) -> tuple[int, int, int, int]:
    total = result["total"]
    return total["files"], total["blank"], total["comment"], total["code"]


# --- lines of code ---------------------------------------------------------------------------


def test_counts_are_cloc_figures_for_the_sample() -> None:
    # In this checkout the files are those git shows (what `cloc --vcs=git` reads).
    result = count_lines(str(SAMPLE))
    assert _figures(result) == CLOC_FIGURES
    assert _total(result) == CLOC_SUM


def test_counts_are_cloc_figures_outside_a_git_work_tree(tmp_path: Path) -> None:
    # Outside git every file under the directory is a candidate, as for plain `cloc DIR`.
    copy = shutil.copytree(SAMPLE, tmp_path / "sample")
    result = count_lines(str(copy))
    assert _figures(result) == CLOC_FIGURES
    assert _total(result) == CLOC_SUM


@pytest.mark.skipif(shutil.which("cloc") is None, reason="cloc is not installed")
def test_cloc_still_gives_these_figures(tmp_path: Path) -> None:
    copy = shutil.copytree(SAMPLE, tmp_path / "sample")
    proc = subprocess.run(
        ["cloc", "--json", "."], cwd=copy, capture_output=True, text=True, timeout=120, check=True
    )
    figures = json.loads(proc.stdout)
    version = figures.pop("header")["cloc_version"]
    total = figures.pop("SUM")
    if version != "1.96":
        pytest.skip(f"the figures come from cloc 1.96; this is cloc {version}")
    assert {
        language: (row["nFiles"], row["blank"], row["comment"], row["code"])
        for language, row in figures.items()
    } == CLOC_FIGURES
    assert (total["nFiles"], total["blank"], total["comment"], total["code"]) == CLOC_SUM


# The figures in the two tests below were also checked with cloc 1.96 (`cloc --by-file`).
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A docstring and any other triple-quoted string count as comment lines, but for the code
        # before the opening quotes on its first line.
        ('"""One line."""\nx = 1\n', (0, 1, 1)),
        ('def f():\n    """Doc.\n\n    More.\n    """\n', (1, 3, 1)),
        ('SQL = """\nselect 1\n"""\n', (0, 2, 1)),
        # A script's "#!" line is code; a blank line after a line ending in "\" is code too.
        ("#!/usr/bin/env python3\n# comment\nx = (1 +\\\n\n  2)\n", (0, 1, 4)),
    ],
)
def test_python_lines_by_cloc_rules(tmp_path: Path, text: str, expected: tuple) -> None:
    (tmp_path / "m.py").write_text(text)
    result = count_lines(str(tmp_path))
    assert _figures(result) == {"Python": (1, *expected)}


def test_a_script_without_extension_is_known_by_its_first_line(tmp_path: Path) -> None:
    for name, first in [
        ("a", "#!/bin/sh"),
        ("b", "#! /bin/bash -e"),
        ("c", "#!/usr/bin/env python3"),
        ("d", "#!/usr/bin/env node"),  # cloc does not know this interpreter
        ("e", "plain text"),
    ]:
        (tmp_path / name).write_text(f"{first}\n# {name}\necho {name}\n")
    assert _figures(count_lines(str(tmp_path))) == {
        "Bourne Shell": (1, 0, 1, 2),
        "Bourne Again Shell": (1, 0, 1, 2),
        "Python": (1, 0, 1, 2),
    }


# Languages beyond the sample, each with the figures cloc 1.96 gives the file (`cloc --by-file`).
OTHER_LANGUAGES = {
    "A.java": (
        "/* Header\n"
        " * comment */\n"
        "package a;\n"
        "\n"
        "// line comment\n"
        "public class A {\n"
        "    int x = 1; // trailing\n"
        "    /** doc */\n"
        "    void f() {}\n"
        "}\n",
        ("Java", 1, 4, 5),
    ),
    "Rakefile": ("# rake\ntask :default do\n  puts 1\nend\n", ("Ruby", 0, 1, 3)),
    "b.kt": (
        '// kotlin\nfun main() {\n    /* block */ println("hi")\n    /*\n      multi\n    */\n}\n',
        ("Kotlin", 0, 4, 3),
    ),
    "c.scala": ("object C { // x\n  // y\n\n  def f = 1 /* z */\n}\n", ("Scala", 1, 1, 3)),
    "d.swift": ("// swift\nlet x = 1 \\\n\n/* c */\n", ("Swift", 0, 3, 1)),
    "e.dart": ("/// doc comment\nvoid main() {\n  // c\n  print('x');\n}\n", ("Dart", 0, 2, 3)),
    "f.cs": (
        "using System;\n"
        "// c\n"
        "namespace N {\n"
        "    /* block\n"
        "       comment */\n"
        "    public class F { }\n"
        "}\n",
        ("C#", 0, 3, 4),
    ),
    "g.rb": (
        "#!/usr/bin/env ruby\n"
        "# comment\n"
        "def f\n"
        "  1 # trailing\n"
        "end\n"
        "\n"
        "=begin\n"
        "doc\n"
        "block\n"
        "=end\n"
        "puts f\n",
        ("Ruby", 1, 5, 5),
    ),
    "h.pm": (
        "package H;\n"
        "# comment\n"
        "use strict;\n"
        "\n"
        "=head1 NAME\n"
        "\n"
        "H - thing\n"
        "\n"
        "=cut\n"
        "\n"
        "sub f { 1 }\n"
        "1;\n"
        "__END__\n"
        "trailing data\n"
        "more\n",
        ("Perl", 4, 7, 4),
    ),
    "i.pl": ('#!/usr/bin/perl\n# c\nprint "hi\\n";\n', ("Perl", 0, 1, 2)),
    "j.php": (
        '<?php\n# hash comment\n// slash comment\n/* block\n */\necho "x"; // t\n',
        ("PHP", 0, 4, 2),
    ),
    "k.R": ("# comment\nx <- 1\n\nf <- function() {\n  # inner\n  2\n}\n", ("R", 1, 2, 4)),
    "l.ps1": (
        '<#\n block help\n#>\n# line\nWrite-Host "hi"\n\nfunction F { 1 } # t\n',
        ("PowerShell", 1, 4, 2),
    ),
    "m.hs": (
        "{-# LANGUAGE OverloadedStrings #-}\n"
        "-- | comment\n"
        "module M where\n"
        "\n"
        "{- block\n"
        "   comment -}\n"
        "f :: Int\n"
        "f = 1 -- trailing\n"
        "{- one -} g = 2\n",
        ("Haskell", 1, 3, 5),
    ),
    "n.ts": ("// ts\nconst x: number = 1;\n/* c */\n", ("TypeScript", 0, 2, 1)),
    "pscript": ("#!/usr/bin/php\n<?php\n// c\necho 1;\n", ("PHP", 0, 1, 3)),
    "rscript": ("#!/usr/bin/env ruby\n# c\nputs 1\n", ("Ruby", 0, 1, 2)),
}


@pytest.mark.parametrize(
    ("name", "text", "expected"), [(n, *v) for n, v in OTHER_LANGUAGES.items()]
)
def test_other_languages_by_cloc_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str, expected: tuple
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / name).write_text(text)
    language, *figures = expected
    assert _figures(count_lines(str(tmp_path))) == {language: (1, *figures)}


@pytest.mark.skipif(shutil.which("cloc") is None, reason="cloc is not installed")
def test_cloc_still_gives_the_other_languages_figures(tmp_path: Path) -> None:
    for name, (text, _) in OTHER_LANGUAGES.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run(
        ["cloc", "--by-file", "--json", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(proc.stdout)
    if figures["header"]["cloc_version"] != "1.96":
        pytest.skip(
            f"the figures come from cloc 1.96; this is cloc {figures['header']['cloc_version']}"
        )
    assert {
        name.removeprefix("./"): (row["language"], row["blank"], row["comment"], row["code"])
        for name, row in figures.items()
        if name not in ("header", "SUM")
    } == {name: expected for name, (_, expected) in OTHER_LANGUAGES.items()}


# --- markers --------------------------------------------------------------------------------

MARKED = {
    "a.py": (
        '"""Module.\n'
        "\n"
        "TODO: a docstring line that starts with a marker\n"
        "This mentions TODO in a sentence.\n"
        '"""\n'
        'x = "TODO: in a string"  # FIXME(bob): a comment\n'
        "y = f()  # type: ignore  # XXX drop this\n"
        "# the TODO scan, a mention\n"
        "# --- TODO list ---\n"
        "z = 2  # as upstream does. TODO: a note after a sentence\n"
        "s = '''\n"
        "HACK: inside a string that is not a statement\n"
        "'''\n"
    ),
    "b.js": (
        'const url = "http://example.com // TODO: in a string";\n'
        "// TODO: a comment\n"
        "/* FIXME a block comment\n"
        " * XXX its second line\n"
        " */\n"
    ),
    "c.yaml": "key: value  # TODO: a comment\nurl: http://x#TODO\n",
    "d.md": (
        "# TODO list\n"
        "TODO: a note in prose\n"
        "- FIXME(ann): in a list\n"
        "The TODO scan mentions TODO.\n"
        "<!-- HACK: an HTML comment -->\n"
    ),
}


def test_markers_are_notes_not_mentions(tmp_path: Path) -> None:
    for name, text in MARKED.items():
        (tmp_path / name).write_text(text)
    found = find_todos(str(tmp_path))
    assert [(i["file"], i["line"], i["tag"], i["text"]) for i in found["items"]] == [
        ("a.py", 3, "TODO", "a docstring line that starts with a marker"),
        ("a.py", 6, "FIXME", "(bob): a comment"),
        ("a.py", 7, "XXX", "drop this"),
        ("a.py", 10, "TODO", "a note after a sentence"),
        ("b.js", 2, "TODO", "a comment"),
        ("b.js", 3, "FIXME", "a block comment"),
        ("b.js", 4, "XXX", "its second line"),
        ("c.yaml", 1, "TODO", "a comment"),
        ("d.md", 2, "TODO", "a note in prose"),
        ("d.md", 3, "FIXME", "(ann): in a list"),
        ("d.md", 5, "HACK", "an HTML comment"),
    ]
    assert found["by_tag"] == {"TODO": 5, "FIXME": 3, "XXX": 2, "HACK": 1}


def test_the_marker_scan_and_these_tests_hold_no_marker(tmp_path: Path) -> None:
    # They describe markers at length, in docstrings, comments and strings.
    tools = REPO / "fleetmind" / "tools"
    for source in (*tools.glob("_*.py"), REPO / "examples" / "repo_audit.py"):
        shutil.copy(source, tmp_path / source.name)
    shutil.copy(__file__, tmp_path / "test_line_counts.py")
    assert find_todos(str(tmp_path))["count"] == 0
