"""The held-out figure that decides which weights an adaptation keeps.

With clean images: PSNR on held-out clean crops under fixed synthesised noise (higher is
better). Without: the R2R loss on held-out noisy crops under fixed recorruptions, an unbiased
estimate of the MSE to the unseen clean images plus a constant (lower is better), and, as a
plain-language figure, the noise the estimator still finds in the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from denoise_cli.core.metrics import psnr
from denoise_export.adapt_data import AdaptData
from denoise_export.adapt_folder import center_crops
from denoise_train.adapt_objectives import r2r_loss
from denoise_train.noise_estimate import NoiseModel, estimate_noise, synthesize

#: Fixed seed of the held-out noise and recorruptions: every evaluation sees the same inputs.
HELD_OUT_SEED = 20_261_203
#: Recorruptions averaged per held-out crop (the R2R loss is noisy; more draws, steadier).
R2R_DRAWS = 2
#: How much more noise (sigma at 0.5) the estimator may find in the outputs of weights than
#: in the starting model's before they are refused, whatever their R2R loss: R2R leaves
#: impulse-like pixels out of its loss, and on serif print with 3% impulses (unet_world, 15 min)
#: it improved its held-out loss (0.0305 -> 0.0287) while the outputs kept more noise (residual
#: sigma 0.0020 -> 0.0115) and lost 1.0 dB on held-out clean pairs (28.9 -> 27.9).
RESIDUAL_SLACK = 0.002
#: Noisy images whose outputs the residual-noise guard reads: the held-out ones, topped up with
#: training images (the guard asks whether outputs keep noise, not how well they generalise).
#: The estimator needs 50+ flat samples: 2 held-out 28 px crops (24 images) gave it none, it
#: read 0 for every model, and weights 2.7 dB worse than the base were kept.
RESIDUAL_IMAGES = 64


@torch.no_grad()
def run_model(model: nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    out = [
        model(torch.from_numpy(images[i : i + 64]).to(device)).cpu().numpy()
        for i in range(0, len(images), 64)
    ]
    return np.concatenate(out)


@dataclass
class Validation:
    """Held-out crops and how to score a model on them; `base` is the starting model's score."""

    kind: str  # "psnr" or "r2r"
    noisy: np.ndarray  # held-out noisy crops (N, 1, S, S): real ones, or synthesised for psnr
    clean: np.ndarray | None  # their clean crops (psnr only)
    real_noisy: np.ndarray  # held-out crops of the noisy folder (contact sheet)
    noise: NoiseModel
    device: torch.device
    residual_noisy: np.ndarray | None = None  # crops the guard reads (None: real_noisy)
    base: dict[str, float] | None = None
    #: PSNR against these clean crops cannot be trusted alone (they look noisy themselves).
    guarded: bool = False

    @property
    def count(self) -> int:
        return len(self.noisy)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        out: dict[str, float] = {}
        if self.kind == "psnr":
            restored = run_model(model, self.noisy, self.device)
            out["psnr"] = float(np.mean(psnr(self.clean, restored)))
        else:
            gen = torch.Generator(device="cpu").manual_seed(HELD_OUT_SEED)
            x = torch.from_numpy(self.noisy).to(self.device)
            with torch.no_grad():
                losses = [
                    float(r2r_loss(model, x, self.noise, gen.manual_seed(HELD_OUT_SEED + k)))
                    for k in range(R2R_DRAWS)
                ]
            out["r2r_loss"] = float(np.mean(losses))
        crops = self.real_noisy if self.residual_noisy is None else self.residual_noisy
        residual = estimate_noise(list(run_model(model, crops, self.device)[:, 0]))
        out["residual_sigma"] = float(residual.sigma(0.5))
        return out

    def acceptable(self, metrics: dict[str, float]) -> bool:
        """Whether weights with these metrics may be kept at all (see RESIDUAL_SLACK); PSNR
        against truly clean crops needs no guard, against noisy "clean" ones it rewards
        keeping the noise (a model that learned the identity scored best)."""
        if self.base is None or (self.kind == "psnr" and not self.guarded):
            return True
        return metrics["residual_sigma"] <= self.base["residual_sigma"] + RESIDUAL_SLACK

    def score(self, metrics: dict[str, float]) -> float:
        """Higher is better."""
        return metrics["psnr"] if self.kind == "psnr" else -metrics["r2r_loss"]

    def describe(self, metrics: dict[str, float]) -> str:
        main = (
            f"PSNR {metrics['psnr']:.2f} dB (held-out clean images, synthesised noise)"
            if self.kind == "psnr"
            else f"self-supervised (R2R) loss {metrics['r2r_loss']:.5f}"
        )
        return f"{main}, residual noise sigma {metrics['residual_sigma']:.4f}"


def make_validation(
    data: AdaptData, method: str, model: nn.Module, device: torch.device
) -> Validation:
    """The held-out crops for `method`, and the starting model's score on them."""
    real = center_crops(data.noisy_held_out, data.crop)
    rng = np.random.default_rng(HELD_OUT_SEED)
    if method == "supervised" and data.clean_held_out is not None:
        clean = center_crops(data.clean_held_out, data.crop)
        validation = Validation(
            "psnr", synthesize(clean, data.model_noise, rng), clean, real, data.model_noise, device
        )
        validation.guarded = data.clean_looks_noisy
    else:
        validation = Validation("r2r", real, None, real, data.model_noise, device)
    top_up = data.noisy_train[: max(0, RESIDUAL_IMAGES - len(data.noisy_held_out))]
    validation.residual_noisy = center_crops(data.noisy_held_out + top_up, data.crop)
    validation.base = validation.evaluate(model.to(device))
    return validation
