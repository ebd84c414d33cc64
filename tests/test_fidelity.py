"""What the user's image had comes back: colour and alpha, metadata, clean edges and tile seams,
the polarity a model says it handles.

Runtime only (no torch, no onnx): the tiny models are files in tests/models (see
tests/tiny_models.py), so the runtime-only environment runs these too.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin
from typer.testing import CliRunner

from denoise_cli.cli import app
from denoise_cli.core.metrics import psnr
from denoise_cli.files.images import decode
from denoise_cli.files.luminance import luma
from denoise_cli.run import chunk, transforms
from tests.helpers import synthetic_digits
from tests.tiny_models import MODELS_DIR

IDENTITY = MODELS_DIR / "identity_either.onnx"
BLUE, PAPER = np.array([30, 60, 200]), np.array([238, 232, 214])


@pytest.fixture(autouse=True)
def input_folder(tmp_path: Path) -> Path:
    """Every test's input tree: tmp_path / "in"."""
    (tmp_path / "in").mkdir()
    return tmp_path / "in"


def run(*args: object) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def ink_on_paper(ink: np.ndarray = BLUE, height: int = 56, width: int = 84) -> np.ndarray:
    """(H, W, 3) uint8: digit strokes in `ink` on tinted paper."""
    strokes = synthetic_digits(6, seed=5).reshape(2, 3, 28, 28).transpose(0, 2, 1, 3)
    d = strokes.reshape(56, 84)[:height, :width, None] / 255.0
    return np.round(PAPER * (1 - d) + ink * d).astype(np.uint8)


def chroma(rgb: np.ndarray) -> np.ndarray:
    """Cb, Cr (ITU-R BT.601) in grey levels."""
    rgb = rgb.astype(np.float64)
    y = rgb @ [0.299, 0.587, 0.114]
    return np.stack([0.564 * (rgb[..., 2] - y), 0.713 * (rgb[..., 0] - y)], axis=-1)


def test_tiny_model_files_are_what_the_builders_make():
    pytest.importorskip("onnx")
    from tests.tiny_models import builders

    for name, build in builders().items():
        assert (MODELS_DIR / name).read_bytes() == build().SerializeToString(), name


# --- colour ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("ext", "fmt"), [("png", "PNG"), ("tif", "TIFF"), ("webp", "WEBP")])
def test_colour_comes_back_exactly_through_an_identity_model(tmp_path, ext, fmt):
    rgb = ink_on_paper()
    Image.fromarray(rgb).save(tmp_path / "in" / f"x.{ext}", format=fmt)
    run(tmp_path / "in", tmp_path / "out", "--model", IDENTITY)
    with Image.open(tmp_path / "in" / f"x.{ext}") as im:
        rgb = np.asarray(im)  # WebP's default is lossy: what the input holds
    with Image.open(tmp_path / "out" / f"x.{ext}") as im:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), rgb)  # no luminance change: no smoothing


def test_grey_pixels_in_an_rgb_file_come_back_exactly_grey(tmp_path):
    grey = luma(ink_on_paper())
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "in" / "x.png")
    run(tmp_path / "in", tmp_path / "out", "--model", IDENTITY)
    with Image.open(tmp_path / "out" / "x.png") as im:
        np.testing.assert_array_equal(np.asarray(im), np.dstack([grey] * 3))


def test_rgba_keeps_colour_and_alpha_and_gets_the_luminance_change(tmp_path):
    """mean3: the luminance changes (strokes blur); the ink keeps its hue, alpha stays."""
    rgb = ink_on_paper(np.array([200, 30, 40]))
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "in" / "x.png")
    run(tmp_path / "in", tmp_path / "out", "--model", MODELS_DIR / "mean3_either.onnx")
    with Image.open(tmp_path / "out" / "x.png") as im:
        assert im.mode == "RGBA"
        out = np.asarray(im)
    np.testing.assert_array_equal(out[..., 3], alpha)
    y = luma(rgb).astype(int)
    blurred = np.round(box_mean(y / 255.0, 3) * 255).astype(int)
    assert np.abs(blurred - y).max() > 50  # strokes blurred: the luminance changed
    assert np.abs(luma(out[..., :3]).astype(int) - blurred).max() <= 2  # the model's luminance
    ink = blurred < 120  # the blurred strokes' cores: red, as the ink was
    assert ink.sum() > 50 and (np.argmax(out[..., :3][ink], axis=1) == 0).mean() > 0.95
    paper = box_mean((y > 200).astype(float), 13) == 1.0  # beyond the chroma filter's reach
    assert np.abs(out[..., :3][paper].astype(int) - PAPER).max() <= 1


def test_chroma_noise_is_smoothed_and_the_ink_keeps_its_hue(tmp_path):
    """The default on blue ink under per-channel noise: the colour speckle goes, the hue stays."""
    clean = ink_on_paper().astype(np.float64)
    noisy = clean + np.random.default_rng(1).normal(0, 20, clean.shape)
    Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8)).save(
        tmp_path / "in" / "x.png"
    )
    run(tmp_path / "in", tmp_path / "out")
    with Image.open(tmp_path / "out" / "x.png") as im:
        out = np.asarray(im)
    before = np.abs(chroma(np.clip(np.round(noisy), 0, 255)) - chroma(clean)).mean()
    after = np.abs(chroma(out) - chroma(clean)).mean()
    assert after < 0.4 * before, (before, after)
    strokes = luma(clean.astype(np.uint8)) < 150
    assert (np.argmax(out[strokes], axis=1) == 2).mean() > 0.95  # blue


