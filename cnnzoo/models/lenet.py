"""LeNet-5 (LeCun et al., 1998), in its modern and its classic form.

Convolution arithmetic on a 32x32 input, the size LeNet was designed for:

    conv 5x5 (6)  -> 6x28x28    32 - 5 + 1 = 28
    pool 2x2 /2   -> 6x14x14
    conv 5x5 (16) -> 16x10x10   14 - 5 + 1 = 10
    pool 2x2 /2   -> 16x5x5     -> 400 features -> 120 -> 84 -> classes

MNIST digits are 28x28, so the first convolution pads by 2 (28 + 2*2 = 32) and every later size is unchanged.
Each output unit of the second pooling layer sees a 16x16 patch of the input (its receptive field).
"""

from __future__ import annotations

from torch import nn

from ._base import ZooModel, check_sizes, conv_output_size
from ._pretrained import register_pretrained
from ._registry import register_model

__all__ = ["LeNet5", "lenet5", "lenet5_classic"]


class LeNet5(ZooModel):
    """LeNet-5 with a choice of activation and pooling.

    Args:
        num_classes: classifier outputs (0: return the 84-d pre-logit features).
        in_chans: input channels.
        img_size: 28 (the first convolution pads by 2) or 32 (no padding).
        classic: ``True`` for the 1998 form (sigmoid, average pooling), ``False`` for ReLU and max pooling.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28, classic: bool = False) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, img_size=img_size)
        check_sizes(type(self).__name__, img_size, allowed=(28, 32))
        padding = (32 - img_size) // 2
        act: type[nn.Module] = nn.Sigmoid if classic else nn.ReLU
        pool: type[nn.Module] = nn.AvgPool2d if classic else nn.MaxPool2d
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, kernel_size=5, padding=padding),
            act(),
            pool(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            act(),
            pool(kernel_size=2, stride=2),
        )
        size = img_size
        for kernel, stride, pad in ((5, 1, padding), (2, 2, 0), (5, 1, 0), (2, 2, 0)):
            size = conv_output_size(size, kernel, stride, pad)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * size * size, 120),
            act(),
            nn.Linear(120, 84),
            act(),
        )
        self._make_classifier(84, num_classes)


@register_model
def lenet5(num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> LeNet5:
    """Modern LeNet-5: ReLU and max pooling. 61,706 parameters for 1x28x28 input and 10 classes."""
    return LeNet5(num_classes=num_classes, in_chans=in_chans, img_size=img_size, classic=False)


@register_model
def lenet5_classic(num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> LeNet5:
    """The 1998 LeNet-5 as d2l presents it: sigmoid activations and average pooling."""
    return LeNet5(num_classes=num_classes, in_chans=in_chans, img_size=img_size, classic=True)


# Published weights (cnnzoo/models/pretrained/<arch.tag>.json, written by `cnnzoo publish`).
register_pretrained("lenet5.mnist", default=True)
register_pretrained("lenet5.digits")
register_pretrained("lenet5_classic.mnist", default=True)
