"""Lines of code by cloc's rules: which files are source, in which language, and which lines.

``count_lines`` follows cloc 1.96 (https://github.com/AlDanial/cloc), quirks included, so that
an audit's figures agree with the tool people check them with: a Python docstring (any
triple-quoted string) is comment, a script without an extension is known by its ``#!`` line,
empty and binary files are left out. tests/examples/test_line_counts.py holds cloc's own figures
for a sample tree and a file in each language beyond it.

Only the languages of :data:`_LANGUAGE_TABLE` are counted; files of other types are left out.
Known differences from cloc, each needing an unusual file: a comment marker inside a string
(``"// not a comment"``), which cloc takes out of strings first for C-like languages; cloc's
"C# Generated" (counted as C# here); and a file whose extension cloc gives a language not
counted here, which this counter may still place by its ``#!`` line.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import NamedTuple

__all__ = ["CLOC_SKIPPED_DIRS", "Language", "count_file", "language_of", "source_bytes"]

# cloc never reads files under these directories, even when told to read a file in one.
CLOC_SKIPPED_DIRS = frozenset({".bzr", ".config", ".cvs", ".git", ".hg", ".snapshot", ".svn"})
_MAX_BYTES = 100 * 1024**2  # cloc's --max-file-size default, in MB

# --- which language -------------------------------------------------------------------------
#
# The languages counted, with cloc's names, extensions and file names. ``rules`` names how cloc
# finds the comments (see _RULES); flags: ``c``, a line ending in "\\" continues onto the next
# one (so a blank line after it is code); ``s``, a script language (its "#!" line is code). A
# language may take several rows. Extensions are matched case-sensitively, as cloc does on Linux.

_LANGUAGE_TABLE = """
Python             python   cs  py pyi pyw py3 pyde pyp pyt xpy tac wsgi lmi gyp gypi gclient buck
Python             python   cs  build.bazel sconscript sconstruct snakefile workspace wscript
Cython             cython   c   pyx pxd pxi
Bourne Shell       hash     cs  sh
Bourne Again Shell hash     cs  bash
zsh                hash     cs  zsh
Korn Shell         hash     cs  ksh
C Shell            hash     cs  csh tcsh
PowerShell         pwsh     c   ps1 psd1 psm1
make               hash     cs  mk am Makefile makefile Gnumakefile gnumakefile
CMake              hash     c   cmake cmake.in CMakeLists.txt
Dockerfile         hash     -   Dockerfile dockerfile
Containerfile      hash     -   Containerfile
YAML               hash     -   yaml yml clang-format clang-tidy gemrc glide.lock mir reek rviz
YAML               hash     -   sublime-syntax syntax yaml-tmlanguage yml.mysql
TOML               hash     -   toml
INI                ini      -   ini buildozer.spec lektorproject prefs
Markdown           markdown -   md markdown mdown mdwn mdx mkd mkdn mkdown ronn contents.lr workbook
reStructuredText   rst      -   rst rest rst.txt rest.txt
Text               none     -   txt text
JSON               none     -   json jsonl geojson topojson har gltf avsc arcconfig composer.lock
JSON               none     -   htmlhintrc json-tmlanguage mcmeta mcmod.info tern-config yyp
JSON               none     -   tern-project tfstate tfstate.backup watchmanconfig webapp
JSON               none     -   webmanifest
HTML               html     -   html htm html.hl xht
XML                html     -   xml XML xml.dist adml admx ant app.config axml builds ccproj ccxml
XML                html     -   classpath clixml cproject cscfg csdef csl ct depproj ditamap ditaval
XML                html     -   dll.config dotsettings filters fsproj gmx grxml iml ivy jelly jsproj
XML                html     -   kml launch mdpolicy mjml natvis ndproj nproj nuget.config nuspec odd
XML                html     -   osm packages.config pkgproj plist proj project props ps1xml psc1 pt
XML                html     -   rdf resx rss scxml settings.stylecop sfproj shproj srdf storyboard
XML                html     -   sttheme sublime-snippet targets tmcommand tml tmlanguage tmsnippet
XML                html     -   tmpreferences tmtheme urdf ux vcxproj vsixmanifest vssettings vxml
XML                html     -   vstemplate web.config web.debug.config web.release.config wsf x3d
XML                html     -   xacro xib xlf xliff xproj xspec xul zcml
SVG                html     -   svg SVG
CSS                c        -   css
SCSS               c++      -   scss
JavaScript         c++      c   js mjs cjs _js es6 jsm jsb jscad jsfl jss jake jakefile bones njs
JavaScript         c++      c   pac sjs ssjs xsjs xsjslib
JSX                c++      c   jsx
TypeScript         c++      c   tsx
C                  c++      c   c cats ec idc pgc
C++                c++      c   cpp cc cxx c++ C CPP h++ inl ipp pcc tcc tpp
C/C++ Header       c++      c   h H hh hpp hxx
C#                 c++      c
Go                 c++      c   go
Rust               c++      -   rs rs.in
Java               c++      -   java
Kotlin             c++      -   kt ktm kts
Scala              c++      -   scala kojo sbt
Swift              c++      c   swift
Dart               c++      c   dart
Protocol Buffers   c++      -   proto
PHP                php      s   php php3 php4 php5 phtml phpt phps ctp aw phakefile php_cs
PHP                php      s   php_cs.dist
Ruby               ruby     cs  rb rake gemspec podspec ru rbw rbx rbuild rabl jbuilder builder
Ruby               ruby     cs  thor watchr god eye mspec irbrc pryrc gemfile gemfile.lock
Ruby               ruby     cs  appraisals berksfile brewfile buildfile capfile dangerfile
Ruby               ruby     cs  deliverfile fastfile guardfile jarfile mavenfile podfile
Ruby               ruby     cs  puppetfile snapfile thorfile vagrantfile
Perl               perl     s   pm perl plh plx ph psgi al ack cpanfile makefile.pl rexfile
R                  hash     c   r R rd rsx rprofile expr-dist
Haskell            haskell  -   hs hsc
SQL                sql      -   sql SQL cql mysql psql tab udf viw
Lua                lua      cs  lua nse p8 pd_lua rbxs wlua
Jinja Template     jinja    -   jinja jinja2
Meson              hash     c   meson.build
CSV                none     -   csv
"""

# cloc names these files (its own languages, or others that are not counted here).
_FILE_NAMES: dict[str, str | None] = {
    **dict.fromkeys(("CMakeLists.txt", "cmakelists.txt"), "CMake"),
    **dict.fromkeys(("Makefile", "makefile", "Gnumakefile", "gnumakefile"), "make"),
    **{f"{d}ockerfile{suffix}": "Dockerfile" for d in "Dd" for suffix in ("", ".m4", ".cmake")},
    "Containerfile": "Containerfile",
    "meson.build": "Meson",
    **dict.fromkeys(("Rakefile", "rakefile"), "Ruby"),
    **dict.fromkeys(("build.xml", "pom.xml", "BUILD", "WORKSPACE"), None),
    **dict.fromkeys(("Jamfile", "jamfile", "Jamrules"), None),
}
# "#!" interpreters cloc knows, for files without a known extension (not python3.9 and later).
_INTERPRETERS = {
    "sh": "Bourne Shell",
    "bash": "Bourne Again Shell",
    "zsh": "zsh",
    "ksh": "Korn Shell",
    "csh": "C Shell",
    "tcsh": "C Shell",
    "make": "make",
    "lua": "Lua",
    "ruby": "Ruby",
    **dict.fromkeys(("perl", "perl5", "miniperl"), "Perl"),
    **dict.fromkeys(("php", "php5"), "PHP"),
    **dict.fromkeys(("python", "python2.6", "python2.7", "python3"), "Python"),
    **{f"python3.{n}": "Python" for n in range(3, 9)},
}
# Not source code by cloc's rules, whatever their first line says.
_NOT_CODE_NAMES = """AUTHORS BUGS Changelog ChangeLog Changes CHANGES COPYING DESCRIPTION .cvsignore
Entries FAQ INSTALL MAINTAINERS MD5SUMS NAMESPACE NEWS readme Readme README README.tk Repository
Root TODO"""
_NOT_CODE_EXTENSIONS = """1 2 3 4 5 6 7 8 9 a ad afm arc arj au bak bdf bmp bz2 desktop dic doc
elc eps fig gif gz h5 hdf in jpg kdelnk man mf mp3 o o.cmd pbm pdf pfb png ppt pptx ps sgm sgml
so Tag tfm tgz tiff tsv vf wav xbm xls xlsx xpm Y Z zip gitignore"""


class Language(NamedTuple):
    """A language as cloc counts it."""

    name: str
    rules: str  # a key of _RULES
    continuation: bool
    script: bool


def _languages() -> tuple[dict[str, Language], dict[str, Language | None]]:
    """The languages by name, and by extension, from _LANGUAGE_TABLE."""
    by_name: dict[str, Language] = {}
    by_extension: dict[str, Language | None] = dict.fromkeys(_NOT_CODE_EXTENSIONS.split())
    for row in _LANGUAGE_TABLE.strip().splitlines():
        name, rules, flags = row[:19].strip(), row[19:28].strip(), row[28:32]
        language = by_name.setdefault(name, Language(name, rules, "c" in flags, "s" in flags))
        by_extension.update(dict.fromkeys(row[32:].split(), language))
    return by_name, by_extension


_BY_NAME, _BY_EXTENSION = _languages()
_WHITESPACE = " \t\n\r\f\v"  # Perl's \s, which cloc's patterns use


def language_of(path: Path) -> Language | None:
    """The language cloc gives the file at ``path``, if it is one counted here.

    Reads the file only when its name does not settle it: a script's ``#!`` line, or the
    contents of a ``.ts``, ``.cs`` or ``.pl`` file, an extension two languages share.
    """
    name = path.name
    if name in _NOT_CODE_NAMES.split() or name.endswith("~"):
        return None
    if name in _FILE_NAMES:
        return _by_name(_FILE_NAMES[name])
    parts = name.split(".")
    if len(parts) > 1 and parts[-1]:
        # Triple, then double, then single extension: "rst.txt" before "txt".
        for n in (3, 2, 1):
            if len(parts) <= n or not all(parts[-n:]):
                continue
            extension = ".".join(parts[-n:])
            if extension in _SHARED_EXTENSIONS:
                return _SHARED_EXTENSIONS[extension](_read_lines(_read(path)))
            if extension in _BY_EXTENSION:
                return _BY_EXTENSION[extension]
        stem = re.sub(r"^(.*?)\.\S+$", r"\1", name, flags=re.A)  # Dockerfile.dev
        if stem in ("Dockerfile", "Containerfile"):
            return _BY_NAME[stem]
    elif name.lower() in _FILE_NAMES:
        return _by_name(_FILE_NAMES[name.lower()])
    first = _first_line(path)
    shebang = re.match(r"#!\s*(\S.*?)$", first, re.A)
    if shebang:
        words = re.split(f"[{_WHITESPACE}]+", shebang[1].strip(_WHITESPACE))
        if PurePosixPath(words[0]).name == "env" and len(words) > 1:
            return _by_name(_INTERPRETERS.get(words[1]))
        return _by_name(_INTERPRETERS.get(PurePosixPath(words[0]).name))
    return _BY_NAME["XML"] if re.search(r"<\?xml\s", first, re.A) else None


def _by_name(name: str | None) -> Language | None:
    return None if name is None else _BY_NAME[name]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _first_line(path: Path) -> str:
    try:
        with path.open("rb") as f:
            return f.readline().decode("latin-1").removesuffix("\n")
    except OSError:
        return ""


# cloc tells the languages that share an extension apart by a vote over the file's lines.


def _typescript_or_qt_linguist(lines: list[str]) -> Language | None:
    typescript = linguist = 0
    for line in lines:
        linguist += bool(re.search(r"\b</?(message|source|translation)>", line))
        typescript += bool(re.match(r"\s*(var|const|let|class|document)\b", line, re.A))
        typescript += bool(re.search(r"[;}]\s*$", line, re.A))
        typescript += bool(re.match(r"\s*//", line, re.A))
    return _BY_NAME["TypeScript"] if typescript >= linguist else None


def _csharp_or_smalltalk(lines: list[str]) -> Language | None:
    csharp = smalltalk = 0
    for line in lines:
        line = re.sub(r"//.*?$", "", line, count=1)
        if _BLANK.search(line):
            continue
        if re.search(r"[;}{]\s*$", line, re.A):
            csharp += 1
        elif re.match(r"(using|namespace)\s|\s*(public|private|new)\s", line, re.A):
            csharp += 20
        elif re.match(r"\s*\[assembly:", line, re.A):
            csharp += 1
        if re.search(r"(!|\]\.)\s*$", line, re.A):
            smalltalk += 1
            csharp -= 1
    return None if smalltalk > csharp else _BY_NAME["C#"]


def _perl_or_prolog(lines: list[str]) -> Language | None:
    perl = prolog = 0
    for number, line in enumerate(lines, start=1):
        if _BLANK.search(line):
            continue
        if number == 1 and re.match(r"#!.*?\bperl", line, re.A):
            return _BY_NAME["Perl"]
        perl += bool(re.match(r"=(head|over|item|cut)", line))
        perl += bool(re.search(r";\s*$", line, re.A))
        perl += bool(re.search(r"[{}]", line))
        perl += bool(re.match(r"\s*sub\s+", line, re.A))
        perl += "<<'" in line
        perl += bool(re.search(r"\$(\w+->|[_!])", line, re.A))
        prolog += "#" not in line and bool(re.search(r"\.\s*$", line, re.A))
        prolog += ":-" in line
    return _BY_NAME["Perl"] if perl > prolog else None


_SHARED_EXTENSIONS: dict[str, Callable[[list[str]], Language | None]] = {
    "ts": _typescript_or_qt_linguist,
    "cs": _csharp_or_smalltalk,
    "pl": _perl_or_prolog,
}

# --- which files ----------------------------------------------------------------------------


def source_bytes(file: Path) -> bytes | None:
    """The contents of a file cloc reads, or ``None`` for one it leaves out.

    cloc leaves out empty files, files over 100 MB and binary ones; the caller skips
    :data:`CLOC_SKIPPED_DIRS`.
    """
    try:
        if not 0 < file.stat().st_size <= _MAX_BYTES:
            return None
        data = file.read_bytes()
    except OSError:
        return None  # unreadable, or vanished meanwhile
    return None if _looks_binary(data[:512]) else data


def _looks_binary(head: bytes) -> bool:
    """Perl's ``-B`` (what cloc uses) on a file's first 512 bytes."""
    if any(b >= 0x80 for b in head):
        try:  # valid UTF-8 is text, even cut short at the end of the block
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
            return False
        except UnicodeDecodeError:
            pass
    if b"\0" in head:
        return True
    odd = sum(b not in _TEXT_BYTES for b in head)
    return odd * 3 > len(head)


_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | {0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x1B}

# --- counting a file as cloc does -----------------------------------------------------------
#
# cloc reads a file's lines as bytes, takes out the blank ones, then applies the language's
# comment filters one after the other, each time dropping the lines they leave blank: the lines
# that remain are code, the rest comments. Its Python filters treat every triple-quoted string as
# a comment (docstrings and others alike), and any line with "/*" or "*/" in it as a comment too.

_Rule = Callable[[list[str]], list[str]]
_BLANK = re.compile(r"^\s*$", re.A)
_CONTINUED = re.compile(r"\\$")


def _read_lines(data: bytes) -> list[str]:
    """A file's lines as cloc sees them: bytes as Latin-1, each ending in "\\n", no BOM or CR."""
    text = data.decode("latin-1")
    lines = [line + "\n" for line in text.split("\n")]
    if lines[-1] == "\n":
        lines.pop()  # the end of a file that ends with a newline is not a line
    if lines:
        for bom in ("\xfe\xff", "\xff\xfe", "\xef\xbb\xbf", "\xf7\x64\x4c", "\xfb\xee\x28"):
            if lines[0].startswith(bom):
                lines[0] = lines[0][len(bom) :]
                break
    return [re.sub(r"\r$", "", line) for line in lines]


