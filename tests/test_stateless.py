"""The one stand-in runner: torch is the oracle for outputs; the model is left exactly as it was."""

from pathlib import Path

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.errors import ShapeError
from cnnlab.stateless import StandInError, classify, run_stateless, stand_ins

SRC = Path(cnnlab.__file__).parent


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 3 * 3, 5))


def test_functional_call_lives_in_one_module():
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                   if "functional_call(" in p.read_text())
    assert users == ["stateless.py"]


def test_device_stand_ins_give_torchs_output_and_leave_the_model_alone():
    model = _net().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 1, 8, 8)
    out = run_stateless(model, x.clone(), training=True)  # batch statistics, dropout on
    assert out.shape == (2, 5)
    # the real model: eval mode, untouched running statistics, no hooks left behind
    assert all(not m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    torch.testing.assert_close(run_stateless(model, x, training=False), model(x))


def test_meta_output_shape_is_the_real_output_shape():
    model = _net()
    for shape in ((3, 1, 8, 8), (1, 1, 9, 9)):
        real = model.eval()(torch.randn(shape)).shape
        meta = run_stateless(model, torch.empty(shape, device="meta"), training=False).shape
        assert meta == real


def test_tied_weights_share_one_stand_in():
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    model[1].weight = model[0].weight
    state = stand_ins(model, torch.empty(1, 3, device="meta"))
    assert state["0.weight"] is state["1.weight"]


def test_failures_name_the_innermost_layer_and_their_kind():
    model = _net()
    with pytest.raises(StandInError) as err:  # 4x4 -> conv 2x2 -> pool 1x1 -> linear wants 36
        run_stateless(model, torch.empty(1, 1, 4, 4, device="meta"))
    assert err.value.kind == "mismatch" and err.value.frame.name == "6"
    assert err.value.where() == "layer '6' (Linear) got input (1, 4)"
    with pytest.raises(StandInError) as err:
        run_stateless(model, torch.empty(1, 1, 2, 2, device="meta"))  # smaller than the kernel
    assert err.value.kind == "small" and err.value.frame.name == "0"
    empty = nn.Sequential(nn.Conv2d(1, 1, 1), nn.AdaptiveAvgPool2d((0, 1)))
    with pytest.raises(StandInError) as err:  # adaptive pools return an empty tensor, no error
        run_stateless(empty, torch.empty(1, 1, 4, 4, device="meta"))
    assert err.value.kind == "small" and err.value.frame.name == "1"


def test_torch_messages_are_classified_once():
    assert classify("Given input size: (64x1x1). Calculated output size: (64x0x0). "
                    "Output size is too small") == "small"
    assert classify("mat1 and mat2 shapes cannot be multiplied (1x4 and 36x5)") == "mismatch"
    assert classify("CUDA out of memory") == "other"


def test_summary_and_create_model_report_the_same_layer():
    """summary() and the models' shape check read the same runner's verdict."""
    from cnnlab import create_model, summary

    with pytest.raises(ShapeError, match=r"layer 'features\.7' \(MaxPool2d\)"):
        summary(create_model("alexnet", num_classes=10, input_size=28), (3, 3, 3))
    with pytest.raises(ShapeError, match=r"'features\.7' \(MaxPool2d\)"):
        create_model("alexnet", num_classes=10, input_size=3)
