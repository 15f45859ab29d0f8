"""ConvMixer ("Patches Are All You Need?", Trockman & Kolter 2022) as the user's `MixerModel` builds it:
    stem: Conv(3 -> dim, kernel = stride = patch_size), GELU, BN    head: average pool, Linear(dim -> n_classes)
    blocks: depth x [Residual(depth-wise Conv k x k, GELU, BN), point-wise Conv 1x1, GELU, BN]"""
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

    residual = Residual

    def __init__(self, dim, depth, kernel_size=5, patch_size=2, n_classes=10):
        self.dim, self.depth, self.kernel_size = dim, depth, kernel_size
        self.patch_size, self.n_classes = patch_size, n_classes

    def conv_gelu_bn(self, conv):
        return nn.Sequential(conv, nn.GELU(), nn.BatchNorm2d(self.dim))

    def depth_wise(self):
        """Mixes space: one k x k filter per channel."""
        return self.conv_gelu_bn(nn.Conv2d(self.dim, self.dim, self.kernel_size, groups=self.dim, padding="same"))

    def point_wise(self):
        """Mixes channels: a 1x1 convolution."""
        return self.conv_gelu_bn(nn.Conv2d(self.dim, self.dim, 1))

    def get_model(self):
        blocks = nn.Sequential(*[nn.Sequential(self.residual(self.depth_wise()), self.point_wise())
                                 for _ in range(self.depth)])  # built first: a seed gives the weights it always gave
        stem = self.conv_gelu_bn(nn.Conv2d(3, self.dim, self.patch_size, stride=self.patch_size))
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.dim, self.n_classes))
        return nn.Sequential(OrderedDict(stem=stem, blocks=blocks, head=head))


def convmixer(dim, depth, kernel_size=5, patch_size=2, num_classes=10):
    return MixerModel(dim, depth, kernel_size, patch_size, num_classes).get_model()
