"""pngstream: band-by-band PNG decoding and encoding agree with Pillow on every layout it
claims, and step aside (None) for the ones it does not."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from denoise_cli.core.errors import ImageError
from denoise_cli.files import pngstream
from denoise_cli.files.fastpng import chunk

RNG = np.random.default_rng(7)
H, W = 101, 83


def _png(im: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **save)
    return buf.getvalue()


def _raw_png(
    width: int, height: int, rows: bytes, interlace: int = 0, depth: int = 8, color: int = 0
) -> bytes:
    """A PNG put together by hand (Pillow writes neither Adam7 nor short data)."""
    return (
        pngstream.SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _images() -> dict[str, Image.Image]:
    gray = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    alpha = Image.fromarray(RNG.integers(0, 256, (H, W), dtype=np.uint8))
    la = Image.fromarray(gray).convert("LA")
    la.putalpha(alpha)
    return {
        "L": Image.fromarray(gray),
        "I;16": Image.fromarray(RNG.integers(0, 65536, (H, W), dtype=np.uint16)),
        "RGB": Image.fromarray(RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)),
        "RGBA": Image.fromarray(RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)),
        "LA": la,
        "P": Image.fromarray(gray).convert("RGB").quantize(64),
    }


@pytest.mark.parametrize("mode", list(_images()))
@pytest.mark.parametrize("rows", [1, 8, 64, 500])
def test_bands_decode_to_pillows_pixels(mode, rows):
    data = _png(_images()[mode], dpi=(300, 300))
    whole = Image.open(io.BytesIO(data))
    whole.load()
    png = pngstream.layout(data)
    assert png is not None and (png.height, png.width) == (H, W)
    assert png.dpi == whole.info["dpi"]
    bands = list(pngstream.read_bands(data, png, rows))
    assert [b.height for b in bands] == [min(rows, H - y) for y in range(0, H, rows)]
    assert {b.mode for b in bands} == {whole.mode}
    assert np.array_equal(np.concatenate([np.asarray(b) for b in bands]), np.asarray(whole))


def test_a_palette_with_transparency_keeps_it_in_every_band():
    im = Image.fromarray(RNG.integers(0, 256, (H, W), dtype=np.uint8), "P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])  # 8-bit indices
    data = _png(im, transparency=0)
    bands = list(pngstream.read_bands(data, pngstream.layout(data), 10))
    assert all(b.info.get("transparency") == 0 for b in bands)
    got = np.concatenate([np.asarray(b.convert("RGBA")) for b in bands])
    assert np.array_equal(got, np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")))


def test_layouts_that_do_not_stream_are_left_to_the_whole_image_decoder():
    flat = np.zeros((H, W), np.uint8)
    assert pngstream.layout(_raw_png(W, H, bytes(H * (1 + W)), interlace=1)) is None  # Adam7
    assert pngstream.layout(_png(Image.fromarray(flat).convert("1"))) is None  # 1 bit
    four = Image.fromarray(flat, "P")
    four.putpalette([0, 0, 0, 255, 255, 255])  # Pillow writes two colours as a 1-bit palette
    assert pngstream.layout(_png(four)) is None
    rgb48 = _raw_png(W, H, bytes(H * (1 + 6 * W)), depth=16, color=2)
    assert Image.open(io.BytesIO(rgb48)).size == (W, H)  # valid, but Pillow gives 8-bit back
    assert pngstream.layout(rgb48) is None
    exif = Image.fromarray(flat).getexif()
    exif[0x0112] = 6  # rotated: the whole-image path applies it
    assert pngstream.layout(_png(Image.fromarray(flat), exif=exif)) is None


def test_not_a_png_or_a_damaged_chunk_is_none():
    data = bytearray(_png(_images()["L"]))
    assert pngstream.layout(b"GIF89a" + bytes(data[6:])) is None
    data[40] ^= 0xFF  # inside the first IDAT: its CRC no longer matches
    assert pngstream.layout(bytes(data)) is None


def test_image_data_that_ends_early_is_an_error_naming_the_row():
    data = _raw_png(W, H, bytes((H // 2) * (1 + W)))  # half the rows the header promises
    png = pngstream.layout(data)
    with pytest.raises(ImageError, match=f"image data ends at row {H // 2} of {H}"):
        list(pngstream.read_bands(data, png, 16))


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "LA", "RGBA"])
def test_the_writer_round_trips_through_pillow(mode):
    deep = mode == "I;16"
    gray = RNG.integers(0, 65536 if deep else 256, (H, W), dtype=np.uint16 if deep else np.uint8)
    alpha = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    writer = pngstream.PngWriter(W, H, mode, dpi=(150.0, 150.0))
    pieces = [writer.header()]
    for y in range(0, H, 17):
        pieces.append(writer.rows(gray[y : y + 17], alpha[y : y + 17]))
    pieces.append(writer.end())
    back = Image.open(io.BytesIO(b"".join(pieces)))
    back.load()
    assert back.mode == mode and back.size == (W, H)
    assert back.info["dpi"] == pytest.approx((150.0, 150.0), abs=0.05)  # stored in pixels per metre
    pixels = np.asarray(back)
    if mode in ("L", "I;16"):
        assert np.array_equal(pixels, gray)
    else:
        assert np.array_equal(pixels[..., 0], gray) and np.array_equal(
            pixels[..., -1 if "A" in mode else 2], alpha if "A" in mode else gray
        )


def test_the_writer_refuses_to_end_short():
    writer = pngstream.PngWriter(4, 4, "L")
    writer.header()
    writer.rows(np.zeros((2, 4), np.uint8))
    with pytest.raises(ValueError, match="2 rows of 4"):
        writer.end()


def test_a_second_header_is_not_a_way_past_the_pixel_limit():
    """The size check reads the first IHDR; a later one must not decide the layout."""
    small = struct.pack(">IIBBBBB", 3000, 3000, 8, 0, 0, 0, 0)
    huge = struct.pack(">IIBBBBB", 200_000, 200_000, 8, 0, 0, 0, 0)
    data = (
        pngstream.SIGNATURE
        + chunk(b"IHDR", small)
        + chunk(b"IHDR", huge)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 3001))
        + chunk(b"IEND", b"")
    )
    assert pngstream.layout(data) is None


def test_rows_zlib_holds_back_at_the_end_of_the_data_are_not_a_truncation():
    """A stream without its checksum trailer: the last rows come out only when zlib is asked
    again with no input (Pillow decodes such files, so must we)."""
    rows = bytes(40 * (1 + 31))
    data = _raw_png(31, 40, b"")
    data = data.replace(
        chunk(b"IDAT", zlib.compress(b"")), chunk(b"IDAT", zlib.compress(rows, 9)[:-4])
    )
    png = pngstream.layout(data)
    for size in (1, 2, 3, 64):
        bands = list(pngstream.read_bands(data, png, size))
        assert sum(b.height for b in bands) == 40


def test_an_upright_exif_block_still_streams_a_rotated_one_does_not():
    flat = Image.fromarray(np.zeros((H, W), np.uint8))
    upright, rotated = Image.Exif(), Image.Exif()  # (getexif() would hand back one object)
    upright[0x0112], rotated[0x0112] = 1, 6
    assert pngstream.layout(_png(flat, exif=upright)) is not None
    assert pngstream.layout(_png(flat, exif=rotated)) is None


def _tall_png(rows: int) -> bytes:
    """A rows x 1 8-bit gray PNG of noise (incompressible), in one IDAT chunk."""
    raw = np.zeros((rows, 2), np.uint8)
    raw[:, 1] = np.random.default_rng(0).integers(0, 256, rows, dtype=np.uint8)
    header = struct.pack(">IIBBBBB", 1, rows, 8, 0, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)),
            chunk(b"IEND", b""),
        )
    )


def _decode_seconds(data: bytes) -> float:
    import time

    png = pngstream.layout(data)
    assert png is not None
    started = time.perf_counter()
    rows = sum(band.height for band in pngstream.read_bands(data, png, 128))
    assert rows == png.height
    return time.perf_counter() - started


@pytest.mark.slow
def test_a_tall_png_decodes_in_time_linear_in_its_size():
    """The unconsumed input was copied once per band: 4x the rows took ~16x the time (a
    50,000,000 x 1 PNG ran past 400 s). Linear: 4x the rows, about 4x the time."""
    small = min(_decode_seconds(_tall_png(500_000)) for _ in range(2))
    large = _decode_seconds(_tall_png(2_000_000))
    assert large < 8 * small, f"500k rows: {small:.2f} s, 2M rows: {large:.2f} s"
