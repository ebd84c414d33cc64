"""Re-parameterised convolutions: more paths in training, the same graph at inference.

RepVGG (Ding et al., 2021) and ECBSR (Zhang et al., 2021) train each 3x3 convolution with
parallel 1x1 and identity branches, each under its own batch norm, and fold the branches into
the 3x3 kernel before deployment: the exported network is the plain one, so it costs exactly
what the plain one costs, while training moves the kernel along more paths. Here a
`RepConvBlock` keeps `models._conv_block`'s layers under their own names (a plain checkpoint
loads into it, the branches starting at zero scale so it computes what the plain block did) and
`fuse` turns a trained network back into the plain architecture, exactly up to float rounding.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class RepBranches(nn.Module):
    """The 1x1 and (where channels match) identity branches beside one 3x3 convolution.

    Their batch-norm scales start at zero: a fresh block computes what the plain one does, so
    fine-tuning from a plain checkpoint starts from that checkpoint's outputs.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.identity = nn.BatchNorm2d(cout) if cin == cout else None
        for bn in (self.bn, self.identity):
            if bn is not None:
                nn.init.zeros_(bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return y if self.identity is None else y + self.identity(x)


def _folded(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch norm at inference as a per-channel (scale, shift)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class RepConvBlock(nn.Module):
    """`models._conv_block(..., batch_norm=True)` under the same layer names ("0" conv, "1" batch
    norm, "2" relu, "3" conv...), with `RepBranches` beside each convolution."""

    def __init__(self, plain: nn.Sequential) -> None:
        super().__init__()
        for name, layer in plain.named_children():
            self.add_module(name, layer)
        convs = [m for m in plain if isinstance(m, nn.Conv2d)]
        self.branches = nn.ModuleList(RepBranches(c.in_channels, c.out_channels) for c in convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = [m for n, m in self.named_children() if n != "branches"]
        for i, branch in enumerate(self.branches):
            conv, bn, relu = layers[3 * i : 3 * i + 3]
            x = relu(bn(conv(x)) + branch(x))
        return x

    @torch.no_grad()
    def fused(self) -> nn.Sequential:
        """The plain block computing the same: each 3x3 kernel absorbs its branches, its batch
        norm becomes a shift (scale 1, mean 0, variance 1 - eps)."""
        layers = [copy.deepcopy(m) for n, m in self.named_children() if n != "branches"]
        for i, branch in enumerate(self.branches):
            conv, bn = layers[3 * i], layers[3 * i + 1]
            scale, shift = _folded(bn)
            kernel = conv.weight * scale[:, None, None, None]
            s1, b1 = _folded(branch.bn)
            kernel[:, :, 1, 1] += branch.conv.weight[:, :, 0, 0] * s1[:, None]
            shift = shift + b1
            if branch.identity is not None:
                si, bi = _folded(branch.identity)
                kernel[:, :, 1, 1] += torch.diag(si)
                shift = shift + bi
            conv.weight.copy_(kernel)
            bn.weight.fill_(1.0)
            bn.bias.copy_(shift)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        return nn.Sequential(*layers)


def fuse(model: nn.Module) -> nn.Module:
    """A copy of `model` with every RepConvBlock replaced by its plain, fused block."""
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RepConvBlock):
                setattr(parent, name, child.fused())
    return model
