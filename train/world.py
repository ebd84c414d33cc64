"""The wide world: digits as users have them, for training a default that does no harm there.

MNIST's world is white strokes on pure black. Users bring grey or uneven paper, LCD and LED
displays, print in any typeface, forms with rules and boxes, pages, 8-pixel scans and 200-pixel
crops, and camera or scanner noise that grows with the signal. This module draws all of that in
numpy and Pillow, seeded: an ink layer (handwriting from MNIST training digits, print from the
fonts matplotlib ships, seven-segment and dot-matrix displays drawn here, forms, pages), a
lighting layer (background level anywhere in [0, 1], gradients, vignetting, paper texture,
shadows; either polarity, contrast from 0.15 to full), optics (slight blur, resampling), then
noise (`world_noise`: Gaussian, Poisson-Gaussian, impulse, speckle, JPEG-compressed, from barely
visible to sigma 0.75, and a share left clean so the model learns to leave clean images alone).

Fonts: `TRAIN_FONTS` train; `HELD_OUT_FONTS` are kept for foreign evaluation sets only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from denoise_train.scenes import place, resample

TRAIN_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmb10.ttf",
)
#: Never drawn by the training world: foreign sets print with these.
HELD_OUT_FONTS = ("cmr10.ttf", "STIXGeneralItalic.ttf", "DejaVuSansMono-BoldOblique.ttf")


@dataclass(frozen=True)
class WorldMix:
    """How the world shares out its draws. The defaults are the world stages 1-4 trained on
    (the same random stream); later stages lean towards what the foreign sets found weakest.

    display_share: the share of images that are display readings (the rest of the non-blank
    images keep their 2:2:1 handwriting:print:forms ratio). read_noise_max: the top of the
    Poisson-Gaussian read-noise range (phone cameras in dim light reach 0.1 and more).
    framed_share: the share of display readings drawn as meter and display photos are cropped
    (a row of small digits, 12-40 px, inside the image) instead of at any size from 10 to 160
    px; small repeated segments under heavy noise are where BM3D's block matching beat the
    default.
    moderate_share: the share of noisy images whose level is drawn from the range cameras,
    scanners and codecs leave on users' digits (Gaussian sigma 0.03-0.3, Poisson peak 8-200)
    instead of from barely visible to sigma 0.75: the heavy tail (MNIST's reference is sigma
    0.5) is kept by the rest of the world, the scenes' canvases and the frames.
    faint_share: the share of images that get faint printed structure behind the ink (notebook
    rules, graph-paper grids, dotted guides at 5-30% of the ink's contrast); with it, display
    readings show their unlit segments more often (90%, not 70%) and up to 30% (not 20%) of the
    ink's level. The default erased both where BM3D kept them.
    """

    display_share: float = 0.20
    read_noise_max: float = 0.06
    framed_share: float = 0.0
    moderate_share: float = 0.0
    faint_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.display_share <= 0.95:
            raise ValueError(f"display_share must be in [0, 0.95], got {self.display_share}")
        if not 0.0 <= self.read_noise_max <= 0.5:
            raise ValueError(f"read_noise_max must be in [0, 0.5], got {self.read_noise_max}")
        if not 0.0 <= self.framed_share <= 1.0:
            raise ValueError(f"framed_share must be in [0, 1], got {self.framed_share}")
        if not 0.0 <= self.moderate_share <= 1.0:
            raise ValueError(f"moderate_share must be in [0, 1], got {self.moderate_share}")
        if not 0.0 <= self.faint_share <= 1.0:
            raise ValueError(f"faint_share must be in [0, 1], got {self.faint_share}")

    def ink_kinds(self) -> tuple[float, float, float]:
        """Upper bounds of the handwriting, print and display draws (blank below 0.05, forms
        above the last)."""
        rest = (0.95 - self.display_share) / 5.0
        return 0.05 + 2 * rest, 0.05 + 4 * rest, 0.05 + 4 * rest + self.display_share


DEFAULT_MIX = WorldMix()


@lru_cache(maxsize=1)
def _font_dir() -> Path | None:
    try:
        import matplotlib
    except ImportError:  # matplotlib is a train extra; without it print uses Pillow's own font
        return None
    return Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"


@lru_cache(maxsize=512)
def font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font that a pip package ships (matplotlib's), never one from the system's folders."""
    folder = _font_dir()
    if folder is None or not (folder / name).is_file():
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(folder / name), size)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _digits_text(rng: np.random.Generator, count: int) -> str:
    text = "".join(str(d) for d in rng.integers(0, 10, count))
    if count > 3 and rng.random() < 0.3:  # readings and amounts: 12.75, 08:30, 3-14
        cut = int(rng.integers(1, count))
        text = text[:cut] + str(rng.choice(list(".:,-/"))) + text[cut:]
    return text