def _drop(lines: list[str], pattern: re.Pattern[str], continuation: bool = False) -> list[str]:
    """Lines that do not match, keeping a matching one after a line that ends in ``\\``."""
    return [
        line
        for i, line in enumerate(lines)
        if not pattern.search(line) or (continuation and i and _CONTINUED.search(lines[i - 1]))
    ]


def _drop_matching(regex: str) -> _Rule:
    """Drop whole lines that match (cloc's ``remove_matches``, case-insensitive)."""
    pattern = re.compile(regex, re.A | re.I)
    return lambda lines: _drop(lines, pattern)


def _strip_regex(regex: str, per_line_newline: bool = False) -> _Rule:
    """Remove every match of a comment regex from the whole text, then split it into lines again.

    With ``per_line_newline`` (cloc's C++ pass), each line not ending in ``\\`` gets an extra
    newline first, so a ``//`` comment, which takes its newline with it, leaves the line there.
    """
    pattern = re.compile(regex, re.S | re.A)

    def strip(lines: list[str]) -> list[str]:
        if per_line_newline:
            text = "".join(line if _CONTINUED.search(line) else line + "\n" for line in lines)
        else:
            text = "".join(lines)
        return pattern.sub("", text).rstrip("\n").split("\n")  # as Perl's split: no trailing ""

    return strip


