"""The command line explains itself: every command and option has a one-line help, and the top-level
help lists every command once, under the headings of what a user wants to do."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from recomart.cli import COMMAND_GROUPS, build_parser


def _walk(parser: argparse.ArgumentParser, path: str = "recomart") -> Iterator[tuple[str, argparse.Action]]:
    """(command path, action) for every option and argument of every (sub-)command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                yield f"{path} {name}", argparse.Action([], name, help=helps.get(name))
                yield from _walk(child, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_command_and_option_has_one_line_of_help() -> None:
    missing, multiline = [], []
    for path, action in _walk(build_parser()):
        name = "/".join(action.option_strings) or action.dest
        text = action.help
        if not text or text == argparse.SUPPRESS or not text.strip():
            missing.append(f"{path}: {name}")
        elif "\n" in text:
            multiline.append(f"{path}: {name}")
    assert not missing, f"no help: {missing}"
    assert not multiline, f"help longer than a line: {multiline}"


def test_the_walk_sees_nested_commands_and_their_options() -> None:
    """A guard on the walker itself: it must reach options two levels down."""
    seen = {(path, "/".join(action.option_strings) or action.dest) for path, action in _walk(build_parser())}
    assert ("recomart recommend user", "-k") in seen
    assert ("recomart features restore", "--feature-view") in seen
    assert ("recomart generate", "--users") in seen


def test_every_command_is_listed_once_under_a_heading() -> None:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    grouped = [name for _, names in COMMAND_GROUPS for name in names]
    assert sorted(grouped) == sorted(commands.choices), "COMMAND_GROUPS and the commands differ"
    assert len(grouped) == len(set(grouped))


def _parsers(parser: argparse.ArgumentParser, path: str = "recomart") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_command_help_renders_with_its_one_line_first() -> None:
    """``./recomart <command> --help`` works for every command and starts with the command's line."""
    for path, parser in _parsers(build_parser()):
        text = parser.format_help()
        assert text.startswith(f"usage: {path}"), path
        if parser.description:  # wrapped to the terminal's width
            assert " ".join(parser.description.split()) in " ".join(text.split()), path


def test_top_level_help_is_clean_and_grouped() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    out = result.stdout
    assert "``" not in out and ":mod:" not in out and ":func:" not in out
    positions = [out.index(f"{title}:\n") for title, _ in COMMAND_GROUPS]
    assert positions == sorted(positions)
    for title, names in COMMAND_GROUPS:
        section = out[out.index(f"{title}:\n") :].split("\n\n")[0]
        for name in names:
            assert f"\n  {name} " in section, f"{name} not under {title!r}"


def test_the_readme_shows_the_help_as_it_is() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```text\nusage: recomart [-h] <command> ...") + len("```text\n")
    shown = readme[start : readme.index("```\n", start)]
    assert shown.rstrip("\n") == build_parser().format_help().rstrip("\n"), "README's --help sample is stale"
