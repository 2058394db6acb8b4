"""The documentation stays true: its commands parse, its links lead somewhere, its examples run.

Every ``digits-zoo ...`` command in a code block of README.md and docs/*.md is parsed by the
real command line's parser (flags, choices, types); every usage line of the README's command
table names only flags and choices the parser has; every relative link points at an existing
file (and heading); every ``benchmarks/*.py`` named exists; and the examples of
docs/python-api.md run as doctests.
"""

from __future__ import annotations

import argparse
import contextlib
import doctest
import io
import re
import shlex
from pathlib import Path

import pytest

from digits_zoo.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED_PAGES = [*PAGES, ROOT / "benchmarks" / "README.md"]
PYTHON_API = ROOT / "docs" / "python-api.md"

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# <model>, <tuner>_<family>: a placeholder the reader fills in.
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
# RUN_DIR, N, EXPORT_DIR: an argparse-style metavar.
METAVAR = re.compile(r"^[A-Z][A-Z0-9_]*$")
# A metavar given to an option of this type is replaced by a value of the type.
SAMPLE_VALUES = {int: "1", float: "0.5"}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
BENCHMARK_SCRIPT = re.compile(r"benchmarks/\w+\.py")
INLINE_COMMAND = re.compile(r"`(digits-zoo [^`]+)`")


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of the shell code blocks in a page, as word lists.

    Continuation lines are joined, comments dropped, ``&&``, ``||``, ``|`` and ``;`` split
    commands, and leading ``NAME=value`` environment assignments are dropped.
    """
    commands = []
    for language, body in FENCE.findall(text):
        if language not in ("", "sh", "bash", "shell"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(PLACEHOLDER.sub("x", line), posix=True, punctuation_chars="&|;")
            lexer.whitespace_split = True
            try:
                words = list(lexer)
            except ValueError:  # an unbalanced quote: a line of output, not a command.
                continue
            command: list[str] = []
            for word in [*words, ";"]:
                if word in ("&&", "||", "|", ";", "&"):
                    commands.append(command)
                    command = []
                elif command or not re.match(r"^[A-Z_][A-Z0-9_]*=", word):
                    command.append(word)
    return [command for command in commands if command]


def digits_zoo_commands() -> list[tuple[str, list[str]]]:
    """Every ``digits-zoo`` command in the pages' code blocks: (where, its arguments)."""
    found = []
    for page in PAGES:
        for words in shell_commands(page.read_text(encoding="utf-8")):
            program = words[0].removeprefix(".venv/bin/")
            if program == "digits-zoo":
                found.append((f"{page.relative_to(ROOT)}: {shlex.join(words)}", words[1:]))
    return found


def subcommand_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the parser has no subcommands")


def with_sample_values(arguments: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """The arguments, with a metavar given to a typed option replaced by a value of its type."""
    subparsers = subcommand_parsers(parser)
    if not arguments or arguments[0] not in subparsers:
        return arguments
    options = subparsers[arguments[0]]._option_string_actions
    result = list(arguments)
    for index in range(1, len(result)):
        action = options.get(result[index - 1])
        if action is not None and METAVAR.match(result[index]) and action.type in SAMPLE_VALUES:
            result[index] = SAMPLE_VALUES[action.type]
    return result


def parse_error(parser: argparse.ArgumentParser, arguments: list[str]) -> str | None:
    """The parser's error for these arguments, or None when they parse."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(arguments)
    except SystemExit as error:
        if error.code:
            return stderr.getvalue().strip() or f"exit status {error.code}"
    return None


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


def test_the_pages_show_commands():
    # The collector itself works: the README's two recipes alone hold five commands.
    commands = digits_zoo_commands()
    assert len(commands) >= 20, commands
    assert {words[0] for _, words in commands} >= {"baselines", "search", "export", "serve"}


def test_every_command_shown_parses(parser):
    failures = []
    for where, arguments in digits_zoo_commands():
        error = parse_error(parser, with_sample_values(arguments, parser))
        if error:
            failures.append(f"{where}\n    {error}")
    assert not failures, "commands in the docs that the parser refuses:\n" + "\n".join(failures)


def test_the_command_table_names_real_flags_and_choices(parser):
    # The README's table spells usage as `digits-zoo SUB [--flag VALUE] [--kind a\|b]`.
    subparsers = subcommand_parsers(parser)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `digits-zoo ")]
    assert len(rows) == len(subparsers), "one table row per subcommand"
    failures = []
    for row in rows:
        usage = INLINE_COMMAND.search(row).group(1).replace("\\|", "|")
        name = usage.split()[1]
        if name not in subparsers:
            failures.append(f"{usage}: no subcommand {name!r}")
            continue
        options = subparsers[name]._option_string_actions
        for flag, value in re.findall(r"(--[\w-]+)(?:[ =]([\w.|-]+))?", usage):
            if flag not in options:
                failures.append(f"{usage}: {name} has no {flag}")
            elif value and "|" in value and options[flag].choices is not None:
                if set(value.split("|")) != set(options[flag].choices):
                    failures.append(f"{usage}: {flag} takes {sorted(options[flag].choices)}")
        documented = set(re.findall(r"--[\w-]+", usage))
        missing = {flag for flag in options if flag.startswith("--")} - documented - {"--help"}
        if missing:
            failures.append(f"{usage}: leaves out {sorted(missing)}")
    assert not failures, "\n".join(failures)


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("page", LINKED_PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file(page):
    failures = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            failures.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            failures.append(f"{target}: no heading #{anchor}")
    assert not failures, f"{page.relative_to(ROOT)}: " + "; ".join(failures)


def test_every_benchmark_script_named_exists():
    pages = [*LINKED_PAGES, ROOT / "benchmarks" / "RESULTS.md"]
    named = {name for page in pages for name in BENCHMARK_SCRIPT.findall(page.read_text("utf-8"))}
    assert named, "no benchmark named"
    assert not {name for name in named if not (ROOT / name).is_file()}


def test_the_python_api_examples_run(tmp_path, monkeypatch):
    # The examples write a run directory under the working directory: a fresh one.
    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(
        str(PYTHON_API),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        raise_on_error=False,
        verbose=False,
    )
    assert result.attempted >= 20
    assert result.failed == 0, f"{result.failed} example(s) of docs/python-api.md failed (above)"
