"""Estimate a folder's noise as a Poisson-Gaussian model, var(y | x) = a * x + b, plus impulses.

In the manner of Foi et al. (2008), "Practical Poissonian-Gaussian noise modeling and fitting
for single-image raw-data": a high-pass residual measures the noise, a smoothed image the
signal, both in flat regions only (edges would count as noise); the residual's robust variance
per signal level is fitted with a straight line. Impulses (pixels pushed to 0 or 1 far from
their neighbourhood) are counted apart, since no variance describes them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: Below this standard deviation at mid-grey (about 2.5 of 255 levels) a folder is called clean.
CLEAN_SIGMA = 0.01
#: Residual r = x - mean of its 4 neighbours: var(r) = (1 + 1/4) var(noise) for white noise.
_RESIDUAL_GAIN = 1.25
_BINS = 12


@dataclass(frozen=True)
class NoiseModel:
    """var(noise at signal x) = a * x + b, on [0, 1] pixels; `impulse`: share of 0/1 outliers.
    Estimated on the files' own pixels, a >= 0; on inverted images a < 0 (see `inverted`)."""

    a: float
    b: float
    impulse: float = 0.0

    def sigma(self, x: float | np.ndarray) -> float | np.ndarray:
        return np.sqrt(np.maximum(self.a * np.asarray(x) + self.b, 0.0))

    @property
    def signal_dependent(self) -> bool:
        """Whether the signal-dependent part matters: over a quarter of the variance at 0.5."""
        return abs(self.a) * 0.5 > 0.25 * (self.a * 0.5 + self.b)

    @property
    def clean(self) -> bool:
        return float(self.sigma(0.5)) < CLEAN_SIGMA and self.impulse < 1e-3

    def describe(self) -> str:
        kind = "Poisson-Gaussian (signal-dependent)" if self.signal_dependent else "Gaussian"
        text = (
            f"{kind}: sigma {float(self.sigma(0.1)):.3f} at 0.1, {float(self.sigma(0.5)):.3f} "
            f"at 0.5, {float(self.sigma(0.9)):.3f} at 0.9 (var = {self.a:.4g} x + {self.b:.4g})"
        )
        return text + (f", impulses {100 * self.impulse:.2f}% of pixels" if self.impulse else "")

    def inverted(self) -> NoiseModel:
        """The same noise on inverted images (1 - x): var = a (1 - x) + b."""
        return NoiseModel(-self.a, self.a + self.b, self.impulse)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def restricted(self, kind: str) -> NoiseModel:
        """The same noise seen through a kind the user named: gaussian has no signal-dependent
        part (its variance at mid-grey kept), poisson-gaussian no impulses."""
        if kind == "gaussian":
            return NoiseModel(0.0, self.a * 0.5 + self.b, self.impulse)
        if kind == "poisson-gaussian":
            return NoiseModel(self.a, self.b, 0.0)
        return self


def _box3(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, 1, mode="reflect")
    h, w = x.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def _median3(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, 1, mode="reflect")
    h, w = x.shape
    return np.median(np.stack([p[i : i + h, j : j + w] for i in range(3) for j in range(3)]), 0)


def image_samples(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(local signal levels, residuals) in the image's flat regions, and its impulse share."""
    med = _median3(image)
    far = np.abs(image - med) > 0.3
    low, high = (image <= 1e-3) & far, (image >= 1 - 1e-3) & far
    impulse_mask = low | high
    clean = np.where(impulse_mask, med, image)  # impulses must not inflate the variance
    neighbours = (
        np.roll(clean, 1, 0) + np.roll(clean, -1, 0) + np.roll(clean, 1, 1) + np.roll(clean, -1, 1)
    ) / 4
    residual = (clean - neighbours)[1:-1, 1:-1]
    level = _box3(_box3(clean))[1:-1, 1:-1]
    gy, gx = np.gradient(_box3(_box3(clean)))
    grad = np.hypot(gx, gy)[1:-1, 1:-1]
    # Flat: the smoothed image's gradient in the lowest half (edges and strokes left out);
    # clipped pixels (0 or 1) carry no variance and would bias the fit down.
    keep = (grad <= np.quantile(grad, 0.5)) & (level > 0.03) & (level < 0.97)
    # Salt and pepper come in equal shares, but only the kind unlike the background shows
    # (salt on white paper is invisible): twice the visible share.
    return level[keep], residual[keep], 2.0 * max(float(low.mean()), float(high.mean()))


def estimate_noise(images: Sequence[np.ndarray], max_images: int = 200) -> NoiseModel:
    """Fit var = a * x + b over up to `max_images` (H, W) images in [0, 1]."""
    step = max(1, len(images) // max_images)
    levels, residuals, impulses = [], [], []
    for image in list(images)[::step][:max_images]:
        if min(image.shape) < 8:
            continue
        lv, rs, imp = image_samples(np.asarray(image, np.float32))
        levels.append(lv)
        residuals.append(rs)
        impulses.append(imp)
    if not levels or sum(len(x) for x in levels) < 50:
        return NoiseModel(0.0, 0.0)
    level, residual = np.concatenate(levels), np.concatenate(residuals)
    edges = np.quantile(level, np.linspace(0, 1, _BINS + 1))
    xs, vs, ws = [], [], []
    for lo, hi in itertools.pairwise(edges):
        sel = (level >= lo) & (level <= hi)
        if sel.sum() < 30:
            continue
        # Robust variance (MAD): stray edge pixels in the flat set do not pull it up.
        mad = np.median(np.abs(residual[sel] - np.median(residual[sel])))
        xs.append(float(level[sel].mean()))
        vs.append((1.4826 * mad) ** 2 / _RESIDUAL_GAIN)
        ws.append(float(sel.sum()))
    a, b = _fit_line(np.array(xs), np.array(vs), np.array(ws))
    return NoiseModel(a, b, float(np.mean(impulses)))


def _fit_line(x: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares v = a x + b with a, b >= 0."""
    if len(x) == 0:
        return 0.0, 0.0
    if len(x) == 1 or np.ptp(x) < 0.05:
        return 0.0, float(np.average(v, weights=w))
    a, b = np.polyfit(x, v, 1, w=np.sqrt(w))
    if a < 0:
        return 0.0, float(np.average(v, weights=w))
    if b < 0:
        return float(np.sum(w * x * v) / np.sum(w * x * x)), 0.0
    return float(a), float(b)


def synthesize(clean: np.ndarray, model: NoiseModel, rng: np.random.Generator) -> np.ndarray:
    """Noisy versions of clean images in [0, 1] under `model` (clipped, like the camera's)."""
    x = np.asarray(clean, np.float32)
    sigma = np.sqrt(np.maximum(model.a * x + model.b, 0.0)).astype(np.float32)
    y = np.clip(x + sigma * rng.standard_normal(x.shape, dtype=np.float32), 0.0, 1.0)
    if model.impulse > 0:
        u = rng.random(x.shape, dtype=np.float32)
        y[u < model.impulse / 2] = 0.0
        y[(u >= model.impulse / 2) & (u < model.impulse)] = 1.0
    return y
