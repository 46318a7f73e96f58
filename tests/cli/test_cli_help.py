"""Every subcommand's --help: it prints, it is wrapped, it shows examples, and the options several
subcommands share read the same in each."""

from __future__ import annotations

import argparse

import pytest

from cnnlab.cli import COMMANDS, build_parser, main

# Options with one meaning wherever they appear (--batch-size and --out do not: steps or passes,
# run folders or files).
SHARED = ("--device", "--data-dir", "--precision", "--tta", "--seed", "--no-progress",
          "--overwrite")
WIDTH = 100


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _meaning(text: str) -> str:
    """A help text without the default it ends with (defaults differ between subcommands)."""
    return text.split(" (default:")[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_prints_wrapped_with_examples(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"  cnnlab {command}" in text
    long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not long, f"cnnlab {command} --help has lines over {WIDTH} characters: {long}"


def test_shared_options_read_the_same_in_every_subcommand():
    seen: dict[str, dict[str, str]] = {}
    for command, parser in _subparsers().items():
        for action in parser._actions:
            for option in set(action.option_strings) & set(SHARED):
                seen.setdefault(option, {})[command] = _meaning(action.help % vars(action))
    assert set(seen) == set(SHARED)
    for option, helps in seen.items():
        assert len(helps) > 1, f"{option} is not shared"
        assert len(set(helps.values())) == 1, f"{option} reads differently: {helps}"


def test_device_accepts_auto_wherever_it_is_an_option():
    for command, parser in _subparsers().items():
        device = next((a for a in parser._actions if "--device" in a.option_strings), None)
        if device is not None:
            assert device.help.startswith("auto (cuda if available), cpu, cuda"), command
            assert device.default in (None, "auto"), (command, device.default)
