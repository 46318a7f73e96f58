"""Invariance: rotation and scale invariance come from the data, translation equivariance from the
architecture.

The course (Georgia Tech lesson, "properties of convolution") lists "translation equivariance,
rotation invariance, scale invariance" side by side, but a convolution commutes with translation
only: a 3x3 filter slides over every position, it does not turn or grow (``equivariance``
measures the shift part). Theory says the other two must come from the training data. Here one
network, :class:`cnnlab.lab.equivariance.ShiftNet` with global average pooling (the most
shift-invariant head), is trained twice on the same images and batches: (a) without augmentation
and (b) with random rotations of up to ``aug_rotate`` degrees and scaling by a factor in
[1 - ``aug_scale``, 1 + ``aug_scale``] (``augment.rotate``, ``augment.scale``). Measured on test
images rotated, scaled and translated (:func:`~cnnlab.lab.equivariance.prediction_changes`): the
accuracy and the share of predictions that change; and per layer the rotation equivariance error
``|| f(R x) - R f(x) || / || R f(x) ||`` (:func:`~cnnlab.lab.equivariance.layer_rotations`), beside
the shift error of the same stride-1 layer.
"""

from __future__ import annotations

from cnnlab.data.loader import normalize
from cnnlab.lab.common import COUNT, NON_NEGATIVE, Experiment, LabContext, Outcome, points, verdict
from cnnlab.lab.equivariance import (
    HEADS,
    ShiftNet,
    layer_rotations,
    layer_shifts,
    prediction_changes,
    rotate,
    shift,
    zoom,
)
from cnnlab.train.values import Range

# transform name -> (its function, the settings key of its values, the value that leaves x alone)
TRANSFORMS = {"rotation": (rotate, "angles", 0), "scale": (zoom, "scales", 1), "shift": (shift, "shifts", 0)}


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    train = ctx.data("fashion-mnist", "train", s["n_train"])
    test = ctx.data("fashion-mnist", "test", s["n_test"])
    probe = normalize(test.images[: s["n_probe"]], test.mean, test.std)
    recipes = dict(plain={}, augmented=dict(rotate=s["aug_rotate"], scale=s["aug_scale"]))
    numbers = dict(nets={}, head=s["head"], n_test=len(test), num_classes=train.num_classes,
                   aug_rotate=s["aug_rotate"], aug_scale=s["aug_scale"])
    for name, augment in recipes.items():
        ctx.seed_all()  # the same initial weights and batches for both: only the data differs
        model = ShiftNet(s["head"], train.image_shape[0], train.image_shape[-1], train.num_classes)
        history = ctx.train(model, name, train, test, s["epochs"], s["lr"], s["batch_size"],
                            augment=augment)
        model = model.float().cpu()
        net = dict(upright=points(history[-1]["test_acc"]), history=history,
                   layers=layer_rotations(model, probe, s["angles"]),
                   shift_reference=layer_shifts(model, probe, [0, 2])["conv1"][-1])
        for kind, (transform, key, identity) in TRANSFORMS.items():
            rows = prediction_changes(model, test, s[key], transform, key=key[:-1])
            moved = [r for r in rows if r[key[:-1]] != identity] or rows
            net[kind] = dict(rows=rows, accuracy=_mean(r["accuracy"] for r in moved),
                             changed=_mean(r["changed"] for r in moved))
        numbers["nets"][name] = net
    _plot(ctx, numbers, s)
    return Outcome(numbers, *_sentence(numbers))


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 2)


