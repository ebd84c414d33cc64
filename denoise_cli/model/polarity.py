"""Polarity: whether an image is turned over (1 - x) so it matches what the model was trained
on, decided from a sample of its pixels that every path (whole, tiled, streamed) gathers alike."""

from __future__ import annotations

import numpy as np

#: --invert: auto decides per image (`inversion_from_samples`); yes and no force it.
INVERT_CHOICES = ("auto", "yes", "no")

#: Polarities whose models `auto` may invert for: those trained on one (the image is turned to
#: it), and "either" (trained on both), turned only at the white clip (below).
DECIDED = ("light-on-dark", "dark-on-light", "either")

#: A model for either polarity still gets a light background turned to black where at least
#: WHITE_CLIP_SHARE of the image sits at the white clip (pure white paper, noisy or not: its
#: noise is cut off at 1, the mirror of the black, clipped frames every model here saw most).
#: Measured with unet_world (stage 3) on 400 inverted MNIST digits: turned, +0.8 dB at Gaussian
#: 0.05 up to +3.4 at 0.7 and +2.9/+4.5 at salt-and-pepper 0.1/0.3; on the foreign print,
#: colour and display sets, whose paper and screens sit below 0.95, turning cost 0.9-1.5 dB:
#: those stay as they are (none reaches the share). Pure white print: +1.0 dB at Gaussian
#: 0.05, within 0.15 dB either way at 0.15-0.3.
WHITE_CLIP = 254.5 / 255
WHITE_CLIP_SHARE = 0.3


def needs_inversion(image: np.ndarray, invert: str, polarity: str) -> bool:
    """Whether to invert an image so it matches the model's polarity (and invert back after).

    auto: a digit image is mostly background, so its median pixel tells the background colour,
    robustly even under heavy noise; invert when that disagrees with the model's training data.
    """
    return bool(needs_inversion_batch(image[None], invert, polarity)[0])


def needs_inversion_batch(images: np.ndarray, invert: str, polarity: str) -> np.ndarray:
    """`needs_inversion` for each of (N, H, W) same-sized images at once (one numpy pass)."""
    return inversion_from_samples(sampled(images), invert, polarity)


def polarity_sample_step(pixels: int) -> int:
    """Every how many pixels (in row-major order) the polarity decision samples one: up to
    4,096 samples, so "median above 0.5" is "more than half the samples above 0.5", no sort."""
    return max(1, pixels // 4096)


def inversion_from_samples(samples: np.ndarray, invert: str, polarity: str) -> np.ndarray:
    """The decision of `needs_inversion_batch` from (N, S) sampled pixels (see
    polarity_sample_step); a streamed image gathers its samples band by band."""
    n = len(samples)
    if invert == "yes":
        return np.ones(n, bool)
    if invert == "no" or polarity not in DECIDED:
        return np.zeros(n, bool)
    light_background = np.count_nonzero(samples > 0.5, axis=1) * 2 > samples.shape[1]
    if polarity == "either":
        at_clip = np.count_nonzero(samples >= WHITE_CLIP, axis=1)
        return light_background & (at_clip >= WHITE_CLIP_SHARE * samples.shape[1])
    return light_background if polarity == "light-on-dark" else ~light_background


def sampled(images: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, S): the pixels the polarity and border decisions look at."""
    flat = images.reshape(len(images), -1)
    return flat[:, :: polarity_sample_step(flat.shape[1])]
