"""Transfer: features learned on a large data set serve a new task with few labels; less so when
the source is small and different.

The course's advice: start from a network trained by someone else on a large data set, replace its
output layer, freeze it and train on your own limited data — "features learned for 1000 object
categories will work well for the 1001st"; with more data, fine-tune more of it; the more the
source differs from the target, the less transfer helps. Two sources:

* **ImageNet** — EfficientNet-Lite0 with its ImageNet-1k weights (:mod:`cnnlab.models.weights`),
  images resized to ``imagenet_size``, grey repeated to three channels, the weights' normalisation;
* **fashion 0-4** — ``source_model`` trained here on Fashion-MNIST classes 0-4 (T-shirt, trouser,
  pullover, dress, coat): small, and similar to one target, different from the other.

Two targets: Fashion-MNIST classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) and
scikit-learn's 8x8 digits (upsampled). For each target and each number of labels per class (a
seeded, class-balanced subset, nested: :func:`~cnnlab.data.datasets.labels_per_class`):

* ``scratch`` — ``source_model`` from random initialisation, and ``pixels`` — a linear classifier
  on the raw pixels: the baselines without any source;
* ``frozen`` — the source's backbone frozen, its features cached once
  (:func:`~cnnlab.transfer.cached_features`), a new head trained on them by the Trainer;
* ``finetune`` — every layer trained, starting from the frozen run's head (LP-FT, Kumar et al.
  2022, "Fine-Tuning can Distort Pretrained Features"), BatchNorm on its running statistics
  (:func:`~cnnlab.transfer.freeze_bn_stats`), the backbone at ``backbone_lr_scale`` times the
  head's learning rate (:func:`~cnnlab.transfer.discriminative_groups`). ImageNet fine-tuning sees
  ``finetune_images`` images per run (two epochs), or one epoch of a larger labelled set, to keep
  it affordable on a CPU; ``--full`` gives it 20,000.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from cnnlab.data.datasets import labels_per_class
from cnnlab.lab.common import (
    COUNT,
    POSITIVE,
    Experiment,
    LabContext,
    Outcome,
    points,
    repeat_to,
    verdict,
)
from cnnlab.models import create_model, weights_info
from cnnlab.train.values import Range
from cnnlab.transfer import (
    FeatureDataset,
    TargetSpec,
    cached_features,
    discriminative_groups,
    freeze,
    freeze_bn_stats,
    split_for_cache,
)

METHODS = ("scratch", "pixels", "fashion frozen", "fashion finetune", "imagenet frozen",
           "imagenet finetune")
TARGETS = {"fashion 5-9": ("fashion-mnist", (5, 6, 7, 8, 9)), "digits": ("digits", None)}


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    source_spec = TargetSpec("fashion-mnist", classes=(0, 1, 2, 3, 4), data_dir=ctx.data_dir)
    src_train = ctx.data("", "", s["n_source"], dataset=source_spec.load("train"))
    src_test = ctx.data("", "", s["n_test"], dataset=source_spec.load("test"))
    size = src_train.image_shape[-1]
    ctx.seed_all()
    source = create_model(s["source_model"], num_classes=5, in_chans=1, input_size=size)
    history = ctx.train(source, "source", src_train, src_test, s["source_epochs"], s["lr"],
                        s["batch_size"], model_name=s["source_model"])
    pre = weights_info(s["imagenet"]).preprocessing
    imagenet_spec = TargetSpec("", size=s["imagenet_size"], in_chans=3, mean=pre.mean, std=pre.std)
    numbers = dict(source_test_acc=points(history[-1]["test_acc"]), accuracy={},
                   source_model=s["source_model"], imagenet=s["imagenet"],
                   imagenet_size=s["imagenet_size"], n_test={}, num_classes={})
    for t_index, (target, (name, classes)) in enumerate(TARGETS.items()):
        spec = TargetSpec(name, classes, size=size, in_chans=1, data_dir=ctx.data_dir)
        full = spec.load("train")
        test = ctx.data("", "", s["n_test"], dataset=spec.load("test"))
        ks = [k for k in s["labels_per_class"] if k <= int(full.labels.bincount().min())]
        if s["whole_set"]:
            ks.append(int(full.labels.bincount().min()))
        numbers["n_test"][target] = len(test)
        numbers["num_classes"][target] = full.num_classes
        acc = numbers["accuracy"][target] = {m: {} for m in METHODS}
        largest = labels_per_class(full, max(ks), seed=ctx.seed + t_index)
        images = {"fashion": (largest, test),
                  "imagenet": (imagenet_spec.transform(largest), imagenet_spec.transform(test))}
        frozen = {}
        for key, (train_all, test_all) in images.items():
            ctx.seed_all(1)
            network = _fresh(key, source, s["imagenet"], full.num_classes)
            freeze(network, "features")
            point, extract, head = split_for_cache(network)
            feats = [cached_features(extract, network, ds, ctx.out / "features",
                                     dict(point=point, target=target, size=ds.image_shape))[0]
                     for ds in (train_all, test_all)]
            frozen[key] = (head, feats, copy.deepcopy(network.get_classifier().state_dict()))
        for k in ks:
            first = torch.arange(k * full.num_classes)  # the k-subset: the first of the largest

            def fit(method, model, train, test_set, epochs, name, groups=None, least=None, lr=None):
                h = ctx.train(model, f"{target.split()[0]}-k{k}-{method.replace(' ', '-')}",  # noqa: B023
                              repeat_to(train, least or s["min_epoch_images"]), test_set, epochs,
                              lr or s["lr"], s["batch_size"], groups=groups, model_name=name,
                              distinct=len(train))
                acc[method][k] = points(h[-1]["test_acc"])  # noqa: B023

            ctx.seed_all(1)
            fit("scratch", create_model(s["source_model"], num_classes=full.num_classes,
                                        in_chans=1, input_size=size),
                largest.subset(first), test, s["epochs"], s["source_model"])
            ctx.seed_all(1)
            fit("pixels", nn.Linear(size * size, full.num_classes), _pixels(largest.subset(first)),
                _pixels(test), s["epochs"], None)  # a linear probe: no registry name
            for key, name in (("fashion", s["source_model"]), ("imagenet", s["imagenet"])):
                head, (tr, te), initial = frozen[key]
                head.network.get_classifier().load_state_dict(initial)  # each k starts afresh
                fit(f"{key} frozen", head, _features(tr, largest).subset(first),
                    _features(te, test), s["epochs"], name)
                # fine-tuning starts from the head just trained on the frozen features (LP-FT,
                # Kumar et al. 2022: a random head would distort the features it back-propagates
                # into), with BN on its running statistics and the backbone at a lower rate
                tuned = _fresh(key, source, s["imagenet"], full.num_classes)
                tuned.get_classifier().load_state_dict(head.network.get_classifier().state_dict())
                freeze_bn_stats(tuned)
                lr = s[f"{key}_finetune_lr"]
                groups = discriminative_groups(tuned, lr, s["backbone_lr_scale"], 5e-4)
                train_all, test_all = images[key]
                # ImageNet's network: a budget of finetune_images (two epochs over half of it),
                # or one epoch when the labelled images are more than that
                half = math.ceil(s["finetune_images"] / 2)
                epochs, least = ((s["epochs"], None) if key == "fashion" else
                                 (2, half) if len(first) <= half else (1, len(first)))
                fit(f"{key} finetune", tuned, train_all.subset(first), test_all, epochs, name,
                    groups, least, lr)
    _plot(ctx, numbers)
    return Outcome(numbers, *_sentence(numbers))


def _fresh(key: str, source: nn.Module, imagenet: str, num_classes: int) -> nn.Module:
    """A new copy of a source network with a new head of ``num_classes`` (torch's global RNG)."""
    if key == "imagenet":
        return create_model(imagenet, weights="imagenet", num_classes=num_classes)
    model = copy.deepcopy(source)
    model.reset_classifier(num_classes)
    return model


def _pixels(dataset) -> FeatureDataset:
    """The normalised pixels of ``dataset`` as one flat vector per image (a linear probe's input)."""
    from cnnlab.data.loader import normalize

    flat = normalize(dataset.images, dataset.mean, dataset.std).flatten(1)  # (N, H*W)
    return FeatureDataset(flat.unsqueeze(0), dataset.labels, dataset.classes, dataset.name)


def _features(features: torch.Tensor, dataset) -> FeatureDataset:
    return FeatureDataset(features, dataset.labels, dataset.classes, dataset.name)


def _plot(ctx: LabContext, numbers: dict) -> None:
    targets = list(numbers["accuracy"])
    fig, axes = ctx.figure(len(targets))
    styles = dict(zip(METHODS, (":", ":", "--", "--", "-", "-")))
    markers = dict(zip(METHODS, ("o", "x", "s", "^", "s", "^")))
    for ax, target in zip(axes, targets):
        for method in METHODS:
            row = numbers["accuracy"][target][method]
            ax.plot(list(row), list(row.values()), styles[method], marker=markers[method],
                    label=method)
        ax.set_xscale("log")
        ks = sorted({k for row in numbers["accuracy"][target].values() for k in row})
        ax.set_xticks(ks, [str(k) for k in ks])  # the numbers measured, not powers of ten
        ax.minorticks_off()
        ax.set_xlabel("labelled images per class (log scale)")
        ax.set_ylabel("target test accuracy (%)")
        ax.set_title(f"target: {target} ({numbers['n_test'][target]} test images)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ctx.save(fig, "transfer", f"Target accuracy against labels per class: from scratch, a linear "
             f"probe on pixels, and the frozen or fine-tuned features of a small source (fashion "
             f"0-4) and of ImageNet ({numbers['imagenet']} at {numbers['imagenet_size']} px).")


def _sentence(numbers: dict):
    """Every comparison through :func:`cnnlab.lab.common.verdict`: on each target's test set, a
    method counts as better or worse only beyond two standard errors of the difference."""
    acc, n_test, classes = numbers["accuracy"], numbers["n_test"], numbers["num_classes"]
    (similar, other) = list(acc)
    common = sorted(set(acc[similar]["scratch"]) & set(acc[other]["scratch"]))
    k = min(common, key=lambda v: abs(v - 10))
    parts, imagenet = [], {}
    for target in (similar, other):
        a = acc[target]
        best_base = max(a["scratch"][k], a["pixels"][k])
        imagenet[target] = verdict(
            f"frozen ImageNet features vs the best baseline on {target}, {k} labels per class",
            n_test[target], classes[target], trained={"frozen ImageNet": a["imagenet frozen"][k]},
            compare=(a["imagenet frozen"][k], best_base))
        parts.append(f"{a['imagenet frozen'][k]:.1f}% on {target} (scratch {a['scratch'][k]:.1f}%, "
                     f"pixels {a['pixels'][k]:.1f}%, fashion 0-4 features "
                     f"{a['fashion frozen'][k]:.1f}%)")
    text = (f"With {k} label{'s' if k > 1 else ''} per class, frozen ImageNet features "
            f"({numbers['imagenet']}) reached " + " and ".join(parts))
    wins = [v.conclusive and v.difference > 0 for v in imagenet.values()]
    losses = [v.conclusive and v.difference < 0 for v in imagenet.values()]
    unclear = next((v for v in imagenet.values() if not v.conclusive), None)
    if all(wins):
        text += (": features learned on 1,000 ImageNet categories served both new tasks better "
                 "than training from scratch or pixels, as the notes say")
    elif any(wins) and any(losses):
        text += ": they beat both baselines on one target only, so the notes' claim held in part"
    elif any(wins):
        won = next(t for t, w in zip(imagenet, wins) if w)
        text += (f": they beat both baselines on {won} ({imagenet[won].detail}); on the other "
                 f"target the comparison is {unclear.caveat}")
    elif all(losses):
        text += ": they trailed the baselines on both targets, contrary to the notes"
    else:
        text += f": whether they beat the baselines is {unclear.caveat}"
    gains, small = {}, {}
    for t in (similar, other):
        best = max(acc[t]["fashion frozen"][k], acc[t]["fashion finetune"][k])
        gains[t] = best - acc[t]["scratch"][k]
        small[t] = verdict(f"fashion 0-4 features vs scratch on {t}", n_test[t], classes[t],
                           compare=(best, acc[t]["scratch"][k]))
    helped = {t: v.conclusive and v.difference > 0 for t, v in small.items()}
    versus = f"({gains[similar]:+.1f} points against scratch on {similar}, {gains[other]:+.1f} on {other})"
    if helped[similar] and gains[similar] > gains[other]:
        text += f"; the small fashion 0-4 source helped its similar target more {versus}, as the notes say"
    elif any(helped.values()):
        text += (f"; the small fashion 0-4 source helped {other} at least as much as its similar "
                 f"target {versus}, contrary to the notes")
    elif all(v.conclusive for v in small.values()):
        text += f"; the small fashion 0-4 source hurt both targets {versus}"
    else:
        unsure = next(v for v in small.values() if not v.conclusive)
        text += (f"; the small fashion 0-4 source helped neither target beyond the test sets' noise "
                 f"{versus}: {unsure.caveat}")
    last = max(acc[similar]["imagenet finetune"])
    a = acc[similar]
    tuned = verdict(f"ImageNet fine-tuned vs frozen on {similar}, {last} labels per class",
                    n_test[similar], classes[similar],
                    compare=(a["imagenet finetune"][last], a["imagenet frozen"][last]))
    tuning = (tuned.says(f"beat freezing it ({tuned.detail})", f"trailed freezing it ({tuned.detail})")
              if tuned.conclusive else f"matched freezing it: {tuned.caveat}")
    text += f"; with {last} labels per class on {similar}, fine-tuning ImageNet's network {tuning}."
    return text, [*imagenet.values(), *small.values(), tuned]


EXPERIMENT = Experiment(
    name="transfer",
    claim="pretrained features serve new tasks with few labels; a small, different source helps less",
    settings=dict(
        default=dict(source_model="lenet5_modern", n_source=10000, n_test=500, source_epochs=4,
                     labels_per_class=[1, 5, 10, 100], whole_set=False, min_epoch_images=1000,
                     epochs=8, lr=0.05, fashion_finetune_lr=0.01, imagenet_finetune_lr=0.002,
                     batch_size=64, backbone_lr_scale=0.1,
                     imagenet="efficientnet_lite0", imagenet_size=128, finetune_images=480),
        quick=dict(n_source=200, n_test=60, source_epochs=1, labels_per_class=[1, 3],
                   min_epoch_images=40, epochs=1, batch_size=40, imagenet_size=64,
                   finetune_images=20),
        full=dict(source_model="resnet20", n_source=30000, n_test=5000, source_epochs=20,
                  labels_per_class=[1, 5, 10, 100, 1000], whole_set=True, min_epoch_images=5000,
                  epochs=15, imagenet_size=224, finetune_images=20000),
    ),
    run=run,
    ranges=dict(n_source=COUNT, source_epochs=COUNT, labels_per_class=COUNT,
                fashion_finetune_lr=POSITIVE, imagenet_finetune_lr=POSITIVE,
                backbone_lr_scale=POSITIVE, imagenet_size=Range(32), finetune_images=COUNT),
)
