"""Noise synthesis in plain numpy, shared by training (train/) and the runtime's `noisify` command.

Every function takes images as floats in [0, 1] (any shape) and returns float32 in [0, 1]: the
noise is clipped, as the seed recipe did, which makes it biased near 0 and 1. Randomness always
comes from a caller-supplied `numpy.random.Generator`, so results are reproducible from a seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Reference setting of the seed chapter: Gaussian, sigma 0.5, clipped to [0, 1].
REFERENCE_KIND = "gaussian"
REFERENCE_LEVEL = 0.5


def gaussian(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise with standard deviation `sigma`, clipped to [0, 1]."""
    x = np.asarray(images, dtype=np.float32)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x + np.float32(sigma) * noise, 0.0, 1.0)


def salt_and_pepper(images: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Replace a fraction `amount` of pixels by 0 or 1 (half each)."""
    x = np.array(images, dtype=np.float32)  # copy: the caller's array is never modified
    u = rng.random(x.shape, dtype=np.float32)
    x[u < amount / 2] = 0.0
    x[(u >= amount / 2) & (u < amount)] = 1.0
    return x


def speckle(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise x + x * n with n ~ N(0, sigma^2), clipped to [0, 1]."""
    x = np.asarray(images, dtype=np.float32)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x + x * np.float32(sigma) * noise, 0.0, 1.0)


def poisson(images: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: photon counts ~ Poisson(x * peak), rescaled by 1/peak. Lower peak, more noise."""
    if peak <= 0:
        raise ValueError(f"poisson peak must be > 0, got {peak}")
    x = np.asarray(images, dtype=np.float32)
    counts = rng.poisson(x.astype(np.float64) * peak)
    return np.clip(counts / peak, 0.0, 1.0).astype(np.float32)


NoiseFn = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]

#: Noise kinds by name, with what their `level` means.
NOISE_KINDS: dict[str, tuple[NoiseFn, str]] = {
    "gaussian": (gaussian, "standard deviation"),
    "salt-pepper": (salt_and_pepper, "fraction of pixels replaced"),
    "speckle": (speckle, "standard deviation of the multiplicative factor"),
    "poisson": (poisson, "peak photon count (lower is noisier)"),
}


#: Blind training mix: (kind, probability, level range). Levels are drawn per image, uniformly.
BLIND_MIX: tuple[tuple[str, float, tuple[float, float]], ...] = (
    ("gaussian", 0.6, (0.05, 0.7)),
    ("salt-pepper", 0.2, (0.02, 0.4)),
    ("speckle", 0.2, (0.1, 1.0)),
)


def add_blind_noise(images: np.ndarray, rng: np.random.Generator | int | None) -> np.ndarray:
    """A different kind and level of noise for every image (axis 0), drawn from BLIND_MIX.

    Trains a model that does not need to be told what noise it faces.
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    x = np.asarray(images, dtype=np.float32)
    kinds = rng.choice(len(BLIND_MIX), size=len(x), p=[p for _, p, _ in BLIND_MIX])
    out = np.empty_like(x)
    for k, (kind, _, (lo, hi)) in enumerate(BLIND_MIX):
        idx = np.flatnonzero(kinds == k)
        if len(idx) == 0:
            continue
        levels = rng.uniform(lo, hi, size=len(idx)).astype(np.float32)
        levels = levels.reshape(-1, *([1] * (x.ndim - 1)))
        sub = x[idx]
        if kind == "gaussian":
            out[idx] = np.clip(
                sub + levels * rng.standard_normal(sub.shape, dtype=np.float32), 0, 1
            )
        elif kind == "speckle":
            noise = rng.standard_normal(sub.shape, dtype=np.float32)
            out[idx] = np.clip(sub + sub * levels * noise, 0, 1)
        else:  # salt-pepper
            u = rng.random(sub.shape, dtype=np.float32)
            noisy = sub.copy()
            noisy[u < levels / 2] = 0.0
            noisy[(u >= levels / 2) & (u < levels)] = 1.0
            out[idx] = noisy
    return out


def add_noise(
    images: np.ndarray, kind: str, level: float, rng: np.random.Generator | int | None
) -> np.ndarray:
    """Apply noise `kind` at `level`; `rng` may be a Generator or an integer seed.

    Kind "blind" ignores `level` and draws kind and level per image (see add_blind_noise).
    """
    if kind == "blind":
        return add_blind_noise(images, rng)
    try:
        fn, _ = NOISE_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown noise kind {kind!r}; choose one of {', '.join(NOISE_KINDS)} or blind"
        ) from None
    if level < 0:
        raise ValueError(f"noise level must be >= 0, got {level}")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    return fn(images, level, rng)
