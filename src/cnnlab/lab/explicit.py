"""Explicit: LeNet-5 trained on the hand-derived backward pass and on autograd — the same curves.

``cnnlab.nn.explicit(model)`` swaps every convolution for a twin whose backward is the notes'
derivation (course lesson 6): dL/dw = x ⋆ g, dL/dx = the full convolution of g with the flipped kernel,
dL/db = sum of g (:mod:`cnnlab.nn.conv`). Two copies of LeNet-5 start from the same weights and
see the same batches in the same order, in float32; if the derivation is right, their training
curves agree to float32 rounding (the explicit forward sums in a different order than oneDNN's,
so bit-identity is not expected — differences of ~1e-6 per step are).
"""

from __future__ import annotations

import copy

from cnnlab.lab.common import POSITIVE, Experiment, LabContext, Outcome, points, verdict
from cnnlab.models import create_model
from cnnlab.nn import explicit

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    train = ctx.data("fashion-mnist", "train", s["n_train"])
    test = ctx.data("fashion-mnist", "test", s["n_test"])
    ctx.seed_all()
    native = create_model(s["model"], num_classes=train.num_classes, in_chans=train.image_shape[0],
                          input_size=train.image_shape[-1])
    hand = explicit(copy.deepcopy(native))
    n_explicit = sum(type(m).__name__.startswith("Explicit") for m in hand.modules())
    histories = {}
    for name, model in (("autograd", native), ("explicit", hand)):
        histories[name] = ctx.train(model, name, train, test, s["epochs"], s["lr"], s["batch_size"],
                                    precision="fp32", model_name=s["model"])
    diffs = {k: max(abs(a[k] - b[k]) for a, b in zip(histories["autograd"], histories["explicit"]))
             for k in METRICS}
    weight_diff = max((p - q).abs().max().item()
                      for p, q in zip(native.state_dict().values(), hand.state_dict().values())
                      if p.is_floating_point())
    numbers = dict(histories=histories, max_abs_difference=diffs, max_weight_difference=weight_diff,
                   explicit_layers=n_explicit, n_test=len(test), num_classes=train.num_classes,
                   final_test_acc={k: points(h[-1]["test_acc"]) for k, h in histories.items()})
    _plot(ctx, histories)
    return Outcome(numbers, *_sentence(numbers, s["model"], s["tolerance"]))


def _plot(ctx: LabContext, histories: dict) -> None:
    fig, (ax1, ax2) = ctx.figure(2)
    for name, style in (("autograd", "-"), ("explicit", "--")):
        h = histories[name]
        epochs = [r["epoch"] for r in h]
        ax1.plot(epochs, [r["train_loss"] for r in h], style, marker="o", label=f"train · {name}")
        ax1.plot(epochs, [r["test_loss"] for r in h], style, marker="s", label=f"test · {name}")
        ax2.plot(epochs, [100 * r["test_acc"] for r in h], style, marker="o", label=name)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.set_title("loss: hand-derived backward vs autograd")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy (%)")
    ax2.set_title("test accuracy")
    ax2.legend()
    ctx.save(fig, "explicit", "Training curves of the same LeNet-5 trained with the explicit "
             "backward (dashed) and with autograd (solid): the lines lie on top of each other.")


def _sentence(numbers: dict, model: str, tolerance: float):
    """The curves must agree to ``tolerance``; that they show *training* needs a net above chance."""
    d = numbers["max_abs_difference"]
    acc = numbers["final_test_acc"]
    same = d["train_loss"] <= tolerance and d["test_acc"] <= 0.005
    learned = verdict("the networks learned", numbers["n_test"], numbers["num_classes"],
                      trained={"the autograd net": acc["autograd"]})
    text = ("identical curves up to float32 rounding" if same else
            "the curves diverged beyond float32 rounding — the hand-derived backward does not match")
    if not learned.conclusive:
        text += f"; that they train is {learned.caveat}"
    return (f"{model} trained with the hand-derived backward ({numbers['explicit_layers']} explicit "
            f"convolutions) and with autograd reached {acc['explicit']:.2f}% and {acc['autograd']:.2f}% "
            f"test accuracy; the largest per-epoch difference in training loss was "
            f"{d['train_loss']:.1e} and in test accuracy {100 * d['test_acc']:.2f} points, the "
            f"final weights differ by at most {numbers['max_weight_difference']:.1e}: {text}.",
            [learned])


EXPERIMENT = Experiment(
    name="explicit",
    claim="the hand-derived convolution backward trains LeNet-5 exactly like autograd",
    settings=dict(
        default=dict(model="lenet5", n_train=10000, n_test=2000, epochs=3, lr=0.05, batch_size=64,
                     tolerance=1e-3),
        quick=dict(n_train=200, n_test=80, epochs=1, batch_size=50),
        full=dict(n_train=60000, n_test=10000, epochs=10),
    ),
    run=run,
    runs=lambda s: 2,  # autograd and explicit
    ranges=dict(tolerance=POSITIVE),
)

