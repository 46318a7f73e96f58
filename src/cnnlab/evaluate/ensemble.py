"""Ensembles: several trained networks vote by averaging their predictions.

The course's tips for benchmarks (deeplearning.ai CNN course, week 2: "ensembling multiple
models") and AlexNet's "averaging the predictions of five similar CNNs" (Krizhevsky et al., 2012,
section 6): members trained from different seeds or with different architectures make partly
independent errors, so their average is more accurate than any one of them.

Two ways of combining M members (each possibly with V test-time views):

* ``"prob"`` (default): p(x) = 1/M sum_m sum_v w_v softmax(z_mv(x)) — the mean of probabilities;
* ``"logit"``:          p(x) = softmax(1/M sum_m sum_v w_v z_mv(x)) — the softmax of mean logits
  (a geometric mean of the members' probabilities, renormalised),

with the TTA mode's view weights w_v (1/V each but for ``flip_shift``:
:func:`cnnlab.evaluate.tta.view_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.data.datasets import InMemoryDataset
from cnnlab.device import Precision
from cnnlab.errors import ConfigError
from cnnlab.evaluate.metrics import EvalResult, result_from_probabilities
from cnnlab.evaluate.predict import predict
from cnnlab.evaluate.tta import average_probabilities, view_mean, view_weights

COMBINE_MODES = ("prob", "logit")


def combine_predictions(member_logits: Sequence[torch.Tensor], combine: str = "prob",
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """Ensemble probabilities (N, C) from each member's logits, (N, C) or (V, N, C); ``weights``
    (V,): the views' weights (default equal)."""
    if combine not in COMBINE_MODES:
        raise ConfigError(f"unknown combine mode {combine!r}; use prob or logit")
    if not member_logits:
        raise ConfigError("an ensemble needs at least one member")
    stacked = [z if z.ndim == 3 else z.unsqueeze(0) for z in member_logits]  # each (V, N, C)
    if combine == "prob":
        return torch.stack([average_probabilities(z.float(), weights) for z in stacked]).mean(0)
    return torch.stack([view_mean(z.float(), weights) for z in stacked]).mean(0).softmax(-1)


@dataclass
class EnsembleResult:
    names: list[str]  # one per member (e.g. the run directories)
    members: list[EvalResult]  # each member alone (with the same TTA)
    ensemble: EvalResult  # the combination
    combine: str  # prob or logit

    @property
    def best_member(self) -> int:
        return max(range(len(self.members)), key=lambda i: self.members[i].accuracy)

    @property
    def gain(self) -> float:
        """Ensemble top-1 accuracy minus the best member's (a fraction; x100 for points)."""
        return self.ensemble.accuracy - self.members[self.best_member].accuracy

    def format(self) -> str:
        """A table: each member, the ensemble, and the gain over the best member."""
        width = max(len(f"ensemble ({self.combine})"), *(len(n) for n in self.names))
        top5 = self.ensemble.top5 is not None
        head = f"{'member':<{width}}  {'top-1':>7}" + (f"  {'top-5':>7}" if top5 else "") + \
            f"  {'loss':>7}  {'ECE':>6}"
        lines = [head]

        def row(name: str, r: EvalResult) -> str:
            cells = f"{name:<{width}}  {r.accuracy * 100:6.2f}%"
            cells += f"  {r.top5 * 100:6.2f}%" if top5 else ""
            return cells + f"  {r.loss:7.4f}  {r.ece * 100:5.2f}%"

        lines += [row(n, r) for n, r in zip(self.names, self.members)]
        lines.append(row(f"ensemble ({self.combine})", self.ensemble))
        best = self.names[self.best_member]
        lines.append(f"gain over the best member ({best}): {self.gain * 100:+.2f} points")
        return "\n".join(lines)


def ensemble_evaluate(models: Sequence[nn.Module], datasets: Sequence[InMemoryDataset],
                      names: Sequence[str] | None = None, combine: str = "prob",
                      tta: str = "none", crop_sizes: Sequence[int] | None = None,
                      batch_size: int = 500, precision: Precision | None = None,
                      progress: bool = False) -> EnsembleResult:
    """Evaluate each member and their combination on the same test examples.

    Args:
        models: the members.
        datasets: each member's test split (one per member: members may need different input
            sizes), holding the same examples in the same order — their labels must agree.
        names: a label per member for the report.
        combine: ``prob`` (mean of probabilities) or ``logit`` (softmax of mean logits).
        tta: test-time augmentation mode applied to every member (tta.py).
        crop_sizes: each member's crop size (default: its data set's image size).
        progress: a bar per member (``member 2/3: NAME``), on a terminal only.
    """
    if len(models) != len(datasets):
        raise ConfigError(f"{len(models)} models but {len(datasets)} test sets")
    labels = datasets[0].labels
    for i, ds in enumerate(datasets[1:], 1):
        if len(ds) != len(labels) or not torch.equal(ds.labels, labels):
            raise ConfigError(f"member {i} is tested on different examples or labels than member 0; "
                              f"ensemble runs trained on the same data set and classes")
    names = list(names or [f"member{i}" for i in range(len(models))])
    crop_sizes = crop_sizes or [ds.image_shape[-1] for ds in datasets]
    count = len(models)
    member_logits = [predict(m, ds, tta, crop, batch_size, precision,
                             f"member {i + 1}/{count}: {name}" if progress else None)
                     for i, (m, ds, crop, name) in enumerate(zip(models, datasets, crop_sizes, names))]
    # each (V, N, C)
    classes = datasets[0].classes
    weights = view_weights(tta)
    members = [result_from_probabilities(combine_predictions([z], combine, weights), labels, classes)
               for z in member_logits]
    ensemble = result_from_probabilities(combine_predictions(member_logits, combine, weights),
                                         labels, classes)
    return EnsembleResult(names, members, ensemble, combine)
