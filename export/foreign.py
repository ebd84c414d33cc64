"""Foreign digit sets: digits as users have them, drawn so that no training world draws them.

`compare --foreign` (and `denoise-export foreign`) scores models on these, beside classical
filters, to see whether a default trained on train/world.py carries over to digits it has not
seen. To keep the test honest every ingredient differs from the world's (read train/world.py):

- material: MNIST *test* digits and `HELD_OUT_FONTS` only (the world draws MNIST training
  digits and `TRAIN_FONTS`);
- renderers: rounded-stroke 14-segment and capsule 7-segment displays (the world draws sharp
  slanted 7-segment polygons and dot matrices); digit strings set as dates, amounts and
  invoice numbers; blue ballpoint and red stamps on colour paper; UCI-style 8x8 scans;
- backgrounds: reflective green-grey and blue backlit LCDs with a backlight hot spot, paper
  with anisotropic fibres (the world's texture is isotropic), ruled notebook paper;
- noise: Poisson-Gaussian with read noise above the world's range plus row banding, Gaussian
  plus impulses on print, independent per-channel noise on colour scans.

Every image is drawn from its own generator, keyed by (seed, set, index): the same seed gives
the same images, and the first k images are the same whatever the count.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from denoise_cli.core.errors import UsageError

#: ITU-R 601 luma weights, as Pillow's convert("L") and the runtime's decoder use them.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Sample:
    """One foreign image: clean, noisy (the same for clean sets), and where the background is.

    Grey images are (H, W) float32 in [0, 1]; colour images (H, W, 3), quantised to 8 bits
    (they reach the models as RGB PNG files, as users' scans do)."""

    clean: np.ndarray
    noisy: np.ndarray
    background: np.ndarray  # bool (H, W): nothing was drawn here (ink dilated by 2 px)


@dataclass(frozen=True)
class ForeignSet:
    name: str
    description: str
    colour: bool
    clean_only: bool  # a do-no-harm set: the input is the clean image itself
    samples: list[Sample]


Renderer = Callable[[np.random.Generator, np.ndarray], tuple[np.ndarray, np.ndarray]]


# --- displays: rounded strokes, 14 segments ------------------------------------------------------

#: Segment end points in a 4x8 cell: the seven outer segments, split middle bar, diagonals and
#: centre verticals of a 14-segment display.
_STROKES = {
    "a": ((0, 0), (4, 0)),
    "b": ((4, 0), (4, 4)),
    "c": ((4, 4), (4, 8)),
    "d": ((0, 8), (4, 8)),
    "e": ((0, 4), (0, 8)),
    "f": ((0, 0), (0, 4)),
    "g1": ((0, 4), (2, 4)),
    "g2": ((2, 4), (4, 4)),
    "h": ((0, 0), (2, 4)),
    "i": ((2, 0), (2, 4)),
    "j": ((4, 0), (2, 4)),
    "k": ((0, 8), (2, 4)),
    "l": ((2, 4), (2, 8)),
    "m": ((4, 8), (2, 4)),
}
_FOURTEEN = (
    "a b c d e f j k",  # slashed zero
    "b c j",
    "a b d e g1 g2",
    "a b c d g2",
    "b c f g1 g2",
    "a d f g1 m",
    "a c d e f g1 g2",
    "a j k",
    "a b c d e f g1 g2",
    "a b c d f g1 g2",
)
_SEVEN = (
    "a b c d e f",
    "b c",
    "a b d e g1 g2",
    "a b c d g1 g2",
    "b c f g1 g2",
    "a c d f g1 g2",
    "a c d e f g1 g2",
    "a b c",
    "a b c d e f g1 g2",
    "a b c d f g1 g2",
)
#: (background RGB, lit segment RGB): a reflective green-grey LCD (dark segments) and a blue
#: backlit one (light segments).
_LCDS = (((0.64, 0.70, 0.58), (0.14, 0.17, 0.14)), ((0.10, 0.22, 0.62), (0.86, 0.92, 1.0)))
DISPLAY_SHAPE = (40, 160)
SUPERSAMPLE = 4


def _stroke(draw: ImageDraw.ImageDraw, p0: tuple, p1: tuple, width: float) -> None:
    """A segment with rounded ends (the world's segments are sharp polygons)."""
    draw.line([p0, p1], fill=255, width=max(1, round(width)))
    r = width / 2
    for x, y in (p0, p1):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def display_layers(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """(lit, unlit) segment coverage in [0, 1] for a reading of 4-6 digits and maybe a point."""
    height, width = shape
    s = SUPERSAMPLE
    lit, unlit = Image.new("L", (width * s, height * s)), Image.new("L", (width * s, height * s))
    dl, du = ImageDraw.Draw(lit), ImageDraw.Draw(unlit)
    font = _FOURTEEN if rng.random() < 0.5 else _SEVEN
    count = int(rng.integers(4, 7))
    unit = rng.uniform(0.55, 0.75) * height * s / 8  # digits 55-75% of the strip's height
    pitch = unit * rng.uniform(6.0, 7.0)
    left = rng.uniform(0.5, max(0.6, width * s - count * pitch - unit)) if count else 0
    top = (height * s - 8 * unit) / 2 + rng.uniform(-0.1, 0.1) * unit
    gap, thick = 0.45 * unit, unit * rng.uniform(0.6, 0.9)
    point = int(rng.integers(1, count)) if rng.random() < 0.5 else -1
    for n, digit in enumerate(rng.integers(0, 10, count)):
        on = set(font[digit].split())
        x0 = left + n * pitch
        for name in {w for f in font for w in f.split()}:
            (ax, ay), (bx, by) = _STROKES[name]
            length = np.hypot(bx - ax, by - ay)
            t = gap / (unit * length)  # shorten both ends: segments do not touch
            p0 = (x0 + unit * (ax + t * (bx - ax)), top + unit * (ay + t * (by - ay)))
            p1 = (x0 + unit * (bx - t * (bx - ax)), top + unit * (by - t * (by - ay)))
            _stroke(dl if name in on else du, p0, p1, thick)
        if n == point - 1:  # the decimal point after this digit
            cx, cy, r = x0 + unit * 5.0, top + unit * 8, thick * 0.6
            dl.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    size = (width, height)
    return tuple(
        np.asarray(layer.resize(size, Image.Resampling.BOX), np.float32) / 255.0
        for layer in (lit, unlit)
    )


def render_display(rng: np.random.Generator, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 40x160 LCD strip, as luminance: a backlight hot spot, faint unlit segments, blur."""
    from scipy import ndimage

    height, width = DISPLAY_SHAPE
    lit, unlit = display_layers(rng, DISPLAY_SHAPE)
    bg_rgb, ink_rgb = _LCDS[int(rng.integers(0, len(_LCDS)))]
    bg = float(np.dot(LUMA, bg_rgb)) * rng.uniform(0.9, 1.1)
    ink = float(np.dot(LUMA, ink_rgb)) * rng.uniform(0.9, 1.05)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    spot = np.exp(-((xx - cx) ** 2 + ((yy - cy) * 3) ** 2) / (2 * (0.4 * width) ** 2))
    background = bg * (1 + rng.uniform(0.05, 0.15) * (spot - spot.mean()))
    ghost = rng.uniform(0.06, 0.18)  # unlit segments show a little of the ink's level
    image = background + (ink - background) * np.clip(lit + ghost * unlit, 0, 1)
    image = ndimage.gaussian_filter(image, rng.uniform(0.5, 0.9))
    drawn = np.maximum(lit, unlit) > 0.02
    return np.clip(image, 0, 1).astype(np.float32), drawn


def display_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise unlike the world's: Poisson-Gaussian with read noise 0.06-0.10 (the world
    stops at 0.06) and row banding, as rolling-shutter phone cameras add."""
    peak = float(np.exp(rng.uniform(np.log(15.0), np.log(60.0))))
    shot = rng.poisson(np.clip(image, 0, 1).astype(np.float64) * peak) / peak
    read = rng.uniform(0.06, 0.10) * rng.standard_normal(image.shape)
    rows = rng.uniform(0.01, 0.03) * rng.standard_normal((image.shape[0], 1))
    return np.clip(shot + read + rows, 0, 1).astype(np.float32)


# --- print on paper: held-out serif faces ------------------------------------------------------

PRINT_SHAPE = (48, 192)
#: The serif faces among train/world.py's HELD_OUT_FONTS.
PRINT_FONTS = ("cmr10.ttf", "STIXGeneralItalic.ttf")
#: The other held-out face: the red stamps of the colour set.
STAMP_FONT = "DejaVuSansMono-BoldOblique.ttf"


def held_out_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A held-out font, refused (not silently replaced) when matplotlib does not ship it."""
    from denoise_train.world import HELD_OUT_FONTS, TRAIN_FONTS, _font_dir, font

    if name not in HELD_OUT_FONTS or name in TRAIN_FONTS:
        raise UsageError(f"{name}: foreign sets print only with train/world.py's HELD_OUT_FONTS")
    folder = _font_dir()
    if folder is None or not (folder / name).is_file():
        raise UsageError(
            f"{name}: font not found (matplotlib ships it: pip install 'denoise-batch[train]')"
        )
    return font(name, size)


def _digit_string(rng: np.random.Generator) -> str:
    """Digits as printed on documents: a date, an amount, an invoice or phone number."""
    d = lambda n: "".join(str(v) for v in rng.integers(0, 10, n))  # noqa: E731
    forms = (
        lambda: f"{d(2)}.{d(2)}.{d(4)}",
        lambda: f"{d(int(rng.integers(1, 4)))},{d(3)}.{d(2)}",
        lambda: f"No {d(6)}",
        lambda: f"{d(3)}-{d(4)}",
        lambda: d(int(rng.integers(4, 9))),
    )
    return forms[int(rng.integers(0, len(forms)))]()


def text_coverage(
    rng: np.random.Generator, shape: tuple[int, int], font_name: str, tall: tuple[float, float]
) -> np.ndarray:
    """Ink coverage of one printed string, digits `tall` (fraction of the height), shrunk to fit."""
    height, width = shape
    text = _digit_string(rng)
    size = max(8, round(rng.uniform(*tall) * height / 0.72))
    face = held_out_font(font_name, size)
    canvas = Image.new("L", (width, height))
    draw = ImageDraw.Draw(canvas)
    while size > 8 and draw.textlength(text, font=face) > width - 4:
        size -= 2
        face = held_out_font(font_name, size)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=face)
    x = rng.uniform(2 - x0, max(3 - x0, width - 2 - x1))
    y = (height - (y1 - y0)) / 2 - y0 + rng.uniform(-0.08, 0.08) * height
    draw.text((x, y), text, fill=255, font=face)
    return np.asarray(canvas, np.float32) / 255.0


def paper(rng: np.random.Generator, shape: tuple[int, int], tone: float) -> np.ndarray:
    """Paper at `tone` with fibres: noise smoothed far more along one axis than the other."""
    from scipy import ndimage

    sigma = (rng.uniform(0.5, 1.0), rng.uniform(3.0, 6.0))
    if rng.random() < 0.5:
        sigma = sigma[::-1]
    fibres = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    fibres /= fibres.std() + 1e-6
    return (tone + rng.uniform(0.008, 0.02) * fibres).astype(np.float32)


def render_print(rng: np.random.Generator, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dark serif digits on light paper, slightly blurred by the scan."""
    from scipy import ndimage

    ink = text_coverage(rng, PRINT_SHAPE, PRINT_FONTS[int(rng.integers(0, 2))], (0.4, 0.62))
    background = paper(rng, PRINT_SHAPE, rng.uniform(0.78, 0.95))
    image = background * (1 - ink) + rng.uniform(0.05, 0.3) * ink
    image = ndimage.gaussian_filter(image, rng.uniform(0.4, 0.8))
    return np.clip(image, 0, 1).astype(np.float32), ink > 0.02


def print_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian 0.1-0.2 and about 2% impulses (half salt, half pepper)."""
    noisy = image + rng.uniform(0.1, 0.2) * rng.standard_normal(image.shape)
    u = rng.random(image.shape)
    amount = rng.uniform(0.015, 0.025)
    noisy = np.where(u < amount / 2, 0.0, np.where(u < amount, 1.0, noisy))
    return np.clip(noisy, 0, 1).astype(np.float32)


# --- colour ink on paper ------------------------------------------------------------------------

COLOUR_SHAPE = (48, 160)
BALLPOINT_BLUE = (0.12, 0.18, 0.58)
STAMP_RED = (0.74, 0.12, 0.16)


def handwriting_coverage(
    rng: np.random.Generator, shape: tuple[int, int], digits: np.ndarray
) -> np.ndarray:
    """3-5 MNIST test digits written in a row, 70-90% of the height."""
    from denoise_train.scenes import place, resample

    height, width = shape
    side = round(rng.uniform(0.7, 0.9) * height)
    canvas = np.zeros(shape, np.float32)
    count = int(rng.integers(3, 6))
    x = int(rng.integers(0, max(1, width - count * side * 0.75)))
    top = (height - side) // 2
    for d in rng.integers(0, len(digits), count):
        place(canvas, resample(digits[d], side, side), top + int(rng.integers(-2, 3)), x)
        x += int(side * rng.uniform(0.6, 0.8))
    return np.clip(canvas, 0, 1)


def render_colour(rng: np.random.Generator, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blue ballpoint handwriting or a red stamp on cream paper, sometimes ruled in light blue."""
    from scipy import ndimage

    height = COLOUR_SHAPE[0]
    tint = np.array([0.96, 0.94, 0.86]) * rng.uniform(0.9, 1.0) + rng.uniform(-0.02, 0.02, 3)
    sheet = paper(rng, COLOUR_SHAPE, 0.0)[..., None] + tint
    drawn = np.zeros(COLOUR_SHAPE, bool)
    if rng.random() < 0.5:  # a notebook's rule line under the digits
        row = int(height * rng.uniform(0.85, 0.95))
        sheet[row] = sheet[row] * 0.6 + 0.4 * np.array([0.55, 0.7, 0.9])
        drawn[row] = True
    if rng.random() < 0.6:
        ink = handwriting_coverage(rng, COLOUR_SHAPE, digits)
        colour = np.array(BALLPOINT_BLUE)
    else:
        ink = text_coverage(rng, COLOUR_SHAPE, STAMP_FONT, (0.45, 0.65))
        colour = np.array(STAMP_RED)
    colour = np.clip(colour + rng.uniform(-0.05, 0.05, 3), 0, 1)
    image = sheet * (1 - ink[..., None]) + colour * ink[..., None]
    image = ndimage.gaussian_filter(image, (rng.uniform(0.4, 0.8),) * 2 + (0,))
    return _eight_bit(image), drawn | (ink > 0.02)


def colour_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Independent Gaussian noise per channel (a colour sensor's), 0.08-0.16, in 8 bits."""
    return _eight_bit(image + rng.uniform(0.08, 0.16) * rng.standard_normal(image.shape))


def _eight_bit(image: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(image, 0, 1) * 255) / 255).astype(np.float32)


# --- tiny scans: UCI's 8x8 digits -----------------------------------------------------------


def render_tiny(rng: np.random.Generator, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An 8x8 digit with 17 grey levels, made as UCI's `load_digits` were: a 32x32 bitmap of
    the digit, then the count of ink pixels in each 4x4 block (0-16) over 16."""
    from denoise_train.scenes import resample

    digit = digits[int(rng.integers(0, len(digits)))]
    ys, xs = np.nonzero(digit > 0.5)
    crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if len(ys) else digit
    scale = 32 / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    bitmap = np.zeros((32, 32), np.float32)
    top, left = (32 - h) // 2, (32 - w) // 2
    bitmap[top : top + h, left : left + w] = resample(crop, h, w) > 0.5
    counts = bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3))
    return (counts / 16).astype(np.float32), counts > 0


def tiny_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian 0.1-0.25 (UCI's scans, as a newcomer adds noise to test a denoiser)."""
    return np.clip(image + rng.uniform(0.1, 0.25) * rng.standard_normal(image.shape), 0, 1).astype(
        np.float32
    )


# --- the sets -----------------------------------------------------------------------------------

Noise = Callable[[np.ndarray, np.random.Generator], np.ndarray]
#: name -> (description, renderer, noise, colour). Each also has a "NAME-clean" twin for the
#: do-no-harm check (tiny scans aside: 17 levels are their own kind of clean).
KINDS: dict[str, tuple[str, Renderer, Noise, bool]] = {
    "display": (
        "LCD readings, 40x160: rounded 14- and 7-segment digits, green-grey or blue backlit, "
        "faint unlit segments, blur; Poisson-Gaussian (read 0.06-0.10) and row banding",
        render_display,
        display_noise,
        False,
    ),
    "print": (
        "serif digit strings (cmr10, STIX italic) on fibrous paper, 48x192, blur; Gaussian "
        "0.1-0.2 and ~2% impulses",
        render_print,
        print_noise,
        False,
    ),
    "colour": (
        "RGB, 48x160: blue ballpoint MNIST test digits or a red stamp on cream, sometimes "
        "ruled paper; Gaussian 0.08-0.16 per channel, 8-bit",
        render_colour,
        colour_noise,
        True,
    ),
    "tiny": (
        "8x8 scans with 17 grey levels (as UCI's load_digits) from MNIST test digits; "
        "Gaussian 0.1-0.25",
        render_tiny,
        tiny_noise,
        False,
    ),
}
CLEAN_OF = ("display", "print", "colour")
SET_NAMES = (*KINDS, *(f"{k}-clean" for k in CLEAN_OF))
DEFAULT_COUNT = 300
DEFAULT_SEED = 20261203


def build_set(name: str, count: int, digits: np.ndarray, seed: int = DEFAULT_SEED) -> ForeignSet:
    """`count` seeded images of set `name` (one of SET_NAMES) from MNIST test `digits`
    (N, 28, 28) in [0, 1]. A clean set holds the noisy set's clean images as its inputs."""
    if name not in SET_NAMES:
        raise UsageError(f"unknown foreign set {name!r}; known: {', '.join(SET_NAMES)}")
    if count < 1:
        raise UsageError(f"foreign set {name}: count must be >= 1, got {count}")
    digits = np.asarray(digits, np.float32).reshape(-1, 28, 28)
    kind = name.removesuffix("-clean")
    clean_only = kind != name
    description, render, noise, colour = KINDS[kind]
    samples = []
    for i in range(count):
        rng = np.random.default_rng([seed, zlib.crc32(kind.encode()), i])
        clean, drawn = render(rng, digits)
        noisy = clean.copy() if clean_only else noise(clean, rng)
        samples.append(Sample(clean, noisy, background_mask(drawn)))
    if clean_only:
        description = f"the clean images of '{kind}', as inputs: do no harm"
    return ForeignSet(name, description, colour, clean_only, samples)


def background_mask(drawn: np.ndarray) -> np.ndarray:
    """Background pixels: nothing drawn within 2 px (blur spreads ink about that far)."""
    from scipy import ndimage

    return ~ndimage.binary_dilation(drawn, iterations=2) if drawn.size > 64 else ~drawn


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W) as it is; (H, W, 3) RGB as ITU-R 601 luma: the plain luminance an image holds,
    what results are scored on (the runtime feeds the model files.luminance.unclipped_luma)."""
    return image if image.ndim == 2 else (image @ LUMA).astype(np.float32)
