"""The model zoo: one file per family, each registering its variants with ``register_model``."""

from cnnlab.models import lenet  # noqa: F401  (registers lenet5, lenet5_modern)
from cnnlab.models.base import ConvNet
from cnnlab.models.registry import ModelInfo, create_model, list_models, model_info, register_model

__all__ = ["ConvNet", "ModelInfo", "create_model", "list_models", "model_info", "register_model"]
