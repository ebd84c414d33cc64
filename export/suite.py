"""The pieces of `compare`'s evaluation suite: the layouts users have, noise seeded per cell,
models run the way the runtime runs them, scores with "false ink", and the figure.

A cell is one layout (train/scenes.py's LAYOUTS, built from test digits) under one noise
condition. Its noise depends only on the seed, the layout, the condition and the image shape,
so every method sees the same noisy images, and a cell scores the same whichever other cells
run. Models see images of any size, grouped by shape, through the polarity decision and the
padding the runtime applies (`denoise_cli.model.session.Denoiser`), since that is what users run.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from denoise_cli.core.errors import UsageError, WorkFailed
from denoise_cli.core.metrics import psnr, ssim
from denoise_cli.core.noise import add_noise

#: Images per layout. `single` (None): every test digit given, so the reference cell covers
#: all 10,000; the others are fewer because they are bigger (a page is 21 digits' pixels).
LAYOUT_COUNTS: dict[str, int | None] = {
    "single": None,
    "string": 100,
    "scale2": 200,
    "scale3": 100,
    "scale4": 100,
    "page": 100,
    "printed": 300,
    "inverted": 500,
    "blank": 100,
}
#: For a layout added to train/scenes.py without a count here.
OTHER_COUNT = 100
#: An output pixel above this on blank paper is ink the model invented ("false ink").
FALSE_INK_LEVEL = 0.25
#: PSNR of an exact match: blank paper left exactly blank would otherwise give +inf dB and an
#: infinite mean (and JSON has no infinity).
PSNR_CAP = 100.0
DIGIT_PIXELS = 28 * 28
#: Every checkpoint is trained on MNIST's polarity; export/metadata.py writes the same value.
CHECKPOINT_POLARITY = "light-on-dark"

Images = list[np.ndarray]  # 2-D float32 images in [0, 1], any sizes


def label(condition: tuple[str, float]) -> str:
    return f"{condition[0]} {condition[1]:g}"


def layout_counts(
    names: Sequence[str] | None = None, overrides: Sequence[str] = ()
) -> dict[str, int | None]:
    """Images per layout for `compare`: defaults for `names` (None: every layout), changed
    (or added) by "NAME=N" texts."""
    from denoise_train.scenes import LAYOUTS

    known = ", ".join(LAYOUTS)
    chosen = list(LAYOUTS) if names is None else list(names)
    for name in chosen:
        if name not in LAYOUTS:
            raise UsageError(f"unknown layout {name!r}; known: {known}")
    counts = {name: LAYOUT_COUNTS.get(name, OTHER_COUNT) for name in chosen}
    for text in overrides:
        name, sep, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in LAYOUTS or not value.isdigit() or int(value) < 1:
            raise UsageError(
                f"layout count {text!r}: expected NAME=N with N >= 1 and NAME one of {known}"
            )
        counts[name] = int(value)
    return counts


def layout_clean(name: str, digits: np.ndarray, count: int | None, seed: int) -> Images:
    """Clean images of a layout from test digits (N, 28, 28); count None: one per digit."""
    from denoise_train.scenes import layout_images

    return layout_images(name, digits, len(digits) if count is None else count, seed)


def by_shape(images: Sequence[np.ndarray]) -> dict[tuple[int, ...], list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.shape, []).append(i)
    return groups


def map_groups(images: Sequence[np.ndarray], fn: Callable[[np.ndarray], np.ndarray]) -> Images:
    """`fn` ((N, H, W) -> same) on each group of same-shaped images; results in input order."""
    out: list[np.ndarray | None] = [None] * len(images)
    for idx in by_shape(images).values():
        for i, img in zip(idx, fn(np.stack([images[i] for i in idx])), strict=True):
            out[i] = img
    return out  # type: ignore[return-value]


def cell_noise(images: Images, layout: str, condition: tuple[str, float], seed: int) -> Images:
    """The cell's noisy images. Same-shaped images draw from one stream in order, so the first
    k images get the same noise whatever the count."""
    kind, level = condition
    keys = [seed, zlib.crc32(layout.encode()), zlib.crc32(label(condition).encode())]

    def noisy(batch: np.ndarray) -> np.ndarray:
        return add_noise(batch, kind, level, np.random.default_rng([*keys, *batch.shape[1:]]))

    return map_groups(images, noisy)


@dataclass
class Method:
    """Something that restores noisy images: nothing, a classical filter or a model."""

    name: str
    kind: str  # "none", "classical" or "model"
    denoise: Callable[[Images], Images]
    # At most this many 28x28 images per cell (slow classical filters); bigger images fewer,
    # at the same pixel count. None: every image.
    limit: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def images_for(self, shape: tuple[int, ...], available: int) -> int:
        return cell_images(self.limit, shape, available)


def cell_images(limit: int | None, shape: tuple[int, ...], available: int) -> int:
    """Images of `shape` a method with a `limit` (in 28x28 images) scores in a cell."""
    if limit is None:
        return available
    return min(available, max(1, limit * DIGIT_PIXELS // int(np.prod(shape))))


def classical(name: str, fn: Callable[[np.ndarray], np.ndarray], limit: int | None) -> Method:
    """A filter over (N, 1, H, W) arrays, run as-is on every layout: polarity means nothing
    to it."""
    return Method(
        name, "classical", lambda images: map_groups(images, lambda b: fn(b[:, None])[:, 0]), limit
    )


def onnx_runner(path: str | Path) -> Callable[[Images], Images]:
    """An exported model exactly as `denoise-batch` runs it: padding to the size multiple,
    tiling and the automatic polarity decision are the runtime's own."""
    from denoise_cli.model.session import Denoiser

    denoiser = Denoiser(path, device="cpu")
    return lambda images: denoiser.denoise(images, invert="auto")