def test_the_default_model_keeps_the_hue_of_clean_coloured_ink(tmp_path):
    """The issue's target: mean chroma error under 3 levels on clean colour input."""
    inks = {"blue": BLUE, "red": np.array([200, 30, 40]), "green": np.array([20, 140, 60])}
    for name, ink in inks.items():
        Image.fromarray(ink_on_paper(ink)).save(tmp_path / "in" / f"{name}.png")
    run(tmp_path / "in", tmp_path / "out")
    for name, ink in inks.items():
        src = ink_on_paper(ink)
        with Image.open(tmp_path / "out" / f"{name}.png") as im:
            out = np.asarray(im)
        assert np.abs(chroma(out) - chroma(src)).mean() < 3, name
        strokes = luma(src) < 150
        dominant = int(np.argmax(ink))
        assert (np.argmax(out[strokes], axis=1) == dominant).mean() > 0.95, name


def test_a_colour_palette_comes_back_as_rgb_and_a_gray_one_as_gray(tmp_path):
    rgb = ink_on_paper()
    Image.fromarray(rgb).quantize(16).save(tmp_path / "in" / "colour.png")
    Image.fromarray(rgb).quantize(16).save(tmp_path / "in" / "colour.gif")
    Image.fromarray(luma(rgb)).convert("P").save(tmp_path / "in" / "gray.png")
    run(tmp_path / "in", tmp_path / "out", "--model", IDENTITY)
    with Image.open(tmp_path / "in" / "colour.png") as im:
        want = np.asarray(im.convert("RGB"))
    with Image.open(tmp_path / "out" / "colour.png") as im:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), want)
    with Image.open(tmp_path / "out" / "colour.gif") as im:  # GIF holds only a palette
        assert im.format == "GIF"
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), want)
    with Image.open(tmp_path / "out" / "gray.png") as im:
        assert im.mode == "L"


