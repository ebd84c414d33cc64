"""Large images through the model a band of rows at a time, never as whole float copies.

Whole, a 7000x7000 page held ~1 GB: float copies of every pixel (decoded, flipped, stitched,
clipped, quantized). Here a worker holds a row of tiles in float and the model's activations,
plus, for PNG, only the compressed file (decoded and encoded band by band, see pngstream), and
for other formats the image as Pillow decoded it (1-4 bytes a pixel) and the quantized result.
Two passes over the bands: the first gathers the pixels the polarity decision samples (the same
ones as for an image held whole), the second denoises. The pixels written are those of the
whole-image path: the same tiles, the same decision, the same rounding.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from denoise_cli.core.errors import NOT_FINITE, ImageError
from denoise_cli.files import pngstream
from denoise_cli.files.chroma import ChromaRows
from denoise_cli.files.images import (
    HeldImage,
    SourceInfo,
    decode_errors,
    encode_pixels,
    output_depth,
    quantize,
    to_gray,
)
from denoise_cli.files.pngstream import PngLayout, PngWriter
from denoise_cli.model.polarity import polarity_sample_step

#: Rows converted per step: small against a tile (1024), large enough that Pillow's per-call
#: cost is noise.
BAND_ROWS = 128

#: (gray float32 rows in [0, 1], alpha uint8 rows or None, what encoding needs)
Band = tuple[np.ndarray, np.ndarray | None, SourceInfo]
#: The transform: polarity samples and a row reader in, result bands (top to bottom) out.
DenoiseRows = Callable[[np.ndarray, Callable[[int, int], np.ndarray]], Iterator[np.ndarray]]


class Stopped(Exception):
    """The run was asked to stop (SIGINT/SIGTERM) mid-file: the file is dropped, unwritten."""


class BandSource(Protocol):
    height: int
    width: int

    def bands(self) -> Iterator[Band]:
        """The image's rows top to bottom, converted as images.decode_bytes converts a file."""
        ...


@dataclasses.dataclass(frozen=True)
class PngBands:
    """A PNG's bands, decoded from its compressed bytes each time they are asked for."""

    data: bytes
    png: PngLayout

    @property
    def height(self) -> int:
        return self.png.height

    @property
    def width(self) -> int:
        return self.png.width

    def bands(self) -> Iterator[Band]:
        for band in pngstream.read_bands(self.data, self.png, BAND_ROWS):
            with decode_errors():
                gray, info = to_gray(band, "PNG", band.info)
            yield gray, info.alpha, info


@dataclasses.dataclass(frozen=True)
class HeldBands:
    """Bands cut from an image Pillow decoded whole (formats that do not stream)."""

    held: HeldImage

    @property
    def height(self) -> int:
        return self.held.image.height

    @property
    def width(self) -> int:
        return self.held.image.width

    def bands(self) -> Iterator[Band]:
        im, width = self.held.image, self.held.image.width
        for y in range(0, im.height, BAND_ROWS):
            with decode_errors():
                band = im.crop((0, y, width, min(y + BAND_ROWS, im.height)))
                gray, info = to_gray(band, self.held.format, self.held.info)
            yield gray, info.alpha, info


