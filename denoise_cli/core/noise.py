"""Noise synthesis in plain numpy, shared by training (train/) and the runtime's `noisify` command.

Every function takes images as floats in [0, 1] (any shape) and returns float32 in [0, 1]: the
noise is clipped, as the seed recipe did, which makes it biased near 0 and 1. Randomness always
comes from a caller-supplied `numpy.random.Generator`, so results are reproducible from a seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from denoise_cli.core.errors import UsageError

#: Reference setting of the seed chapter: Gaussian, sigma 0.5, clipped to [0, 1].
REFERENCE_KIND = "gaussian"
REFERENCE_LEVEL = 0.5


Level = float | np.ndarray  # one level, or one per image broadcast over the pixels


def gaussian(images: np.ndarray, sigma: Level, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise with standard deviation `sigma`, clipped to [0, 1]."""
    x = np.asarray(images, dtype=np.float32)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x + np.asarray(sigma, np.float32) * noise, 0.0, 1.0)


def salt_and_pepper(images: np.ndarray, amount: Level, rng: np.random.Generator) -> np.ndarray:
    """Replace a fraction `amount` of pixels by 0 or 1 (half each)."""
    x = np.array(images, dtype=np.float32)  # copy: the caller's array is never modified
    u = rng.random(x.shape, dtype=np.float32)
    amount = np.asarray(amount, np.float32)
    x[np.broadcast_to(u < amount / 2, x.shape)] = 0.0
    x[np.broadcast_to((u >= amount / 2) & (u < amount), x.shape)] = 1.0
    return x


def speckle(images: np.ndarray, sigma: Level, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise x + x * n with n ~ N(0, sigma^2), clipped to [0, 1]."""
    x = np.asarray(images, dtype=np.float32)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x + x * np.asarray(sigma, np.float32) * noise, 0.0, 1.0)


def poisson(images: np.ndarray, peak: Level, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: photon counts ~ Poisson(x * peak), rescaled by 1/peak. Lower peak, more noise."""
    peak = np.asarray(peak, np.float64)
    if np.any(peak <= 0):
        raise UsageError(f"poisson peak must be > 0, got {peak.min()}")
    x = np.asarray(images, dtype=np.float32)
    counts = rng.poisson(x.astype(np.float64) * peak)
    return np.clip(counts / peak, 0.0, 1.0).astype(np.float32)


# A string, not np.random.Generator: evaluating that imports numpy.random (11 ms) at start-up.
NoiseFn = Callable[[np.ndarray, Level, "np.random.Generator"], np.ndarray]

#: Noise kinds by name, with what their `level` means.
NOISE_KINDS: dict[str, tuple[NoiseFn, str]] = {
    "gaussian": (gaussian, "standard deviation"),
    "salt-pepper": (salt_and_pepper, "fraction of pixels replaced"),
    "speckle": (speckle, "standard deviation of the multiplicative factor"),
    "poisson": (poisson, "peak photon count (lower is noisier)"),
}

#: A mix of noises for blind training: (kind, probability, level range), levels drawn per image
#: uniformly (log-uniformly for poisson's peak, where noise goes as 1/sqrt(peak)).
Mix = tuple[tuple[str, float, tuple[float, float]], ...]

#: "blind": the mix unet_small_blind was trained on (MNIST frames).
BLIND_MIX: Mix = (
    ("gaussian", 0.6, (0.05, 0.7)),
    ("salt-pepper", 0.2, (0.02, 0.4)),
    ("speckle", 0.2, (0.1, 1.0)),
)
#: "mixed": every kind the evaluation suite scores, Gaussian up to 0.75 (past its 0.7 column).
MIXED_MIX: Mix = (
    ("gaussian", 0.6, (0.05, 0.75)),
    ("salt-pepper", 0.13, (0.02, 0.4)),
    ("speckle", 0.13, (0.1, 1.0)),
    ("poisson", 0.14, (3.0, 60.0)),
)
#: "gaussian-heavy": Gaussian only, 0.3-0.75: how much narrowing the mix buys a model of a
#: given size at the reference (issue 18's capacity question), and a specialist to route to.
GAUSSIAN_HEAVY_MIX: Mix = (("gaussian", 1.0, (0.3, 0.75)),)
MIXES: dict[str, Mix] = {
    "blind": BLIND_MIX,
    "mixed": MIXED_MIX,
    "gaussian-heavy": GAUSSIAN_HEAVY_MIX,
}


def add_mixed_noise(images: np.ndarray, mix: Mix, rng: np.random.Generator) -> np.ndarray:
    """A different kind and level of noise for every image (axis 0), drawn from `mix`.

    Trains a model that does not need to be told what noise it faces.
    """
    x = np.asarray(images, dtype=np.float32)
    kinds = rng.choice(len(mix), size=len(x), p=[p for _, p, _ in mix])
    out = np.empty_like(x)
    for k, (kind, _, (lo, hi)) in enumerate(mix):
        idx = np.flatnonzero(kinds == k)
        if len(idx) == 0:
            continue
        if kind == "poisson":
            levels = np.exp(rng.uniform(np.log(lo), np.log(hi), size=len(idx)))
        else:
            levels = rng.uniform(lo, hi, size=len(idx))
        levels = levels.astype(np.float32).reshape(-1, *([1] * (x.ndim - 1)))
        out[idx] = NOISE_KINDS[kind][0](x[idx], levels, rng)
    return out


def add_noise(
    images: np.ndarray, kind: str, level: float, rng: np.random.Generator | int | None
) -> np.ndarray:
    """Apply noise `kind` at `level`; `rng` may be a Generator or an integer seed.

    Kinds "blind" and "mixed" ignore `level` and draw kind and level per image (see MIXES).
    """
    if kind in MIXES:
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        return add_mixed_noise(images, MIXES[kind], rng)
    try:
        fn, _ = NOISE_KINDS[kind]
    except KeyError:
        raise UsageError(
            f"unknown noise kind {kind!r}; choose one of {', '.join([*NOISE_KINDS, *MIXES])}"
        ) from None
    if not level >= 0:  # also refuses NaN, which would turn every image black
        raise UsageError(f"noise level must be >= 0 (a number), got {level}")
    if kind == "salt-pepper" and level > 1:
        raise UsageError(f"salt-pepper level is a fraction of pixels, 0-1; got {level:g}")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    return fn(images, level, rng)