def _docstrings_to_c(lines: list[str]) -> list[str]:
    """Every triple quote, in turn, opens or closes a C comment (a ``u`` prefix goes with it)."""
    inside = False
    out = []
    for line in lines:
        while re.search(r"\"\"\"|'''", line):
            if inside:
                line = re.sub(r"\"\"\"|'''", "*/", line, count=1)
            else:
                line = re.sub(r"[uU]?(?:\"\"\"|''')", "/*", line, count=1)
            inside = not inside
        out.append(line)
    return out


def _powershell_to_c(lines: list[str]) -> list[str]:
    """PowerShell's ``<# ... #>`` block comments become C ones."""
    return [line.replace("<#", "/*").replace("#>", "*/") for line in lines]


def _between(start: str, end: str, *, drop_code_before: bool = False) -> _Rule:
    """Remove comments from ``start`` to ``end`` (regexes), which may span lines.

    A line where a comment opens after code keeps its code, unless ``drop_code_before`` (cloc's
    HTML rule, which counts the whole line as comment).
    """
    one_line = re.compile(f"{start}.*?{end}", re.A)
    opens = re.compile(f"^(.*?){start}", re.A)
    closes = re.compile(end, re.A)
    through_end = re.compile(f"^.*?{end}", re.A)
    from_start = re.compile(f"^(.*?){start}.*$", re.A)

    def strip(lines: list[str]) -> list[str]:
        out = []
        inside = False
        for line in lines:
            line = one_line.sub("", line)
            if _BLANK.search(line):
                continue
            if inside:
                if closes.search(line):
                    line = through_end.sub("", line, count=1)
                    inside = False
                elif not drop_code_before:
                    continue
            if _BLANK.search(line):
                continue
            opened = opens.search(line)
            if opened:
                inside = True
                if _BLANK.search(opened[1]):
                    continue
            if inside:
                if drop_code_before:
                    continue
                line = from_start.sub(r"\1", line, count=1)
            out.append(line)
        return out

    return strip


