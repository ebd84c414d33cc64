"""Image quality metrics in plain numpy: PSNR and SSIM for batches of grayscale images in [0, 1].

SSIM follows Wang et al. (2004) with the defaults of scikit-image's `structural_similarity`
(7x7 uniform window, K1=0.01, K2=0.03, sample covariance, border of 3 pixels excluded), so the
numbers are comparable with what most papers and tutorials report. tests/test_noise_metrics.py
checks the match against scikit-image when it is installed.
"""

from __future__ import annotations

import numpy as np


def _as_batch(x: np.ndarray) -> np.ndarray:
    """View any (H, W), (N, H, W) or (N, 1, H, W) array as (N, H, W) float64."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 4 and a.shape[1] == 1:
        return a[:, 0]
    if a.ndim == 3:
        return a
    raise ValueError(f"expected (H, W), (N, H, W) or (N, 1, H, W) images, got shape {a.shape}")


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Per-image PSNR in dB, shape (N,). Identical images give +inf."""
    ref, tst = _as_batch(reference), _as_batch(test)
    if ref.shape != tst.shape:
        raise ValueError(f"shape mismatch: {ref.shape} vs {tst.shape}")
    mse = np.mean((ref - tst) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def _box_mean(a: np.ndarray, win: int) -> np.ndarray:
    """Mean over every win x win window ('valid' positions), via a summed-area table."""
    s = np.pad(a, ((0, 0), (1, 0), (1, 0))).cumsum(axis=1).cumsum(axis=2)
    total = s[:, win:, win:] - s[:, :-win, win:] - s[:, win:, :-win] + s[:, :-win, :-win]
    return total / (win * win)


def ssim(
    reference: np.ndarray, test: np.ndarray, data_range: float = 1.0, win: int = 7
) -> np.ndarray:
    """Per-image mean SSIM, shape (N,)."""
    ref, tst = _as_batch(reference), _as_batch(test)
    if ref.shape != tst.shape:
        raise ValueError(f"shape mismatch: {ref.shape} vs {tst.shape}")
    if min(ref.shape[1:]) < win:
        raise ValueError(f"images must be at least {win}x{win} for SSIM, got {ref.shape[1:]}")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    n = win * win
    cov_norm = n / (n - 1)  # sample covariance, as scikit-image does
    ux, uy = _box_mean(ref, win), _box_mean(tst, win)
    vx = cov_norm * (_box_mean(ref * ref, win) - ux * ux)
    vy = cov_norm * (_box_mean(tst * tst, win) - uy * uy)
    vxy = cov_norm * (_box_mean(ref * tst, win) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    # 'valid' windows are exactly scikit-image's interior after cropping (win - 1) // 2 pixels.
    return s.mean(axis=(1, 2))
