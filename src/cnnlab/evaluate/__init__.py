"""Evaluation: metrics (top-1/top-5, per-class, confusion, ECE), multi-crop TTA and ensembles."""

from cnnlab.evaluate.calibration import expected_calibration_error, reliability_bins
from cnnlab.evaluate.ensemble import EnsembleResult, ensemble_evaluate
from cnnlab.evaluate.metrics import (
    EvalResult,
    confusion_matrix,
    evaluate_model,
    predict_logits,
    result_from_probabilities,
    summary_lines,
    top_k_accuracy,
)
from cnnlab.evaluate.predict import predict
from cnnlab.evaluate.tta import (
    TTA_MODES,
    FlipTTA,
    average_probabilities,
    predict_view_logits,
    tta_views,
)

__all__ = ["EnsembleResult", "EvalResult", "FlipTTA", "TTA_MODES", "average_probabilities",
           "confusion_matrix", "ensemble_evaluate", "evaluate_model", "expected_calibration_error",
           "predict", "predict_logits", "predict_view_logits", "reliability_bins",
           "result_from_probabilities", "summary_lines", "top_k_accuracy", "tta_views"]
