"""Plain PyTorch models. Nothing here imports Lightning: these modules work in any training loop."""

from ._base import ZooModel, conv_output_size
from ._registry import create_model, is_model, list_models, register_model

# Importing the model files registers their builders.
from .lenet import LeNet5, lenet5, lenet5_classic
from .simple_cnn import SimpleCNN, simple_cnn
from .vgg import VGG, VGG_CFGS, VGGCifarSmall, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn, vgg_cifar_small

__all__ = [
    "VGG",
    "VGG_CFGS",
    "LeNet5",
    "SimpleCNN",
    "VGGCifarSmall",
    "ZooModel",
    "conv_output_size",
    "create_model",
    "is_model",
    "lenet5",
    "lenet5_classic",
    "list_models",
    "register_model",
    "simple_cnn",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "vgg_cifar_small",
]