def polarity_samples(source: BandSource, needed: bool = True) -> tuple[np.ndarray, SourceInfo]:
    """The pixels `needs_inversion_batch` would sample from the whole image (none when not
    `needed`: then only the first band is read), and the first band's SourceInfo (format,
    output mode, save options: the same for every band)."""
    step = polarity_sample_step(source.width * source.height)
    samples, first_info, start = [], None, 0  # start: flat index of the band's first pixel
    for gray, _, info in source.bands():
        first_info = first_info or info
        if not needed:
            break
        end = start + gray.size
        first = -(-start // step) * step
        samples.append(gray.reshape(-1)[first - start : end - start : step].copy())  # no view
        start = end
    if first_info is None:
        raise ImageError("cannot decode: no image rows")
    return (np.concatenate(samples) if samples else np.empty(0, np.float32)), first_info


class _Rows:
    """One channel's rows held by RowWindow: bands from row `start` on, oldest first."""

    def __init__(self) -> None:
        self.start = 0
        self.bands: deque[np.ndarray] = deque()

    def take(self, y0: int, y1: int) -> np.ndarray:
        while self.bands and self.start + len(self.bands[0]) <= y0:  # wholly above: done
            self.start += len(self.bands.popleft())
        start, wanted = self.start, []
        for band in self.bands:  # only the bands that hold rows y0..y1 are joined
            if start < y1 and start + len(band) > y0:
                wanted.append(band[max(0, y0 - start) : y1 - start])
            start += len(band)
            if start >= y1:
                break
        if len(wanted) < 2:
            return wanted[0] if wanted else self.bands[0][:0]
        return np.concatenate(wanted)


class RowWindow:
    """An image's rows, first to last, from a band iterator; only rows still wanted are held.

    `rows(y0, y1)` for the model's input, `alpha(y0, y1)` for the output's alpha channel: each
    side asks in increasing order; the input side runs up to a row of tiles ahead.
    """

    def __init__(self, bands: Iterator[Band]) -> None:
        self._bands = bands
        self._gray, self._alpha, self._color, self._luma = _Rows(), _Rows(), _Rows(), _Rows()
        self._end = 0  # rows decoded so far

    def _fill(self, y1: int) -> None:
        while self._end < y1:
            band = next(self._bands, None)
            if band is None:
                raise ImageError(f"cannot decode: image data ends at row {self._end}")
            gray, alpha, info = band
            self._gray.bands.append(gray)
            if alpha is not None:
                self._alpha.bands.append(alpha)
            if info.color is not None:
                self._color.bands.append(info.color)
                self._luma.bands.append(info.luma)
            self._end += len(gray)

    def rows(self, y0: int, y1: int) -> np.ndarray:
        self._fill(y1)
        return self._gray.take(y0, y1)

    def alpha(self, y0: int, y1: int) -> np.ndarray:
        self._fill(y1)
        return self._alpha.take(y0, y1)

    def color(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """The input's RGB rows and their luminance as the model got it, for `chroma`."""
        self._fill(y1)
        return self._color.take(y0, y1), self._luma.take(y0, y1)


def _result_rows(
    source: BandSource,
    info: SourceInfo,
    samples: np.ndarray,
    denoise_rows: DenoiseRows,
    should_stop: Callable[[], bool],
) -> Iterator[tuple[np.ndarray, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]]:
    """(quantized result rows, alpha rows or None, the input's RGB rows and their given
    luminance or None), top to bottom."""
    window = RowWindow(source.bands())
    depth, y = output_depth(info), 0
    for out in denoise_rows(samples, window.rows):
        if should_stop():
            raise Stopped
        if not np.isfinite(out).all():
            raise ImageError(NOT_FINITE)
        count = len(out)
        alpha = window.alpha(y, y + count) if info.alpha is not None else None
        color = window.color(y, y + count) if info.color is not None else None
        yield quantize(np.clip(out, 0.0, 1.0), depth), alpha, color
        y += count


def denoised_png(
    source: PngBands,
    denoise_rows: DenoiseRows,
    samples_needed: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[bytes]:
    """The output PNG's bytes, piece by piece, for the target's atomic write.

    Raises ImageError for damaged data or outputs that cannot be right (NaN), Stopped when
    `should_stop()` turns true: raised inside the writer's loop, either one leaves no file.
    """
    samples, info = polarity_samples(source, samples_needed)
    png = source.png
    writer = PngWriter(source.width, source.height, info.out_mode, png.dpi, png.metadata)
    yield writer.header()
    chroma = ChromaRows() if info.color is not None else None  # colour rows lag CONTEXT rows
    done = 0
    for pixels, alpha, color in _result_rows(source, info, samples, denoise_rows, should_stop):
        done += len(pixels)
        if chroma is not None:
            rgb, given = color
            pixels, alpha = chroma.push(pixels, rgb, alpha, done == source.height, given)
            if not len(pixels):
                continue
        yield writer.rows(pixels, alpha)
    yield writer.end()


def denoised_held(
    source: HeldBands,
    denoise_rows: DenoiseRows,
    output_format: str,
    jpeg_quality: int,
    samples_needed: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
) -> bytes:
    """The output file of an image held whole: denoised band by band into quantized pixels,
    then encoded like the input (see images.encode_pixels). The held image is closed on the
    way out, whatever happens, so it never overlaps the next file's."""
    try:
        samples, info = polarity_samples(source, samples_needed)
        dtype = np.uint16 if output_depth(info) == "I;16" else np.uint8
        pixels = np.empty((source.height, source.width), dtype)
        alpha = np.empty_like(pixels, np.uint8) if info.alpha is not None else None
        color = luma = None
        if info.color is not None:
            color = np.empty((*pixels.shape, 3), np.uint8)
            luma = np.empty(pixels.shape, np.uint8)
        y = 0
        for rows, alpha_rows, color_rows in _result_rows(
            source, info, samples, denoise_rows, should_stop
        ):
            pixels[y : y + len(rows)] = rows
            if alpha is not None:
                alpha[y : y + len(rows)] = alpha_rows
            if color is not None:
                color[y : y + len(rows)], luma[y : y + len(rows)] = color_rows
            y += len(rows)
    finally:
        source.held.image.close()  # done with before the encoder's buffers
    return encode_pixels(
        pixels,
        dataclasses.replace(info, alpha=alpha, color=color, luma=luma),
        output_format,
        jpeg_quality,
    )


def streamable(
    data: bytes, suffix: str, max_pixels: int, wanted: Callable[[int, int], bool]
) -> PngBands | None:
    """A PNG to stream: one whose size `wanted(height, width)` accepts, of a layout that
    streams, within the pixel limit (over it, the whole-image decoder refuses it with the
    usual message). The size is read from the header first: a small file costs a few bytes'
    look, not a parse."""
    if suffix.lower() != ".png":
        return None
    size = pngstream.header_size(data)
    if size is None or size[0] * size[1] > max_pixels or not wanted(*size):
        return None
    png = pngstream.layout(data)
    return PngBands(data, png) if png is not None else None
