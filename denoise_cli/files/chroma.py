"""Colour back onto a denoised luminance: the input's chroma, smoothed where the picture is flat.

The model sees luminance only. Carrying the input's chroma over unchanged keeps the ink's hue
but also every speck of chroma noise: a noisy colour scan came back as clean strokes on
confetti (foreign colour set, stage-4 default: RGB PSNR 20.8 dB, chroma error 13.4 levels).
Here each chroma channel (R-Y, G-Y, B-Y) goes through a guided filter (He, Sun and Tang, "Guided
Image Filtering", ECCV 2010) steered by the denoised luminance: where the luminance is flat the
chroma is averaged over a 7x7 window; where it has an edge, the chroma follows the edge. On the
same 60 images: RGB PSNR 30.9 dB, chroma error 2.3; clean inputs keep chroma within 0.5 levels.
The filter is linear in the chroma, whose luma is zero (to the 8-bit rounding of the input's
luma), so the luminance is the model's; grey inputs stay grey, exactly. Where the model
changed no luminance within the filter's reach, the input's colour is kept as it was.

Bands (`ChromaRows`) give the same pixels as the whole image: a row depends on the rows within
2 * RADIUS of it, which a band waits for.
"""

from __future__ import annotations

import numpy as np

from denoise_cli.files.luminance import luma, unclipped_luma

#: Window radius (7x7) and regulariser (in [0, 1] units squared), measured on the foreign colour
#: set (docs/models.md): r 1-3 x eps 1e-4-1e-2; r=3, eps=1e-3 gave the best RGB PSNR on noisy
#: input and kept clean chroma within 0.53 levels.
RADIUS = 3
EPSILON = 1e-3
#: Rows a band's result depends on beyond each side of it.
CONTEXT = 2 * RADIUS
#: Images above this many pixels are filtered a band at a time (the filter's float copies of a
#: 7000x7000 colour page, whole, took 4.9 GB; banded, the same pixels).
BAND_PIXELS = 1 << 20


def _box(x: np.ndarray, top: bool, bottom: bool) -> np.ndarray:
    """Mean over (2 RADIUS + 1)^2 windows of each (H, W) plane of `x` (..., H, W). Columns
    are mirrored at the edges (as scipy's 'reflect'); rows are mirrored only at a side that is
    the image's edge (`top`, `bottom`), elsewhere RADIUS rows are used up as context and
    dropped. Sums of shifted slices, not running sums: every window adds the same values in
    the same order wherever a band starts, so bands give the whole image's floats bit for bit.
    Planes go through together: on a digit, numpy's per-call cost is most of the time."""
    r, k = RADIUS, 2 * RADIUS + 1
    lead = ((0, 0),) * (x.ndim - 2)
    rows_pad = (r if top else 0, r if bottom else 0)
    padded = np.pad(x, (*lead, rows_pad, (r, r)), mode="symmetric")
    rows = padded.shape[-2] - k + 1
    acc = padded[..., 0:rows, :].copy()
    for i in range(1, k):
        acc += padded[..., i : i + rows, :]
    width = x.shape[-1]
    out = acc[..., 0:width].copy()
    for j in range(1, k):
        out += acc[..., j : j + width]
    return out * np.float32(1.0 / (k * k))


def _recolor(
    pixels: np.ndarray, color: np.ndarray, given: np.ndarray, top: bool, bottom: bool
) -> np.ndarray:
    """The guided filter of the chroma by the denoised luminance, for the rows that have their
    context (all of them at an image edge); `given`: the luminance the model was given."""
    lo = 0 if top else CONTEXT
    inner = slice(lo, len(pixels) - (0 if bottom else CONTEXT))
    if (color == color[..., :1]).all():  # grey in RGB (lossy WebP of a grey page): no chroma
        return np.repeat(pixels[inner, :, None], 3, axis=2)
    guide = pixels.astype(np.float32) / 255.0
    gray_in = luma(color)
    # The chroma against the 8-bit luma (float luma would move a flat patch by up to half a
    # level, then round); what the model changed against the luminance it was given (clipped
    # channels restored: luminance.unclipped_luma), so a patch it left alone comes back
    # exactly as it was.
    chroma = (color.astype(np.float32) - gray_in[..., None].astype(np.float32)) / 255.0
    chroma = np.moveaxis(chroma, -1, 0)  # (3, H, W)
    changed = (pixels != given).astype(np.float32)
    planes = np.concatenate([guide[None], (guide * guide)[None], chroma, guide * chroma])
    means = _box(np.concatenate([planes, changed[None]]), top, bottom)
    mean_i, mean_ii, mean_p, mean_ip, near = means[0], means[1], means[2:5], means[5:8], means[8]
    a = (mean_ip - mean_i * mean_p) / (mean_ii - mean_i * mean_i + EPSILON)
    b = mean_p - a * mean_i
    smooth = _box(np.concatenate([a, b, near[None]]), top, bottom)
    out = guide[inner] * (1.0 + smooth[0:3]) + smooth[3:6]  # Y + a * Y + b: (3, H', W')
    rgb = np.clip(np.round(np.moveaxis(out, 0, -1) * 255.0), 0, 255).astype(np.uint8)
    # Where the model changed no luminance within the filter's reach, the input's colour
    # stands, exactly: images the runtime leaves alone (8x8 scans) and identity models.
    reached = smooth[6] > 0
    return np.where(reached[..., None], rgb, color[inner])


