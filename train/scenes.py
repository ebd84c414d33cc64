"""Digits as users have them: strings, scales, pages, printed digits, blank paper, in numpy.

MNIST frames one centred digit in 28x28; scans, meter photos and form fields do not. A model
trained only on that frame erases whole digits in a string and blotches strokes at 3-4x scale.
This module lays MNIST digits (and digits rendered from Pillow's bundled font, so nothing
depends on system fonts) out the way real inputs come, for training (`training_batch`, from
training digits) and for evaluation (`LAYOUTS`, from test digits with fixed seeds). Images are
light ink on a dark background, the polarity the models are trained in; `invert` makes the
other one. Everything is seeded: the same seed gives the same scenes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DIGIT = 28  # MNIST's frame


def resample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Smooth (bicubic) resampling of a float image in [0, 1], as scanners and viewers do."""
    if image.shape == (height, width):
        return image.astype(np.float32, copy=False)
    out = Image.fromarray(image.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BICUBIC
    )
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


@lru_cache(maxsize=64)
def printed_digit(digit: int, size: int) -> np.ndarray:
    """Digit `digit` rendered from Pillow's bundled font, centred in a 28x28 frame like MNIST."""
    font = ImageFont.load_default(size=size)
    canvas = Image.new("L", (DIGIT * 2, DIGIT * 2), 0)
    ImageDraw.Draw(canvas).text((DIGIT, DIGIT), str(digit), fill=255, font=font, anchor="mm")
    ink = np.asarray(canvas, dtype=np.float32) / 255.0
    rows, cols = np.flatnonzero(ink.max(1) > 0), np.flatnonzero(ink.max(0) > 0)
    glyph = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # MNIST digits fit a 20x20 box inside the 28x28 frame: do the same.
    scale = 20.0 / max(glyph.shape)
    h, w = max(1, round(glyph.shape[0] * scale)), max(1, round(glyph.shape[1] * scale))
    frame = np.zeros((DIGIT, DIGIT), np.float32)
    top, left = (DIGIT - h) // 2, (DIGIT - w) // 2
    frame[top : top + h, left : left + w] = resample(glyph, h, w)
    return frame


