"""The luminance a colour image gives the model: its luma, with noise-clipped channels restored.

A colour sensor clips each channel on its own. On bright paper the red and green channels hit
255 where the noise pushed them up, but not where it pushed them down, so their means sit below
the paper; the luminance, a weighted sum of the three, inherits that deficit without looking
clipped (it rarely reaches 255 itself). The model, shown only luminance, cannot tell: on the
foreign colour set the default put the paper 2.7 grey levels dark, and retraining it on such
captures moved grey print and clean colour copies instead (docs/models.md, session 16).

Here each clipped channel value is replaced by its expected value under the noise before the
luminance is taken: for Gaussian noise of sigma s and a pixel clipped at the top, E[x | x >= 1]
= 1 + s * (lambda(a) - a), with lambda the inverse Mills ratio and a = Phi^-1(1 - p), p the
local share of clipped values (mirrored at 0). s is the row's noise, from the median absolute
deviation of neighbouring differences between unclipped values; p is the share over a window of
the same row. Rows under MIN_SIGMA of noise, windows more than MAX_SHARE clipped and windows that
also hold the opposite clip (ink at 0 beside paper at 255: a clean, saturated drawing, whose
anti-aliased edges would read as heavy noise) are left alone.
Everything is row-local, so bands, tiles and whole images get the same luminance. Measured on
the foreign colour set's first 50 images with the default 37gs (docs/compare/
colour-luminance-2026-12-05): luminance 32.00 -> 32.67 dB, RGB 31.45 -> 31.83, paper -2.6 ->
+0.2 levels; its clean copies, and grey images, are untouched.
"""

from __future__ import annotations

from functools import lru_cache
from statistics import NormalDist

import numpy as np

