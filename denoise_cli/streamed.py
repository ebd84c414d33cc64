"""One large PNG through the model a band of rows at a time, never whole in memory.

Whole, a 7000x7000 page held ~1 GB (its float copies: decoded, flipped, padded, stitched,
clipped, quantized); streamed, a worker holds the compressed file, a row of tiles and the
model's own activations. Two passes over the file: the first gathers the pixels the polarity
decision samples (the same ones as for an image held whole), the second decodes, denoises and
encodes band by band into the atomic temporary file. The pixels written are those of the
whole-image path: the same tiles, the same decision, the same rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from denoise_cli import pngstream
from denoise_cli.errors import ImageError
from denoise_cli.images import quantize, to_gray
from denoise_cli.pngstream import PngLayout, PngWriter
from denoise_cli.session import polarity_sample_step

#: Rows decoded per step: small against a tile (1024), large enough that Pillow's per-call
#: cost is noise.
BAND_ROWS = 128


class Stopped(Exception):
    """The run was asked to stop (SIGINT/SIGTERM) mid-file: the file is dropped, unwritten."""


def gray_bands(data: bytes, png: PngLayout) -> Iterator[tuple[np.ndarray, np.ndarray | None, str]]:
    """(gray float32 rows, alpha uint8 rows or None, output mode) band by band, converted as
    images.decode_bytes converts a whole file."""
    for band in pngstream.read_bands(data, png, BAND_ROWS):
        gray, info = to_gray(band, "PNG", band.info)
        yield gray, info.alpha, info.out_mode


def polarity_samples(data: bytes, png: PngLayout) -> tuple[np.ndarray, str]:
    """The pixels `needs_inversion_batch` would sample from the whole image, and its mode."""
    step = polarity_sample_step(png.width * png.height)
    samples, modes, start = [], [], 0  # start: flat index of the band's first pixel
    for gray, _, mode in gray_bands(data, png):
        modes.append(mode)
        end = start + gray.size
        first = -(-start // step) * step
        samples.append(gray.reshape(-1)[first - start : end - start : step].copy())  # not a view
        start = end
    return np.concatenate(samples), modes[0]


class RowWindow:
    """An image's rows, first to last, from a band iterator; only rows still wanted are held.

    `rows(y0, y1)` for the model's input, `alpha(y0, y1)` for the output's alpha channel: each
    side asks in increasing order; the input side runs up to a row of tiles ahead.
    """

    def __init__(self, bands: Iterator[tuple[np.ndarray, np.ndarray | None, str]]) -> None:
        self._bands = bands
        self._held: dict[str, tuple[int, list[np.ndarray]]] = {"gray": (0, []), "alpha": (0, [])}
        self._end = 0  # rows decoded so far

    def _take(self, kind: str, y0: int, y1: int) -> np.ndarray:
        while self._end < y1:
            band = next(self._bands, None)
            if band is None:
                raise ImageError(f"cannot decode: image data ends at row {self._end}")
            gray, alpha, _ = band
            self._held["gray"][1].append(gray)
            if alpha is not None:
                self._held["alpha"][1].append(alpha)
            self._end += len(gray)
        start, held = self._held[kind]
        while held and start + len(held[0]) <= y0:  # bands wholly above y0: done with
            start += len(held.pop(0))
        self._held[kind] = (start, held)
        joined = np.concatenate(held) if len(held) > 1 else held[0]
        return joined[y0 - start : y1 - start]

    def rows(self, y0: int, y1: int) -> np.ndarray:
        return self._take("gray", y0, y1)

    def alpha(self, y0: int, y1: int) -> np.ndarray:
        return self._take("alpha", y0, y1)


def denoised_png(
    data: bytes,
    png: PngLayout,
    denoise_rows: Callable[[np.ndarray, Callable[[int, int], np.ndarray]], Iterator[np.ndarray]],
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[bytes]:
    """The output file's bytes, piece by piece. `denoise_rows(samples, rows)` turns the
    polarity samples and a row reader into output bands (see transforms.DenoiseTransform).

    Raises ImageError for damaged data or outputs that cannot be right (NaN), Stopped when
    `should_stop()` turns true: raised inside the writer's loop, either one leaves no file.
    """
    samples, mode = polarity_samples(data, png)
    window = RowWindow(gray_bands(data, png))
    writer = PngWriter(png.width, png.height, mode, png.dpi)
    yield writer.header()
    y = 0
    for out in denoise_rows(samples, window.rows):
        if should_stop():
            raise Stopped
        if not np.isfinite(out).all():
            raise ImageError("model returned NaN or infinite values; nothing written")
        count = len(out)
        alpha = window.alpha(y, y + count) if mode in ("LA", "RGBA") else None
        yield writer.rows(quantize(np.clip(out, 0.0, 1.0), mode), alpha)
        y += count
    yield writer.end()


def streamable(
    data: bytes, suffix: str, max_pixels: int, wanted: Callable[[int, int], bool]
) -> PngLayout | None:
    """The layout of a file to stream: a PNG whose size `wanted(height, width)` accepts, of a
    layout that streams, within the pixel limit (over it, the whole-image decoder refuses it
    with the usual message). The size is read from the header first: a small file costs a
    few bytes' look, not a parse."""
    if suffix.lower() != ".png":
        return None
    size = pngstream.header_size(data)
    if size is None or size[0] * size[1] > max_pixels or not wanted(*size):
        return None
    return pngstream.layout(data)