def printed_digits(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 28, 28) printed digits of random value and font size (stroke weight varies)."""
    values = rng.integers(0, 10, count)
    sizes = rng.integers(18, 48, count)
    return np.stack([printed_digit(int(v), int(s)) for v, s in zip(values, sizes, strict=True)])


def place(canvas: np.ndarray, digit: np.ndarray, top: int, left: int) -> None:
    """Ink `digit` onto `canvas` at (top, left), clipped at the edges; overlapping ink keeps the
    brighter stroke, as two strokes on paper do."""
    h, w = digit.shape
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    if t1 <= t0 or l1 <= l0:
        return
    window = canvas[t0:t1, l0:l1]
    np.maximum(window, digit[t0 - top : t1 - top, l0 - left : l1 - left], out=window)


def scaled(digit: np.ndarray, scale: float) -> np.ndarray:
    side = max(8, round(DIGIT * scale))
    return resample(digit, side, side)


def digit_string(digits: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Digits side by side as on a form field or meter: frames abutting, a few pixels' jitter."""
    side = max(8, round(DIGIT * scale))
    jitter = max(1, side // 10)
    width = side * len(digits) + jitter
    canvas = np.zeros((side + jitter, width), np.float32)
    for i, digit in enumerate(digits):
        dy, dx = rng.integers(0, jitter + 1, 2)
        place(canvas, scaled(digit, scale), int(dy), i * side + int(dx) - jitter // 2)
    return canvas


def random_scene(
    height: int,
    width: int,
    digits: np.ndarray,
    rng: np.random.Generator,
    max_scale: float = 4.0,
) -> np.ndarray:
    """One training canvas: nothing (blank paper), scattered digits, or a digit string, at a
    scale drawn log-uniformly from 0.7x to `max_scale`; digits may run off the edges, as
    crops do."""
    canvas = np.zeros((height, width), np.float32)
    kind = rng.random()
    if kind < 0.08:
        return canvas  # blank: the model must learn to leave empty paper empty
    scale = float(np.exp(rng.uniform(np.log(0.7), np.log(max_scale))))
    side = max(8, round(DIGIT * scale))
    if kind < 0.35:  # a string across the canvas
        count = max(1, min(len(digits), width // side + 1))
        row = digit_string(digits[:count], scale, rng)
        top = int(rng.integers(-side // 4, max(1, height - row.shape[0] + side // 4)))
        place(canvas, row, top, int(rng.integers(-side // 2, 1)))
        return canvas
    count = int(rng.integers(1, min(len(digits), 4) + 1))
    for digit in digits[:count]:
        top = int(rng.integers(-side // 3, max(1, height - side + side // 3)))
        left = int(rng.integers(-side // 3, max(1, width - side + side // 3)))
        place(canvas, scaled(digit, scale), top, left)
    return canvas


def training_scenes(
    count: int,
    height: int,
    width: int,
    digits: np.ndarray,
    rng: np.random.Generator,
    printed_share: float = 0.15,
    max_scale: float = 4.0,
) -> np.ndarray:
    """(count, 1, height, width) clean scenes from `digits` (N, 28, 28) (training digits only);
    a share of the digits is printed rather than handwritten."""
    out = np.empty((count, 1, height, width), np.float32)
    for i in range(count):
        pick = digits[rng.integers(0, len(digits), 8)]
        if rng.random() < printed_share:
            pick = printed_digits(8, rng)
        out[i, 0] = random_scene(height, width, pick, rng, max_scale)
    return out


# --- the evaluation layouts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """A way users lay digits out: builds `count` clean images from test digits, seeded."""

    name: str
    description: str
    build: Callable[[np.ndarray, int, np.random.Generator], list[np.ndarray]]


def _single(digits: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [d for d in digits[:count]]


def _scale(factor: int) -> Callable[[np.ndarray, int, np.random.Generator], list[np.ndarray]]:
    def build(digits: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
        return [scaled(d, factor) for d in digits[:count]]

    return build


def _strings(digits: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    # Five MNIST frames abutting: 28x140, as the issue measured (no jitter: exact frames).
    n = min(count, len(digits) // 5)
    return [np.concatenate(list(digits[5 * i : 5 * i + 5]), axis=1) for i in range(n)]


def _pages(digits: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    # A 128x128 page with 1-4 digits scattered at 0.8x-1.5x: mostly empty paper.
    pages, used = [], 0
    for _ in range(count):
        page = np.zeros((128, 128), np.float32)
        for _ in range(int(rng.integers(1, 5))):
            digit = scaled(digits[used % len(digits)], float(rng.uniform(0.8, 1.5)))
            used += 1
            top, left = rng.integers(0, 128 - digit.shape[0] + 1, 2)
            place(page, digit, int(top), int(left))
        pages.append(page)
    return pages


def _printed(digits: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return list(printed_digits(count, rng))


def _inverted(digits: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [1.0 - d for d in digits[:count]]  # dark ink on light paper


def _blank(digits: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.zeros((64, 64), np.float32) for _ in range(count)]


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("single", "one MNIST digit, 28x28 (the reference frame)", _single),
        Layout("string", "5 digits in a row, 28x140", _strings),
        Layout("scale2", "one digit at 2x (56x56, bicubic)", _scale(2)),
        Layout("scale3", "one digit at 3x (84x84, bicubic)", _scale(3)),
        Layout("scale4", "one digit at 4x (112x112, bicubic)", _scale(4)),
        Layout("page", "1-4 digits at 0.8-1.5x scattered on a 128x128 page", _pages),
        Layout("printed", "a digit in Pillow's bundled font, 28x28", _printed),
        Layout("inverted", "one MNIST digit, dark on light, 28x28", _inverted),
        Layout("blank", "empty paper, 64x64: only noise to remove", _blank),
    )
}


def layout_images(name: str, digits: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """`count` clean images of layout `name` from `digits` (N, 28, 28): same seed, same set."""
    try:
        layout = LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; known: {', '.join(LAYOUTS)}") from None
    return layout.build(digits, count, np.random.default_rng([seed, zlib.crc32(name.encode())]))
