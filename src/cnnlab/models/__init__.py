"""The model zoo: one file per family, each registering its variants with ``register_model``."""

from cnnlab.models import (  # noqa: F401  (registration)
    alexnet,
    convnext,
    efficientnet,
    fastnet,
    googlenet,
    inception,
    lenet,
    nin,
    resnet,
    resnet_cifar,
    tdnn,
    vgg,
)
from cnnlab.models.base import ConvNet
from cnnlab.models.registry import ModelInfo, create_model, list_models, model_info, register_model
from cnnlab.models.weights import (
    WeightsInfo,
    list_weights,
    load_state_dict_file,
    load_torchvision_weights,
    weights_info,
)

__all__ = ["ConvNet", "ModelInfo", "create_model", "list_models", "model_info", "register_model",
           "load_state_dict_file", "load_torchvision_weights", "WeightsInfo", "list_weights",
           "weights_info"]