def _plot(ctx: LabContext, numbers: dict, s: dict) -> None:
    fig, axes = ctx.figure(4, size=(4.2, 4.0))
    styles = dict(plain="-", augmented="--")
    for ax, (kind, (_, key, _)) in zip(axes, TRANSFORMS.items()):
        for name, net in numbers["nets"].items():
            rows = net[kind]["rows"]
            ax.plot([r[key[:-1]] for r in rows], [r["accuracy"] for r in rows], styles[name],
                    color="tab:blue", marker="o", label=f"{name}: accuracy")
            ax.plot([r[key[:-1]] for r in rows], [r["changed"] for r in rows], styles[name],
                    color="tab:red", marker="x", label=f"{name}: % changed")
        ax.set_xlabel({"rotation": "rotation (degrees)", "scale": "scale factor",
                       "shift": "shift (pixels)"}[kind])
        ax.set_ylabel("% of test images")
        ax.set_title(f"test images under {kind}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[-1]
    for name, net in numbers["nets"].items():
        for color, (layer, rows) in zip(("tab:blue", "tab:orange", "tab:green"), net["layers"].items()):
            ax.plot([r["angle"] for r in rows], [100 * r["error"] for r in rows], styles[name],
                    color=color, marker="o", label=f"{name} {layer} (stride {rows[0]['stride']})")
    ax.set_xlabel("rotation (degrees)")
    ax.set_ylabel("|| f(Rx) - R f(x) || / || R f(x) || (%)")
    ax.set_title("feature maps do not rotate with x")
    ax.legend(fontsize=7)
    ctx.save(fig, "invariance", f"Accuracy (o) and share of changed predictions (x) on rotated, "
             f"scaled and shifted test images, for the {numbers['head']} network trained without "
             f"augmentation (solid) and with rotations up to {s['aug_rotate']:g} degrees and scaling "
             f"by 1 +- {s['aug_scale']:g} (dashed); right: the rotation equivariance error of each "
             f"layer.")


def _sentence(numbers: dict):
    plain, aug = numbers["nets"]["plain"], numbers["nets"]["augmented"]
    args = (numbers["n_test"], numbers["num_classes"])
    trained = {"the plain net": plain["upright"], "the augmented net": aug["upright"]}
    checks = {kind: verdict(f"{kind}: predictions changed, plain vs augmented", *args,
                            trained=trained, compare=(plain[kind]["changed"], aug[kind]["changed"]))
              for kind in ("rotation", "scale")}
    rows = plain["layers"]["conv1"]
    at = next((r for r in rows if r["angle"] == 90), rows[-1])
    aug_at = next(r for r in aug["layers"]["conv1"] if r["angle"] == at["angle"])
    text = (f"Rotating the test images changed {plain['rotation']['changed']:.1f}% of the plain "
            f"net's predictions (accuracy {plain['upright']:.1f}% upright, "
            f"{plain['rotation']['accuracy']:.1f}% rotated) and {aug['rotation']['changed']:.1f}% of "
            f"the net trained with rotations and scaling ({aug['upright']:.1f}% upright, "
            f"{aug['rotation']['accuracy']:.1f}% rotated); scaling changed "
            f"{plain['scale']['changed']:.1f}% against {aug['scale']['changed']:.1f}%, shifting "
            f"{plain['shift']['changed']:.1f}% against {aug['shift']['changed']:.1f}%; in conv1 a "
            f"{at['angle']:g} degree rotation left {at['error']:.0%} equivariance error "
            f"({aug_at['error']:.0%} after augmented training) where a 2 px shift left "
            f"{plain['shift_reference']['error']:.1e}")
    wins = {k: v.conclusive and v.difference > 0 for k, v in checks.items()}
    if all(wins.values()):
        verdict_text = ("invariance to rotation and scale came from the data, not from the "
                        "architecture, as theory expects (rotation "
                        f"{checks['rotation'].detail}; scale {checks['scale'].detail})")
    elif any(v.conclusive and v.difference < 0 for v in checks.values()):
        worse = next(k for k, v in checks.items() if v.conclusive and v.difference < 0)
        verdict_text = (f"augmentation made the network less invariant to {worse} at this scale, "
                        f"contrary to theory ({checks[worse].detail})")
    elif any(wins.values()):
        won = next(k for k, w in wins.items() if w)
        other = next(k for k in checks if k != won)
        verdict_text = (f"invariance to {won} came from the data ({checks[won].detail}); for "
                        f"{other} it is {checks[other].caveat}")
    else:
        verdict_text = checks["rotation"].caveat if not checks["rotation"].conclusive else \
            checks["scale"].caveat
    return f"{text}: {verdict_text}.", list(checks.values())


EXPERIMENT = Experiment(
    name="invariance",
    claim="convolution is equivariant to translation only: rotation and scale invariance come "
          "from the data",
    settings=dict(
        default=dict(head="gap", n_train=60000, n_test=2000, n_probe=256, epochs=4, lr=0.05,
                     batch_size=128, angles=[0.0, 15.0, 30.0, 45.0, 90.0, 135.0, 180.0],
                     scales=[0.5, 0.75, 1.0, 1.25, 1.5], shifts=[0, 1, 2, 3, 4],
                     aug_rotate=180.0, aug_scale=0.5),
        quick=dict(n_train=200, n_test=80, n_probe=8, epochs=1, batch_size=50,
                   angles=[0.0, 90.0, 180.0], scales=[0.5, 1.0, 1.5], shifts=[0, 2]),
        full=dict(n_test=10000, epochs=15,
                  angles=[15.0 * i for i in range(13)],
                  scales=[0.5, 0.625, 0.75, 0.875, 1.0, 1.125, 1.25, 1.375, 1.5]),
    ),
    run=run,
    choices=dict(head=HEADS),
    ranges=dict(n_probe=COUNT, angles=Range(-360, 360), scales=Range(0, 4, low_open=True),
                shifts=NON_NEGATIVE, aug_rotate=Range(0, 180), aug_scale=Range(0, 1, high_open=True)),
)
