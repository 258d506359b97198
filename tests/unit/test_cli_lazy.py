"""The lazy command table of ``trunkline`` says what the command modules really register."""

from __future__ import annotations

import importlib

import click
from click.testing import CliRunner

from trunkline.cli import main


def test_command_table_matches_the_modules():
    for module in set(main.COMMANDS.values()):
        g = click.Group()
        importlib.import_module(f"trunkline.cli.{module}").register(g)
        assert {n for n, m in main.COMMANDS.items() if m == module} == set(g.commands), module


def test_help_lists_every_command_and_unknown_is_a_usage_error():
    r = CliRunner().invoke(main.cli, ["--help"])
    assert r.exit_code == 0
    for name in main.COMMANDS:
        assert f"  {name} " in r.output or f"  {name}\n" in r.output, name
    r = CliRunner().invoke(main.cli, ["nosuchcommand"])
    assert r.exit_code == 2 and "No such command" in r.output
    r = CliRunner().invoke(main.cli, ["plan", "--help"])
    assert r.exit_code == 0 and "--size" in r.output
