"""The direct PNG paths agree with Pillow bit for bit, and step aside for anything unusual."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from denoise_cli.files import fastpng


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_rows(img: np.ndarray, kinds: list[int]) -> bytes:
    """Reference PNG row filtering (spec section 9), one filter type per row."""
    h, w = img.shape
    out = bytearray()
    prev = [0] * w
    for y in range(h):
        row, kind = [int(v) for v in img[y]], kinds[y]
        out.append(kind)
        for x in range(w):
            left = row[x - 1] if x else 0
            up, up_left = prev[x], (prev[x - 1] if x else 0)
            pred = [0, left, up, (left + up) // 2, _paeth(left, up, up_left)][kind]
            out.append((row[x] - pred) & 0xFF)
        prev = row
    return bytes(out)


def _png(img: np.ndarray, kinds: list[int], extra: list[tuple[bytes, bytes]] = ()) -> bytes:
    h, w = img.shape
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)), *extra]
    chunks += [(b"IDAT", zlib.compress(_filter_rows(img, kinds))), (b"IEND", b"")]
    return fastpng.SIGNATURE + b"".join(fastpng.chunk(t, d) for t, d in chunks)


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (28, 28), (17, 40)])
def test_every_filter_type_decodes_like_pillow(shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    kinds = [y % 5 for y in range(shape[0])]
    data = _png(img, kinds)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), img)
    np.testing.assert_array_equal(fastpng.decode_gray8(data, 10**9)[0], img)


def test_pillow_written_files_decode_identically():
    rng = np.random.default_rng(0)
    for i in range(50):
        img = rng.integers(0, 256, (rng.integers(1, 50), rng.integers(1, 50)), dtype=np.uint8)
        if i % 2:
            img = np.sort(img, axis=1)  # smooth rows: Pillow picks Sub/Up/Paeth filters
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", optimize=bool(i % 3))
        np.testing.assert_array_equal(fastpng.decode_gray8(buf.getvalue(), 10**9)[0], img)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_encoder_output_reads_back_in_pillow(dtype):
    rng = np.random.default_rng(1)
    img = rng.integers(0, np.iinfo(dtype).max + 1, (23, 31)).astype(dtype)
    with Image.open(io.BytesIO(fastpng.encode_gray(img))) as im:
        im.verify()
    with Image.open(io.BytesIO(fastpng.encode_gray(img))) as im:
        np.testing.assert_array_equal(np.asarray(im), img)


def test_steps_aside_for_what_it_does_not_handle():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    good = _png(img, [0] * 8)
    assert fastpng.decode_gray8(good, 10**9) is not None
    transparency = _png(img, [0] * 8, [(b"tRNS", b"\x00\x00")])
    dpi = _png(img, [0] * 8, [(b"pHYs", struct.pack(">IIB", 3780, 3780, 1))])
    bad_crc = good[:-5] + bytes([good[-5] ^ 1]) + good[-4:]
    for data in (transparency, dpi, bad_crc, good[:40], b"not a png"):
        assert fastpng.decode_gray8(data, 10**9) is None
    assert fastpng.decode_gray8(good, 63) is None  # over the pixel limit: Pillow explains
    rgb = io.BytesIO()
    Image.new("RGB", (4, 4)).save(rgb, format="PNG")
    assert fastpng.decode_gray8(rgb.getvalue(), 10**9) is None


def test_declared_size_caps_inflation():
    """A tiny header over a huge zlib stream is not inflated past what the header says."""
    header = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    bomb = zlib.compress(b"\x00" * 10_000_000)
    data = fastpng.SIGNATURE + b"".join(
        fastpng.chunk(t, d) for t, d in ((b"IHDR", header), (b"IDAT", bomb), (b"IEND", b""))
    )
    out = fastpng.decode_gray8(data, 10**9)
    assert out is not None and out[0].shape == (4, 4)
