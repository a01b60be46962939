"""A small all-convolutional network, the classic Fashion-MNIST example.

Downsampling is done by stride-2 convolutions instead of pooling layers: each 3x3 convolution with padding 1 and
stride 2 halves the map (28 -> 14 -> 7 -> 4), so the network learns how to downsample.
"""

from __future__ import annotations

from torch import nn

from ._base import ZooModel, check_sizes, conv_output_size
from ._pretrained import register_pretrained
from ._registry import register_model

__all__ = ["SimpleCNN", "simple_cnn"]


class SimpleCNN(ZooModel):
    """Three stride-2 3x3 convolutions (32, 64, 128) with ReLU, then dropout / dense 512 / dropout / classifier.

    Args:
        num_classes: classifier outputs (0: return the 512-d features).
        in_chans: input channels.
        img_size: input size; the dense layer is sized from it.
        drop_rate: dropout probability before and after the dense layer.
    """

    widths = (32, 64, 128)

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28, drop_rate: float = 0.3) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, img_size=img_size)
        check_sizes(type(self).__name__, img_size, minimum=8)
        layers: list[nn.Module] = []
        size, prev = img_size, in_chans
        for width in self.widths:
            layers += [nn.Conv2d(prev, width, kernel_size=3, stride=2, padding=1), nn.ReLU(inplace=True)]
            size = conv_output_size(size, 3, stride=2, padding=1)
            prev = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(drop_rate),
            nn.Linear(prev * size * size, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
        )
        self._make_classifier(512, num_classes)


@register_model
def simple_cnn(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, drop_rate: float = 0.3) -> SimpleCNN:
    """The Fashion-MNIST example CNN: stride-2 convolutions, a dropout-regularised dense head."""
    return SimpleCNN(num_classes=num_classes, in_chans=in_chans, img_size=img_size, drop_rate=drop_rate)


# Published weights (cnnzoo/models/pretrained/<arch.tag>.json, written by `cnnzoo publish`).
register_pretrained("simple_cnn.mnist", default=True)
