"""Image files: decode to float grayscale, encode back in the input's format, write atomically.

Decoding remembers what the output needs (format, mode, bit depth, alpha, colour, metadata) so
a 16-bit PNG comes back as a 16-bit PNG, an RGBA image keeps its alpha channel and its colours,
and EXIF, ICC profile, DPI and PNG text survive. The model sees only luminance: a colour image
gets the denoised luminance with its own chroma, smoothed where the picture is flat (chroma.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from denoise_cli.core.atomic import O_CLOEXEC, O_NOFOLLOW
from denoise_cli.core.errors import ImageError
from denoise_cli.files import fastpng
from denoise_cli.files.chroma import recolor
from denoise_cli.files.luminance import luma, unclipped_luma

#: Extensions treated as images; every other file is skipped and counted, never an error.
IMAGE_EXTENSIONS = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".bmp",
        ".tif",
        ".tiff",
        ".webp",
        ".gif",
        ".pgm",
        ".ppm",
        ".pbm",
        ".pnm",
    }
)
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_JPEG_QUALITY = 95
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_EXIF_FORMATS = ("JPEG", "TIFF", "WEBP")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
#: Formats that hold several pictures where every one is the user's (pages, animation frames);
#: a JPEG's extra MPO pictures are previews and depth maps of its first, which is kept alone.
_MULTI_FRAME_FORMATS = ("TIFF", "GIF", "PNG", "WEBP")
#: Of those, the ones whose pages are denoised and written back as one file (scanned forms and
#: faxes come as multi-page TIFFs); animations are refused.
_PAGED_FORMATS = ("TIFF",)
#: Pages in one file: Pillow's multi-page writer slows with the square of the count (4,000
#: one-pixel pages took 12 s), and a file of 20,000 tiny pages is a bomb, not a document.
MAX_PAGES = 1000
_ICC_TAG, _X_RESOLUTION_TAG = 34675, 282
#: Full-scale values that 32-bit integer and float pixels may have, by the largest present
#: (they declare none): [0, 1], [0, 255] (Pillow's convert("F") and convert("I") of an 8-bit
#: image) or [0, 65535]; anything else is refused rather than guessed.
_FLOAT_SCALES = (1.0, 255.0, 65535.0)
_INT32_SCALES = (255.0, 65535.0)
_LOSSLESS_TIFF = ("raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits")


#: Metadata that Pillow's writers take as save options, per output format (others: none).
_METADATA_KEYS = {
    "PNG": ("dpi", "icc_profile", "exif"),
    "JPEG": ("dpi", "icc_profile", "exif"),
    "TIFF": ("dpi", "icc_profile", "exif"),
    "WEBP": ("icc_profile", "exif"),
    "BMP": ("dpi",),
}
#: TIFF tags kept in a TIFF's EXIF (the descriptive ones: the writer sets the layout tags).
_TIFF_DESCRIPTIVE_TAGS = (269, 270, 271, 272, 305, 306, 315, 316, 33432)
#: Modes whose colour is kept (denoised luminance, kept chroma); palettes are decided by theirs.
_COLOR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")


@dataclass
class SourceInfo:
    """What the encoder needs to write the result like the input."""

    format: str  # PIL format name: PNG, JPEG, ...
    out_mode: str  # L, 1, RGB, RGBA, CMYK, LA, I;16 or F
    alpha: np.ndarray | None = None
    save_args: dict[str, Any] = field(default_factory=dict)  # this format's writer options
    color: np.ndarray | None = None  # (H, W, 3) uint8 RGB of a colour input, see chroma.py
    metadata: dict[str, Any] = field(default_factory=dict)  # dpi, icc_profile, exif
    png_chunks: tuple[tuple[bytes, bytes], ...] = ()  # a PNG's text and colour-space chunks
    scale: float = 0.0  # full-scale value of float / 32-bit pixels (F, I): 1, 255 or 65535
    luma: np.ndarray | None = None  # (H, W) uint8: a colour input's luminance as the model got it


_PNG_GRAY8 = SourceInfo("PNG", "L")  # shared by every plain 8-bit gray PNG; never mutated


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def not_image_reason(name: str) -> str:
    """Why a file is skipped by its name (images are known by their extension only)."""
    if not os.path.splitext(name)[1]:
        return "no file extension: not read as an image"
    return "not an image file"


def decode(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, SourceInfo]:
    """Read an image file as (H, W) float32 in [0, 1] (one picture, EXIF orientation applied)."""
    return decode_bytes(_read_image_file(path), os.path.splitext(path)[1], max_pixels)


def _read_image_file(path: str | Path) -> bytes:
    """The file's bytes, or ImageError saying why they cannot be had."""
    try:
        data = read_file(path)
    except FileNotFoundError:
        raise ImageError("cannot read: file vanished") from None
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from None
    return data


