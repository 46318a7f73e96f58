"""Receptive fields against two independent truths: published values and autograd.

The empirical check (Araujo et al., Distill 2019, "Computing Receptive Fields of CNNs", section on
verifying with gradients): with positive weights and inputs there is no cancellation, so the
gradient of one output unit with respect to the input is non-zero exactly where the unit's field
lies. Max-pooling routes gradients to one winner, so it is swapped for average pooling with the
same window (the same field) for the check.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

import cnnlab


class _MaxToAvgPool(TorchFunctionMode):
    """Run every max-pooling as average pooling over the same windows (same receptive field)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if "max_pool" in name:
            x = args[0]
            nd = x.dim() - 2
            if "adaptive" in name:
                size = args[1] if len(args) > 1 else kwargs["output_size"]
                return getattr(F, f"adaptive_avg_pool{nd}d")(x, size)
            names = ["kernel_size", "stride", "padding", "dilation", "ceil_mode"]
            opts = dict(zip(names, args[1:], strict=False)) | {
                k: v for k, v in kwargs.items() if k in names}
            assert opts.get("dilation", 1) in (1, [1] * nd, (1,) * nd)
            return getattr(F, f"avg_pool{nd}d")(
                x, opts["kernel_size"], opts.get("stride") or opts["kernel_size"],
                opts.get("padding", 0), opts.get("ceil_mode", False))
        return func(*args, **kwargs)


def _positive_(model: nn.Module) -> None:
    """Positive weights of magnitude ~1/fan_in (no cancellation, no overflow in deep nets)."""
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.uniform_(0.5, 1.0).div_(fan_in)


