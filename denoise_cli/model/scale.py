"""Resampling a batch of small images to a model's native scale and back, as matrices.

Pillow's resampling is separable, and in mode F it does not round: resizing every unit
vector once gives the (dst, src) matrix M with resize(x) = M_rows @ x @ M_cols.T, which then
resamples a whole batch in two matrix products (~1 us an 8x8 digit, against ~15 for Pillow).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

#: Pillow's filters by the names used here.
FILTERS = {"bicubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX}


@functools.lru_cache(maxsize=32)
def resample_matrix(src: int, dst: int, kind: str) -> np.ndarray:
    """(dst, src) float32: row i holds the weights of output pixel i (Pillow's `kind` filter)."""
    basis = Image.fromarray(np.eye(src, dtype=np.float32))  # row j: the unit vector j
    return np.asarray(basis.resize((dst, src), FILTERS[kind]), dtype=np.float32).T.copy()


def resample(images: np.ndarray, height: int, width: int, kind: str) -> np.ndarray:
    """(N, H, W) float32 -> (N, height, width), as Pillow would resize each (mode F)."""
    _, h, w = images.shape
    rows = resample_matrix(h, height, kind)
    cols = resample_matrix(w, width, kind)
    return np.einsum("ij,njk,lk->nil", rows, images, cols, optimize=True).astype(np.float32)


#: Small images, as shares of the model's native side (28): under LEAVE_BELOW they are left
#: as they are, under RESAMPLE_BELOW they go through the model at its native scale (bicubic
#: up, area back down). Measured with benchmarks/tiny.py on 1,000 MNIST test digits
#: area-downsampled (8x8: 17 levels, as UCI's scans): both bundled models as they are made 8x8
#: scans worse than the input (12.4 dB from 22.2 at noise sigma 0.1, from 16.3 at 0.2; 94-100%
#: of images worse); through 28x28 better at 0.2 (18.3) but worse at 0.1 (21.4, 72% of images
#: worse), and still 17% worse at side 12; from side 14 to 19 the native scale beat the model
#: as is (unet_scenes, sigma 0.1, side 14: 24.7 dB against 22.2, 1% of images worse against
#: 46%); from side 20 the model as is was better (harming 1% at most). Models trained on the
#: wide world, which draws digits from 8 px, carry `min_side_as_is` (14) and skip the native
#: scale: unet_world (stage 17m) as is against through 28x28, 400 digits, side 14, sigma 0.1:
#: 25.6 dB against 23.0 (input 22.4), dark on grey paper 24.1 against 23.1; side 16: 26.4
#: against 22.6 (46% of images made worse); under 13 it made images worse either way.
LEAVE_BELOW = 14 / 28


RESAMPLE_BELOW = 20 / 28
