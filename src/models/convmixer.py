"""ConvMixer ("Patches Are All You Need?", Trockman & Kolter 2022), built the user's way.

    stem:   Conv(3 -> dim, kernel = stride = patch_size), GELU, BatchNorm
    blocks: depth x [ Residual(depth-wise Conv k x k, GELU, BN), point-wise Conv 1x1, GELU, BN ]
    head:   global average pool, flatten, Linear(dim -> n_classes)

`MixerModel(dim, depth, kernel_size=5, patch_size=2, n_classes=10)` keeps the user's signature;
`convmixer(..., num_classes=10)` is the same network under the registry's name for the argument.
"""
from collections import OrderedDict

from torch import nn


class Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


class MixerModel:
    """Builder that names each part of the diagram; `get_model()` returns the network."""

    def __init__(self, dim, depth, kernel_size=5, patch_size=2, n_classes=10):
        for name, value in dict(dim=dim, depth=depth, kernel_size=kernel_size,
                                patch_size=patch_size, n_classes=n_classes).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MixerModel: {name} must be a positive integer, got {value!r}")
        self.dim, self.depth, self.kernel_size = dim, depth, kernel_size
        self.patch_size, self.n_classes = patch_size, n_classes

    residual = Residual

    def patch_embedding(self):
        return nn.Sequential(nn.Conv2d(3, self.dim, self.patch_size, stride=self.patch_size),
                             nn.GELU(), nn.BatchNorm2d(self.dim))

    def depth_wise(self):
        """Mixes space: one k x k filter per channel."""
        return nn.Sequential(nn.Conv2d(self.dim, self.dim, self.kernel_size, groups=self.dim,
                                       padding="same"),
                             nn.GELU(), nn.BatchNorm2d(self.dim))

    def point_wise(self):
        """Mixes channels: a 1x1 convolution."""
        return nn.Sequential(nn.Conv2d(self.dim, self.dim, 1), nn.GELU(), nn.BatchNorm2d(self.dim))

    def classifier(self):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.dim, self.n_classes))

    def get_model(self):
        blocks = [nn.Sequential(self.residual(self.depth_wise()), self.point_wise())
                  for _ in range(self.depth)]
        return nn.Sequential(OrderedDict(stem=self.patch_embedding(),
                                         blocks=nn.Sequential(*blocks),
                                         head=self.classifier()))


def convmixer(dim, depth, kernel_size=5, patch_size=2, num_classes=10):
    return MixerModel(dim, depth, kernel_size, patch_size, num_classes).get_model()
