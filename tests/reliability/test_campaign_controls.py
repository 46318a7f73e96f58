"""Controls of the campaign: healthy commands work in the workspace (so a failing case fails for its
own reason), and rows the campaign found ok stay ok."""

from __future__ import annotations

from .campaign import Case, parametrize, run_case

CASES = [
    Case("base-evaluate", "evaluate runs/base --data-dir data/small", 0, ("test accuracy",)),
    Case("base-summary", "summary runs/base", 0, ("lenet5",)),
    Case("e_empty", "evaluate rd/empty --data-dir data/small", 2, ("not a cnnlab run directory",),
         setup=lambda root: (root / "rd" / "empty").mkdir(parents=True)),
    Case("t14", "transfer --from runs/base --epochs 1 --no-progress --out runs/base", 2,
         ("already holds a run", "--overwrite"), survive=("runs/base/model.safetensors",)),
    Case("q13", "predict runs/base imgs/good/test/a/0.png --data-dir data/small --top-k 0", 2,
         ("--top-k",)),
]


@parametrize(CASES)
def test_case(case, workspace, capsys):
    run_case(case, workspace, capsys)