def _transparent(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"))[..., 3] == 0


@pytest.mark.parametrize("streamed", [False, True])
def test_a_transparent_colour_comes_back_transparent(tmp_path, monkeypatch, streamed):
    """PNG's tRNS on gray, RGB and 1-bit images and a GIF's transparent index, grey or coloured
    palette: the same pixels come back transparent (as an alpha channel in a PNG, as the
    transparent index in a GIF), whole or banded."""
    gray = luma(ink_on_paper())
    gray[:6] = 0  # the transparent colour: black
    rgb = np.dstack([gray, gray // 2, gray])
    folder = tmp_path / "in"
    Image.fromarray(gray).save(folder / "gray.png", transparency=0)
    Image.fromarray(rgb).save(folder / "rgb.png", transparency=(0, 0, 0))
    Image.fromarray(gray).convert("1").save(folder / "bits.png", transparency=0)
    Image.fromarray(gray).convert("P").save(folder / "gray.gif", transparency=0)
    Image.fromarray(rgb).quantize(64).save(folder / "colour.gif", transparency=0)
    calls = []
    if streamed:
        monkeypatch.setattr(transforms, "STREAM_MIN_PIXELS", 0)
        for kind in ("png", "held"):
            original = getattr(chunk, f"denoised_{kind}")
            monkeypatch.setattr(
                chunk, f"denoised_{kind}", lambda *a, o=original, **k: calls.append(1) or o(*a, **k)
            )
    tile = ("--tile", 32) if streamed else ()
    run(folder, tmp_path / "out", "--model", IDENTITY, "--workers", 1, *tile)
    assert len(calls) == (5 if streamed else 0)
    for name in ("gray.png", "rgb.png", "bits.png", "gray.gif", "colour.gif"):
        with Image.open(folder / name) as a, Image.open(tmp_path / "out" / name) as b:
            assert b.format == a.format, name
            want = _transparent(a)
            assert want.sum() >= 6 * want.shape[1], name
            np.testing.assert_array_equal(_transparent(b), want, err_msg=name)


@pytest.mark.parametrize(
    ("mode", "values", "dtype"),
    [("F", 255, np.float32), ("F", 1, np.float32), ("I", 255, np.int32), ("I", 65535, np.int32)],
)
def test_float_and_32_bit_tiffs_keep_their_scale(tmp_path, mode, values, dtype):
    """Float and 32-bit integer pixels declare no range: 0-1, 0-255 or 0-65535 is read from
    the values (Pillow's convert("F") gives 0-255) and written back at it, in the same mode
    (they came back all white, or read as 16-bit and nearly black, before)."""
    pixels = (luma(ink_on_paper()).astype(np.float64) / 255 * values).astype(dtype)
    Image.fromarray(pixels, mode).save(tmp_path / "in" / "x.tif")
    run(tmp_path / "in", tmp_path / "out", "--model", IDENTITY)
    with Image.open(tmp_path / "out" / "x.tif") as im:
        assert im.mode == mode
        got = np.asarray(im, dtype=np.float64)
    step = 1e-6 * values if mode == "F" else 0.5
    assert np.abs(got - pixels).max() <= step, (got.min(), got.max())


@pytest.mark.parametrize(
    ("name", "pixels", "mode", "error"),
    [
        ("big.tif", np.full((30, 30), 200_000, np.int32), "I", "values from 200000 to 200000"),
        ("neg.tif", np.full((30, 30), -50.0, np.float32), "F", "values from -50 to -50"),
        ("nan.tif", np.full((30, 30), np.nan, np.float32), "F", "900 NaN or infinite float"),
    ],
)
def test_float_and_32_bit_pixels_out_of_any_range_are_refused(tmp_path, name, pixels, mode, error):
    Image.fromarray(pixels, mode).save(tmp_path / "in" / name)
    Image.fromarray(luma(ink_on_paper())).save(tmp_path / "in" / "ok.png")
    result = CliRunner().invoke(
        app, [str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(IDENTITY)]
    )
    assert result.exit_code == 1, result.output
    assert f"{name}: " in result.output and error in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.png"]


def _pages() -> list[Image.Image]:
    """Three pages as scans come: colour, gray at another size, 16-bit."""
    gray = luma(ink_on_paper())
    return [
        Image.fromarray(ink_on_paper()),
        Image.fromarray(255 - gray[:40, :60]),
        Image.fromarray(gray.astype(np.uint16) * 257),
    ]


def test_a_multi_page_tiff_comes_back_with_every_page(tmp_path):
    """Scanned forms and faxes come as multi-page TIFFs: each page is denoised in its own
    mode and size, the file keeps its page count, compression, DPI and EXIF."""
    pages, exif = _pages(), Image.Exif()
    exif[271] = "ScanCo"
    pages[0].save(
        tmp_path / "in" / "form.tif", save_all=True, append_images=pages[1:],
        compression="tiff_lzw", dpi=(300, 300), exif=exif,
    )  # fmt: skip
    run(tmp_path / "in", tmp_path / "out", "--model", IDENTITY)
    with Image.open(tmp_path / "out" / "form.tif") as im:
        assert im.n_frames == 3 and im.info["compression"] == "tiff_lzw"
        assert im.getexif()[271] == "ScanCo" and tuple(im.info["dpi"]) == (300, 300)
        for index, page in enumerate(pages):
            im.seek(index)
            assert (im.mode, im.size) == (page.mode, page.size)
            got, want = np.asarray(im, np.int64), np.asarray(page, np.int64)
            assert np.abs(got - want).max() <= (1 if index == 0 else 0), index  # chroma: 1


def test_every_page_of_a_noisy_tiff_is_denoised(tmp_path):
    rng = np.random.default_rng(3)
    clean = [luma(ink_on_paper()), 255 - luma(ink_on_paper())[:40, :60]]
    noisy = [np.clip(c + rng.normal(0, 40, c.shape), 0, 255).astype(np.uint8) for c in clean]
    images = [Image.fromarray(n) for n in noisy]
    images[0].save(tmp_path / "in" / "pages.tif", save_all=True, append_images=images[1:])
    (tmp_path / "clean").mkdir()
    refs = [Image.fromarray(c) for c in clean]
    refs[0].save(tmp_path / "clean" / "pages.tif", save_all=True, append_images=refs[1:])
    run(tmp_path / "in", tmp_path / "out")
    scored = CliRunner().invoke(app, ["score", str(tmp_path / "out"), str(tmp_path / "clean")])
    assert scored.exit_code == 0, scored.output
    assert "| (all) | 2 |" in scored.output  # each page scored as an image
    with Image.open(tmp_path / "out" / "pages.tif") as im:
        for index, (c, n) in enumerate(zip(clean, noisy, strict=True)):
            im.seek(index)
            assert psnr(c / 255, np.asarray(im) / 255) > psnr(c / 255, n / 255) + 5, index


def test_noisify_draws_each_page_its_own_noise(tmp_path):
    page = Image.fromarray(luma(ink_on_paper()))
    page.save(tmp_path / "in" / "pages.tif", save_all=True, append_images=[page])
    run("noisify", tmp_path / "in", tmp_path / "out", "--level", "0.2", "--output-format", "keep")
    with Image.open(tmp_path / "out" / "pages.tif") as im:
        first = np.asarray(im, np.int64)
        im.seek(1)
        assert np.abs(np.asarray(im, np.int64) - first).mean() > 10


def test_a_multi_page_tiff_fails_whole_when_a_page_cannot_be_had(tmp_path):
    pages = _pages()
    pages[0].save(tmp_path / "in" / "form.tif", save_all=True, append_images=pages[1:])
    result = CliRunner().invoke(
        app,
        [str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(IDENTITY),
         "--output-format", "png"],
    )  # fmt: skip
    assert result.exit_code == 1 and "form.tif: 3 pages: one PNG cannot hold" in result.output
    result = CliRunner().invoke(
        app,
        [str(tmp_path / "in"), str(tmp_path / "big"), "--model", str(IDENTITY),
         "--max-pixels", str(56 * 84 + 40 * 60 + 100)],
    )  # fmt: skip
    assert result.exit_code == 1 and "form.tif: 3 pages: over the limit" in result.output
    assert not list((tmp_path / "out").glob("*")) and not list((tmp_path / "big").glob("*"))


def test_a_cut_short_or_damaged_multi_page_tiff_fails_alone_never_loses_pages(tmp_path):
    """A TIFF cut short crashed the whole batch (TypeError from Pillow), or came back with
    fewer pages and exit 0 (Pillow only warns and ends the page chain)."""
    buffer = io.BytesIO()
    pages = [Image.fromarray(np.roll(luma(ink_on_paper()), k, axis=1)) for k in range(3)]
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:], compression="tiff_lzw")
    whole = buffer.getvalue()
    cuts = range(len(whole) // 4, len(whole), 8)  # inside every page's data and directory
    for cut in cuts:
        (tmp_path / "in" / f"cut{cut:06d}.tif").write_bytes(whole[:cut])
    (tmp_path / "in" / "whole.tif").write_bytes(whole)
    result = CliRunner().invoke(
        app, [str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(IDENTITY)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    for path in (tmp_path / "out").iterdir():
        with Image.open(path) as im:
            assert im.n_frames == 3, path.name  # whole, or not written at all
    assert (tmp_path / "out" / "whole.tif").is_file()
    failed = [line for line in result.output.splitlines() if line.strip().startswith("cut")]
    # Some cuts leave the pixels whole and lose a later page's directory: Pillow then only
    # warns and ends the file early; those must fail too, not come back shorter.
    assert any("damaged or cut-short TIFF" in line for line in failed), result.output


def test_a_tiff_with_a_harmless_metadata_warning_is_denoised(tmp_path):
    """Pillow warns "Metadata Warning, tag 296 had too many entries" on many real scans; the
    pixels are whole, so the file must not be taken for a cut-short one."""
    pixels = (np.arange(32 * 32) % 256).astype(np.uint8).reshape(32, 32)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF", dpi=(300, 300))
    data = bytearray(buffer.getvalue())
    directory = struct.unpack_from("<I", data, 4)[0]
    for entry in range(struct.unpack_from("<H", data, directory)[0]):
        at = directory + 2 + 12 * entry
        if struct.unpack_from("<H", data, at)[0] == 296:  # ResolutionUnit: count 1 -> 2
            struct.pack_into("<I", data, at + 4, 2)
    (tmp_path / "in" / "scan.tif").write_bytes(bytes(data))
    run(tmp_path / "in", tmp_path / "out", "--model", IDENTITY)
    with Image.open(tmp_path / "out" / "scan.tif") as im:
        np.testing.assert_array_equal(np.asarray(im), pixels)


def test_each_page_keeps_its_own_icc_profile_and_a_bad_page_is_named(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    colour, gray = Image.fromarray(ink_on_paper()), Image.fromarray(luma(ink_on_paper()))
    colour.info["icc_profile"] = srgb  # this page's own: a save option would go on every page
    colour.save(tmp_path / "in" / "a.tif", save_all=True, append_images=[gray])
    gray.save(tmp_path / "in" / "b.tif", save_all=True, append_images=[colour])
    nan = np.full((20, 20), 0.5, np.float32)
    nan[3, 3] = np.nan
    floats = [Image.fromarray(np.full((20, 20), 0.5, np.float32)), Image.fromarray(nan)]
    floats[0].save(tmp_path / "in" / "c.tif", save_all=True, append_images=floats[1:])
    result = CliRunner().invoke(
        app, [str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(IDENTITY)]
    )
    assert result.exit_code == 1 and "c.tif: page 2: 1 NaN or infinite" in result.output
    with Image.open(tmp_path / "out" / "a.tif") as im:
        assert im.info.get("icc_profile") == srgb  # the colour page's own
        im.seek(1)
        assert im.tag_v2.get(34675) is None  # the grey page had none, and gets none
    with Image.open(tmp_path / "out" / "b.tif") as im:
        assert im.tag_v2.get(34675) is None
        im.seek(1)
        assert im.tag_v2.get(34675) == srgb


def test_a_file_of_too_many_pages_is_refused(tmp_path, monkeypatch):
    from denoise_cli.files import images

    monkeypatch.setattr(images, "MAX_PAGES", 3)
    page = Image.fromarray(luma(ink_on_paper()))
    page.save(tmp_path / "in" / "many.tif", save_all=True, append_images=[page] * 3)
    result = CliRunner().invoke(
        app, [str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(IDENTITY)]
    )
    assert result.exit_code == 1 and "many.tif: 4 pages: over the limit of 3 pages" in result.output


@pytest.mark.parametrize("ext", ["gif", "png", "webp"])
def test_an_animated_file_is_refused_not_cut_to_its_first_frame(tmp_path, ext):
    pages = [Image.fromarray(luma(ink_on_paper())), Image.fromarray(255 - luma(ink_on_paper()))]
    pages[0].save(tmp_path / "in" / f"pages.{ext}", save_all=True, append_images=pages[1:])
    pages[0].save(tmp_path / "in" / f"one.{ext}")
    result = CliRunner().invoke(
        app, [str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(IDENTITY)]
    )
    assert result.exit_code == 1, result.output
    assert f"pages.{ext}: 2 frames" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"one.{ext}"]


def test_cmyk_and_jpeg_colour_come_back_in_their_mode(tmp_path):
    rgb = ink_on_paper()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "in" / "x.tif")
    Image.fromarray(rgb).save(tmp_path / "in" / "x.jpg", quality=95, subsampling=0)
    run(tmp_path / "in", tmp_path / "out", "--model", IDENTITY)
    with Image.open(tmp_path / "out" / "x.tif") as im:
        assert im.mode == "CMYK"
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), rgb)
    run(tmp_path / "in", tmp_path / "png", "--model", IDENTITY, "--output-format", "png")
    with Image.open(tmp_path / "png" / "x.tif.png") as im:  # PNG holds no CMYK: RGB
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), rgb)
    with Image.open(tmp_path / "in" / "x.jpg") as im:
        src = np.asarray(im)
    with Image.open(tmp_path / "out" / "x.jpg") as im:
        assert im.mode == "RGB"
        assert np.abs(chroma(np.asarray(im)) - chroma(src)).mean() < 1.5  # a re-encode away