def _whole_lines_between(start: str, end: str) -> _Rule:
    """Drop the lines from one matching ``start`` to one matching ``end`` (Perl's and Ruby's
    ``=begin``/``=end`` documentation), both included."""
    opens, closes = re.compile(start), re.compile(end)

    def strip(lines: list[str]) -> list[str]:
        out = []
        inside = False
        for line in lines:
            if not inside and opens.search(line):
                inside = True
            elif inside and closes.search(line):
                inside = False
            elif not inside:
                out.append(line)
        return out

    return strip


def _up_to(marker: str) -> _Rule:
    """The lines before the first that matches ``marker`` (Perl's ``__END__``)."""
    pattern = re.compile(marker)

    def strip(lines: list[str]) -> list[str]:
        end = next((i for i, line in enumerate(lines) if pattern.search(line)), len(lines))
        return lines[:end]

    return strip


def _haskell_comments(lines: list[str]) -> list[str]:
    """Remove ``{- ... -}`` and ``--`` comments; ``{-# pragmas #-}`` are code."""
    out = []
    inside = False
    for line in lines:
        line = line.removesuffix("\n")
        if re.match(r"\s*\{-#", line, re.A):
            out.append(line + "\n")
            continue
        line = re.sub(r"\{-.*?-\}", "", line)
        if inside:
            if "-}" in line:
                line = re.sub(r"^.*?-\}", "", line, count=1)
                inside = False
            else:
                line = ""
        else:
            line = re.sub(r"--.*", "", line)
            if "{-" in line and "{-#" not in line:
                line = re.sub(r"\{-.*", "", line)
                inside = True
        if re.search(r"\S", line, re.A):
            out.append(line + "\n")
    return out


