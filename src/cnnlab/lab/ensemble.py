"""Ensemble: averaging the predictions of several networks beats each of them.

The course (deeplearning.ai, week 2: "ensembling") and AlexNet (Krizhevsky et al. 2012, Sec. 6:
"averaging the predictions of five similar CNNs"): members trained from different seeds make partly
independent errors, so the mean of their probabilities, p(x) = 1/M sum_m softmax(z_m(x)), is more
accurate than a typical member. Here M copies of one network are trained with seeds ``seed .. seed
+ M - 1`` (different initialisation and batch order), and the accuracy of the first m members'
average is measured for m = 1..M (:func:`cnnlab.evaluate.ensemble.combine_predictions`).
"""

from __future__ import annotations

import statistics

from cnnlab.evaluate.ensemble import combine_predictions
from cnnlab.evaluate.metrics import predict_logits
from cnnlab.lab.common import COUNT, Experiment, LabContext, Outcome, points, verdict
from cnnlab.models import create_model


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    train = ctx.data("fashion-mnist", "train", s["n_train"])
    test = ctx.data("fashion-mnist", "test", s["n_test"])
    logits, members = [], []
    for m in range(s["members"]):
        ctx.seed_all(m)
        model = create_model(s["model"], num_classes=train.num_classes,
                             in_chans=train.image_shape[0], input_size=train.image_shape[-1])
        history = ctx.train(model, f"member{m}", train, test, s["epochs"], s["lr"], s["batch_size"],
                            model_name=s["model"], seed_offset=m)
        logits.append(predict_logits(model.float().cpu(), test))  # (N, C), float32
        members.append(points((logits[-1].argmax(1) == test.labels).float().mean().item()))
        del history
    curve = [points((combine_predictions(logits[:m], "prob").argmax(1) == test.labels)
                    .float().mean().item()) for m in range(1, len(logits) + 1)]
    numbers = dict(members=members, ensemble=curve, model=s["model"],
                   mean_member=round(sum(members) / len(members), 2), best_member=max(members),
                   member_std=round(statistics.stdev(members), 4) if len(members) > 1 else 0.0,
                   n_test=len(test), num_classes=train.num_classes)
    _plot(ctx, numbers)
    return Outcome(numbers, *_sentence(numbers))


def _plot(ctx: LabContext, numbers: dict) -> None:
    fig, ax = ctx.figure()
    m = range(1, len(numbers["members"]) + 1)
    ax.plot(m, numbers["ensemble"], marker="o", label="average of the first m members")
    ax.scatter(m, numbers["members"], color="tab:gray", marker="x", label="member m alone")
    ax.axhline(numbers["mean_member"], color="tab:gray", ls=":", label="mean member")
    ax.set_xticks(list(m))
    ax.set_xlabel("members m")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"ensembles of {numbers['model']} (different seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    ctx.save(fig, "ensemble", "Test accuracy of the mean probability of the first m members, and "
             "of each member alone.")


def _sentence(n: dict):
    """Gains count beyond the test set's binomial noise or two standard deviations of the members
    (the spread of seeds), whichever is larger."""
    full, mean, best = n["ensemble"][-1], n["mean_member"], n["best_member"]
    args = (n["n_test"], n["num_classes"])
    over_mean = verdict("ensemble vs mean member", *args, trained={"the mean member": mean},
                        compare=(full, mean), seed_std=n["member_std"])
    over_best = verdict("ensemble vs best member", *args, compare=(full, best),
                        seed_std=n["member_std"])
    if over_best.conclusive and full > best:
        text = f"the ensemble beat its best member ({over_best.detail})"
    else:
        text = over_mean.says(f"better than a typical member ({over_mean.detail}), though "
                              f"not better than the best one beyond noise", f"at this scale averaging did "
                              f"not help, contrary to the notes ({over_mean.detail})")
    peak = max(range(len(n["ensemble"])), key=n["ensemble"].__getitem__) + 1
    return (f"Averaging {len(n['members'])} {n['model']} networks trained from different seeds gave "
            f"{full:.2f}% test accuracy against {mean:.2f}% for the mean member ({full - mean:+.2f} "
            f"points) and {best:.2f}% for the best: {text} (the curve peaked at {peak} member"
            f"{'s' if peak > 1 else ''}).", [over_mean, over_best])


EXPERIMENT = Experiment(
    name="ensemble",
    claim="an ensemble's averaged prediction is more accurate than its members",
    settings=dict(
        default=dict(model="lenet5_modern", members=5, n_train=10000, n_test=5000, epochs=6,
                     lr=0.05, batch_size=128),
        quick=dict(members=3, n_train=200, n_test=80, epochs=1, batch_size=50),
        full=dict(model="resnet20", members=8, n_train=60000, n_test=10000, epochs=30),
    ),
    run=run,
    runs=lambda s: s["members"],
    ranges=dict(members=COUNT),
)