def decode_pictures(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, restore_clipped: bool = True
) -> list[np.ndarray]:
    """Every picture of a file as `decode` reads one: a multi-page TIFF's pages, else one.
    `restore_clipped` False: colour as its plain luma (what the file holds, for scoring)."""
    data = _read_image_file(path)
    decoded = decode_bytes(
        data, os.path.splitext(path)[1], max_pixels, pages=True, restore_clipped=restore_clipped
    )
    if isinstance(decoded, Pages):
        return [gray for gray, _ in decoded.pages]
    return [cast(tuple[np.ndarray, SourceInfo], decoded)[0]]


def read_file(path: str | Path, follow: bool = True) -> bytes:
    """The whole file, with plain system calls: measured 5 us per small file against 16 us for
    Path.read_bytes(), whose buffered file object costs more than reading a digit.

    Only regular files are read: the open does not block (a FIFO would wait for a writer
    forever) and what was opened is checked. `follow=False` refuses a symlink (OSError ELOOP).
    """
    flags = os.O_RDONLY | O_CLOEXEC | _O_NONBLOCK | (0 if follow else O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("cannot read: not a regular file (a pipe, device or folder)")
        size = st.st_size
        data = os.read(fd, size + 1)  # one byte more: notice a file that grew since fstat
        if len(data) == size:
            return data
        rest = []
        while block := os.read(fd, 1 << 20):
            rest.append(block)
        return data + b"".join(rest)
    finally:
        os.close(fd)


@dataclass
class Pages:
    """A multi-page TIFF: every page as decode_bytes gives one image, denoised page by page and
    written back as one file by encode_pages."""

    pages: list[tuple[np.ndarray, SourceInfo]]


@dataclass
class HeldImage:
    """A large image kept as Pillow decoded it (1-4 bytes a pixel), for streamed.HeldBands to
    convert a band at a time, instead of float copies of the whole image."""

    image: Image.Image
    format: str
    info: dict[str, Any]


def decode_bytes(
    data: bytes,
    suffix: str = "",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    hold: Callable[[int, int], bool] | None = None,
    pages: bool = False,
    restore_clipped: bool = True,
) -> tuple[np.ndarray, SourceInfo] | HeldImage | Pages:
    """Decode an image held in memory (from a file or an object store); see `decode`.

    `hold(height, width)`: whether an image of that size should come back as a HeldImage
    (any mode but 32-bit float) rather than as float pixels. `pages`: a multi-page TIFF comes
    back as Pages (its pages together within `max_pixels`) rather than refused.
    `restore_clipped`: colour's luminance with noise-clipped channels restored (what the model
    is given: luminance.unclipped_luma), else its plain luma.
    """
    if not data:
        raise ImageError("empty file")
    if suffix.lower() == ".png":
        decoded = fastpng.decode_gray8(data, max_pixels)
        if decoded is not None:
            pixels, chunks = decoded
            info = SourceInfo("PNG", "L", png_chunks=chunks) if chunks else _PNG_GRAY8
            return np.divide(pixels, np.float32(255.0), dtype=np.float32), info
    with decode_errors(), _opened(data) as (im, frames):
        width, height = im.size
        if width * height > max_pixels:
            raise ImageError(
                f"{width}x{height} = {width * height:,} pixels is over the limit of "
                f"{max_pixels:,} (decompression-bomb guard: raise --max-pixels to allow it)"
            )
        # A camera's MPO is a JPEG with previews appended; written back, it is a JPEG.
        fmt = "JPEG" if im.format == "MPO" else im.format or "PNG"
        if frames > 1 and pages and fmt in _PAGED_FORMATS:
            return _decode_pages(im, fmt, frames, max_pixels, restore_clipped)
        if frames > 1 and fmt in _PAGED_FORMATS:
            raise ImageError(
                f"{frames} pages (a multi-page TIFF): this step reads single images; split it "
                "into one file a page to use it here"
            )
        if frames > 1 and fmt in _MULTI_FRAME_FORMATS:
            raise ImageError(
                f"{frames} frames (an animated {fmt}): only single images are denoised, and "
                "writing the first alone would lose the rest; split it into one file a frame"
            )
        im.seek(0)  # a JPEG's MPO previews: the main picture only
        # Pillow opens a 16-bit grey-and-alpha PNG as RGBA (8 bits): grey it stays.
        grey_alpha = im.mode == "RGBA" and any(tile[3] == "LA;16B" for tile in im.tile)
        im.load()
        if grey_alpha:
            im = im.convert("LA")
        # Only formats that carry EXIF are asked (parsing it costs as much as a tiny decode).
        if (fmt in _EXIF_FORMATS or "exif" in im.info) and _has_orientation(im):
            im = ImageOps.exif_transpose(im)  # its info's EXIF then says "upright"
        info = dict(im.info)
        if fmt == "TIFF":
            info["exif"] = _tiff_exif(im)
        if fmt == "PNG":
            info["png_chunks"] = fastpng.metadata_chunks(data)
        # 32-bit pixels are never held: their scale is the whole image's (see _wide_pixels).
        if hold is not None and im.mode not in ("F", "I") and hold(im.height, im.width):
            # Leaving the `with` only drops the file handle: the pixels stay usable.
            return HeldImage(im, fmt, info)
        gray, source = to_gray(im, fmt, info, restore_clipped)
    return gray, source


#: How a TIFF starts (little/big endian, classic/BigTIFF): only those pay for warnings' capture.
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
#: Pillow's words when a TIFF's data runs past the end of the file (cut short, or a damaged
#: directory): it warns, skips the rest, and a page chain ends early. Other TIFF warnings
#: ("Metadata Warning, tag 296 had too many entries", common in real scans) are harmless.
_TRUNCATION_WARNINGS = ("Expecting to read", "larger than file")


@contextlib.contextmanager
def _opened(data: bytes) -> Iterator[tuple[Image.Image, int]]:
    """The opened image and how many pictures it holds. Opening and counting walk a TIFF's
    chain of page directories: one cut short only warns and ends early (pages lost without a
    word), so a TIFF whose data runs past its end is refused."""
    if data[:4] not in _TIFF_MAGIC:
        with Image.open(io.BytesIO(data)) as im:
            yield im, getattr(im, "n_frames", 1)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        im = Image.open(io.BytesIO(data))
        try:
            frames = getattr(im, "n_frames", 1)
        except BaseException:
            im.close()
            raise
    with im:
        damage = [
            str(w.message).strip()
            for w in caught
            if any(words in str(w.message) for words in _TRUNCATION_WARNINGS)
        ]
        if damage:
            raise ImageError(
                f"damaged or cut-short TIFF ({damage[0]}): pages or pixels may be missing"
            )
        yield im, frames


def _decode_pages(
    im: Image.Image, fmt: str, frames: int, max_pixels: int, restore_clipped: bool
) -> Pages:
    """Every page of a multi-page file, each with its own mode, size and metadata; a page that
    cannot be read is named."""
    if frames > MAX_PAGES:
        raise ImageError(f"{frames:,} pages: over the limit of {MAX_PAGES:,} pages a file")
    decoded, total = [], 0
    for index in range(frames):
        im.seek(index)
        total += im.width * im.height
        if total > max_pixels:
            raise ImageError(
                f"{frames} pages: over the limit of {max_pixels:,} pixels in all by page "
                f"{index + 1} (decompression-bomb guard: raise --max-pixels to allow it)"
            )
        try:
            with decode_errors():
                im.load()
                page = ImageOps.exif_transpose(im) if _has_orientation(im) else im
                decoded.append(to_gray(page, fmt, _page_info(im), restore_clipped))
        except ImageError as exc:
            raise ImageError(f"page {index + 1}: {exc}") from None
    return Pages(decoded)


def _page_info(im: Image.Image) -> dict[str, Any]:
    """This page's info: Pillow leaves an earlier page's ICC profile and DPI in `info` when a
    page has none, so those two are read from this page's own tags."""
    info = {**im.info, "exif": _tiff_exif(im)}
    info.pop("icc_profile", None)
    if icc := im.tag_v2.get(_ICC_TAG):
        info["icc_profile"] = bytes(icc)
    if _X_RESOLUTION_TAG not in im.tag_v2:
        info.pop("dpi", None)
    return info


@contextlib.contextmanager
def decode_errors() -> Iterator[None]:
    """Pillow's many exception types for a bad file, as one ImageError saying why."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(
            "cannot decode: not a recognised image (corrupt, or wrong extension)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"cannot decode: {exc or type(exc).__name__}") from None
    except (TypeError, KeyError, IndexError, AttributeError, struct.error) as exc:
        # Pillow's parsers fail this way on damaged files (a TIFF cut short: "Missing
        # dimensions"; an unknown compression number: KeyError).
        raise ImageError(f"cannot decode: damaged file ({type(exc).__name__}: {exc})") from None


def _has_orientation(im: Image.Image) -> bool:
    try:
        return im.getexif().get(0x0112, 1) != 1
    except Exception:  # a damaged EXIF block must not cost the image
        return False


def _tiff_exif(im: Image.Image) -> Image.Exif | None:
    """A TIFF's descriptive tags (make, model, ...): Pillow keeps them as tags, not in info."""
    try:
        tags = im.getexif()
    except Exception:  # a damaged directory must not cost the image
        return None
    kept = Image.Exif()
    for tag in _TIFF_DESCRIPTIVE_TAGS:
        if tag in tags:
            kept[tag] = tags[tag]
    return kept if len(kept) else None


def to_gray(
    im: Image.Image, fmt: str, info: dict[str, Any], restore_clipped: bool = True
) -> tuple[np.ndarray, SourceInfo]:
    """Luminance in [0, 1] (float32) and what encoding the result like the input needs."""
    mode = im.mode
    alpha = color = gray8 = None
    scale = 0.0
    if mode in _SIXTEEN_BIT or (mode == "I" and fmt == "PPM"):  # Pillow scales PGM to 16 bits
        gray = np.asarray(im, dtype=np.float32) / 65535.0
        out_mode = "I;16"
    elif mode in ("F", "I"):
        gray, scale = _wide_pixels(im)
        out_mode = mode if fmt == "TIFF" else "I;16"
    else:
        gray8, color, alpha, out_mode = _planes(im, info, restore_clipped)
        gray = np.divide(gray8, np.float32(255.0), dtype=np.float32)
    save_args: dict[str, Any] = {}
    if fmt == "TIFF":
        compression = info.get("compression", "raw")
        save_args["compression"] = compression if compression in _LOSSLESS_TIFF else "tiff_lzw"
    if fmt == "JPEG" and info.get("progressive"):
        save_args["progressive"] = True  # a web JPEG stays one that shows while it loads
    metadata = {k: info[k] for k in ("dpi", "icc_profile", "exif") if info.get(k)}
    chunks = info.get("png_chunks", ())
    luma = gray8 if color is not None else None
    return gray, SourceInfo(fmt, out_mode, alpha, save_args, color, metadata, chunks, scale, luma)


def _wide_pixels(im: Image.Image) -> tuple[np.ndarray, float]:
    """(pixels in [0, 1], their full-scale value) of a float or 32-bit integer image, whose
    range is read from the values (see _FLOAT_SCALES); NaN, infinities and other ranges are
    refused in one line, naming what was found."""
    values = np.asarray(im, dtype=np.float32 if im.mode == "F" else np.float64)
    kind = "float" if im.mode == "F" else "32-bit integer"
    bad = values.size - int(np.count_nonzero(np.isfinite(values)))
    if bad:
        raise ImageError(f"{bad:,} NaN or infinite {kind} pixel values: no image to denoise")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    scales = _FLOAT_SCALES if im.mode == "F" else _INT32_SCALES
    scale = next((s for s in scales if high <= s), None)
    if scale is None or low < -0.01 * scale:  # rounding below 0 is clipped, real data not
        raise ImageError(
            f"{kind} pixel values from {low:g} to {high:g}: only the ranges 0-1 (float), "
            "0-255 and 0-65535 are read; convert it to 8 or 16 bits first"
        )
    return np.clip(values / scale, 0.0, 1.0).astype(np.float32), scale


def _planes(
    im: Image.Image, info: dict[str, Any], restore_clipped: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """(8-bit luminance, RGB planes or None, alpha or None, output mode) of an 8-bit image.

    A palette image with a colour in its palette is kept in colour, written as RGB (RGBA with
    transparency): its palette cannot hold the denoised shades. A gray palette stays gray.
    """
    mode = im.mode
    # A transparent colour (PNG's tRNS, GIF's index) is alpha too: written back as an alpha
    # channel (LA, RGBA), or as the transparent index of a GIF.
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in info
    if mode in _COLOR_MODES or (mode in ("P", "PA") and _colored_palette(im)):
        planes = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
        color = np.ascontiguousarray(planes[..., :3])
        alpha = np.ascontiguousarray(planes[..., 3]) if has_alpha else None
        out_mode = "CMYK" if mode == "CMYK" else ("RGBA" if has_alpha else "RGB")
        gray = unclipped_luma(color) if restore_clipped else luma(color)
        return gray, color, alpha, out_mode
    if has_alpha:
        la = im.convert("LA")
        return np.asarray(la.getchannel("L")), None, np.asarray(la.getchannel("A")), "LA"
    gray = np.asarray(im if mode == "L" else im.convert("L"))
    return gray, None, None, ("1" if mode == "1" else "L")


def _colored_palette(im: Image.Image) -> bool:
    palette = np.frombuffer(bytes(im.getpalette("RGB") or b""), np.uint8).reshape(-1, 3)
    return bool((palette != palette[:, :1]).any())


def quantize(gray: np.ndarray, mode: str) -> np.ndarray:
    """Clipped [0, 1] floats as 16-bit integers for mode I;16, else 8-bit, rounded."""
    if mode == "I;16":
        return np.round(gray * 65535.0).astype(np.uint16)
    return np.round(gray * 255.0).astype(np.uint8)


def encode(
    gray: np.ndarray,
    source: SourceInfo,
    output_format: str = "keep",
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    clipped: bool = False,
    pixels: np.ndarray | None = None,
) -> bytes:
    """Encode (H, W) floats in [0, 1] in the input's format and mode (or as PNG); `clipped`:
    the caller already clipped them to [0, 1] (a whole group at once); `pixels`: the same
    image already quantized to output_depth(source), when the caller has it."""
    if not clipped:
        gray = np.clip(gray, 0.0, 1.0)
    if stores_float(source, output_format):  # only TIFF stores float
        img = Image.fromarray((gray * np.float32(source.scale or 1.0)).astype(np.float32))
        return _save(img, "TIFF", dict(source.save_args), jpeg_quality)
    if pixels is None:
        pixels = quantize(gray, output_depth(source))
    return encode_pixels(pixels, source, output_format, jpeg_quality)


def encode_pages(results: list[np.ndarray], pages: Pages, output_format: str = "keep") -> bytes:
    """A multi-page TIFF again: each page's result (H, W) in its own page's mode, with its own
    compression, DPI, EXIF and ICC profile."""
    if output_format == "png":
        raise ImageError(
            f"{len(results)} pages: one PNG cannot hold them; keep the TIFF format for this file"
        )
    images = []
    for gray, (_, source) in zip(results, pages.pages, strict=True):
        img = _page_image(gray, source)
        # Each page's own settings: Pillow lays the first page's save options under every
        # page's own `encoderinfo`, and takes an ICC profile from the page's info when the
        # options have none (so a grey page never gets a colour page's profile).
        img.encoderinfo = dict(source.save_args)
        img.encoderinfo.update((k, v) for k, v in source.metadata.items() if k in ("dpi", "exif"))
        if (icc := source.metadata.get("icc_profile")) and _profile_fits(icc, img.mode):
            img.info["icc_profile"] = icc
        images.append(img)
    args = {**images[0].encoderinfo, "save_all": True, "append_images": images[1:]}
    return _save(images[0], pages.pages[0][1].format, args, DEFAULT_JPEG_QUALITY)


def _page_image(gray: np.ndarray, source: SourceInfo) -> Image.Image:
    gray = np.clip(gray, 0.0, 1.0)
    if stores_float(source):
        return Image.fromarray((gray * np.float32(source.scale or 1.0)).astype(np.float32))
    mode = output_depth(source) if source.out_mode == "F" else source.out_mode
    return _output_image(quantize(gray, output_depth(source)), source, mode)


def output_depth(source: SourceInfo) -> str:
    """ "I;16" when the output keeps 16 bits (16-bit input, float outside TIFF, 32-bit integers
    up to 65535), else "L"."""
    if source.out_mode == "I":
        return "I;16" if source.scale > 255 else "L"
    return "I;16" if source.out_mode in ("I;16", "F") else "L"


def stores_float(source: SourceInfo, output_format: str = "keep") -> bool:
    """Whether the output keeps float pixels (a float TIFF written as TIFF): not quantized."""
    return source.out_mode == "F" and output_format != "png" and source.format == "TIFF"


def encode_pixels(
    pixels: np.ndarray,
    source: SourceInfo,
    output_format: str = "keep",
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> bytes:
    """Encode quantized gray (uint8, or uint16 where output_depth says I;16) like the input."""
    fmt = "PNG" if output_format == "png" else source.format
    mode = source.out_mode
    if mode == "F" or (mode == "I" and fmt != "TIFF"):
        mode = output_depth(source)  # --output-format png: 16 bits (8 for 0-255 integers)
    if mode == "CMYK" and fmt not in ("JPEG", "TIFF"):
        mode = "RGB"  # --output-format png: PNG holds no CMYK
    args = dict(source.save_args) if fmt == source.format else {}
    args.update((k, v) for k, v in source.metadata.items() if k in _METADATA_KEYS.get(fmt, ()))
    if not _profile_fits(args.get("icc_profile"), mode):
        del args["icc_profile"]
    chunks = source.png_chunks if fmt == "PNG" else ()
    if mode in ("L", "I;16") and fmt == "PNG" and not args:
        # The common case, without Pillow's per-call overhead.
        return fastpng.encode_gray(pixels, chunks=chunks)
    if chunks:
        args["pnginfo"] = _png_info(chunks)
    return _save(_output_image(pixels, source, mode), fmt, args, jpeg_quality)


def cmyk_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 4) CMYK with the grey component on the black plate.

    Pillow reads CMYK as R = (255 - C)(255 - K) / 255 and writes RGB back with K = 0: black
    text printed on the K plate came back as 300% CMY. Here K takes what the three inks share
    (255 minus the brightest channel), so K-only ink stays K-only, and the inks are what is
    left of each channel under it."""
    top = rgb.max(axis=2, keepdims=True).astype(np.float32)
    inks = np.where(top > 0, 255.0 - 255.0 * rgb / np.maximum(top, 1.0), 0.0)  # black: K only
    return np.concatenate([np.round(inks), 255.0 - top], axis=2).astype(np.uint8)


def _profile_fits(profile: bytes | None, mode: str) -> bool:
    """Whether an ICC profile can go on an image written in `mode`: a CMYK or Lab profile
    describes no RGB or grey pixels (a CMYK JPEG written as PNG, a Lab TIFF written as RGB),
    and viewers would read the result wrongly. RGB and grey profiles stay as the input had
    them."""
    if profile is None or len(profile) < 20:
        return True
    space = bytes(profile[16:20])
    if space in (b"RGB ", b"GRAY"):
        return True
    return space == b"CMYK" and mode == "CMYK"


def _output_image(pixels: np.ndarray, source: SourceInfo, mode: str) -> Image.Image:
    """The encoder's image: quantized luminance, recoloured and given alpha as the input was."""
    if source.color is not None:
        planes = recolor(pixels, source.color, source.luma)
        if mode == "CMYK":
            return Image.fromarray(cmyk_from_rgb(planes), "CMYK")
        rgb = Image.fromarray(planes, "RGB")
        if mode == "RGBA":
            rgb.putalpha(Image.fromarray(source.alpha))
        return rgb
    g8 = Image.fromarray(pixels)
    if mode == "I":  # a 32-bit integer TIFF, at the scale it came with
        return Image.fromarray(pixels.astype(np.int32), "I")
    if mode == "1":
        return g8.point(lambda v: 255 if v >= 128 else 0).convert("1")
    if mode == "RGB":
        return Image.merge("RGB", (g8, g8, g8))
    if mode == "RGBA":
        return Image.merge("RGBA", (g8, g8, g8, Image.fromarray(source.alpha)))
    if mode == "LA":
        return Image.merge("LA", (g8, Image.fromarray(source.alpha)))
    return g8  # L or I;16


def _png_info(chunks: tuple[tuple[bytes, bytes], ...]) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for tag, data in chunks:
        info.add(tag, data)
    return info


def _transparent_gif(img: Image.Image) -> Image.Image:
    """A GIF's palette image of an image with alpha: the closest 255 colours, and index 255,
    transparent, wherever alpha is under half (a GIF pixel is either shown or not)."""
    quantized = img.convert("RGB").quantize(255)
    indices = np.asarray(quantized).copy()
    indices[np.asarray(img.getchannel("A")) < 128] = 255
    out = Image.fromarray(indices, "P")
    palette = (quantized.getpalette("RGB") or [])[: 255 * 3]
    out.putpalette(palette + [0] * (768 - len(palette)))
    return out


def _save(img: Image.Image, fmt: str, args: dict[str, Any], jpeg_quality: int) -> bytes:
    if fmt == "JPEG":
        # Never a worse JPEG by accident: high quality and no chroma subsampling by default.
        args.update(quality=jpeg_quality, subsampling=0)
        if img.mode not in ("L", "RGB", "CMYK"):
            img = img.convert("RGB" if img.mode in ("RGBA",) else "L")
    elif fmt == "WEBP":
        args.update(lossless=True)
    elif fmt == "GIF" and img.mode in ("RGBA", "LA"):
        img, args["transparency"] = _transparent_gif(img), 255
    elif fmt == "GIF" and img.mode in ("RGB", "CMYK"):
        img = img.convert("RGB").quantize(256)  # GIF holds a palette: the closest 256 colours
    elif fmt == "GIF" and img.mode not in ("L", "P", "1"):
        img = img.convert("L")
    elif fmt == "BMP" and img.mode == "LA":
        img = img.convert("RGBA")
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt, **args)
    except (OSError, ValueError, KeyError) as exc:
        raise ImageError(f"cannot encode as {fmt}: {exc}") from None
    return buf.getvalue()
