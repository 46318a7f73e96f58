"""The invariance experiment: a tiny run checked against predictions recomputed here with
torch.rot90 (an exact rotation the experiment does not use), and its sentence on made-up numbers."""

from __future__ import annotations

import copy

import pytest
import torch

from cnnlab.data.loader import normalize
from cnnlab.lab import get_experiment, run_experiment
from cnnlab.lab.equivariance import ShiftNet
from cnnlab.lab.invariance import _sentence
from cnnlab.train.checkpoint import load_weights


@pytest.mark.slow
def test_tiny_run_measures_both_nets_under_every_transform(tmp_path, tiny_idx_dir):
    settings = {"n_train": "60", "n_test": "40", "n_probe": "4", "angles": "0,90",
                "scales": "1,0.5", "shifts": "0,2"}
    out = tmp_path / "inv"
    record = run_experiment(get_experiment("invariance"), out, "quick", 0, settings,
                            str(tiny_idx_dir), "cpu", log=None)
    nets = record["numbers"]["nets"]
    assert list(nets) == ["plain", "augmented"]
    from cnnlab.data.datasets import balanced_order, load_dataset

    test = load_dataset("fashion-mnist", "test", str(tiny_idx_dir))
    test = test.subset(balanced_order(test.labels, 0)[:40])
    for name, net in nets.items():
        model = load_weights(ShiftNet("gap"), out / "runs" / name / "model.safetensors").eval()
        with torch.no_grad():
            upright = model(normalize(test.images, test.mean, test.std)).argmax(1)
            turned = model(normalize(torch.rot90(test.images, -1, (-2, -1)), test.mean,
                                     test.std)).argmax(1)
        rows = {r["angle"]: r for r in net["rotation"]["rows"]}
        assert rows[0.0]["changed"] == 0.0  # the identity changes nothing
        assert rows[90.0]["accuracy"] == pytest.approx(100 * (turned == test.labels).float().mean().item())
        assert rows[90.0]["changed"] == pytest.approx(100 * (turned != upright).float().mean().item())
        assert net["rotation"]["changed"] == rows[90.0]["changed"]  # the mean over non-identity angles
        assert {r["scale"] for r in net["scale"]["rows"]} == {1.0, 0.5}
        assert [r["angle"] for r in net["layers"]["conv1"]] == [0.0, 90.0]
        assert net["layers"]["conv1"][0]["error"] == 0.0
    config = (out / "runs" / "augmented" / "config.json").read_text()
    assert '"rotate": 180.0' in config and '"scale": 0.5' in config
    assert (out / "invariance.png").read_bytes()[:4] == b"\x89PNG"


def _numbers(plain_rot: float, aug_rot: float, plain_scale: float, aug_scale: float,
             upright: float = 85.0, n_test: int = 2000) -> dict:
    def net(rot: float, scale: float) -> dict:
        return dict(upright=upright, rotation=dict(changed=rot, accuracy=upright - rot / 2),
                    scale=dict(changed=scale, accuracy=upright - scale / 2),
                    shift=dict(changed=5.0, accuracy=upright - 2),
                    layers=dict(conv1=[dict(angle=0.0, error=0.0, stride=1),
                                       dict(angle=90.0, error=0.9, stride=1)]),
                    shift_reference=dict(error=0.0))
    plain = net(plain_rot, plain_scale)
    aug = copy.deepcopy(net(aug_rot, aug_scale))
    return dict(nets=dict(plain=plain, augmented=aug), n_test=n_test, num_classes=10)


def test_sentence_credits_the_data_only_beyond_noise():
    text, checks = _sentence(_numbers(60.0, 20.0, 40.0, 15.0))
    assert "invariance to rotation and scale came from the data, not from the architecture" in text
    assert "in conv1 a 90 degree rotation left 90% equivariance error" in text
    assert all(c.conclusive for c in checks)
    partial, _ = _sentence(_numbers(60.0, 20.0, 40.0, 39.0))
    assert "invariance to rotation came from the data" in partial
    assert "for scale it is inconclusive at this scale (+1.0 points, within the noise" in partial
    worse, _ = _sentence(_numbers(20.0, 60.0, 40.0, 39.0))
    assert "augmentation made the network less invariant to rotation at this scale" in worse
    chance, _ = _sentence(_numbers(60.0, 20.0, 40.0, 15.0, upright=11.0, n_test=80))
    assert "inconclusive at this scale (the plain net at 11.0% is within 2 standard errors" in chance