@pytest.mark.parametrize("ext", ["png", "tif"])  # streamed as PNG bands, or held whole
def test_a_streamed_colour_image_matches_the_whole_image_path(tmp_path, monkeypatch, ext):
    rgb = np.tile(ink_on_paper(), (3, 2, 1))  # 168 x 168: tiles at --tile 64
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "in" / f"x.{ext}")
    mean3 = MODELS_DIR / "mean3_either.onnx"
    run(tmp_path / "in", tmp_path / "whole", "--model", mean3, "--tile", "64")
    monkeypatch.setattr(transforms, "STREAM_MIN_PIXELS", 0)
    kind = "png" if ext == "png" else "held"
    calls = []
    original = getattr(chunk, f"denoised_{kind}")
    monkeypatch.setattr(
        chunk, f"denoised_{kind}", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    run(tmp_path / "in", tmp_path / "streamed", "--model", mean3, "--tile", "64", "--workers", 1)
    assert calls == [1]  # the banded path, not the whole image
    with (
        Image.open(tmp_path / "whole" / f"x.{ext}") as a,
        Image.open(tmp_path / "streamed" / f"x.{ext}") as b,
    ):
        assert a.mode == b.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert (np.asarray(a)[..., :3] != rgb).any()
        np.testing.assert_array_equal(np.asarray(a)[..., 3], alpha)


# --- metadata -------------------------------------------------------------------------------


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[271], exif[272] = "DigitCam", "Model 8"  # Make, Model
    return exif


ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize(
    ("ext", "fmt", "mode"),
    [
        ("png", "PNG", "L"),
        ("png", "PNG", "RGB"),
        ("jpg", "JPEG", "L"),
        ("jpg", "JPEG", "RGB"),
        ("tif", "TIFF", "L"),
        ("tif", "TIFF", "RGB"),
        ("webp", "WEBP", "RGB"),
    ],
)
def test_exif_icc_and_dpi_survive(tmp_path, ext, fmt, mode):
    im = Image.fromarray(ink_on_paper())
    im = im.convert("L") if mode == "L" else im
    args = {"exif": _exif(), "icc_profile": ICC}
    if fmt != "WEBP":  # WebP has no resolution field
        args["dpi"] = (300, 300)
    im.save(tmp_path / "in" / f"x.{ext}", format=fmt, **args)
    run(tmp_path / "in", tmp_path / "out", "--model", MODELS_DIR / "mean3_either.onnx")
    with Image.open(tmp_path / "out" / f"x.{ext}") as out:
        assert out.mode == mode
        exif = out.getexif()
        assert (exif.get(271), exif.get(272)) == ("DigitCam", "Model 8")
        assert out.info.get("icc_profile") == ICC
        if fmt != "WEBP":
            assert tuple(round(v) for v in out.info["dpi"]) == (300, 300)


@pytest.mark.parametrize(("output_format", "kept"), [("keep", True), ("png", False)])
def test_a_cmyk_profile_goes_only_where_the_pixels_stay_cmyk(tmp_path, output_format, kept):
    """A CMYK JPEG's profile stays on the CMYK JPEG; written as an RGB PNG it would tell
    viewers to read RGB pixels as CMYK, so it is left off."""
    cmyk = bytearray(ICC)
    cmyk[16:20] = b"CMYK"  # the header's colour space
    (tmp_path / "in").mkdir(exist_ok=True)
    Image.fromarray(ink_on_paper()).convert("CMYK").save(
        tmp_path / "in" / "x.jpg", icc_profile=bytes(cmyk), quality=95
    )
    run(tmp_path / "in", tmp_path / "out", "--model", MODELS_DIR / "mean3_either.onnx",
        "--output-format", output_format)  # fmt: skip
    name = "x.jpg" if output_format == "keep" else "x.png"
    with Image.open(tmp_path / "out" / name) as out:
        assert out.mode == ("CMYK" if kept else "RGB")
        assert (out.info.get("icc_profile") == bytes(cmyk)) == kept
        assert kept or "icc_profile" not in out.info


def test_lab_tiff_pages_come_back_rgb_without_their_lab_profile(tmp_path):
    lab = bytearray(ICC)
    lab[16:20] = b"Lab "
    page = Image.fromarray(ink_on_paper()).convert("LAB")
    (tmp_path / "in").mkdir(exist_ok=True)
    page.save(tmp_path / "in" / "x.tif", save_all=True, append_images=[page.copy()],
              icc_profile=bytes(lab))  # fmt: skip
    run(tmp_path / "in", tmp_path / "out", "--model", IDENTITY)
    with Image.open(tmp_path / "out" / "x.tif") as out:
        for index in range(2):
            out.seek(index)
            assert out.mode == "RGB" and "icc_profile" not in out.info


def test_a_16_bit_grey_and_alpha_png_stays_grey_with_its_alpha(tmp_path):
    """Pillow opens 16-bit grey+alpha PNGs as RGBA: they came back as colour (type 6)."""
    from tests.test_pngstream import _raw_png

    rng = np.random.default_rng(9)
    grey = np.clip(rng.normal(50000, 3000, (32, 48)), 0, 65535).astype(np.uint16)
    alpha = np.where(np.arange(48) < 24, 65535, 30000).astype(np.uint16)[None].repeat(32, 0)
    rows = b"".join(b"\0" + np.dstack([grey, alpha])[y].astype(">u2").tobytes() for y in range(32))
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "la16.png").write_bytes(_raw_png(48, 32, rows, depth=16, color=4))
    run(tmp_path / "in", tmp_path / "out", "--model", IDENTITY)
    with Image.open(tmp_path / "out" / "la16.png") as out:
        assert out.mode == "LA"
        np.testing.assert_array_equal(np.asarray(out)[..., 1], alpha >> 8)
        assert abs(np.asarray(out)[..., 0].astype(int) - (grey >> 8)).max() <= 1