def _gradient_support(model: nn.Module, target: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Mask of input positions where d(central unit of ``target``'s output)/d(input) != 0."""
    captured = {}
    module = model.get_submodule(target)
    handle = module.register_forward_hook(lambda m, a, out: captured.setdefault("out", out))
    x = (torch.rand(shape, dtype=torch.float64) + 0.5).requires_grad_()
    try:
        with _MaxToAvgPool():
            model(x)
    finally:
        handle.remove()
    out = captured["out"]
    centre = tuple((n - 1) // 2 for n in out.shape[2:])
    unit = out[(0, slice(None), *centre)].sum()
    (grad,) = torch.autograd.grad(unit, x)
    return grad.abs().sum(dim=(0, 1)) != 0, centre


def _expected_support(rf, centre, spatial) -> torch.Tensor:
    mask = torch.ones(spatial, dtype=torch.bool)
    for axis, (c, n) in enumerate(zip(centre, spatial, strict=True)):
        first = rf.starts[axis] + c * rf.jumps[axis]
        last = first + rf.sizes[axis] - 1
        inside = (torch.arange(n) >= first) & (torch.arange(n) <= last)
        mask &= inside.view([-1 if i == axis else 1 for i in range(len(spatial))])
    return mask


class _NoInit:
    """Skip torch.nn.init during construction: every weight is overwritten by _positive_."""

    def __enter__(self):
        self.saved = {k: v for k, v in vars(nn.init).items() if k.endswith("_") and callable(v)}
        for k in self.saved:
            setattr(nn.init, k, lambda tensor, *a, **kw: tensor)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(nn.init, k, v)


def _cheap_model(name: str):
    """The model at the first size in (64, 48, 32) whose forward costs <= 400M MACs, or else at
    the cheapest of them (models adapt their stem to small inputs, so cost is not monotonic)."""
    info = cnnlab.model_info(name)
    chans, default = info.input_size[0], info.input_size[1:]
    accepted = []
    for size in (64, 48, 32):
        spatial = tuple(min(size, d) for d in default)
        try:
            with torch.device("meta"):  # probing the size costs nothing on meta
                probe = cnnlab.create_model(name, input_size=spatial[-1])
            s = cnnlab.summary(probe.eval(), (chans, *spatial))
        except cnnlab.errors.CnnlabError:
            continue
        accepted.append((s.total_macs > 400e6, s.total_macs, spatial, s))
    assert accepted, f"{name}: no input size in (64, 48, 32) is accepted"
    _, _, spatial, s = min(accepted, key=lambda a: a[:2])
    with _NoInit():
        model = cnnlab.create_model(name, input_size=spatial[-1]).eval()
    return model, s, (1, chans, *spatial)


def _zoo():
    big = 25_000_000  # building and running these takes seconds on two CPU cores
    return [pytest.param(n, marks=pytest.mark.slow) if (cnnlab.model_info(n).params or 0) > big
            else n for n in cnnlab.list_models()]


@pytest.mark.parametrize("name", _zoo())
def test_field_is_where_the_gradient_is_nonzero(name):
    model, s, shape = _cheap_model(name)
    model = model.double()
    spatial = shape[2:]
    counts = {}
    for r in s.rows:
        counts[r.name] = counts.get(r.name, 0) + 1
    # The deepest unique module whose output is still a feature map and whose field fits.
    candidates = [r for r in s.rows if counts[r.name] == 1 and r.receptive_field is not None
                  and r.output_shape is not None and len(r.output_shape) == len(shape)
                  and r.receptive_field.exact
                  and all(v <= n - 2 for v, n in zip(r.receptive_field.sizes, spatial,
                                                      strict=True))]
    assert candidates, f"{name}: no layer with a field smaller than the input {spatial}"
    row = candidates[-1]
    _positive_(model)
    support, centre = _gradient_support(model, row.name, shape)
    expected = _expected_support(row.receptive_field, centre, spatial)
    assert torch.equal(support, expected), (
        f"{name} {row.name}: field {row.receptive_field} at unit {centre}; gradient support "
        f"spans {support.nonzero().min(0).values.tolist()}..{support.nonzero().max(0).values.tolist()}")


def _rf(s, name):
    (row,) = [r for r in s.rows if r.name == name]
    return row.receptive_field


def test_vgg16_pool5_field_is_212_with_jump_32():
    with torch.device("meta"):  # building on meta skips 138M random draws
        model = torchvision.models.vgg16(weights=None)
    s = cnnlab.summary(model, (3, 224, 224))
    rf = _rf(s, "features.30")  # pool5
    assert (rf.size, rf.jump, rf.aligned) == (212, 32, True)


def test_resnet50_layer4_field_is_427_not_the_call_order_chain():
    with torch.device("meta"):
        model = torchvision.models.resnet50(weights=None)
    s = cnnlab.summary(model, (3, 224, 224))
    rf = _rf(s, "layer4")
    assert (rf.size, rf.jump, rf.aligned) == (427, 32, True)


def test_merge_of_misaligned_paths_is_flagged_and_the_union_is_reported():
    class TwoPaths(nn.Module):
        def __init__(self):
            super().__init__()
            self.centred = nn.Conv2d(1, 1, 3, padding=1)  # unit 0 sees rows -1..1 (centre 0)
            self.shifted = nn.Conv2d(1, 1, 2, padding=1)  # unit 0 sees rows -1..0 (centre -0.5)

        def forward(self, x):
            return self.centred(x) + self.shifted(x)[..., :-1, :-1]

    s = cnnlab.summary(TwoPaths(), (1, 8, 8))
    assert _rf(s, "centred").aligned and _rf(s, "shifted").aligned
    root_field = s.all_rows[-1]  # the last call is "shifted"; the merge is the model's output
    assert root_field.name == "shifted"
    from cnnlab.analysis.trace import run_trace

    trace = run_trace(TwoPaths(), torch.empty(1, 1, 8, 8, device="meta"), train=False)
    from cnnlab.analysis.receptive_field import receptive_field

    merged = receptive_field(trace.calls[0].field, 2)
    assert (merged.size, merged.start, merged.aligned) == (3, -1, False)


def test_inception_branches_concatenate_aligned():
    s = cnnlab.summary(torchvision.models.googlenet(weights=None, init_weights=False), (3, 224, 224))
    rf = _rf(s, "inception3a")
    assert rf.aligned and rf.jump == 8


def test_transposed_convolution_field_against_gradient():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ConvTranspose2d(2, 1, 3, stride=1))
    s = cnnlab.summary(model, (1, 15, 15))
    rf = _rf(s, "1")
    _positive_(model)
    support, centre = _gradient_support(model.double(), "1", (1, 1, 15, 15))
    assert torch.equal(support, _expected_support(rf, centre, (15, 15)))