# --- ink: where the strokes are, in [0, 1] ------------------------------------------------------


def printed_ink(
    height: int, width: int, rng: np.random.Generator, fonts: tuple[str, ...] = TRAIN_FONTS
) -> np.ndarray:
    """Printed digit strings, 8 to 200 px tall, in a random typeface; small ones in lines."""
    tall = _log_uniform(rng, 8, 200)
    size = max(6, round(tall / 0.72))  # a font's digits are ~0.72 of its size
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    face = font(str(rng.choice(fonts)), size)
    pitch = max(size * 1.2, size + 2)
    lines = 1 if tall > height / 3 else int(rng.integers(1, max(2, height // pitch) + 1))
    y = rng.uniform(-0.3 * size, max(1.0, height - lines * pitch))
    for _ in range(lines):
        count = int(rng.integers(1, max(2, 2 * width // size) + 1))
        x = rng.uniform(-0.3 * size, max(1.0, width * 0.6))
        draw.text((x, y), _digits_text(rng, count), fill=255, font=face)
        y += pitch
    return np.asarray(canvas, np.float32) / 255.0


def handwritten_ink(
    height: int, width: int, digits: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """MNIST training digits, 8 to 200 px tall: scattered, or abutting in a string."""
    side = round(_log_uniform(rng, 8, 200))
    canvas = np.zeros((height, width), np.float32)
    count = int(rng.integers(1, max(2, width // side + 2)))
    in_string = rng.random() < 0.5
    top = int(rng.integers(-side // 3, max(1, height - side + side // 3)))
    left = int(rng.integers(-side // 2, max(1, width - side)))
    for i, d in enumerate(rng.integers(0, len(digits), count)):
        glyph = resample(digits[d], side, side)
        if in_string:
            jitter = max(1, side // 10)
            place(canvas, glyph, top + int(rng.integers(0, jitter + 1)), left + i * side)
        else:
            t = int(rng.integers(-side // 3, max(1, height - side + side // 3)))
            lft = int(rng.integers(-side // 3, max(1, width - side + side // 3)))
            place(canvas, glyph, t, lft)
    return canvas


# Seven segments a-g as (x0, y0, x1, y1) in a 4x7 cell; which are lit for each digit.
_SEGMENTS = {
    "a": (0.5, 0.0, 3.5, 0.6),
    "b": (3.4, 0.4, 4.0, 3.4),
    "c": (3.4, 3.6, 4.0, 6.6),
    "d": (0.5, 6.4, 3.5, 7.0),
    "e": (0.0, 3.6, 0.6, 6.6),
    "f": (0.0, 0.4, 0.6, 3.4),
    "g": (0.5, 3.2, 3.5, 3.8),
}
_LIT = ("abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg", "abcdfg")

# 5x7 dot-matrix digits, one string of five bits per row.
_DOTS = (
    ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
)


def display_ink(
    height: int, width: int, rng: np.random.Generator, framed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Seven-segment or dot-matrix readings: (lit ink, unlit ghost) layers, drawn at 2x and
    reduced, slanted like LCD digits are. `framed`: a reading as users crop one, a row of
    small digits (12-40 px) inside the image with a margin around it."""
    scale = 2
    if framed:
        tall = min(float(rng.uniform(12, 40)), 0.9 * height)
        top = (height - tall) * float(rng.uniform(0.1, 0.9)) * scale
        left = rng.uniform(0.02, 0.25) * width * scale
    else:
        tall = _log_uniform(rng, 10, 160)
        top = rng.uniform(-0.2 * tall, max(1.0, height - tall)) * scale
        left = rng.uniform(-0.2 * tall, max(1.0, width * 0.5)) * scale
    h2, w2 = height * scale, width * scale
    lit, ghost = Image.new("L", (w2, h2), 0), Image.new("L", (w2, h2), 0)
    dl, dg = ImageDraw.Draw(lit), ImageDraw.Draw(ghost)
    unit = tall * scale / 7.0
    slant = rng.uniform(0.0, 0.2) if rng.random() < 0.6 else 0.0
    dots = rng.random() < 0.35
    for d in rng.integers(0, 10, max(1, int(width * scale / (5.5 * unit)) + 1)):
        if dots:
            r = unit * rng.uniform(0.3, 0.48)
            for row, bits in enumerate(_DOTS[d]):
                for col, bit in enumerate(bits):
                    cx = left + (col + 0.5) * unit * 0.8 + (7 - row) * slant * unit * 0.8
                    cy = top + (row + 0.5) * unit
                    (dl if bit == "1" else dg).ellipse((cx - r, cy - r, cx + r, cy + r), 255)
            left += 5.6 * unit * 0.8
            continue
        for name, (x0, y0, x1, y1) in _SEGMENTS.items():
            xs = [left + x * unit + (7 - y) * slant * unit for x, y in ((x0, y0), (x1, y0))]
            xs += [left + x * unit + (7 - y) * slant * unit for x, y in ((x1, y1), (x0, y1))]
            ys = [top + y * unit for y in (y0, y0, y1, y1)]
            (dl if name in _LIT[d] else dg).polygon(list(zip(xs, ys, strict=True)), 255)
        left += 5.4 * unit
    reduce = (width, height)
    return (
        np.asarray(lit.resize(reduce, Image.Resampling.BOX), np.float32) / 255.0,
        np.asarray(ghost.resize(reduce, Image.Resampling.BOX), np.float32) / 255.0,
    )


def form_ink(height: int, width: int, digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A form field: rule lines, or boxes around digit cells, with digits written in them."""
    canvas = np.zeros((height, width), np.float32)
    cell = int(rng.integers(10, max(12, min(height, 60))))
    line = int(rng.integers(1, 3))
    top = int(rng.integers(0, max(1, height - cell)))
    boxes = rng.random() < 0.5
    x = int(rng.integers(-cell // 2, cell // 2 + 1))
    while x < width:
        glyph = resample(digits[rng.integers(0, len(digits))], cell - 2 * line, cell - 2 * line)
        if rng.random() < 0.8:
            place(canvas, glyph, top + line, x + line)
        if boxes:
            canvas[max(0, top) : top + cell, max(0, x) : max(0, x + line)] = 1.0
        x += cell
    rows = [top, top + cell - line] if boxes else [top + cell - line]
    for r in rows:
        canvas[max(0, r) : max(0, r + line), :] = 1.0
    if not boxes and rng.random() < 0.5:  # more rules above and below, as on a ledger
        for r in range(top % cell, height, cell):
            canvas[r : r + line, :] = np.maximum(canvas[r : r + line, :], 0.8)
    return canvas


def faint_lines(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Printed guides behind the ink: notebook rules, a graph-paper grid or dotted rules,
    1-2 px, at any pitch from 6 to 40 px."""
    canvas = np.zeros((height, width), np.float32)
    pitch = float(rng.uniform(6.0, 40.0))
    thick = 1 if rng.random() < 0.7 else 2
    style = rng.random()
    for r in np.arange(rng.uniform(0, pitch), height, pitch).astype(int):
        canvas[r : r + thick, :] = 1.0
    if style < 0.35:  # a grid: columns too
        for c in np.arange(rng.uniform(0, pitch), width, pitch).astype(int):
            canvas[:, c : c + thick] = 1.0
    elif style < 0.5:  # dotted rules: every other few pixels
        step = int(rng.integers(2, 5))
        canvas[:, np.arange(width) % step != 0] = 0.0
    return canvas


# --- light: background, polarity, contrast ------------------------------------------------------


def _smooth_field(height: int, width: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Low-pass noise with unit standard deviation: paper texture, uneven light."""
    field = ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma, mode="wrap")
    return (field / (field.std() + 1e-6)).astype(np.float32)


def lighting(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(background field, ink level): background anywhere in [0, 1], uneven, and an ink level
    at least 0.15 from it, lighter or darker (either polarity)."""
    style = rng.random()
    if style < 0.15:  # MNIST's own world: white on black
        bg, ink = 0.0, float(rng.uniform(0.85, 1.0))
    elif style < 0.35:  # paper: dark ink on light
        bg, ink = float(rng.uniform(0.75, 1.0)), float(rng.uniform(0.0, 0.35))
    else:
        bg = float(rng.uniform(0.0, 1.0))
        contrast = float(rng.uniform(0.15, 1.0))
        up = bg + contrast <= 1.0 and (bg - contrast < 0.0 or rng.random() < 0.5)
        ink = bg + contrast if up else bg - contrast
        ink = float(np.clip(ink, 0.0, 1.0))
        if abs(ink - bg) < 0.15:
            ink = 1.0 if bg < 0.5 else 0.0
    field = np.full((height, width), bg, np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.random() < 0.4:  # a gradient across the image
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height) - 0.5
        field += float(rng.uniform(-0.2, 0.2)) * ramp
    if rng.random() < 0.25:  # vignetting
        r2 = ((xx / width - 0.5) ** 2 + (yy / height - 0.5) ** 2) * 2
        field *= 1.0 - float(rng.uniform(0.05, 0.3)) * r2
    if rng.random() < 0.3:  # paper texture and uneven light, smooth enough not to be noise
        field += float(rng.uniform(0.005, 0.04)) * _smooth_field(
            height, width, float(rng.uniform(2.0, 8.0)), rng
        )
    return np.clip(field, 0.0, 1.0), ink


def shadow(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A soft-edged shadow across part of the image (a hand, a phone): a multiplicative field."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
    side = np.cos(angle) * (xx - x0) + np.sin(angle) * (yy - y0)
    edge = 1.0 / (1.0 + np.exp(-side / float(rng.uniform(1.0, 8.0))))
    return (1.0 - float(rng.uniform(0.15, 0.5)) * edge).astype(np.float32)


def world_image(
    height: int,
    width: int,
    digits: np.ndarray,
    rng: np.random.Generator,
    mix: WorldMix = DEFAULT_MIX,
) -> np.ndarray:
    """One clean image of the wide world, float32 (height, width) in [0, 1]."""
    kind = rng.random()
    ghost = None
    handwriting, printing, display = mix.ink_kinds()
    if kind < 0.05:
        ink = np.zeros((height, width), np.float32)  # blank paper or a blank display
    elif kind < handwriting:
        ink = handwritten_ink(height, width, digits, rng)
    elif kind < printing:
        ink = printed_ink(height, width, rng)
    elif kind < display:
        framed = mix.framed_share > 0 and rng.random() < mix.framed_share
        ink, ghost = display_ink(height, width, rng, framed)
    else:
        ink = form_ink(height, width, digits, rng)
    background, ink_level = lighting(height, width, rng)
    # Ink follows the light: on uneven paper, dark ink is darker where the paper is.
    ink_field = np.clip(ink_level + 0.5 * (background - background.mean()), 0.0, 1.0)
    image = background * (1.0 - ink) + ink_field * ink
    faint = mix.faint_share > 0  # drawn only when asked: the stages before keep their stream
    if ghost is not None and rng.random() < (0.9 if faint else 0.7):  # unlit segments
        level = float(rng.uniform(0.03, 0.3 if faint else 0.2))
        image += level * ghost * (1.0 - ink) * (ink_field - background)
    if faint and ghost is None and rng.random() < mix.faint_share:  # rules, grids behind ink
        guides = faint_lines(height, width, rng)
        image += float(rng.uniform(0.05, 0.3)) * guides * (1.0 - ink) * (ink_field - background)
    if rng.random() < 0.15:
        image = image * shadow(height, width, rng)
    if rng.random() < 0.5:  # slight blur: optics, focus, ink spread
        image = ndimage.gaussian_filter(image, float(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.2:  # resampled: scanned or shown at another size
        f = float(rng.uniform(0.4, 0.9))
        small = resample(np.clip(image, 0, 1), max(4, round(height * f)), max(4, round(width * f)))
        image = resample(small, height, width)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def world_images(
    count: int,
    height: int,
    width: int,
    digits: np.ndarray,
    rng: np.random.Generator,
    mix: WorldMix = DEFAULT_MIX,
) -> np.ndarray:
    """(count, 1, height, width) clean images of the wide world from `digits` (N, 28, 28)."""
    out = np.empty((count, 1, height, width), np.float32)
    for i in range(count):
        out[i, 0] = world_image(height, width, digits, rng, mix)
    return out


# --- noise: what sensors, scanners and codecs add ----------------------------------------------


def poisson_gaussian(
    image: np.ndarray, peak: float, read_sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Sensor noise: photon counts ~ Poisson(x * peak) / peak plus Gaussian read noise."""
    shot = rng.poisson(np.clip(image, 0, 1).astype(np.float64) * peak) / peak
    return (shot + read_sigma * rng.standard_normal(image.shape)).astype(np.float32)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """What a JPEG encoder leaves of a (height, width) image (8-bit, one channel)."""
    buffer = io.BytesIO()
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())), np.float32) / 255.0


def world_noise(
    image: np.ndarray, rng: np.random.Generator, mix: WorldMix = DEFAULT_MIX
) -> np.ndarray:
    """One image's noise, kind and level drawn per call; clipped to [0, 1] as pixels are.

    8% stay clean (the model must learn to leave them be); levels run log-uniformly from
    barely visible to sigma 0.75 (`mix.moderate_share` of them over users' range only);
    impulses ride on top of any kind a fifth of the time.
    """
    kind = rng.random()
    if kind < 0.08:
        return image.copy()
    # Only a mix that asks for it draws here: the stages before it keep their random stream.
    moderate = mix.moderate_share > 0 and rng.random() < mix.moderate_share
    if kind < 0.45:
        sigma = _log_uniform(rng, 0.03, 0.3) if moderate else _log_uniform(rng, 0.01, 0.75)
        noisy = image + sigma * rng.standard_normal(image.shape)
    elif kind < 0.72:
        peak = _log_uniform(rng, 8.0, 200.0) if moderate else _log_uniform(rng, 2.0, 500.0)
        noisy = poisson_gaussian(image, peak, float(rng.uniform(0.0, mix.read_noise_max)), rng)
    elif kind < 0.8:
        sigma = _log_uniform(rng, 0.05, 0.4) if moderate else _log_uniform(rng, 0.05, 0.8)
        noisy = image + image * sigma * rng.standard_normal(image.shape)
    elif kind < 0.92:
        noisy = image + _log_uniform(rng, 0.01, 0.25) * rng.standard_normal(image.shape)
        noisy = jpeg_roundtrip(noisy, int(rng.integers(15, 95)))
    else:
        noisy = image.copy()
    noisy = np.asarray(noisy, np.float32)
    if kind >= 0.92 or rng.random() < 0.2:  # salt and pepper, alone or on top
        amount = _log_uniform(rng, 0.002, 0.2 if kind >= 0.92 else 0.05)
        u = rng.random(image.shape)
        noisy = np.where(u < amount / 2, 0.0, np.where(u < amount, 1.0, noisy))
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def world_batch(
    count: int,
    size: int,
    digits: np.ndarray,
    rng: np.random.Generator,
    mix: WorldMix = DEFAULT_MIX,
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) training pairs, each (count, 1, size, size)."""
    clean = world_images(count, size, size, digits, rng, mix)
    noisy = np.stack([world_noise(c[0], rng, mix) for c in clean])[:, None]
    return noisy, clean