@pytest.mark.parametrize("ext", ["tif", "jpg"])
def test_cmyk_black_ink_stays_on_the_black_plate(tmp_path, ext):
    """Digits printed with K only came back as 300% CMY with K empty (Pillow's RGB to CMYK):
    the black plate keeps them now, and an unchanged K-only TIFF comes back as it was."""
    plates = np.zeros((40, 120, 4), np.uint8)  # white paper: no ink
    plates[12:28, 10:110:6, 3] = 250  # strokes on the black plate only
    (tmp_path / "in").mkdir(exist_ok=True)
    Image.fromarray(plates, "CMYK").save(tmp_path / "in" / f"x.{ext}", **(
        {"quality": 95} if ext == "jpg" else {}))  # fmt: skip
    run(tmp_path / "in", tmp_path / "out", "--model", IDENTITY)
    with Image.open(tmp_path / "in" / f"x.{ext}") as src:
        given = np.asarray(src).astype(int)
    with Image.open(tmp_path / "out" / f"x.{ext}") as out:
        assert out.mode == "CMYK"
        back = np.asarray(out).astype(int)
    if ext == "tif":
        np.testing.assert_array_equal(back, given)
    assert back[..., :3].max() <= 12  # no coloured inks where there were none
    strokes = given[..., 3] > 128
    assert back[..., 3][strokes].mean() > 200