#: ITU-R 601 luma weights in 1/65536ths, as Pillow's convert("L") applies them.
LUMA_WEIGHTS_16 = (19595, 38470, 7471)
#: The same weights as fractions (restored values are not integers).
LUMA_WEIGHTS = np.array(LUMA_WEIGHTS_16, np.float64) / 65536.0


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of (..., 3) uint8 RGB, exactly as Pillow's convert("L") rounds it: a
    colour image's plain luminance (the model is given `unclipped_luma`, equal to it wherever
    no clipped channel was restored)."""
    r, g, b = (rgb[..., i].astype(np.uint32) * w for i, w in enumerate(LUMA_WEIGHTS_16))
    return ((r + g + b + 0x8000) >> 16).astype(np.uint8)


#: The clipped share is counted over 2 * WINDOW_RADIUS + 1 values of the row (31: as good as a
#: 7x7 square on the foreign colour set, measured before the guards, and band-safe).
WINDOW_RADIUS = 15
#: A row needs this many pairs of unclipped neighbours for a noise estimate; fewer (8x8 scans,
#: rows mostly clipped): nothing is restored.
MIN_PAIRS = 16
#: Rows whose noise is under this many levels are left alone: compression and quantisation
#: (a lossy WebP of clean ink on paper measured up to 4.2 at the ink), where a clipped
#: channel's deficit is under a level of luminance anyway.
MIN_SIGMA = 5.0
#: Windows clipped past this share are left alone: the level may be past the clip (a
#: saturated patch of a photo), nothing that can be told. Paper at exactly 255 clips half its
#: values, and a 31-value window's share of them spreads by ~0.09: at 0.5 half the windows
#: were skipped and white paper came back mottled and up to 6 levels dark (sigma 25: 248.8
#: against 253.8 at 0.7; the foreign colour set the same either way:
#: benchmarks/results/white-paper-2026-12-06/).
MAX_SHARE = 0.7
#: sigma of Gaussian noise from the median absolute deviation of neighbours' differences.
MAD_TO_SIGMA = 1.4826 / np.sqrt(2.0)


@lru_cache(maxsize=1)
def _excess_table() -> tuple[np.ndarray, np.ndarray]:
    """(clipped share p, E[overshoot] / sigma) for p in (0, MAX_SHARE]."""
    unit = NormalDist()
    shares = np.linspace(1e-3, MAX_SHARE, 500)
    excess = []
    for p in shares:
        a = unit.inv_cdf(1.0 - p)
        excess.append(unit.pdf(a) / p - a)  # inverse Mills ratio lambda(a) = pdf(a) / (1 - cdf(a))
    return shares, np.array(excess)


def _row_sigma(channel: np.ndarray) -> np.ndarray:
    """Per row of a (H, W) uint8 channel: the noise sigma in levels (0 where too few pairs),
    from the median absolute difference of unclipped neighbours (a histogram per row: integer
    differences, no sort).

    Pairs that both escaped the clip lack the noise's upper tail, so under heavy clipping this
    is up to a third low. Left so: widened to the exact sigma, the restored luminance crosses
    255 more often, and the model, undoing that clip of the luminance, then lifts the paper past
    its level (flat paper at sigma 30-40 levels: +0.8 to +1.3 levels, against -0.1 to -0.5
    narrow; the foreign colour set 32.38 against 32.53 dB)."""
    height = len(channel)
    inner = (channel > 0) & (channel < 255)
    pairs = inner[:, :-1] & inner[:, 1:]
    steps = np.abs(np.diff(channel.astype(np.int16), axis=1))
    bins = (np.arange(height, dtype=np.int64)[:, None] * 255 + steps)[pairs]
    counts = np.bincount(bins, minlength=height * 255).reshape(height, 255)
    total = counts.sum(axis=1)
    below = np.cumsum(counts, axis=1) < ((total + 1) // 2)[:, None]
    median = np.count_nonzero(below, axis=1)
    return np.where(total >= MIN_PAIRS, MAD_TO_SIGMA * median, 0.0)


def _row_share(mask: np.ndarray) -> np.ndarray:
    """Share of True over a (2r+1)-wide window of each row, the window mirrored at the ends."""
    r, k = WINDOW_RADIUS, 2 * WINDOW_RADIUS + 1
    padded = np.pad(mask, ((0, 0), (r, r)), mode="symmetric")
    sums = np.zeros((len(mask), padded.shape[1] + 1), np.int32)
    np.cumsum(padded, axis=1, out=sums[:, 1:])
    return (sums[:, k:] - sums[:, :-k]) / np.float32(k)


def _restoring_change(channel: np.ndarray) -> np.ndarray | None:
    """The signed change, in levels (float32, (H, W)), that restores each clipped value of a
    uint8 channel to its expected value; None when nothing is restored."""
    rows = np.flatnonzero(((channel == 255) | (channel == 0)).any(axis=1))
    if not len(rows):
        return None
    sigma = _row_sigma(channel[rows])
    noisy = sigma >= MIN_SIGMA
    rows, sigma = rows[noisy], sigma[noisy]
    if not len(rows):
        return None
    sub = channel[rows]
    shares, excess = _excess_table()
    change = np.zeros(sub.shape, np.float32)
    top, bottom = sub == 255, sub == 0
    for clipped, opposite, sign in ((top, bottom, 1.0), (bottom, top, -1.0)):
        if not clipped.any():
            continue
        share = _row_share(clipped)
        # Noise around a level near one clip does not reach the other: both in one window are
        # a drawing's ink and paper.
        plausible = share <= MAX_SHARE
        if opposite.any():
            plausible &= _row_share(opposite) == 0
        y, x = np.nonzero(clipped & plausible)
        change[y, x] = sign * sigma[y] * np.interp(share[y, x], shares, excess)
    if not change.any():
        return None
    out = np.zeros(channel.shape, np.float32)
    out[rows] = change
    return out


def unclipped_luma(color: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 RGB -> (..., H, W) uint8 luminance, clipped channel values restored
    to their expected values first. Exactly `luma(color)` wherever no channel was restored."""
    if color.ndim != 3:  # rows are restored on their own: any stack of images is rows too
        shape = color.shape
        return unclipped_luma(color.reshape(-1, shape[-2], 3)).reshape(shape[:-1])
    plain = luma(color)
    shift = None
    for c, weight in enumerate(LUMA_WEIGHTS):
        change = _restoring_change(color[..., c])
        if change is not None:
            shift = weight * change if shift is None else shift + weight * change
    if shift is None:
        return plain
    y, x = np.nonzero(shift)
    restored = color[y, x].astype(np.float64) @ LUMA_WEIGHTS + shift[y, x]
    out = plain.copy()
    out[y, x] = np.clip(np.round(restored), 0, 255)
    return out