_C_COMMENT = r"/\*.*?\*/"
_CPP_COMMENT = r"//[^\n]*\n|/\*.*?\*/"
_HTML_COMMENT = r"<!(?:--[^-]*(?:-[^-]+)*--\s*)*>"
_RULES: dict[str, list[_Rule]] = {
    "python": [
        _drop_matching(r"/\*"),
        _drop_matching(r"\*/"),
        _drop_matching(r"^\s*#"),
        _docstrings_to_c,
        _strip_regex(_C_COMMENT),
    ],
    "cython": [_drop_matching(r"^\s*#"), _docstrings_to_c, _strip_regex(_C_COMMENT)],
    "hash": [_drop_matching(r"^\s*#")],
    "ini": [_drop_matching(r"^\s*;")],
    "none": [],
    "c": [_strip_regex(_C_COMMENT)],
    "c++": [_strip_regex(_CPP_COMMENT, per_line_newline=True)],
    "php": [_drop_matching(r"^\s*#"), _strip_regex(_CPP_COMMENT, per_line_newline=True)],
    "pwsh": [_powershell_to_c, _strip_regex(_C_COMMENT), _drop_matching(r"^\s*#")],
    "ruby": [_drop_matching(r"^\s*#"), _whole_lines_between("^=begin", "^=end")],
    "perl": [
        _up_to("^__(END|DATA)__"),
        _drop_matching(r"^\s*#"),
        _whole_lines_between("^=head1", "^=cut"),
    ],
    "haskell": [_haskell_comments],
    "sql": [_strip_regex(_C_COMMENT), _drop_matching(r"^\s*--")],
    "html": [_between("<!--", "-->", drop_code_before=True), _strip_regex(_HTML_COMMENT)],
    "markdown": [
        _between("<!--", "-->"),
        _between(r"\[(comment|//)?\]\s*:?\s*(<\s*>|#)?\s*\(.*?", r".*?\)"),
    ],
    "rst": [_between(r"^\.\.", r"^[^ \n\t\r\f\.]")],
    "lua": [
        *(
            _between(re.escape(f"--[{'=' * n}["), re.escape(f"]{'=' * n}]"))
            for n in range(5, -1, -1)
        ),
        _drop_matching(r"^\s*--"),
    ],
    "jinja": [_between(re.escape("{#"), re.escape("#}"))],
}


def count_file(data: bytes, language: Language) -> tuple[int, int, int]:
    """``(blank, comment, code)`` lines of one file's contents, by cloc's rules."""
    lines = _read_lines(data)
    total = len(lines)
    lines = _drop(lines, _BLANK, language.continuation)
    blank = total - len(lines)
    first = lines[0].removesuffix("\n") if lines else ""
    for rule in _RULES[language.rules]:
        lines = _drop(rule(lines), _BLANK, language.continuation)
    lines = [line.removesuffix("\n") for line in lines]
    # In a script, a "#!" first line is code.
    if language.script and first.startswith("#!") and (not lines or lines[0] != first):
        lines.insert(0, first)
    return blank, total - blank - len(lines), len(lines)