def _png_with_text(path: Path, image: Image.Image, icc: bool) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "digits")
    info.add_text("Comment", "z" * 200, zip=True)  # zTXt
    info.add_itxt("Author", "Zoë", lang="fr", tkey="Auteur")  # iTXt
    info.add(b"gAMA", (45455).to_bytes(4, "big"))
    image.save(path, format="PNG", pnginfo=info, **({"icc_profile": ICC} if icc else {}))


def _text_chunks(path: Path) -> list[tuple[bytes, bytes]]:
    from denoise_cli.files.fastpng import metadata_chunks

    return list(metadata_chunks(path.read_bytes()))


@pytest.mark.parametrize("kind", ["gray fast path", "gray with ICC", "colour", "streamed"])
def test_png_text_chunks_survive_verbatim(tmp_path, monkeypatch, kind):
    """tEXt, zTXt and iTXt (and gAMA) come back byte for byte, whichever path the file takes:
    fastpng's for a plain 8-bit gray PNG, Pillow's, or the streamed one."""
    rgb = np.tile(ink_on_paper(), (2, 1, 1))
    image = Image.fromarray(rgb) if kind == "colour" else Image.fromarray(luma(rgb))
    src = tmp_path / "in" / "x.png"
    _png_with_text(src, image, icc=kind == "gray with ICC")
    args = ["--model", MODELS_DIR / "mean3_either.onnx"]
    if kind == "streamed":
        monkeypatch.setattr(transforms, "STREAM_MIN_PIXELS", 0)
        args += ["--tile", "64", "--workers", "1"]
    run(tmp_path / "in", tmp_path / "out", *args)
    out = tmp_path / "out" / "x.png"
    assert [t for t, _ in _text_chunks(src)] == [b"tEXt", b"zTXt", b"iTXt", b"gAMA"]
    assert sorted(_text_chunks(out)) == sorted(_text_chunks(src))
    with Image.open(out) as im:
        assert im.text["Author"] == "Zoë" and im.text["Comment"] == "z" * 200
        assert (im.info.get("icc_profile") == ICC) == (kind == "gray with ICC")


