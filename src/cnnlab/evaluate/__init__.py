"""Evaluation: metrics on a test split (and, later, multi-crop TTA and ensembles)."""

from cnnlab.evaluate.metrics import EvalResult, confusion_matrix, evaluate_model, predict_logits

__all__ = ["EvalResult", "confusion_matrix", "evaluate_model", "predict_logits"]
