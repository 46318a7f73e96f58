"""benchmarks/bench_time_to_accuracy.py: each ablation row removes exactly its technique."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from cnnlab.train.config import RunConfig, apply_overrides, flatten
from cnnlab.train.recipes import RECIPES, recipe_config

_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(_DIR))  # the script imports its neighbour _harness
    try:
        spec = importlib.util.spec_from_file_location("bench_tta", _DIR / "bench_time_to_accuracy.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(_DIR))
    return module


def _diff(a: RunConfig, b: RunConfig) -> dict:
    fa, fb = flatten(a), flatten(b)
    out = {k: (fa[k], fb[k]) for k in fa if fa[k] != fb[k]}
    if "model.options" in out:  # one entry per option that changed
        oa, ob = out.pop("model.options")
        out.update({f"model.options.{k}": (oa.get(k), ob.get(k)) for k in set(oa) | set(ob)
                    if oa.get(k) != ob.get(k)})
    return out


EXPECTED = {  # technique -> the key it turns off, and the value that means "off"
    "whitening stem": ("model.options.whiten", False),
    "whiten bias freeze": ("model.options.whiten_bias_epochs", 10 ** 6),
    "dirac init": ("model.options.dirac", False),
    "bias-only BatchNorm": ("model.options.bn_weight", True),
    "BatchNorm momentum": ("model.options.bn_momentum", 0.1),
    "logit scale": ("model.options.logit_scale", 1.0),
    "bias lr scale": ("train.bias_lr_scale", 1.0),
    "label smoothing": ("train.label_smoothing", 0.0),
    "nesterov": ("train.nesterov", False),
    "lookahead": ("train.lookahead_every", 0),
    "alternating flip": ("augment.flip_mode", "random"),
    "flip": ("augment.flip", 0.0),
    "crop (translate)": ("augment.crop_pad", 0),
    "shift TTA": ("train.tta_shift", False),
    "flip TTA": ("train.tta_flip", False),
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_ablation_removes_exactly_its_technique(bench, recipe):
    assert set(bench.TECHNIQUES) == set(EXPECTED) and set(bench.GOALS) == set(RECIPES)
    full = recipe_config(recipe)
    removed = 0
    for technique, remove in bench.TECHNIQUES.items():
        change = remove(full)
        if change is None:
            continue
        removed += 1
        ablated = apply_overrides(recipe_config(recipe), change).validate()
        diff = _diff(full, ablated)
        key, off = EXPECTED[technique]
        assert diff[key][1] == off, technique
        extra = set(diff) - {key}
        assert extra <= ({"train.tta_shift"} if technique == "flip TTA" else set()), (technique, diff)
    assert removed >= 10  # the recipes use the speed-run techniques


def test_a_technique_the_recipe_does_not_use_has_no_row(bench):
    config = RunConfig()  # lenet5, none of the techniques
    assert all(remove(config) is None for remove in bench.TECHNIQUES.values())


def test_a_bias_freeze_after_the_last_epoch_has_no_row(bench):
    config = apply_overrides(recipe_config("fmnist-fast"), {
        "model.options": {"whiten": True, "whiten_bias_epochs": 3}, "train.epochs": 3})
    assert bench.TECHNIQUES["whiten bias freeze"](config) is None  # the bias trains all 3 epochs
    config.train.epochs = 4
    assert bench.TECHNIQUES["whiten bias freeze"](config) is not None