def test_the_plain_gray_png_still_takes_the_fast_path(monkeypatch):
    """A file with text chunks keeps them and still skips Pillow."""
    from denoise_cli.files import images

    buf = io.BytesIO()
    _png_with_text(buf, Image.fromarray(np.zeros((28, 28), np.uint8)), icc=False)
    monkeypatch.setattr(images.Image, "open", None)  # Pillow would fail
    gray, info = images.decode_bytes(buf.getvalue(), ".png")
    assert gray.shape == (28, 28) and [t for t, _ in info.png_chunks][:1] == [b"tEXt"]


# --- borders and seams ----------------------------------------------------------------------


def box_mean(image: np.ndarray, size: int) -> np.ndarray:
    """The size x size mean with the image mirrored at its edges (what the runtime pads)."""
    r = size // 2
    padded = np.pad(image.astype(np.float64), r, mode="symmetric")
    h, w = image.shape
    return sum(padded[dy : dy + h, dx : dx + w] for dy in range(size) for dx in range(size)) / (
        size * size
    )


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9, 1.0])
def test_a_constant_image_comes_back_constant_without_border_lines(tmp_path, level):
    import onnxruntime as ort

    image = np.full((37, 45), level, np.float32)
    model = MODELS_DIR / "mean3_either.onnx"
    raw = ort.InferenceSession(str(model)).run(None, {"noisy": image[None, None]})[0][0, 0]
    assert raw[0, 5] < level * 0.7  # the model alone: its zero padding darkens the edge
    Image.fromarray(np.uint8(round(level * 255)) * np.ones((37, 45), np.uint8)).save(
        tmp_path / "in" / "x.png"
    )
    run(tmp_path / "in", tmp_path / "out", "--model", model)
    out = decode(tmp_path / "out" / "x.png")[0]
    assert np.abs(out - round(level * 255) / 255).max() == 0


@pytest.mark.parametrize("tile", ["32", "48", "1024"])
def test_tiles_join_without_seams_and_edges_are_mirrored(tmp_path, tile):
    """A 5x5 mean on a size-multiple-4 model: every tiling gives the mirrored-edge box mean."""
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal(0.7, 0.2, (90, 131)), 0, 1)
    pixels = np.round(image * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in" / "x.png")
    model = MODELS_DIR / "mean5_multiple4_either.onnx"
    run(tmp_path / "in", tmp_path / "out", "--model", model, "--tile", tile)
    out = np.asarray(Image.open(tmp_path / "out" / "x.png"), dtype=int)
    want = np.round(box_mean(pixels / 255.0, 5) * 255)
    assert np.abs(out - want).max() <= 1


def test_small_images_on_black_are_not_padded(tmp_path):
    """Noisy MNIST-like digits on black: the model's own zero padding is right for them, and
    padding a 28x28 digit by a model's radius costs ~10x its pixels."""
    from denoise_cli.model.polarity import sampled
    from denoise_cli.model.session import Denoiser
    from denoise_cli.model.tiling import bordered

    rng = np.random.default_rng(2)
    digits = synthetic_digits(64, seed=3) / 255.0
    noisy = np.clip(digits + rng.normal(0, 0.4, digits.shape), 0, 1).astype(np.float32)
    denoiser = Denoiser("unet_scenes")
    assert denoiser.border == 36
    assert not bordered(sampled(noisy), 28, 28, denoiser.border).any()
    grey = np.clip(noisy + 0.3, 0, 1)  # a grey background is padded
    assert bordered(sampled(grey), 28, 28, denoiser.border).all()
    page = np.zeros((1, 800, 800), np.float32)  # a page always is: it costs little
    assert bordered(sampled(page), 800, 800, 36).all()


# --- polarity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "invert", "paper", "inverted"),
    [
        ("square_either", "auto", 200, False),  # grey paper: as it is
        ("square_either", "auto", 255, True),  # at the white clip: turned to black
        ("square_either", "no", 255, False),
        ("square_either", "yes", 200, True),
        ("square_light_on_dark", "auto", 200, True),
        ("square_light_on_dark", "no", 200, False),
    ],
)
def test_a_model_for_either_polarity_is_inverted_only_at_the_white_clip(
    tmp_path, model, invert, paper, inverted
):
    """x*x tells whether the image was inverted around the model: 1-(1-x)^2 if it was."""
    light = np.full((30, 30), paper, np.uint8)
    light[10:20, 12:16] = 40  # dark ink on light paper
    Image.fromarray(light).save(tmp_path / "in" / "x.png")
    run(
        tmp_path / "in",
        tmp_path / "out",
        "--model",
        MODELS_DIR / f"{model}.onnx",
        "--invert",
        invert,
    )
    out = np.asarray(Image.open(tmp_path / "out" / "x.png"), dtype=int)
    x = light / 255.0
    want = 1 - (1 - x) ** 2 if inverted else x**2
    assert np.abs(out - np.round(want * 255)).max() <= 1


