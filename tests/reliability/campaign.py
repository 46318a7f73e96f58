"""The bad-input campaign as data: each case is a command, the exit status it must give, the words
its message must contain, and the files that must survive it unchanged.

A case runs in a fresh copy of the campaign workspace (``workspace`` in conftest.py: small IDX data,
a tiny trained run, an image folder), after its own ``setup`` has broken what it needs. Commands run
in-process through :func:`cnnlab.cli.main`, so a traceback would be an exception reaching pytest.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cnnlab.cli import main


@dataclass(frozen=True)
class Case:
    """One row of the campaign (ids are the campaign report's where the row comes from it)."""

    id: str
    command: str  # what the user types after `cnnlab`, run from the workspace folder
    exit: int  # the exit status it must give (2: bad input, 0: works)
    words: tuple[str, ...] = ()  # each must appear in stdout + stderr (case-insensitive)
    survive: tuple[str, ...] = ()  # workspace paths that must exist, byte-identical, afterwards
    setup: Callable[[Path], None] | None = field(default=None, compare=False)  # breaks the workspace
    check: Callable[[Path, str], None] | None = field(default=None, compare=False)  # more asserts

    def __str__(self) -> str:
        return self.id


def _digest(path: Path) -> str:
    if path.is_dir():
        return "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_case(case: Case, root: Path, capsys) -> str:
    """Run ``case`` in ``root`` (the current folder), assert its promises, return its output."""
    if case.setup is not None:
        case.setup(root)
    before = {name: _digest(root / name) for name in case.survive}
    try:
        code = main(shlex.split(case.command))
    except SystemExit as stop:  # argparse's own exits
        code = stop.code
    out, err = capsys.readouterr()
    text = out + err
    assert "Traceback" not in text, f"{case.id}: traceback:\n{text}"
    assert code == case.exit, f"{case.id}: exit {code}, expected {case.exit}:\n{text}"
    if case.exit == 2:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert len(lines) == 1, f"{case.id}: expected one line on stderr, got:\n{err}"
        assert lines[0].startswith("cnnlab"), f"{case.id}: {lines[0]}"
    for word in case.words:
        assert word.lower() in text.lower(), f"{case.id}: {word!r} not in:\n{text}"
    for name, digest in before.items():
        assert (root / name).exists(), f"{case.id}: {name} was removed"
        assert _digest(root / name) == digest, f"{case.id}: {name} was changed"
    if case.check is not None:
        case.check(root, text)
    return text


def parametrize(cases: list[Case]):
    """``@parametrize(CASES)`` over a case table, with each case's id as the test id."""
    ids = [case.id for case in cases]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    return pytest.mark.parametrize("case", cases, ids=ids)