def checkpoint_runner(
    predict: Callable[[np.ndarray], np.ndarray],
    size_multiple: int,
    fully_convolutional: bool,
    frame: int = 28,
    pixels: int = 1 << 18,
) -> Callable[[Images], Images]:
    """A checkpoint treated as the runtime treats its export, without exporting: the same
    polarity decision, zero padding (the background) to the size multiple and crop back, and
    for fixed-frame models (dense) the same tiling as for a fixed 28x28 ONNX model.

    `predict`: (N, 1, H, W) -> same, in the model's polarity; `pixels`: per call."""
    from denoise_cli.model.polarity import needs_inversion_batch
    from denoise_cli.model.tiling import run_tiled

    m = size_multiple

    def run(batch: np.ndarray) -> np.ndarray:
        h, w = batch.shape[2:]
        x = np.pad(batch, ((0, 0), (0, 0), (0, -h % m), (0, -w % m)))
        step = max(1, pixels // (x.shape[2] * x.shape[3]))
        out = np.concatenate([predict(x[i : i + step]) for i in range(0, len(x), step)])
        return out[:, :, :h, :w]

    def group(batch: np.ndarray) -> np.ndarray:
        x = np.array(batch, dtype=np.float32)
        flips = needs_inversion_batch(x, "auto", CHECKPOINT_POLARITY)
        x[flips] = 1.0 - x[flips]
        if fully_convolutional or x.shape[1:] == (frame, frame):
            out = run(x[:, None])[:, 0]
        else:
            # Denoiser's tiling for a fixed frame: overlap min(32, (frame - 1) // 2).
            overlap = min(32, (frame - 1) // 2)
            out = np.stack([run_tiled(img, run, frame, frame, overlap, 256) for img in x])
        out[flips] = 1.0 - out[flips]
        return out

    return lambda images: map_groups(images, group)


def run_method(method: Method, noisy: Images, where: str) -> Images:
    """The method's outputs, refused unless each keeps its input's size."""
    out = method.denoise(noisy)
    for src, res in zip(noisy, out, strict=True):
        if res.shape != src.shape:
            raise WorkFailed(
                f"{method.name} on {where}: returned a {res.shape} image for a {src.shape} one"
            )
    return [np.asarray(res, np.float32) for res in out]


def false_ink(restored: Images) -> float:
    """Share of output pixels above FALSE_INK_LEVEL (on blank paper: all invented)."""
    return float(np.mean([np.mean(img > FALSE_INK_LEVEL) for img in restored]))


def score(clean: Images, restored: Images, blank: bool) -> dict[str, Any]:
    """Mean per-image PSNR (capped at PSNR_CAP) and SSIM; false ink too on blank paper."""
    p, s = np.empty(len(clean)), np.empty(len(clean))
    for idx in by_shape(clean).values():
        a = np.stack([clean[i] for i in idx])
        b = np.stack([restored[i] for i in idx])
        p[idx] = np.minimum(psnr(a, b), PSNR_CAP)
        s[idx] = ssim(a, b)
    cell: dict[str, Any] = {
        "psnr": float(np.mean(p)),
        "ssim": float(np.mean(s)),
        "images": len(clean),
    }
    if blank:
        cell["false_ink"] = false_ink(restored)
    return cell


# --- the figure ---------------------------------------------------------------------------------

CELL_HEIGHT = 128  # images are enlarged by whole factors (nearest) up to this...
CELL_WIDTH = 280  # ...and this, so a 28x140 string still fits
PAD = 6
LABEL_WIDTH = 90
HEADER = 22


def figure_png(columns: Sequence[str], rows: Sequence[tuple[str, Sequence[np.ndarray]]]) -> bytes:
    """A grid, one row per layout (its label, then one image per column), as PNG bytes.

    Nearest-neighbour enlargement, so a person sees the pixels the scores were computed on.
    Images are (H, W) grey or (H, W, 3) RGB; one RGB image makes the whole grid RGB."""
    from PIL import Image, ImageDraw, ImageFont

    def factor(img: np.ndarray) -> int:
        return max(1, min(CELL_HEIGHT // img.shape[0], CELL_WIDTH // img.shape[1]))

    widths = [
        max((img.shape[1] * factor(img) for _, imgs in rows for img in imgs[c : c + 1]), default=0)
        for c in range(len(columns))
    ]
    heights = [max(img.shape[0] * factor(img) for img in imgs) for _, imgs in rows]
    font = ImageFont.load_default(size=13)
    mode = "RGB" if any(img.ndim == 3 for _, imgs in rows for img in imgs) else "L"
    white, grey, black = (255, 160, 0) if mode == "L" else ((255,) * 3, (160,) * 3, (0,) * 3)
    canvas = Image.new(
        mode,
        (LABEL_WIDTH + sum(w + PAD for w in widths), HEADER + sum(h + PAD for h in heights)),
        white,
    )
    draw = ImageDraw.Draw(canvas)
    x = LABEL_WIDTH
    for name, w in zip(columns, widths, strict=True):
        text = name
        while len(text) > 4 and draw.textlength(text, font=font) > w:
            text = text[:-2] + "…"
        draw.text((x, 4), text, fill=black, font=font)
        x += w + PAD
    y = HEADER
    for (name, imgs), h in zip(rows, heights, strict=True):
        draw.text((6, y + h // 2 - 7), name, fill=black, font=font)
        x = LABEL_WIDTH
        for img, w in zip(imgs, widths, strict=False):
            k = factor(img)
            tile = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
            tile = tile.convert(mode)
            tile = tile.resize((img.shape[1] * k, img.shape[0] * k), Image.Resampling.NEAREST)
            canvas.paste(tile, (x, y))
            # A grey frame: dark-on-light images would otherwise melt into the white page.
            draw.rectangle((x - 1, y - 1, x + tile.width, y + tile.height), outline=grey)
            x += w + PAD
        y += h + PAD
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def plan_cells(
    layouts: Mapping[str, int | None],
    conditions: Sequence[tuple[str, float]],
    scene: str,
    reference: tuple[str, float],
) -> dict[str, list[tuple[str, float]]]:
    """Conditions per layout: the reference everywhere; every condition on single digits, on
    the scene layout and on blank paper (false ink)."""
    plan: dict[str, list[tuple[str, float]]] = {}
    for name in layouts:
        wide = name in ("single", scene, "blank")
        conds = list(conditions) if wide else []
        plan[name] = conds if reference in conds else [reference, *conds]
    return plan
