"""Every command's help in one style: defaults and environment variables in
click's brackets, summaries whole, ``--json`` only where it changes the output."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from distcron.cli import main


def _commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = [()]
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        found.append((name,))
        if isinstance(command, click.Group):
            found += [(name, sub) for sub in command.list_commands(ctx)]
    return found


@pytest.mark.parametrize("path", _commands(), ids=lambda path: " ".join(path) or "distcron")
def test_help_states_defaults_and_variables_one_way_and_cuts_nothing(
        path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert not re.search(r"\(default|default:\s*\$|\(or set ", text), text
    commands = text.split("Commands:", 1)[1] if "Commands:" in text else ""
    assert "..." not in commands, commands


def test_serve_lists_the_variable_of_each_layered_setting() -> None:
    text = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output
    for variable in ("DISTCRON_STORE", "DISTCRON_LISTEN", "DISTCRON_ID", "DISTCRON_DATA_DIR",
                     "DISTCRON_TOKEN_FILE", "DISTCRON_LEASE_TTL", "DISTCRON_MAX_CLOCK_SKEW",
                     "DISTCRON_SMTP"):
        assert f"env var: {variable}" in text, variable


def test_json_is_offered_only_where_it_changes_the_output() -> None:
    saved = CliRunner().invoke(main, ["snapshot", "save", "--help"]).output
    assert "--json" not in saved and "env var: DISTCRON_SERVER" in saved
    assert "--json" in CliRunner().invoke(main, ["runs", "--help"]).output
