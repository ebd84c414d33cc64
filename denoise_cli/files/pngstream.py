"""Large PNGs a band of rows at a time, in and out, so memory follows the tile, not the image.

A 7000x7000 page took ~1 GB decoded whole (float copies of every pixel); streamed, what is held
is the compressed file, a band of decoded rows and the model's tile. Decoding: the IDAT stream
is inflated incrementally; each band's filtered rows are handed to Pillow (which undoes the
Paeth and Average filters in C) as a small PNG of their own, whose first row is the previous
band's last decoded row, stored unfiltered: filters only ever look one row up. Encoding: rows
are deflated as they come and written as IDAT chunks. Only layouts whose decoded bytes are the
PNG's own row bytes stream (8-bit gray, gray+alpha, RGB, RGBA, palette; 16-bit gray);
interlaced files and anything else decode whole, as before. Format reference: PNG
specification, 2nd edition (W3C), sections 5 (chunks), 7 (scanlines) and 9 (filtering).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image

from denoise_cli.core.errors import ImageError
from denoise_cli.files.fastpng import (
    IEND,
    KEPT_METADATA,
    SIGNATURE,
    chunk,
    ihdr_fields,
    walk_chunks,
)

# (bit depth, colour type) -> bytes per pixel, for the layouts whose decoded bytes are raw rows.
_STREAMABLE = {(8, 0): 1, (8, 2): 3, (8, 3): 1, (8, 4): 2, (8, 6): 4, (16, 0): 2}
_KEPT_CHUNKS = (b"PLTE", b"tRNS")  # what a band's stand-in PNG needs to decode like the file
#: What the output copies verbatim: text, colour space, ICC profile and (upright) EXIF.
_COPIED = KEPT_METADATA | {b"iCCP", b"eXIf"}
INFLATE_PIECE = 1 << 16  # compressed bytes handed to zlib at a time


@dataclass(frozen=True)
class PngLayout:
    """Where a streamable PNG's parts are; the file's bytes stay the caller's."""

    width: int
    height: int
    depth: int
    color: int
    idat: tuple[tuple[int, int], ...]  # (start, end) of each IDAT chunk's data
    extra: bytes  # PLTE / tRNS chunks, verbatim
    dpi: tuple[float, float] | None  # from pHYs in pixels per metre, as Pillow reports it
    metadata: tuple[tuple[bytes, bytes], ...] = ()  # (tag, data) for the output to copy

    @property
    def stride(self) -> int:
        return 1 + self.width * _STREAMABLE[(self.depth, self.color)]


def header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG's header (always its first chunk), unchecked: a hint."""
    if len(data) < 24 or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return height, width


def layout(data: bytes) -> PngLayout | None:
    """The layout of a PNG that can stream, or None (not a PNG, interlaced, another bit
    layout, an eXIf orientation to apply, a damaged chunk, a header that is not the first
    chunk or comes twice: the whole-image decoder handles those, and reports what is
    wrong)."""
    if not data.startswith(SIGNATURE):
        return None
    header, idat, extra, dpi, copied, ended = None, [], [], None, [], False
    view = memoryview(data)
    for tag, start, end, intact in walk_chunks(data):
        if not intact or (tag == b"IHDR") != (start == 16):  # the header first, and only once
            return None
        body = view[start:end]
        if tag == b"IHDR":
            header = bytes(body)
        elif tag == b"IDAT":
            idat.append((start, end))
        elif tag in _KEPT_CHUNKS:
            extra.append(chunk(tag, bytes(body)))
        elif tag == b"pHYs" and len(body) == 9:
            px, py, unit = struct.unpack(">IIB", body)
            if unit == 1:
                dpi = (px * 0.0254, py * 0.0254)
        elif tag == b"eXIf" and _orientation(bytes(body)) != 1:
            return None  # the whole-image path applies the rotation
        if tag in _COPIED:
            copied.append((tag, bytes(body)))
        ended = tag == b"IEND"
    if not ended:
        return None  # truncated
    fields = ihdr_fields(header)
    if fields is None or not idat:
        return None
    width, height, depth, color, compression, filtering, interlace = fields
    if (depth, color) not in _STREAMABLE or (compression, filtering, interlace) != (0, 0, 0):
        return None
    if width == 0 or height == 0:
        return None
    return PngLayout(width, height, depth, color, tuple(idat), b"".join(extra), dpi, tuple(copied))


def _orientation(exif: bytes) -> int:
    """The EXIF orientation tag (1: upright), 0 when the block cannot be read."""
    try:
        tags = Image.Exif()
        tags.load(b"Exif\x00\x00" + exif)  # as Pillow's PNG reader hands it on
        return int(tags.get(0x0112, 1))
    except Exception:  # a damaged block: let the whole-image path decide
        return 0


