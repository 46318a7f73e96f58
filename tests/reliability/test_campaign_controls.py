"""Controls of the campaign: healthy commands work in the workspace (so a failing case fails for its
own reason), and rows the campaign found ok stay ok."""

from __future__ import annotations

from .campaign import Case, parametrize, run_case

CASES = [
    Case("base-evaluate", "evaluate runs/base --data-dir data/small", 0, ("test accuracy",)),
    Case("base-summary", "summary runs/base", 0, ("lenet5",)),
    Case("u12", "summary vgg16 --input 3x100000x100000 --depth 1", 0, ("conv / fc share",)),
    Case("w02", "report rd/empty", 2, ("neither a training run", "cnnlab lab"),
         setup=lambda root: (root / "rd" / "empty").mkdir(parents=True)),
    Case("w06", "report rd/missing", 2, ("neither a training run",)),
    Case("l05", "lab data-scaling --quick --set sizes=0,-5 --out runs/l05", 2,
         ("sizes must be at least 1, got 0",), check=lambda root, text: _absent(root / "runs/l05")),
    Case("q13", "predict runs/base imgs/good/test/a/0.png --data-dir data/small --top-k 0", 2,
         ("--top-k",)),
]


def _absent(path):
    assert not path.exists(), f"{path} was written"


@parametrize(CASES)
def test_case(case, workspace, capsys):
    run_case(case, workspace, capsys)


def test_case_ids_are_unique_across_the_campaign_files():
    from . import test_campaign_boundary, test_campaign_engine, test_campaign_imgdata

    tables = [CASES, test_campaign_boundary.CASES, test_campaign_engine.CASES,
              test_campaign_imgdata.CASES]
    ids = [case.id for table in tables for case in table]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert len(ids) >= 150


def test_v02_no_command_prints_the_help_and_exits_2(capsys):
    from cnnlab.cli import main

    assert main([]) == 2
    out = capsys.readouterr().out
    assert "Example: cnnlab train lenet5" in out and "Traceback" not in out
