"""TTA: predicting from several views of each test image (multi-crop) helps a little.

AlexNet (Krizhevsky et al. 2012, Sec. 4.1) averaged the softmax over ten patches: four corners,
the centre, and their mirror images. One network is trained with the matching augmentation
(random crops after zero padding, horizontal flips) and evaluated with ``none``, ``flip``,
``5crop`` and ``10crop`` views (:mod:`cnnlab.evaluate.tta`; on 28x28 images the corner crops are
the image shifted diagonally by 3 pixels, as in the training augmentation). A second network
trained *without* augmentation shows that views the network never saw in training can hurt.
"""

from __future__ import annotations

from cnnlab.evaluate.metrics import evaluate_model
from cnnlab.lab.common import NON_NEGATIVE, Experiment, LabContext, Outcome, points, verdict
from cnnlab.models import create_model

MODES = ("none", "flip", "5crop", "10crop")


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    train = ctx.data("fashion-mnist", "train", s["n_train"])
    test = ctx.data("fashion-mnist", "test", s["n_test"])
    size = train.image_shape[-1]
    recipes = dict(augmented=dict(crop_pad=s["crop_pad"], flip=0.5), plain={})
    numbers = dict(model=s["model"], accuracy={}, loss={}, n_test=len(test),
                   num_classes=train.num_classes)
    for name, augment in recipes.items():
        ctx.seed_all()
        model = create_model(s["model"], num_classes=train.num_classes,
                             in_chans=train.image_shape[0], input_size=size)
        ctx.train(model, name, train, test, s["epochs"], s["lr"], s["batch_size"],
                  model_name=s["model"], augment=augment)
        model = model.float().cpu()
        results = {mode: evaluate_model(model, test, 500, tta=mode, crop_size=size) for mode in MODES}
        numbers["accuracy"][name] = {m: points(r.accuracy) for m, r in results.items()}
        numbers["loss"][name] = {m: round(r.loss, 4) for m, r in results.items()}
    _plot(ctx, numbers)
    return Outcome(numbers, *_sentence(numbers))


def _plot(ctx: LabContext, numbers: dict) -> None:
    fig, ax = ctx.figure()
    width = 0.38
    for i, (name, accs) in enumerate(numbers["accuracy"].items()):
        xs = [j + (i - 0.5) * width for j in range(len(MODES))]
        bars = ax.bar(xs, [accs[m] for m in MODES], width, label=f"trained {name}")
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    low = min(min(a.values()) for a in numbers["accuracy"].values())
    ax.set_ylim(max(0, low - 5), None)
    ax.set_xticks(range(len(MODES)), MODES)
    ax.set_xlabel("test-time views")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{numbers['model']}: multi-crop evaluation")
    ax.legend()
    ctx.save(fig, "tta", "Test accuracy with 1, 2, 5 and 10 views per image, for a network trained "
             "with crop + flip augmentation and one trained without.")


def _sentence(numbers: dict):
    aug = numbers["accuracy"]["augmented"]
    plain = numbers["accuracy"]["plain"]
    best = max(MODES, key=aug.get)
    gain = verdict("10 crops vs one view (trained with crop + flip)", numbers["n_test"],
                   numbers["num_classes"], trained={"the network (one view)": aug["none"]},
                   compare=(aug["10crop"], aug["none"]))
    text = gain.says(f"multi-crop helped, as AlexNet found ({gain.detail})",
                     f"at this scale multi-crop hurt, contrary to the notes ({gain.detail})")
    return (f"With crop + flip training, test accuracy went from {aug['none']:.2f}% (one view) to "
            f"{aug['flip']:.2f}% (flip), {aug['5crop']:.2f}% (5 crops) and {aug['10crop']:.2f}% "
            f"(10 crops), best: {best}: {text}; the network trained without augmentation went "
            f"from {plain['none']:.2f}% to {plain['10crop']:.2f}% with 10 views it never saw in "
            f"training.", [gain])


EXPERIMENT = Experiment(
    name="tta",
    claim="multi-crop test-time augmentation (flip, 5-crop, 10-crop) improves accuracy",
    settings=dict(
        default=dict(model="lenet5_modern", n_train=20000, n_test=5000, epochs=6, lr=0.05,
                     batch_size=128, crop_pad=3),
        quick=dict(n_train=200, n_test=80, epochs=1, batch_size=50),
        full=dict(model="resnet20", n_train=60000, n_test=10000, epochs=30),
    ),
    run=run,
    runs=lambda s: 2,  # trained with and without crop + flip
    ranges=dict(crop_pad=NON_NEGATIVE),
)
