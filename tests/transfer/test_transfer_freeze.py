"""Freezing: frozen parameters and BN statistics do not move; discriminative learning rates."""

import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.models import create_model
from cnnlab.train import RunConfig, Trainer
from cnnlab.transfer import discriminative_groups, freeze, frozen_stage_names


def _resnet20():
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=10, in_chans=1, input_size=28)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _config(tmp_path, epochs=1):
    config = RunConfig()
    for key, value in dict(epochs=epochs, batch_size=16, device="cpu", precision="fp32",
                           eval_batch_size=100, lr=0.1).items():
        setattr(config.train, key, value)
    config.model.name = "resnet20"
    return config


def test_policies_name_the_frozen_stages():
    model = _resnet20()
    assert frozen_stage_names(model, "none") == []
    assert frozen_stage_names(model, "features") == ["stem", "stage1", "stage2", "stage3"]
    assert frozen_stage_names(model, "stage1") == ["stem", "stage1"]
    with pytest.raises(ConfigError, match="stage1, stage2, stage3"):
        frozen_stage_names(model, "stage9")


def test_frozen_parameters_and_bn_statistics_unchanged_after_training(tiny_dataset, tmp_path):
    train, test = tiny_dataset
    model = _resnet20()
    frozen = freeze(model, "stage2")
    assert frozen == ["stem", "stage1", "stage2"]
    stages = model.stages()
    before = {name: _snapshot(stages[name]) for name in stages}
    groups = discriminative_groups(model, 0.1, 0.5, 5e-4)
    trainer = Trainer(_config(tmp_path), tmp_path / "run", train.subset(torch.arange(64)),
                      test.subset(torch.arange(16)), progress=False, log=None, model=model,
                      groups=groups)
    trainer.fit()
    after = {name: _snapshot(stages[name]) for name in stages}
    for name in ("stem", "stage1", "stage2"):  # weights, BN affine, running_mean/var, counters
        for key in before[name]:
            assert torch.equal(before[name][key], after[name][key]), f"{name}.{key} moved"
    moved = [k for k in before["stage3"] if not torch.equal(before["stage3"][k], after["stage3"][k])]
    assert any("running_mean" in k for k in moved) and any("conv" in k for k in moved)
    assert not torch.equal(before["head"]["1.weight"], after["head"]["1.weight"])


def test_frozen_bn_stays_in_eval_mode_after_model_train():
    model = _resnet20()
    freeze(model, "features")
    model.train()  # what any training loop calls
    bn = model.bn1
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.randn(4, 1, 28, 28) * 3 + 1
    out = model(x)
    assert not bn.training
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    # oracle: with the backbone in eval mode the output is the same
    model.eval()
    torch.testing.assert_close(out, model(x))
    assert all(not p.requires_grad for p in model.layer3.parameters())
    assert all(p.requires_grad for p in model.fc.parameters())


def test_discriminative_learning_rates():
    model = _resnet20()
    freeze(model, "stage1")
    groups = discriminative_groups(model, lr=0.1, backbone_lr_scale=0.1, weight_decay=1e-4)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(model.fc.weight)]["lr"] == 0.1
    assert by_id[id(model.layer3[0].conv1.weight)]["lr"] == pytest.approx(0.01)
    assert by_id[id(model.layer3[0].bn1.weight)]["weight_decay"] == 0.0
    assert by_id[id(model.fc.weight)]["weight_decay"] == 1e-4
    assert id(model.layer1[0].conv1.weight) not in by_id  # frozen: not optimised at all
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(by_id) == trainable