def test_the_white_clip_rule_holds_under_heavy_noise_and_spares_grey_paper():
    """Noisy white paper keeps about half its background at the clip; grey paper under light
    noise almost none: the decision tells them apart at every level measured."""
    from denoise_cli.model.polarity import needs_inversion_batch

    rng = np.random.default_rng(0)
    page = np.ones((64, 64), np.float32)
    page[20:40, 28:34] = 0.1
    for sigma in (0.0, 0.05, 0.5, 0.75):
        noisy = np.clip(page + rng.normal(0, sigma, page.shape), 0, 1)[None]
        assert needs_inversion_batch(noisy, "auto", "either")[0], sigma
        grey = np.clip(page * 0.9 + rng.normal(0, min(sigma, 0.15), page.shape), 0, 1)[None]
        assert not needs_inversion_batch(grey, "auto", "either")[0], sigma
        assert not needs_inversion_batch(1.0 - noisy, "auto", "either")[0]  # dark paper


# --- tiny images ----------------------------------------------------------------------------


def test_resampling_matrices_are_pillows_resize():
    from denoise_cli.model.scale import resample

    rng = np.random.default_rng(4)
    x = rng.random((2, 8, 11)).astype(np.float32)
    for kind, filt, size in (
        ("bicubic", Image.Resampling.BICUBIC, (31, 28)),
        ("area", Image.Resampling.BOX, (5, 3)),
    ):
        want = np.stack([np.asarray(Image.fromarray(i).resize(size, filt)) for i in x])
        np.testing.assert_allclose(resample(x, size[1], size[0], kind), want, atol=1e-5)


def _small(clean_digits: np.ndarray, side: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) digits area-downsampled to side x side, 8-bit."""
    from denoise_cli.model.scale import resample

    clean = np.round(resample(clean_digits, side, side, "area") * 255) / 255
    noise = np.random.default_rng(side).normal(0, sigma, clean.shape)
    return clean, np.round(np.clip(clean + noise, 0, 1) * 255) / 255


def test_8x8_scans_come_back_as_they_were(tmp_path, clean_digits):
    """Every bundled model made 8x8 scans worse than the input (benchmarks/tiny.py)."""
    _, noisy = _small(clean_digits, 8, 0.1)
    for i, img in enumerate(noisy):
        Image.fromarray(np.uint8(np.round(img * 255))).save(tmp_path / "in" / f"{i}.png")
    Image.fromarray(np.uint8(np.round(noisy[0] * 255))).convert("RGB").save(
        tmp_path / "in" / "c.png"
    )
    for model in ("unet_scenes", "conv_denoiser"):
        run(tmp_path / "in", tmp_path / model, "--model", model)
        for path in (tmp_path / "in").iterdir():
            assert np.array_equal(
                np.asarray(Image.open(path)), np.asarray(Image.open(tmp_path / model / path.name))
            )


def test_the_world_model_denoises_small_digits_as_they_are(clean_digits):
    """The default says `min_side_as_is` 14 (the world draws digits from 8 px): 16x16 noisy
    digits as they are, better than through 28x28 (+3.7 dB at sigma 0.1 on 400 digits, see
    denoise_cli/model/scale.py); 8x8 scans still left alone."""
    from denoise_cli.core.metrics import psnr
    from denoise_cli.model.info import ModelInfo
    from denoise_cli.model.session import Denoiser

    assert ModelInfo("m", {"min_side_as_is": "junk"}).min_side_as_is is None
    denoiser = Denoiser("unet_world")
    assert denoiser.info.metadata["min_side_as_is"] == "14"
    assert (denoiser.leave_below, denoiser.resample_below) == (14, 14)
    clean, noisy = _small(clean_digits, 16, 0.1)
    as_is = np.stack(denoiser.denoise([n.astype(np.float32) for n in noisy]))
    denoiser.resample_below = 20  # the MNIST rule: through 28x28
    scaled = np.stack(denoiser.denoise([n.astype(np.float32) for n in noisy]))
    gain = np.mean(psnr(clean, as_is) - psnr(clean, noisy))
    over = np.mean(psnr(clean, as_is) - psnr(clean, scaled))
    assert gain > 2 and over > 1, (gain, over)
    tiny = [n.astype(np.float32) for n in _small(clean_digits, 8, 0.1)[1]]
    assert all(np.array_equal(t, o) for t, o in zip(tiny, denoiser.denoise(tiny), strict=True))


def test_small_digits_go_through_the_native_scale_and_are_helped(clean_digits):
    """14x14 noisy digits: through 28x28 better than the input and than the model as is."""
    from denoise_cli.core.metrics import psnr
    from denoise_cli.model.session import Denoiser

    clean, noisy = _small(clean_digits, 14, 0.2)
    denoiser = Denoiser("unet_scenes")
    assert (denoiser.leave_below, denoiser.resample_below) == (14, 20)
    scaled = denoiser.denoise([n.astype(np.float32) for n in noisy])
    denoiser.leave_below = denoiser.resample_below = 0
    as_is = denoiser.denoise([n.astype(np.float32) for n in noisy])
    gain = np.mean(
        [psnr(c, s)[0] - psnr(c, n)[0] for c, s, n in zip(clean, scaled, noisy, strict=True)]
    )
    over_as_is = np.mean(
        [psnr(c, s)[0] - psnr(c, a)[0] for c, s, a in zip(clean, scaled, as_is, strict=True)]
    )
    assert gain > 2 and over_as_is > 0, (gain, over_as_is)
