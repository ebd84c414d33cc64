"""Guided smoothing: a noise-adaptive edge-preserving filter as the network's last step.

The world-trained U-Net leaves low-frequency blotches of noise in flat backgrounds (display
panels, paper): measured on the foreign sets, a self-guided filter (He et al., ECCV 2010) on its
output, its regulariser set from the noise the network removed, bought +0.3 dB on displays and
+0.15 on print and left clean images and MNIST digits as they were. A small convolutional
network cannot compute a local variance and divide by it; this module does, in a few box
filters. Everything is local (box filters of radius 2 and 7), so tiles still stitch exactly:
the receptive radius grows by 8-9 pixels (42-44 for unet_lite_near's 34-35, by pooling phase).

Per pixel: the noise level is estimated from the residual (input - output), sigma ~
sqrt(pi / 2) * mean |residual| over 15x15 (exact for Gaussian noise); the filter's regulariser
is (g * sigma)^2, g a learned scalar (initialised to 0.25, the measured best): where the
network removed nothing (a clean input) the filter keeps every edge and level. A per-pixel g
from a 1x1 convolution of the last features cost 6% more time for the convolution and its
reordering alone. The parameter is `scale` = g * sqrt(pi / 2), used as it is: the exporter
keeps it as a named initializer (exp(log g) would be folded into an anonymous constant), which
is what lets train/onnx_import.py rebuild the model from the file.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Initial g (the regulariser's multiple of the noise level), measured on foreign-like sets.
INITIAL_GAIN = 0.25
#: Box radius of the filter itself (5x5 windows) and of the noise estimate (15x15).
FILTER_RADIUS = 2
NOISE_RADIUS = 7
#: Added to the local variance above and below the division, a = (var + f) / (var + f + eps):
#: no 0/0 anywhere (a float16 normal, unlike 1e-6; rounding of box(y^2) - box(y)^2, ~1e-7 in
#: float32, no longer decides a), and a clean image's texture of a grey level or two stays
#: (clean print copies -0.02 dB against -0.17 with the floor under eps alone; displays +0.31
#: against +0.32 dB, stage 33m's weights).
VARIANCE_FLOOR = 1e-4


def box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window's pixels inside the image; separable (two AveragePools
    that pad themselves: no Pad operators)."""
    k = 2 * radius + 1
    pool = nn.functional.avg_pool2d
    x = pool(x, (1, k), stride=1, padding=(0, radius), count_include_pad=False)
    return pool(x, (k, 1), stride=1, padding=(radius, 0), count_include_pad=False)


class GuidedSmoothing(nn.Module):
    """out = guided_filter(y guided by itself, eps = (g * sigma(x - y))^2), in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(INITIAL_GAIN * math.sqrt(math.pi / 2)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # At least float32: under bf16 autocast the variance would be mostly rounding.
        wide = torch.promote_types(y.dtype, torch.float32)
        x, y = x.to(wide), y.to(wide)
        sigma = box((x - y).abs(), NOISE_RADIUS) * self.scale  # its sign squares away
        mean = box(y, FILTER_RADIUS)
        var = (box(y * y, FILTER_RADIUS) - mean * mean).clamp(min=0.0) + VARIANCE_FLOOR
        a = var / (var + sigma * sigma)
        b = mean - a * mean
        return (box(a, FILTER_RADIUS) * y + box(b, FILTER_RADIUS)).clamp(0.0, 1.0)
