"""Controls of the campaign: healthy commands work in the workspace (so a failing case fails for its
own reason), and rows the campaign found ok stay ok."""

from __future__ import annotations

from .campaign import Case, parametrize, run_case

CASES = [
    Case("base-evaluate", "evaluate runs/base --data-dir data/small", 0, ("test accuracy",)),
    Case("base-summary", "summary runs/base", 0, ("lenet5",)),
    Case("q13", "predict runs/base imgs/good/test/a/0.png --data-dir data/small --top-k 0", 2,
         ("--top-k",)),
]


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
