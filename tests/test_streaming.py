"""Large PNGs stream through the model a band at a time: the same pixels as the whole-image
path, failures that leave no file, a signal mid-file that leaves no file, and memory that
follows the tile, not the image."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from denoise_cli.cli import app
from denoise_cli.files import pngstream
from denoise_cli.files.images import decode, encode
from denoise_cli.files.luminance import luma, unclipped_luma
from denoise_cli.model.session import Denoiser
from denoise_cli.run import chunk, transforms
from tests.helpers import ROOT, start_cli, tree_hash

RNG = np.random.default_rng(3)


def _page(height: int, width: int, light: bool = False) -> np.ndarray:
    """Noisy strokes on paper: something a model changes everywhere."""
    page = np.clip(RNG.normal(0.1, 0.3, (height, width)), 0, 1)
    page[height // 3 : height // 2, width // 4 : width // 2] = 0.9
    return 1 - page if light else page


@pytest.fixture
def streamed(monkeypatch):
    """Streams every image that tiles (as from 4.2 MP by default), and counts the files that
    went through each banded path: {"png": n, "held": n}."""
    monkeypatch.setattr(transforms, "STREAM_MIN_PIXELS", 0)
    calls = {"png": 0, "held": 0}
    for kind in calls:
        original = getattr(chunk, f"denoised_{kind}")

        def counting(*args, _kind=kind, _original=original, **kwargs):
            calls[_kind] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(chunk, f"denoised_{kind}", counting)
    return calls


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_a_streamed_png_has_exactly_the_whole_image_paths_pixels(tmp_path, streamed):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    page = _page(150, 170)
    Image.fromarray(np.round(page * 255).astype(np.uint8)).save(src / "dark.png")
    light = Image.fromarray(np.round((1 - page) * 255).astype(np.uint8))
    light.save(src / "light.png", dpi=(200, 200))  # inverted on the way in and out
    Image.fromarray(np.round(page * 65535).astype(np.uint16)).save(src / "deep.png")
    rgba = np.round(page * 255).astype(np.uint8)
    alpha = RNG.integers(0, 256, page.shape, dtype=np.uint8)
    Image.fromarray(np.dstack([rgba, rgba, rgba, alpha])).save(src / "rgba.png")
    # Colour with channels clipped by noise: its luminance is restored row by row (luminance.py).
    tint = np.dstack([page * 250 + 5, page * 230 + 20, page * 120 + 60])
    colour = np.clip(np.round(tint + RNG.normal(0, 25, tint.shape)), 0, 255).astype(np.uint8)
    assert (unclipped_luma(colour) != luma(colour)).any()
    Image.fromarray(colour).save(src / "colour.png")
    before = tree_hash(src)
    args = ["--model", "unet_scenes", "--tile", "64", "--workers", "1"]
    result = CliRunner().invoke(app, [str(src), str(out), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert streamed == {"png": 5, "held": 0}
    assert tree_hash(src) == before
    whole = Denoiser("unet_scenes", tile=64)
    for name in ("dark", "light", "deep", "rgba", "colour"):
        gray, info = decode(src / f"{name}.png")
        want = Image.open(io.BytesIO(encode(whole.denoise([gray])[0], info)))
        got = Image.open(out / f"{name}.png")
        assert (got.mode, got.size, got.info.get("dpi")) == (
            want.mode,
            want.size,
            want.info.get("dpi"),
        )
        assert np.array_equal(np.asarray(got), np.asarray(want)), name
    assert np.array_equal(np.asarray(Image.open(out / "rgba.png"))[..., 3], alpha)


def _interlaced(page: np.ndarray) -> bytes:
    """Adam7 (Pillow cannot write it): a hand-made PNG whose passes hold the page's rows."""
    import struct
    import zlib

    from denoise_cli.files.fastpng import chunk as _chunk

    h, w = page.shape
    passes = (
        (0, 0, 8, 8),
        (0, 4, 8, 8),
        (4, 0, 8, 4),
        (0, 2, 4, 4),
        (2, 0, 4, 2),
        (0, 1, 2, 2),
        (1, 0, 2, 1),
    )
    raw = b""
    for y0, x0, dy, dx in passes:
        for row in page[y0::dy, x0::dx] if x0 < w and y0 < h else []:
            raw += b"\x00" + row.tobytes()
    return (
        pngstream.SIGNATURE
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 1))
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def _saved(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("page.tif", lambda p: _saved(Image.fromarray(p), "TIFF", compression="tiff_lzw")),
        ("page16.tif", lambda p: _saved(Image.fromarray(p.astype(np.uint16) * 257), "TIFF")),
        ("page.jpg", lambda p: _saved(Image.fromarray(255 - p), "JPEG", quality=90)),
        ("page.bmp", lambda p: _saved(Image.fromarray(np.dstack([p] * 3)), "BMP")),
        ("page.webp", lambda p: _saved(Image.fromarray(np.dstack([p] * 4)), "WEBP", lossless=True)),
        ("interlaced.png", _interlaced),
    ],
)
def test_other_large_images_are_denoised_in_bands_with_the_whole_image_paths_bytes(
    tmp_path, streamed, name, make
):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / name).write_bytes(make(np.round(_page(150, 170) * 255).astype(np.uint8)))
    args = ["--model", "conv_denoiser", "--tile", "64", "--workers", "1"]
    result = CliRunner().invoke(app, [str(src), str(out), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert streamed == {"png": 0, "held": 1}
    gray, info = decode(src / name)
    want = encode(Denoiser("conv_denoiser", tile=64).denoise([gray])[0], info)
    assert (out / name).read_bytes() == want


def test_a_png_that_ends_mid_image_fails_with_its_row_and_leaves_no_file(tmp_path, streamed):
    from tests.test_pngstream import _raw_png

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "short.png").write_bytes(_raw_png(170, 150, bytes(100 * 171)))  # 100 of 150 rows
    Image.fromarray(np.zeros((150, 170), np.uint8)).save(src / "fine.png")
    result = CliRunner().invoke(app, [str(src), str(out), "--tile", "64", "--workers", "1"])
    assert result.exit_code == 1
    assert "short.png: cannot decode: image data ends at row 100 of 150" in result.output
    assert _files(out) == ["fine.png"]  # no partial file, no temporary left


def test_a_model_returning_nan_on_a_streamed_image_writes_nothing(tmp_path, streamed):
    pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    from tests.test_trust import _model

    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    model = _model(
        tmp_path / "nan.onnx",
        [
            helper.make_node("Add", ["x", "one"], ["a"]),
            helper.make_node("Neg", ["a"], ["b"]),
            helper.make_node("Sqrt", ["b"], ["y"]),
        ],
        [one],
    )
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((150, 170), np.uint8)).save(src / "page.png")
    args = [str(src), str(tmp_path / "out"), "--model", str(model), "--tile", "64"]
    result = CliRunner().invoke(app, [*args, "--workers", "1"])
    assert result.exit_code == 1
    assert "page.png: model returned NaN or infinite values; nothing written" in result.output
    assert streamed["png"] == 1
    assert _files(tmp_path / "out") == []


