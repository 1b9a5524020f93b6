"""Every command's ``--help`` reads at 80 columns: the search's options in panels (Data, Search,
Budget, Storage, Output, Speed, in that order), flags without a ``<bool>`` value, and nothing cut
off with an ellipsis."""

import re

import pytest
import typer

from autotransfer.cli import app, main

COMMANDS = [None, *typer.main.get_command(app).commands]


def _help(command, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    main([*([command] if command else []), "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_the_help_fits_80_columns_with_no_bool_and_nothing_cut(command, capsys, monkeypatch):
    out = _help(command, capsys, monkeypatch)
    assert "Usage:" in out and max(map(len, out.splitlines())) <= 80
    assert "<bool>" not in out
    assert "…" not in out, [line for line in out.splitlines() if "…" in line]


def test_the_search_options_come_in_panels_in_order(capsys, monkeypatch):
    out = _help("search", capsys, monkeypatch)
    panels = re.findall(r"╭─ (\w+) ─", out)
    assert panels == ["Arguments", "Options", "Data", "Search", "Budget", "Storage", "Output",
                      "Speed"]
    assert "--[no-]cache" in out and "(default: on)" in out  # one column, the default in words
    options = out.split("╭─ Options")[1].split("╰")[0]
    assert "--help" in options and "--" not in options.replace("--help", "")  # all in panels
