"""Equivariance: convolution commutes with translation; pooling makes the output (nearly) invariant.

For a convolution ``f`` and a translation ``T_k`` by k pixels, ``f(T_k x) = T_k f(x)`` away from
the borders (the course notes: the same filter slides over every position). After a stage of
cumulative stride ``s`` the feature map moves by ``k / s`` pixels — exactly only when ``s``
divides ``k``. The classifier on top decides how much of the shift reaches the prediction:

* ``flatten``: three stride-1 convolutions, flattened into a fully connected layer — every
  position has its own weights, so a shift changes the input of the classifier;
* ``maxpool``: the same convolutions with 2x2 max pooling after the first two, then flatten —
  small shifts are partly absorbed by the pooling windows;
* ``gap``: the pooled convolutions, then global average pooling — a sum over positions, which no
  interior shift changes.

Measured: for each layer and shift, the feature-map shift ``j`` that best explains
``f(T_k x)`` as ``T_j f(x)`` and the relative error left (interior only); for each network, the
accuracy on shifted test images and the fraction of predictions that change.

The same measurements for a rotation ``R`` (:func:`layer_rotations`: ``f(R x)`` against
``R f(x)`` inside the disc the rotation keeps) and for any transform of the test images
(:func:`prediction_changes` with ``transform=rotate`` or ``zoom``) serve the ``invariance``
experiment.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from cnnlab.data.augment import affine
from cnnlab.evaluate.predict import predict
from cnnlab.lab.common import COUNT, NON_NEGATIVE, Experiment, LabContext, Outcome, points, verdict

HEADS = ("flatten", "maxpool", "gap")


class ShiftNet(nn.Module):
    """conv3x3(16) - [pool] - conv3x3(32) - [pool] - conv3x3(32) - head (module docstring)."""

    def __init__(self, head: str, in_chans: int = 1, input_size: int = 28, num_classes: int = 10):
        super().__init__()
        pool = head != "flatten"
        self.conv1 = nn.Sequential(nn.Conv2d(in_chans, 16, 3, padding=1), nn.ReLU())
        self.pool1 = nn.MaxPool2d(2) if pool else nn.Identity()
        self.conv2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.pool2 = nn.MaxPool2d(2) if pool else nn.Identity()
        self.conv3 = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        side = input_size // 4 if pool else input_size
        self.gap = nn.AdaptiveAvgPool2d(1) if head == "gap" else nn.Identity()
        self.fc = nn.Linear(32 if head == "gap" else 32 * side * side, num_classes)

    def feature_maps(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
        """Each conv stage's output with its cumulative stride: name -> ((B, C, H, W), stride)."""
        c1 = self.conv1(x)
        c2 = self.conv2(self.pool1(c1))
        c3 = self.conv3(self.pool2(c2))
        pooled = not isinstance(self.pool1, nn.Identity)
        return {"conv1": (c1, 1), "conv2": (c2, 2 if pooled else 1), "conv3": (c3, 4 if pooled else 1)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_maps(x)["conv3"][0]
        return self.fc(self.gap(x).flatten(1))


def shift(images: torch.Tensor, k: int) -> torch.Tensor:
    """Translate (..., H, W) right by ``k`` pixels along W, filling with zeros (background)."""
    if k == 0:
        return images
    out = torch.zeros_like(images)
    out[..., k:] = images[..., :-k]
    return out


def _resample(images: torch.Tensor, degrees: float, scale: float) -> torch.Tensor:
    """:func:`cnnlab.data.augment.affine` on (N, C, H, W) images of any dtype (uint8 rounded back)."""
    if degrees == 0 and scale == 1:
        return images
    out = affine(images.float(), float(degrees), float(scale))
    return out.round().clamp(0, 255).to(images.dtype) if images.dtype == torch.uint8 else out


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate (N, C, H, W) clockwise by ``degrees`` about the centre (bilinear, zeros outside);
    multiples of 90 degrees permute the pixels exactly (90: ``torch.rot90(x, -1, (-2, -1))``)."""
    return _resample(images, degrees, 1.0)


def zoom(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale the content of (N, C, H, W) by ``factor`` about the centre (< 1 shrinks, zeros fill)."""
    return _resample(images, 0.0, factor)


def map_shift_error(fx: torch.Tensor, fsx: torch.Tensor, j: int, margin: int) -> float:
    """|| f(T_k x) - T_j f(x) || / || T_j f(x) || over columns [j + margin, W - margin)."""
    shifted = shift(fx, j)
    cols = slice(j + margin, fx.shape[-1] - margin)
    ref = shifted[..., cols]
    return ((fsx[..., cols] - ref).norm() / ref.norm().clamp(min=1e-12)).item()


@torch.no_grad()
def layer_shifts(model: ShiftNet, images: torch.Tensor, shifts: list[int],
                 margin: int = 3) -> dict[str, list[dict]]:
    """For each stage and shift k: the best feature-map shift j (0..k) and its relative error."""
    model.eval()
    base = model.feature_maps(images)
    out: dict[str, list[dict]] = {name: [] for name in base}
    for k in shifts:
        moved = model.feature_maps(shift(images, k))
        for name, (fx, stride) in base.items():
            fsx = moved[name][0]
            inner = max(1, margin // stride)
            errors = {j: map_shift_error(fx, fsx, j, inner) for j in range(0, k // stride + 2)}
            best = min(errors, key=errors.get)
            out[name].append(dict(shift=k, stride=stride, best_map_shift=best,
                                  error=errors[best], expected=k / stride))
    return out


@torch.no_grad()
def layer_rotations(model: ShiftNet, images: torch.Tensor, angles: list[float],
                    margin: int = 2) -> dict[str, list[dict]]:
    """For each stage and angle: || f(R x) - R f(x) || / || R f(x) || inside the disc of radius
    min(H, W) / 2 - margin (in map pixels) that the rotation keeps — 0 for an equivariant map."""
    model.eval()
    base = model.feature_maps(images)
    out: dict[str, list[dict]] = {name: [] for name in base}
    for angle in angles:
        moved = model.feature_maps(rotate(images, angle))
        for name, (fx, stride) in base.items():
            expected, got = rotate(fx, angle), moved[name][0]
            h, w = fx.shape[-2:]
            ys, xs = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2,
                                    indexing="ij")
            disc = (ys ** 2 + xs ** 2).sqrt() <= min(h, w) / 2 - max(1, margin // stride)
            ref = expected[..., disc]
            error = ((got[..., disc] - ref).norm() / ref.norm().clamp(min=1e-12)).item()
            out[name].append(dict(angle=angle, stride=stride, error=error))
    return out


def prediction_changes(model: nn.Module, test_set, values: list, transform=None,
                       key: str = "shift") -> list[dict]:
    """Accuracy, fraction of changed predictions and mean probability change for each value of a
    transform of the test images (``transform(images, value)``, default :func:`shift` in pixels;
    :func:`rotate`, :func:`zoom`); changes are counted against the predictions on the images as
    they are (predictions: :func:`cnnlab.evaluate.predict.predict`)."""
    transform = transform or shift
    base_prob = predict(model, test_set)[0].softmax(1)
    base_pred, rows = base_prob.argmax(1), []
    for k in values:
        moved = dataclasses.replace(test_set, images=transform(test_set.images, k))
        prob = predict(model, moved)[0].softmax(1)
        pred = prob.argmax(1)
        rows.append({key: k, "accuracy": points((pred == test_set.labels).float().mean().item()),
                     "changed": points((pred != base_pred).float().mean().item()),
                     "prob_change": round(0.5 * (prob - base_prob).abs().sum(1).mean().item(), 4)})
    return rows


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    train = ctx.data("fashion-mnist", "train", s["n_train"])
    test = ctx.data("fashion-mnist", "test", s["n_test"])
    shifts = list(s["shifts"])
    models, numbers = {}, dict(layers={}, predictions={}, histories={}, n_test=len(test),
                               num_classes=train.num_classes)
    for i, head in enumerate(HEADS):
        ctx.seed_all(i)
        model = ShiftNet(head, train.image_shape[0], train.image_shape[-1], train.num_classes)
        history = ctx.train(model, head, train, test, s["epochs"], s["lr"], s["batch_size"],
                            precision="fp32" if s["fp32"] else "auto", seed_offset=i)
        models[head] = model.float().cpu()
        numbers["histories"][head] = history
        numbers["predictions"][head] = prediction_changes(models[head], test, shifts)
    probe = test.images[: s["n_probe"]]
    from cnnlab.data.loader import normalize

    probe = normalize(probe, test.mean, test.std)
    numbers["layers"]["flatten"] = layer_shifts(models["flatten"], probe, shifts)
    numbers["layers"]["maxpool"] = layer_shifts(models["maxpool"], probe, shifts)
    _plot(ctx, numbers, shifts)
    return Outcome(numbers, *_sentence(numbers, shifts))


def _plot(ctx: LabContext, numbers: dict, shifts: list[int]) -> None:
    from cnnlab.train.runlog import whole_number_ticks

    fig, (ax1, ax2) = ctx.figure(2)
    curves: dict[tuple, list[str]] = {}  # identical curves (the stride-1 maps: all zero) drawn once
    for net in ("flatten", "maxpool"):
        for name, rows in numbers["layers"][net].items():
            key = (rows[0]["stride"], tuple(r["error"] for r in rows))
            curves.setdefault(key, []).append(f"{net} {name}")
    for (stride, errors), names in curves.items():
        style = "-" if stride == 1 else "--"
        ax1.plot(shifts, errors, style, marker="o", label=f"{', '.join(names)} (stride {stride})")
    # symlog: an exact 0 sits at 0 on the axis (a log axis has no 0), small errors stay readable
    ax1.set_yscale("symlog", linthresh=1e-6)
    ax1.set_ylim(bottom=-3e-7)  # the zero line just above the frame, not hidden by it
    for ax in (ax1, ax2):
        whole_number_ticks(ax, shifts)  # shifts are whole pixels
    ax1.set_xlabel("input shift k (pixels)")
    ax1.set_ylabel("relative error of f(T_k x) vs T_j f(x), best j")
    ax1.set_title("feature maps shift with the input")
    ax1.legend(fontsize=7)
    for head in HEADS:
        rows = numbers["predictions"][head]
        ax2.plot(shifts, [r["changed"] for r in rows], marker="o", label=head)
    ax2.set_xlabel("input shift k (pixels)")
    ax2.set_ylabel("% of test predictions changed")
    ax2.set_title("how much the prediction moves")
    ax2.legend()
    ctx.save(fig, "equivariance", "Left: error left after shifting each feature map by its best "
             "shift j (logarithmic above 1e-6, linear down to an exact 0; maps whose curves are "
             "identical share one line). Right: share of test predictions that change when the input "
             "shifts, by classifier type.")


def _sentence(numbers: dict, shifts: list[int]):
    k = 2 if 2 in shifts else max(shifts)  # a moderate shift: 4 px cuts into 28x28 items
    rows = numbers["layers"]["flatten"]["conv3"]
    at_k = next(r for r in rows if r["shift"] == k)
    pooled = numbers["layers"]["maxpool"]["conv2"]
    odd = next((r for r in pooled if r["shift"] % 2 == 1), None)
    changed = {h: next(r for r in numbers["predictions"][h] if r["shift"] == k)["changed"]
               for h in HEADS}
    first = (f"shifting the input by {k} px shifted the stride-1 conv maps by {at_k['best_map_shift']} "
             f"px with {at_k['error']:.1e} relative error in the interior")
    if odd is not None:
        first += (f", while after 2x2 pooling a {odd['shift']} px shift left {odd['error']:.0%} "
                  f"error (equivariance only for multiples of the stride)")
    order = sorted(HEADS, key=changed.get, reverse=True)
    accuracy = {f"the {h} net": numbers["predictions"][h][0]["accuracy"] for h in HEADS}
    # each step of the ranking (flatten > maxpool > gap) must stand beyond the binomial noise
    steps = [verdict(f"{a} vs {b} predictions changed by {k} px", numbers["n_test"],
                     numbers["num_classes"], trained=accuracy, compare=(changed[a], changed[b]))
             for a, b in zip(HEADS, HEADS[1:])]
    weak = next((v for v in steps if not v.conclusive), None)
    if order != list(HEADS) and (weak is None or weak.difference is not None):
        reversed_step = next(v for v in steps if v.difference < 0)
        text = (f"at this scale the ranking differs from the notes' (most to least changed: "
                f"{', '.join(order)}; {reversed_step.claim}: {reversed_step.detail})"
                if reversed_step.conclusive else reversed_step.caveat)
    elif weak is not None:
        text = weak.caveat
    else:
        text = (f"pooling made the output more invariant, global pooling most ("
                f"{'; '.join(v.detail for v in steps)})")
    return (f"{first[0].upper()}{first[1:]}; the same {k} px shift changed "
            f"{changed['flatten']:.1f}% of predictions with a flatten head, {changed['maxpool']:.1f}% "
            f"with max pooling and {changed['gap']:.1f}% with global average pooling: {text}.", steps)


EXPERIMENT = Experiment(
    name="equivariance",
    claim="convolution is translation-equivariant; pooling and global pooling make the output "
          "(nearly) invariant",
    settings=dict(
        default=dict(n_train=10000, n_test=2000, n_probe=256, epochs=3, lr=0.05, batch_size=128,
                     shifts=[0, 1, 2, 3, 4], fp32=False),
        quick=dict(n_train=200, n_test=80, n_probe=16, epochs=1, shifts=[0, 1, 2], batch_size=50),
        full=dict(n_train=60000, n_test=10000, epochs=10, shifts=[0, 1, 2, 3, 4, 5, 6]),
    ),
    run=run,
    runs=lambda s: len(HEADS),
    ranges=dict(n_probe=COUNT, shifts=NON_NEGATIVE),
)
