"""What adaptation minimises: supervised on synthesised noise, or self-supervised on noisy crops.

- `supervised`: clean crops with noise synthesised from the estimated model (`--clean`).
- `r2r`: Recorrupted-to-Recorrupted (Pang et al., CVPR 2021): with z drawn from the noise's own
  distribution, f(y + alpha z) is trained towards y - z / alpha; in expectation that is training
  towards the clean image, so the loss is an unbiased MSE estimate and its held-out value a fair
  model-selection figure. Signal-dependent noise: z's variance a * x + b with x the locally
  smoothed noisy image. Impulses sit at the same pixels in input and target, so they would be
  learnt as signal: pixels that look like impulses are left out of the loss.
- `pseudo`: pseudo-clean targets from a teacher (the starting model, then the best weights on
  the held-out split so far: self-training), re-noised with the estimated model: the model
  sees noise of exactly the folder's level and kind, impulses included, which R2R's noisier
  inputs do not give; alone it cannot go beyond the teacher's detail.
- `r2r+pseudo`: both, summed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from denoise_train.noise_estimate import NoiseModel

METHODS = ("r2r", "pseudo", "r2r+pseudo")
#: R2R's recorruption strength: the input carries (1 + alpha^2) times the noise's variance.
R2R_ALPHA = 0.5


def synthesize_torch(clean: torch.Tensor, noise: NoiseModel, gen: torch.Generator | None = None):
    """`noise_estimate.synthesize` in torch (on the training device)."""
    var = (noise.a * clean + noise.b).clamp_min(0.0)
    z = torch.randn(clean.shape, generator=gen, device=clean.device)
    y = (clean + var.sqrt() * z).clamp(0.0, 1.0)
    if noise.impulse > 0:
        u = torch.rand(clean.shape, generator=gen, device=clean.device)
        y = torch.where(u < noise.impulse / 2, torch.zeros_like(y), y)
        y = torch.where((u >= noise.impulse / 2) & (u < noise.impulse), torch.ones_like(y), y)
    return y


def impulse_mask(noisy: torch.Tensor) -> torch.Tensor:
    """1 where a pixel is not a likely impulse (0 or 1, far from its 3x3 median)."""
    patches = F.unfold(F.pad(noisy, (1, 1, 1, 1), mode="replicate"), 3)
    median = patches.median(dim=1).values.view_as(noisy)
    extreme = (noisy <= 1e-3) | (noisy >= 1 - 1e-3)
    return (~(extreme & ((noisy - median).abs() > 0.3))).float()


def r2r_loss(
    model: nn.Module, noisy: torch.Tensor, noise: NoiseModel, gen: torch.Generator | None = None
) -> torch.Tensor:
    level = F.avg_pool2d(F.pad(noisy, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    sigma = (noise.a * level + noise.b).clamp_min(1e-8).sqrt()
    z = sigma * torch.randn(noisy.shape, generator=gen, device=noisy.device)
    out = model(noisy + R2R_ALPHA * z)
    target = noisy - z / R2R_ALPHA
    mask = impulse_mask(noisy) if noise.impulse > 0 else torch.ones_like(noisy)
    return ((out - target) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)


def pseudo_loss(
    model: nn.Module, teacher: nn.Module, noisy: torch.Tensor, noise: NoiseModel
) -> torch.Tensor:
    with torch.no_grad():
        target = teacher(noisy)
    return F.mse_loss(model(synthesize_torch(target, noise)), target)


def supervised_loss(model: nn.Module, clean: torch.Tensor, noise: NoiseModel) -> torch.Tensor:
    return F.mse_loss(model(synthesize_torch(clean, noise)), clean)


def objective(
    method: str,
    model: nn.Module,
    teacher: nn.Module | None,
    batch: torch.Tensor,
    noise: NoiseModel,
) -> torch.Tensor:
    """The loss of one batch: clean crops for "supervised", noisy ones otherwise."""
    if method == "supervised":
        return supervised_loss(model, batch, noise)
    loss = batch.new_zeros(())
    if "r2r" in method:
        loss = loss + r2r_loss(model, batch, noise)
    if "pseudo" in method:
        if teacher is None:
            raise ValueError("pseudo targets need a teacher model")
        loss = loss + pseudo_loss(model, teacher, batch, noise)
    return loss