def test_sigterm_mid_stream_leaves_no_file_and_a_rerun_writes_it(tmp_path):
    """A 9 MP page streams (over 4.2 MP) for seconds: the signal lands mid-file."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(np.round(_page(3000, 3000) * 255).astype(np.uint8)).save(src / "page.png")
    args = [str(src), str(out), "--model", "conv_denoiser", "--tile", "256", "--workers", "1"]
    proc = start_cli(args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(out.glob(".*.denoise-tmp")):
        time.sleep(0.01)
    assert list(out.glob(".*.denoise-tmp")), "the streamed file never started"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert _files(out) == []
    proc = start_cli([*args, "--quiet"])
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert Image.open(out / "page.png").size == (3000, 3000)


@pytest.mark.slow
def test_a_49_megapixel_page_runs_in_a_fraction_of_its_whole_image_memory(tmp_path):
    """7000x7000 took ~0.9 GB at --tile 512 decoded whole (2.3 GB when the issue was filed);
    streamed, ~0.28 GB, most of it the interpreter, onnxruntime and one row of tiles."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((7000, 7000), np.uint8)).save(src / "blank.png")
    wrapper = (
        "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
    )
    cmd = [sys.executable, "-m", "denoise_cli.cli", str(src), str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd, "--tile", "512", "--workers", "1", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.split()[-1]) / 1024
    assert peak_mb < 400, f"peak {peak_mb:.0f} MB"
    assert Image.open(tmp_path / "out" / "blank.png").size == (7000, 7000)


def test_a_band_that_cannot_be_converted_is_a_decode_failure_not_a_model_one(tmp_path, streamed):
    """A palette whose transparency table is longer than the palette: Pillow refuses it when
    converting, and the streamed path must say so as the whole-image path does."""
    import struct
    import zlib

    from denoise_cli.files.fastpng import chunk

    src = tmp_path / "in"
    src.mkdir()
    header = struct.pack(">IIBBBBB", 170, 150, 8, 3, 0, 0, 0)
    rows = bytes(150 * 171)
    (src / "palette.png").write_bytes(
        pngstream.SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"PLTE", bytes(range(24)))
        + chunk(b"tRNS", bytes(300))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(Exception) as whole:
        decode(src / "palette.png")
    result = CliRunner().invoke(app, [str(src), str(tmp_path / "out"), "--tile", "64"])
    assert result.exit_code == 1
    assert f"palette.png: {whole.value}" in result.output
    assert "model failed" not in result.output
    assert streamed["png"] == 1


def test_a_strip_thinner_than_the_small_image_rules_is_never_streamed(tmp_path, streamed):
    """The small-image rules (left alone under 14 px, resampled under 20) live in the
    whole-image path; a strip that thin streamed would be denoised as it is."""
    src = tmp_path / "in"
    src.mkdir()
    strip = np.round(_page(7, 300) * 255).astype(np.uint8)
    Image.fromarray(strip).save(src / "strip.png")
    args = [str(src), str(tmp_path / "out"), "--model", "unet_scenes", "--tile", "64"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert streamed == {"png": 0, "held": 0}
    with Image.open(tmp_path / "out" / "strip.png") as im:
        np.testing.assert_array_equal(np.asarray(im), strip)  # 7 px tall: left as it was
