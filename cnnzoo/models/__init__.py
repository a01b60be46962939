"""Plain PyTorch models. Nothing here imports Lightning: these modules work in any training loop."""

from ._base import ZooModel, conv_output_size
from ._pretrained import (
    IntegrityError,
    UnsafePickleError,
    Weights,
    adapt_input_conv,
    cache_dir,
    download,
    fetch_url,
    get_weights,
    list_pretrained,
    load_pretrained,
    load_state_dict_file,
    load_strict,
    register_pretrained,
    register_weights,
    sha256_file,
    torch_load_weights_only,
    unregister_weights,
)
from ._registry import create_model, get_model_entrypoint, is_model, list_models, register_model, unknown_name_error

# Importing the model files registers their builders.
from .lenet import LeNet5, lenet5, lenet5_classic
from .simple_cnn import SimpleCNN, simple_cnn
from .vgg import VGG, VGG_CFGS, VGGCifarSmall, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn, vgg_cifar_small

__all__ = [
    "VGG",
    "VGG_CFGS",
    "IntegrityError",
    "LeNet5",
    "SimpleCNN",
    "UnsafePickleError",
    "VGGCifarSmall",
    "Weights",
    "ZooModel",
    "adapt_input_conv",
    "cache_dir",
    "conv_output_size",
    "create_model",
    "download",
    "fetch_url",
    "get_model_entrypoint",
    "get_weights",
    "is_model",
    "lenet5",
    "lenet5_classic",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "load_state_dict_file",
    "load_strict",
    "register_model",
    "register_pretrained",
    "register_weights",
    "sha256_file",
    "simple_cnn",
    "torch_load_weights_only",
    "unknown_name_error",
    "unregister_weights",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "vgg_cifar_small",
]