def read_bands(data: bytes, png: PngLayout, rows: int) -> Iterator[Image.Image]:
    """The image `rows` rows at a time (the last band may be shorter), as Pillow images in the
    mode Pillow gives the whole file. Raises ImageError on damaged or short data."""
    inflate = zlib.decompressobj()
    # Fed in small pieces: zlib keeps what a band did not consume as `unconsumed_tail`, a copy;
    # fed a whole IDAT chunk, that copy was most of the file once per band (a 50,000,000 x 1
    # PNG ran past 400 s). A piece bounds it, so decoding is linear in the file.
    view = memoryview(data)
    pending = (
        view[i : min(i + INFLATE_PIECE, b)] for a, b in png.idat for i in range(a, b, INFLATE_PIECE)
    )
    buffered = b""
    previous: bytes | None = None  # the last decoded row, as raw PNG bytes
    done = 0
    while done < png.height:
        count = min(rows, png.height - done)
        need = count * png.stride
        try:
            while len(buffered) < need:
                tail = inflate.unconsumed_tail
                if tail:
                    buffered += inflate.decompress(tail, need - len(buffered))
                    continue
                block = next(pending, None)
                if block is None:
                    # zlib may still hold output that the length cap kept back
                    if held := inflate.decompress(b"", need - len(buffered)):
                        buffered += held
                        continue
                    row = done + len(buffered) // png.stride
                    raise ImageError(
                        f"cannot decode: image data ends at row {row} of {png.height} "
                        "(truncated file?)"
                    )
                buffered += inflate.decompress(block, need - len(buffered))
        except zlib.error as exc:
            raise ImageError(f"cannot decode: damaged image data ({exc})") from None
        filtered, buffered = buffered[:need], buffered[need:]
        band = _decode_band(png, filtered, count, previous)
        previous = _raw_row(band, png)
        done += count
        yield band


def _decode_band(
    png: PngLayout, filtered: bytes, count: int, previous: bytes | None
) -> Image.Image:
    if previous is not None:
        filtered = b"\x00" + previous + filtered  # filter type 0: the row as it is
    total = count + (previous is not None)
    header = struct.pack(">IIBBBBB", png.width, total, png.depth, png.color, 0, 0, 0)
    stand_in = b"".join(
        (
            SIGNATURE,
            chunk(b"IHDR", header),
            png.extra,
            chunk(b"IDAT", zlib.compress(filtered, 0)),  # stored: no deflate work twice
            IEND,
        )
    )
    try:
        with Image.open(io.BytesIO(stand_in)) as im:
            im.load()
            band = im.crop((0, total - count, png.width, total)) if previous is not None else im
            band.load()
            band.info = dict(im.info)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot decode: {exc or type(exc).__name__}") from None
    return band


def _raw_row(band: Image.Image, png: PngLayout) -> bytes:
    """The band's last row as the PNG stores it (what the next band's filters refer to)."""
    last = band.crop((0, band.height - 1, png.width, band.height))
    if png.depth == 16:
        return np.asarray(last, dtype=np.uint16).astype(">u2").tobytes()
    return last.tobytes()


class PngWriter:
    """A PNG produced a band of rows at a time: `header()`, then `rows(pixels)` for each band
    top to bottom, then `end()`; each returns the bytes to append. Rows are stored unfiltered
    (as fastpng.encode_gray does); modes: L, I;16, LA and RGBA (gray plus alpha), RGB.
    `metadata`: (tag, data) chunks copied after the header (text, ICC profile, EXIF...)."""

    # mode -> (bit depth, colour type, gray planes); alpha comes on top for types 4 and 6.
    _COLOR: ClassVar[dict[str, tuple[int, int, int]]] = {
        "L": (8, 0, 1),
        "I;16": (16, 0, 1),
        "RGB": (8, 2, 3),
        "LA": (8, 4, 1),
        "RGBA": (8, 6, 3),
    }

    def __init__(
        self,
        width: int,
        height: int,
        mode: str,
        dpi: tuple[float, float] | None = None,
        metadata: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        if mode not in self._COLOR:
            raise ValueError(f"PngWriter cannot write mode {mode}")
        self.width, self.height, self.mode, self.dpi = width, height, mode, dpi
        self.metadata = metadata
        self._deflate = zlib.compressobj(6)
        self._written = 0

    def header(self) -> bytes:
        depth, color, _ = self._COLOR[self.mode]
        ihdr = struct.pack(">IIBBBBB", self.width, self.height, depth, color, 0, 0, 0)
        parts = [SIGNATURE, chunk(b"IHDR", ihdr)]
        if self.dpi is not None:  # as Pillow writes it
            ppm = [int(v / 0.0254 + 0.5) for v in self.dpi]
            parts.append(chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
        parts.extend(chunk(tag, data) for tag, data in self.metadata)
        return b"".join(parts)

    def rows(self, gray: np.ndarray, alpha: np.ndarray | None = None) -> bytes:
        """`gray`: (rows, width) uint8 (uint16 for I;16), or (rows, width, 3) colour rows for
        RGB and RGBA; `alpha`: uint8, for LA and RGBA."""
        depth, color, copies = self._COLOR[self.mode]
        count = gray.shape[0]
        if depth == 16:
            pixels = gray.astype(">u2").view(np.uint8).reshape(count, -1)
        else:
            planes = [gray] * copies if gray.ndim == 2 else [gray[..., i] for i in range(3)]
            planes += [alpha] if color in (4, 6) else []
            pixels = np.stack(planes, axis=-1).reshape(count, -1) if len(planes) > 1 else gray
        raw = np.empty((count, 1 + pixels.shape[1]), np.uint8)
        raw[:, 0] = 0
        raw[:, 1:] = pixels
        self._written += count
        return self._idat(self._deflate.compress(raw.tobytes()))

    def end(self) -> bytes:
        if self._written != self.height:
            raise ValueError(f"PngWriter got {self._written} rows of {self.height}")
        return self._idat(self._deflate.flush()) + IEND

    @staticmethod
    def _idat(data: bytes) -> bytes:
        return chunk(b"IDAT", data) if data else b""