def recolor(pixels: np.ndarray, color: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
    """8-bit denoised luminance (H, W) and the input's RGB (H, W, 3) -> RGB (H, W, 3) uint8:
    the denoised luminance with the input's chroma, smoothed by the guided filter. `given`:
    the 8-bit luminance the model was given (the decoder's; computed again when left out)."""
    if not color.shape[:2] == pixels.shape:
        raise ValueError(f"colour {color.shape} does not match luminance {pixels.shape}")
    return ChromaRows().push(pixels, color, last=True, given=given)[0]


class ChromaRows:
    """`recolor` a band of rows at a time, top to bottom, with the whole image's pixels: each
    band's last CONTEXT rows wait for the next band (the image's last band flushes them).
    Rows riding along (alpha) are held back with them."""

    def __init__(self) -> None:
        self._pixels: np.ndarray | None = None  # rows from self._start on
        self._color: np.ndarray | None = None
        self._given: np.ndarray | None = None
        self._extra: np.ndarray | None = None
        self._start = 0  # image row of the buffers' first row
        self._done = 0  # rows handed out so far

    def push(
        self,
        pixels: np.ndarray,
        color: np.ndarray,
        extra: np.ndarray | None = None,
        last: bool = False,
        given: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Add the next rows; (RGB rows ready, their `extra` rows) come back, maybe none.
        `given`: these rows' luminance as the model was given it (computed from `color` when
        left out: luminance.unclipped_luma is row-local). Rows are filtered ~BAND_PIXELS at a
        time, however many come in (a tile row of a wide page is ~7 M pixels; the filter holds
        ~90 bytes a pixel)."""
        if given is not None and given.shape != pixels.shape:
            raise ValueError(f"given luminance {given.shape} does not match {pixels.shape}")
        step = max(4 * CONTEXT, BAND_PIXELS // max(1, pixels.shape[1]))
        rgb, kept = [], []
        for y in range(0, max(1, len(pixels)), step):
            piece = slice(y, y + step)
            more = extra[piece] if extra is not None else None
            rows = given[piece] if given is not None else unclipped_luma(color[piece])  # row-local
            out, out_extra = self._push(
                pixels[piece], color[piece], rows, more, last and y + step >= len(pixels)
            )
            rgb.append(out)
            kept.append(out_extra)
        joined = rgb[0] if len(rgb) == 1 else np.concatenate(rgb)
        if extra is None:
            return joined, None
        return joined, (kept[0] if len(kept) == 1 else np.concatenate(kept))

    def _push(
        self,
        pixels: np.ndarray,
        color: np.ndarray,
        given: np.ndarray,
        extra: np.ndarray | None,
        last: bool,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        self._pixels = _append(self._pixels, pixels)
        self._color = _append(self._color, color)
        self._given = _append(self._given, given)
        self._extra = _append(self._extra, extra) if extra is not None else None
        end = self._start + len(self._pixels)
        ready = end if last else end - CONTEXT
        if ready <= self._done:
            return _rows(color, 0), None if extra is None else extra[:0]
        top = self._start == 0
        rgb = _recolor(self._pixels, self._color, self._given, top, last)
        first = 0 if top else self._start + CONTEXT  # image row of rgb's first row
        rgb = rgb[self._done - first :]
        kept_extra = None
        if self._extra is not None:
            kept_extra = self._extra[self._done - self._start : ready - self._start]
        self._done = ready
        keep_from = max(self._start, ready - CONTEXT)  # the next rows' context above them
        cut = keep_from - self._start
        self._pixels, self._color = self._pixels[cut:], self._color[cut:]
        self._given = self._given[cut:]
        if self._extra is not None:
            self._extra = self._extra[cut:]
        self._start = keep_from
        return rgb, kept_extra


def _append(held: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    return rows if held is None or not len(held) else np.concatenate([held, rows])


def _rows(like: np.ndarray, count: int) -> np.ndarray:
    return np.empty((count, *like.shape[1:]), np.uint8)
