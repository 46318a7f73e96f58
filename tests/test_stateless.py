"""The one stand-in runner: torch is the oracle for outputs; the model is left exactly as it was."""

from pathlib import Path

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.errors import ShapeError
from cnnlab.stateless import StandInError, _fast_meta, classify, run_stateless, stand_ins

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


def test_cpu_stand_ins_view_the_weights_and_copy_the_buffers():
    """A real-device trace reads the weights where they are (no copy of VGG's 528 MB), while the
    running statistics a training-mode forward updates are copies; a backward through the
    stand-ins leaves no gradient on the model."""
    model = _net()
    state = stand_ins(model, torch.empty(1, device="cpu"))
    weights = dict(model.named_parameters())
    assert all(state[n].data_ptr() == p.data_ptr() and state[n] is not p for n, p in weights.items())
    assert all(state[n].data_ptr() != b.data_ptr() for n, b in model.named_buffers())
    assert all(state[n].requires_grad == p.requires_grad for n, p in weights.items())
    as_double = stand_ins(model, torch.empty(1, dtype=torch.float64))  # another dtype: copies
    assert all(as_double[n].dtype == torch.float64 for n in weights)
    run_stateless(model, torch.randn(2, 1, 8, 8), training=True).sum().backward()
    assert all(p.grad is None for p in model.parameters())


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


def _layouts(shape):
    """Meta tensors of ``shape`` in the layouts a CNN makes: contiguous, channels-last, a
    permuted NHWC block output, a transposed view, and a broadcast (expanded) one."""
    x = torch.empty(shape, device="meta")
    out = {"contiguous": x}
    if len(shape) > 1:
        out["transposed"] = torch.empty(*shape[:-2], shape[-1], shape[-2],
                                        device="meta").transpose(-1, -2)
    if len(shape) == 4:
        n, c, h, w = shape
        out["channels_last"] = x.contiguous(memory_format=torch.channels_last)
        out["permuted"] = torch.empty(n, h, w, c, device="meta").permute(0, 3, 1, 2)
        out["expanded"] = torch.empty(n, c, 1, 1, device="meta").expand(shape)
    return out


def _same_layout(func, args):
    """FastMeta's shortcut (when it takes one) gives torch's own meta output: shape, strides,
    dtype; in place, the very input."""
    fast = _fast_meta(func, args, {})
    if fast is None:
        return False
    truth = func(*args)
    assert (fast.shape, fast.stride(), fast.dtype) == (truth.shape, truth.stride(), truth.dtype)
    if func.overloadpacket.__name__.endswith("_"):
        assert fast is args[0]
    return True


def test_meta_shortcuts_lay_outputs_out_as_torch_does():
    aten = torch.ops.aten
    taken = 0
    for shape, other_shapes in (((2, 6, 5, 4), [(2, 6, 5, 4), (6, 1, 1), (1, 6, 1, 1), (4,),
                                                 (5, 1), ()]),
                                ((3, 7, 9), [(3, 7, 9), (7, 1), (9,)])):
        for a in _layouts(shape).values():
            for other in other_shapes:
                for b in list(_layouts(other).values()) if len(other) == len(shape) else [
                        torch.empty(other, device="meta")]:
                    for func in (aten.mul.Tensor, aten.add.Tensor, aten.sub.Tensor):
                        taken += _same_layout(func, (a, b))
                        taken += _same_layout(func, (b, a))
                    if a.is_contiguous() or a.is_contiguous(memory_format=torch.channels_last):
                        taken += _same_layout(aten.mul_.Tensor, (a.clone(memory_format=(
                            torch.preserve_format)), b))
    for shapes, dim in (([(1, 64, 28, 28), (1, 32, 28, 28), (1, 16, 28, 28)], 1),
                        ([(2, 3, 5), (2, 4, 5)], -2), ([(4, 8), (4, 8)], 0),
                        ([(1, 8, 1, 1), (1, 8, 1, 1)], 1)):
        taken += _same_layout(aten.cat.default, ([torch.empty(s, device="meta")
                                                  for s in shapes], dim))
    for shape in ((1, 64, 112, 112), (2, 3, 7, 6), (1, 8, 13, 13)):
        x = torch.empty(shape, device="meta")
        for pool_args in (([3, 3], [2, 2], [1, 1]), ([2, 2], [2, 2]), ([3, 3], [2, 2], [0, 0],
                          [1, 1], True), ([3, 3], [1, 1], [1, 1], [1, 1], True), ([2, 2], []),
                          ([3, 3], [2, 2], [1, 1], [1, 1], True), ([3, 2], [1, 2], [1, 0],
                                                                    [2, 1], False)):
            fast = _fast_meta(aten.max_pool2d_with_indices.default, (x, *pool_args), {})
            truth = aten.max_pool2d_with_indices.default(x, *pool_args)
            assert fast is not None
            for f, t in zip(fast, truth, strict=True):
                assert (f.shape, f.stride(), f.dtype) == (t.shape, t.stride(), t.dtype)
            taken += 1
        for layout in _layouts(shape).values():
            for dims, keep in (([-1, -2], True), ([-1, -2], False), ([2, 3], True), ([1], False),
                               ([0, 2], True)):
                taken += _same_layout(aten.mean.dim, (layout, dims, keep))
    assert taken > 100  # the shortcuts were taken, not just passed on to torch
