"""Calibration: does a model's confidence match how often it is right?

Expected calibration error (Naeini, Cooper & Hauskrecht, 2015; Guo et al., *On Calibration of
Modern Neural Networks*, 2017, eq. 3), with ``M`` equal-width confidence bins
``B_m = ((m-1)/M, m/M]``, confidence = the largest predicted probability:

    ECE = sum_m |B_m| / n * | acc(B_m) - conf(B_m) |

where acc(B_m) is the fraction of correct top-1 predictions in the bin and conf(B_m) the mean
confidence in it. Empty bins contribute nothing. ``M = 15`` as in Guo et al.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ReliabilityBins:
    """Per-bin counts, accuracy and mean confidence (for a reliability diagram)."""

    edges: torch.Tensor  # (M + 1,) bin edges 0, 1/M, ..., 1
    counts: torch.Tensor  # (M,) examples per bin
    accuracy: torch.Tensor  # (M,) fraction correct per bin (0 where empty)
    confidence: torch.Tensor  # (M,) mean confidence per bin (0 where empty)


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> ReliabilityBins:
    """Bin the top-1 confidence of ``probs`` (N, classes) into ``n_bins`` equal-width bins."""
    confidence, predictions = probs.float().max(1)
    correct = (predictions == labels).float()
    # bin m (0-based) holds confidences in (m/M, (m+1)/M]; a confidence of exactly 0 goes to bin 0
    index = (torch.ceil(confidence * n_bins).long() - 1).clamp(0, n_bins - 1)
    counts = torch.bincount(index, minlength=n_bins).float()
    acc_sum = torch.bincount(index, weights=correct, minlength=n_bins)
    conf_sum = torch.bincount(index, weights=confidence, minlength=n_bins)
    safe = counts.clamp(min=1)
    return ReliabilityBins(torch.linspace(0, 1, n_bins + 1), counts.long(), acc_sum / safe,
                           conf_sum / safe)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE = sum_m |B_m|/n |acc(B_m) - conf(B_m)| over ``n_bins`` equal-width confidence bins."""
    bins = reliability_bins(probs, labels, n_bins)
    weights = bins.counts.float() / max(1, len(labels))
    return float((weights * (bins.accuracy - bins.confidence).abs()).sum())
