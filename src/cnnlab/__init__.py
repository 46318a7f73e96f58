"""cnnlab — the classic convolutional networks made real."""

from cnnlab import nn
from cnnlab.analysis import Summary, summary
from cnnlab.models import ModelInfo, create_model, list_models, list_weights, model_info, weights_info

__all__ = ["ModelInfo", "create_model", "list_models", "list_weights", "model_info", "weights_info",
           "Summary", "summary", "nn"]
__version__ = "0.1.0"
