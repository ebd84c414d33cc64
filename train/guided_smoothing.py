"""Guided smoothing: a noise-adaptive edge-preserving filter as the network's last step.

The world-trained U-Net leaves low-frequency blotches of noise in flat backgrounds (display
panels, paper): measured on the foreign sets, a self-guided filter (He et al., ECCV 2010) on its
output, its regulariser set from the noise the network removed, bought +0.3 dB on displays and
+0.15 on print and left clean images and MNIST digits as they were. A small convolutional
network cannot compute a local variance and divide by it; this module does, in a few box
filters. Everything is local (box filters of radius 2 and 7), so tiles still stitch exactly:
the exported receptive radius grows by 9 pixels.

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
#: Variance floor: flat, noiseless regions divide 0 by this instead of by 0 (float16 holds it).
VARIANCE_FLOOR = 1e-6


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
        sigma = box((x - y).abs(), NOISE_RADIUS) * self.scale  # its sign squares away
        eps = sigma * sigma + VARIANCE_FLOOR
        mean = box(y, FILTER_RADIUS)
        var = (box(y * y, FILTER_RADIUS) - mean * mean).clamp(min=0.0)
        a = var / (var + eps)
        b = mean - a * mean
        return (box(a, FILTER_RADIUS) * y + box(b, FILTER_RADIUS)).clamp(0.0, 1.0)
