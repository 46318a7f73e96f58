"""Argument types shared by subcommands: they turn bad values into one clear usage error."""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path


def _number(kind: type, low: float, low_open: bool, expected: str):
    """An argparse type: ``kind(text)``, at least ``low`` (greater, with ``low_open``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not (value > low if low_open else value >= low):
            raise argparse.ArgumentTypeError(f"must be {'positive' if low_open else f'at least {low}'}"
                                             f", got {value}")
        return value
    return parse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs wrapped to the terminal, paragraph by paragraph; an indented line
    (an example, a config key) is kept as written, continued under a deeper indent when long."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out, paragraph = [], []

        def flush():
            if paragraph:
                out.append(textwrap.fill(" ".join(paragraph), width, initial_indent=indent,
                                         subsequent_indent=indent))
                paragraph.clear()

        for line in text.splitlines():
            if line.strip() and not line[0].isspace():
                paragraph.append(line.strip())
                continue
            flush()
            lead = indent + line[:len(line) - len(line.lstrip())]
            out.append(textwrap.fill(line.strip(), width, initial_indent=lead,
                                     subsequent_indent=lead + "    ", break_on_hyphens=False)
                       if len(lead + line.strip()) > width else indent + line)
        flush()
        return "\n".join(out)


# Options that several subcommands share read the same everywhere (tests/cli/test_cli_help.py):
# each help text is written once, here or as the config field's comment.
def shared_help(option: str, default: str) -> str:
    """The one help text of a shared option, ending with its default in this subcommand."""
    from cnnlab.train.config import field_comments

    texts = {"--device": field_comments("train")["device"],
             "--precision": field_comments("train")["precision"],
             "--data-dir": field_comments("data")["data_dir"],
             "--seed": field_comments("train")["seed"],
             "--tta": "test-time views whose probabilities are averaged (cnnlab.evaluate.tta); "
                      "crops are the model's input size"}
    return f"{texts[option]} (default: {default})".replace("%", "%%")


NO_PROGRESS_HELP = "no live progress bars (they are shown on a terminal only)"
OVERWRITE_HELP = "replace what --out holds (a run or a lab result)"


positive_int = _number(int, 1, False, "a whole number")
positive_float = _number(float, 0, True, "a positive number")
non_negative_float = _number(float, 0, False, "a number")


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (``.`` at worst)."""
    for part in (path, *path.parents):
        if part.exists():
            return part
    return Path(".")


def check_out_dir(path: str | Path, flag: str = "--out") -> None:
    """Refuse an output folder that cannot be one, before any data loads: a file in its place or
    in its path, or a read-only existing parent (checked again, as the write fails, by
    :func:`cnnlab.cli.file_system_error`)."""
    from cnnlab.errors import ConfigError

    path = Path(path)
    found = _first_existing(path)
    if not found.is_dir():
        where = "it is" if found == path else f"{str(found)!r} is"
        raise ConfigError(f"{flag} {str(path)!r}: {where} a file, not a folder; choose another {flag}")
    if not os.access(found, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {str(path)!r}: {str(found)!r} is not writable (read-only or no "
                          f"permission); choose a folder you can write")


def check_out_file(path: str | Path, example: str, flag: str = "--out") -> None:
    """Refuse an output file that is a folder (say which file name to give instead) or whose
    folder cannot be created or written (see :func:`check_out_dir`)."""
    from cnnlab.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a folder; give a file name, e.g. "
                          f"{flag} {path / example}")
    check_out_dir(path.parent, flag)


# ---- flags generated from the run config's dataclasses ------------------------------------

_EXPECTED = {int: "a whole number", float: "a number", str: "a word"}


def _flag_type(key: str, kind):
    """An argparse type: the config's own parser and range check for ``key``."""
    from cnnlab.errors import ConfigError
    from cnnlab.train.config import check_value
    from cnnlab.train.values import coerce, type_name

    def convert(text: str):
        try:
            value = coerce(key, text, kind)
        except ConfigError:
            expected = _EXPECTED.get(kind, f"a {type_name(kind)}")
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        try:
            check_value(key, value)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{key} ")) from None
        return value

    convert.__name__ = type_name(kind)  # what argparse names in its own messages
    return convert


def add_config_flags(parser: argparse.ArgumentParser, flags: dict[str, str], base=None,
                     helps: dict[str, str] | None = None,
                     choices: dict[str, tuple] | None = None) -> None:
    """Add one option per ``{"--epochs": "train.epochs"}``: its type, choices, help text and the
    default shown in it all come from the config field (its type, :data:`CHOICES`, its comment,
    its value in ``base``, default ``RunConfig()``). ``helps`` replaces a field's comment,
    ``choices`` adds the allowed values of keys the config does not list (``data.name``).
    Options default to None, "not given": read them back with :func:`config_flag_values`."""
    from cnnlab.train.config import CHOICES, RunConfig, field_comments, field_type

    base = base or RunConfig()
    choices = {**CHOICES, **(choices or {})}
    for flag, key in flags.items():
        section, name = key.split(".")
        kind = field_type(key)
        default = getattr(getattr(base, section), name)
        text = (helps or {}).get(key) or field_comments(section)[name]
        shown = "none" if default is None else default
        allowed = choices.get(key)
        long_list = allowed is not None and len(", ".join(allowed)) > 40  # named in the help text
        if long_list:
            text += f"; one of: {', '.join(allowed)}"
        help_text = f"{text} (default: {shown})".replace("%", "%%")
        dest = key.replace(".", "__")
        if kind is bool or kind == (bool | None):
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=dest, type=_flag_type(key, kind), default=None,
                                choices=allowed, help=help_text,
                                metavar=None if allowed and not long_list else name.upper())


def config_flag_values(args: argparse.Namespace, flags: dict[str, str]) -> dict:
    """``{"train.epochs": 5, ...}``: the options of :func:`add_config_flags` that were given."""
    values = {key: getattr(args, key.replace(".", "__")) for key in flags.values()}
    return {key: value for key, value in values.items() if value is not None}
