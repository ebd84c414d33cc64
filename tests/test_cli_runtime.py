"""The denoise-batch CLI on real image trees in tmp dirs: outputs, formats, errors, exit codes.

These tests need only the runtime (onnxruntime, numpy, pillow, typer) and run in the
runtime-only environment of .ci/run too.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from denoise_cli.cli import app
from denoise_cli.core.metrics import psnr
from tests.helpers import load_gray, save_gray, tree_hash


def run(*args, catch=True):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=catch)


def run_tool(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def tree(tmp_path, noisy_digits):
    """in/ with nested folders of noisy digit PNGs; returns (in_dir, out_dir)."""
    src = tmp_path / "in"
    for i, img in enumerate(noisy_digits[:6]):
        save_gray(src / ["", "a", "a/b"][i % 3] / f"d{i}.png", img)
    return src, tmp_path / "out"


def test_nested_tree_is_mirrored_and_denoised(tree, clean_digits, noisy_digits):
    src, out = tree
    result = run(src, out, catch=False)
    assert result.exit_code == 0, result.output
    assert files_under(out) == files_under(src)
    assert "6 written, 0 failed" in result.output
    for i in range(6):
        rel = Path(["", "a", "a/b"][i % 3]) / f"d{i}.png"
        restored = load_gray(out / rel)
        assert psnr(clean_digits[i], restored)[0] > psnr(clean_digits[i], noisy_digits[i])[0] + 5


def test_inputs_are_never_modified(tree):
    src, out = tree
    before = {p: p.read_bytes() for p in src.rglob("*.png")}
    assert run(src, out).exit_code == 0
    assert {p: p.read_bytes() for p in src.rglob("*.png")} == before


# --- formats and modes -------------------------------------------------------------------


def _make(path: Path, fmt: str, mode: str, img: np.ndarray) -> None:
    g8 = Image.fromarray(np.round(img * 255).astype(np.uint8))
    if mode == "I;16":
        im = Image.fromarray(np.round(img * 65535).astype(np.uint16))
    elif mode == "RGB":
        im = Image.merge("RGB", (g8, g8, g8))
    elif mode == "RGBA":
        alpha = Image.fromarray(np.full(img.shape, 200, np.uint8))
        im = Image.merge("RGBA", (g8, g8, g8, alpha))
    elif mode == "LA":
        im = Image.merge("LA", (g8, Image.fromarray(np.full(img.shape, 180, np.uint8))))
    elif mode == "P":
        im = g8.convert("P")
    elif mode == "1":
        im = g8.convert("1")
    else:
        im = g8
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)


CASES = [
    ("png", "PNG", "L", "L"),
    ("png", "PNG", "I;16", "I;16"),
    ("png", "PNG", "RGB", "RGB"),
    ("png", "PNG", "RGBA", "RGBA"),
    ("png", "PNG", "LA", "LA"),
    ("png", "PNG", "P", "L"),
    ("png", "PNG", "1", "1"),
    ("jpg", "JPEG", "L", "L"),
    ("jpg", "JPEG", "RGB", "RGB"),
    ("bmp", "BMP", "L", "L"),
    ("tif", "TIFF", "L", "L"),
    ("tif", "TIFF", "I;16", "I;16"),
    ("webp", "WEBP", "RGB", "RGB"),
    ("pgm", "PPM", "L", "L"),
    ("ppm", "PPM", "RGB", "RGB"),
    ("gif", "GIF", "P", "L"),
]


@pytest.mark.parametrize(
    ("ext", "fmt", "mode", "out_mode"), CASES, ids=[f"{c[1]}-{c[2]}" for c in CASES]
)
def test_each_format_and_mode_round_trips(
    tmp_path, noisy_digits, clean_digits, ext, fmt, mode, out_mode
):
    src, out = tmp_path / "in", tmp_path / "out"
    _make(src / f"x.{ext}", fmt, mode, noisy_digits[0])
    result = run(src, out)
    assert result.exit_code == 0, result.output
    with Image.open(out / f"x.{ext}") as im:
        assert im.format == fmt
        assert im.size == (28, 28)
        got_mode = "L" if (fmt == "GIF" and im.mode == "P") else im.mode
        assert got_mode == out_mode or (fmt == "WEBP" and got_mode in ("RGB", "RGBA"))
        if out_mode in ("RGBA", "LA"):
            assert np.asarray(im.getchannel("A")).min() in (180, 200)  # alpha kept
        if mode != "1":
            assert psnr(clean_digits[0], load_gray(out / f"x.{ext}"))[0] > 15


def test_sixteen_bit_keeps_precision(tmp_path, noisy_digits):
    src, out = tmp_path / "in", tmp_path / "out"
    _make(src / "x.png", "PNG", "I;16", noisy_digits[0])
    assert run(src, out).exit_code == 0
    values = np.asarray(Image.open(out / "x.png"))
    assert values.dtype == np.uint16 and len(np.unique(values % 257)) > 1  # not 8-bit upscaled


def test_png_output_option_and_collisions(tmp_path, noisy_digits):
    src, out = tmp_path / "in", tmp_path / "out"
    save_gray(src / "a.png", noisy_digits[0])
    save_gray(src / "a.jpg", noisy_digits[1], quality=95)
    save_gray(src / "b.bmp", noisy_digits[2])
    result = run(src, out, "--output-format", "png")
    assert result.exit_code == 0, result.output
    assert files_under(out) == ["a.jpg.png", "a.png", "b.png"]
    for name in files_under(out):
        assert Image.open(out / name).format == "PNG"


def test_a_renamed_output_never_takes_a_subfolders_name(tmp_path, noisy_digits):
    """a.jpg -> a.png under --output-format png, beside a folder a.png/: every file under the
    folder failed on every rerun ('output folder a.png is a symlink or not a folder') before.
    Listings from object stores name the same subfolders (plan.StorageSource)."""
    from denoise_cli.trees.plan import StorageSource

    src, out = tmp_path / "in", tmp_path / "out"
    save_gray(src / "a.png" / "b.png", noisy_digits[0])
    save_gray(src / "a.jpg", noisy_digits[1], quality=95)
    for _ in range(2):  # a rerun finds everything done
        result = run(src, out, "--output-format", "png")
        assert result.exit_code == 0, result.output
    assert files_under(out) == ["a.png/b.png", "a~1.png"]
    assert "2 already done" in result.output

    class Listing:
        def list_files(self) -> list[str]:
            return ["a.jpg", "a.png/b.png", "a.png/c/d.png", "x/y/z.png"]

    folders = {f.prefix: f.subfolders for f in StorageSource(Listing()).folders()}
    assert folders == {"": ("a.png", "x"), "a.png/": ("c",), "a.png/c/": (), "x/y/": ()}


def test_an_os_error_under_any_command_is_one_line_not_a_traceback(tmp_path):
    """What a disk or folder does under a command (a read-only mount found after training, a
    full disk) is `error: PATH: reason`, exit 1, in every tool built on core.commands."""
    from denoise_cli.core import commands

    app_ = commands.app("t")

    @app_.command()
    def save() -> None:
        raise OSError(30, "Read-only file system", str(tmp_path / "ro" / "x.pt"))

    @app_.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app_, ["save"])
    assert result.exit_code == 1
    assert result.output == f"error: {tmp_path / 'ro' / 'x.pt'}: Read-only file system\n"


@pytest.mark.parametrize(
    "name, save",
    [
        ("x.jpg", {"quality": 95}),
        ("web.jpg", {"quality": 95, "progressive": True}),
        # A phone camera's JPEG: Pillow reads it as MPO (a preview picture appended).
        ("phone.jpg", {"format": "MPO", "quality": 95, "save_all": True}),
    ],
)
def test_jpeg_stays_high_quality(tmp_path, noisy_digits, name, save):
    src, out = tmp_path / "in", tmp_path / "out"
    rgb = np.repeat(noisy_digits[0][..., None], 3, axis=2)
    img = Image.fromarray(np.round(rgb * 255).astype(np.uint8)).resize((112, 112))
    if save.get("save_all"):
        save = {**save, "append_images": [img.resize((28, 28))]}
    img.save(src.mkdir() or src / name, **save)
    assert run(src, out).exit_code == 0
    from PIL import JpegImagePlugin

    with Image.open(out / name) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4, no chroma subsampling
        # Quality 95 quantisation steps are at most 12; Pillow's default (75) goes to 50+.
        assert max(max(t) for t in im.quantization.values()) <= 12
        assert bool(im.info.get("progressive")) == bool(save.get("progressive"))


def test_exif_orientation_is_honoured(tmp_path, noisy_digits):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    img = Image.fromarray(np.round(noisy_digits[0][:, :20] * 255).astype(np.uint8))  # 20x28
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(src / "r.jpg", exif=exif, quality=95)
    assert run(src, out).exit_code == 0
    assert Image.open(out / "r.jpg").size == (28, 20)


def test_odd_and_large_sizes(tmp_path, noisy_digits):
    src, out = tmp_path / "in", tmp_path / "out"
    big = np.tile(noisy_digits[0], (12, 15))  # 336 x 420
    save_gray(src / "big.png", big)
    save_gray(src / "tiny.png", noisy_digits[1][:5, :3])
    save_gray(src / "wide.png", np.concatenate(list(noisy_digits[:3]), axis=1)[:, :77])
    result = run(src, out, "--tile", "64")
    assert result.exit_code == 0, result.output
    assert Image.open(out / "big.png").size == (420, 336)
    assert Image.open(out / "tiny.png").size == (3, 5)
    assert Image.open(out / "wide.png").size == (77, 28)
    # Tiles overlap by at least the model's receptive radius (--tile 64 is raised so they can),
    # on its pooling grid: the tiled result equals the whole-image one (up to float rounding,
    # so one grey level at most; a capped overlap gave 2 here).
    whole = tmp_path / "whole"
    assert run(src, whole, "--tile", "1024").exit_code == 0
    tiled = np.asarray(Image.open(out / "big.png"), dtype=int)
    assert np.abs(tiled - np.asarray(Image.open(whole / "big.png"), dtype=int)).max() <= 1


# --- polarity ----------------------------------------------------------------------------


def test_balanced_tiles_are_few_and_barely_larger_than_needed():
    """Tiles of at most `limit` pixels, as few as that allows, each only as large as covering
    the image takes: a 640-pixel side at limit 512 is two 356-pixel tiles, not two of 512."""
    from denoise_cli.model.tiling import balanced_tile, plan_tiles

    overlap, multiple = 36, 4
    for limit in (128, 512, 1024):
        for length in range(4, 3000, 52):
            side = balanced_tile(length, limit, overlap, multiple)
            assert side <= max(limit, length) and (side == length or side % multiple == 0)
            if length <= limit:
                assert side == length
                continue
            tiles = plan_tiles(length, length, side, side, overlap)
            per_axis = int(len(tiles) ** 0.5)
            fewest = -(-(length - 2 * overlap) // (limit - 2 * overlap))
            assert per_axis == fewest
            assert per_axis * side <= length + 2 * overlap * (per_axis - 1) + per_axis * multiple
    assert balanced_tile(640, 512, 36, 4) == 356


def test_dark_on_light_is_handled_by_auto(tmp_path, noisy_digits, clean_digits):
    """A light-on-dark model sees dark-on-light images inverted (exactly); the default, trained
    on both polarities (metadata `polarity: either`), turns these too: their paper sits at the
    white clip (see polarity.WHITE_CLIP_SHARE), so they come out as good as upright digits."""
    src, out, native = tmp_path / "in", tmp_path / "out", tmp_path / "native"
    for i in range(4):
        save_gray(src / "light" / f"{i}.png", noisy_digits[i])
        save_gray(src / "dark" / f"{i}.png", 1.0 - noisy_digits[i])
    assert run(src, out, "--model", "unet_scenes").exit_code == 0
    for i in range(4):
        light = load_gray(out / "light" / f"{i}.png")
        dark = load_gray(out / "dark" / f"{i}.png")
        np.testing.assert_allclose(1.0 - dark, light, atol=1.5 / 255)
        assert load_gray(out / "dark" / f"{i}.png").mean() > 0.5  # still dark ink on white
    assert run(src, native).exit_code == 0
    light = np.stack([load_gray(native / "light" / f"{i}.png") for i in range(4)])
    dark = np.stack([load_gray(native / "dark" / f"{i}.png") for i in range(4)])
    light_db = psnr(clean_digits[:4], light).mean()
    dark_db = psnr(1.0 - clean_digits[:4], dark).mean()
    noisy_db = psnr(1.0 - clean_digits[:4], 1.0 - noisy_digits[:4]).mean()
    assert light_db > 18 and dark_db > 18 and dark_db > noisy_db + 5, (light_db, dark_db)
    np.testing.assert_allclose(1.0 - dark, light, atol=1.5 / 255)  # the same pixels, turned


def test_invert_no_and_yes(tmp_path, noisy_digits, clean_digits):
    src = tmp_path / "in"
    save_gray(src / "x.png", 1.0 - noisy_digits[0])
    assert run(src, tmp_path / "no", "--invert", "no").exit_code == 0
    assert run(src, tmp_path / "yes", "--invert", "yes").exit_code == 0
    target = 1.0 - clean_digits[0]
    assert (
        psnr(target, load_gray(tmp_path / "yes" / "x.png"))[0]
        > psnr(target, load_gray(tmp_path / "no" / "x.png"))[0] + 3
    )


# --- bad input ---------------------------------------------------------------------------


def test_broken_files_fail_alone(tmp_path, noisy_digits):
    src, out = tmp_path / "in", tmp_path / "out"
    save_gray(src / "good1.png", noisy_digits[0])
    save_gray(src / "sub" / "good2.png", noisy_digits[1])
    (src / "empty.png").write_bytes(b"")
    (src / "garbage.jpg").write_bytes(b"this is not a jpeg at all")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(buf, format="PNG")
    (src / "sub" / "truncated.png").write_bytes(buf.getvalue()[:60])
    (src / "notes.txt").write_text("not an image")
    report = tmp_path / "report.json"
    result = run(src, out, "--report", report)
    assert result.exit_code == 1
    assert "2 written, 3 failed" in result.output and "1 skipped" in result.output
    assert "empty.png: empty file" in result.output
    assert "garbage.jpg: cannot decode: not a recognised image" in result.output
    assert "sub/truncated.png: cannot decode" in result.output
    assert files_under(out) == ["good1.png", "sub/good2.png"]
    data = json.loads(report.read_text())
    assert data["written"] == 2 and data["failed"] == 3 and data["skipped_other"] == 1
    assert {f["file"] for f in data["failures"]} == {
        "empty.png",
        "garbage.jpg",
        "sub/truncated.png",
    }
    assert data["provider"] == "CPUExecutionProvider" and "unet_world" in data["model"]


def test_decompression_bomb_guard(tmp_path, noisy_digits):
    src, out = tmp_path / "in", tmp_path / "out"
    save_gray(src / "x.png", noisy_digits[0])
    result = run(src, out, "--max-pixels", "500")
    assert result.exit_code == 1
    assert "x.png: 28x28 = 784 pixels is over the limit of 500" in result.output


def test_symlink_out_of_tree_is_not_followed(tmp_path, noisy_digits):
    src, out = tmp_path / "in", tmp_path / "out"
    outside = save_gray(tmp_path / "secret" / "s.png", noisy_digits[0])
    save_gray(src / "ok.png", noisy_digits[1])
    (src / "link.png").symlink_to(outside)
    (src / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    result = run(src, out)
    assert result.exit_code == 0, result.output
    assert files_under(out) == ["ok.png"]
    assert "2 skipped" in result.output


# --- reruns, interrupts, folder rules -------------------------------------------------------


def test_rerun_skips_and_overwrite_redoes(tree):
    src, out = tree
    assert run(src, out).exit_code == 0
    stamp = (out / "d0.png").stat().st_mtime_ns
    again = run(src, out)
    assert again.exit_code == 0 and "0 written" in again.output and "6 already done" in again.output
    assert (out / "d0.png").stat().st_mtime_ns == stamp
    redo = run(src, out, "--overwrite")
    assert redo.exit_code == 0 and "6 written" in redo.output


def test_interrupt_leaves_no_partial_file_and_resume_finishes(tmp_path, noisy_digits, monkeypatch):
    from denoise_cli.run import transforms

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(40):
        save_gray(src / f"{i:02d}.png", noisy_digits[i % 16])
    calls = {"n": 0}
    real_call = transforms.DenoiseTransform.__call__

    def interrupt_on_third_batch(self, images, jobs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_call(self, images, jobs)

    monkeypatch.setattr(transforms.DenoiseTransform, "__call__", interrupt_on_third_batch)
    args = ("--batch-size", "8", "--workers", "1")  # in-process: an exact count to check
    result = run(src, out, *args, "--report", tmp_path / "r.json")
    assert result.exit_code == 130
    assert "interrupted (SIGINT) after 16 written" in result.output
    partial = json.loads((tmp_path / "r.json").read_text())
    assert partial["interrupted"] is True and partial["written"] == 16
    done = files_under(out)
    assert len(done) == 16  # two batches of 8, complete
    assert not list(out.rglob("*.denoise-tmp"))
    for name in done:
        Image.open(out / name).load()  # every file is whole

    monkeypatch.setattr(transforms.DenoiseTransform, "__call__", real_call)
    resumed = run(src, out, "--batch-size", "8")
    assert resumed.exit_code == 0
    assert "24 written" in resumed.output and "16 already done" in resumed.output
    assert len(files_under(out)) == 40


def test_interrupt_with_helper_processes_counts_what_is_on_disk(
    tmp_path, noisy_digits, monkeypatch
):
    """Ctrl-C in the parent while helpers work: they finish their file and report; the report
    counts exactly the files on disk, none partial, and a rerun finishes the rest."""
    import multiprocessing

    from denoise_cli.run import transforms

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(80):
        save_gray(src / f"{i:02d}.png", noisy_digits[i % 16])
    calls = {"n": 0}
    real_call = transforms.DenoiseTransform.__call__

    def interrupt_parent_on_second_batch(self, images, jobs):
        if multiprocessing.parent_process() is None:  # helpers (forked copies) work normally
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return real_call(self, images, jobs)

    monkeypatch.setattr(transforms.DenoiseTransform, "__call__", interrupt_parent_on_second_batch)
    result = run(src, out, "--batch-size", "8", "--workers", "2", "--report", tmp_path / "r.json")
    assert result.exit_code == 130
    partial = json.loads((tmp_path / "r.json").read_text())
    done = files_under(out)
    assert partial["interrupted"] is True and partial["written"] == len(done) >= 8
    assert not list(out.rglob("*.denoise-tmp"))
    for name in done:
        Image.open(out / name).load()

    monkeypatch.setattr(transforms.DenoiseTransform, "__call__", real_call)
    resumed = run(src, out, "--batch-size", "8")
    assert resumed.exit_code == 0 and f"{len(done)} already done" in resumed.output
    assert len(files_under(out)) == 80


def test_out_inside_in_is_refused(tmp_path, noisy_digits):
    """OUT inside IN could land outputs on inputs (IN/sub holding inputs): refused, even when
    reached through a symlink that hides it."""
    src = tmp_path / "in"
    save_gray(src / "x.png", noisy_digits[0])
    save_gray(src / "sub" / "x.png", noisy_digits[1])
    before = tree_hash(src)
    (tmp_path / "alias").symlink_to(src / "sub")
    for out in (src / "sub", src / "new", tmp_path / "alias"):
        result = run(src, out, "--overwrite")
        assert result.exit_code == 2, result.output
        assert "inside the input folder" in result.output
    assert tree_hash(src) == before


@pytest.mark.parametrize("layout", ["same", "in-inside-out", "missing"])
def test_folder_usage_errors(tmp_path, noisy_digits, layout):
    save_gray(tmp_path / "data" / "in" / "x.png", noisy_digits[0])
    src, out = {
        "same": (tmp_path / "data" / "in", tmp_path / "data" / "in"),
        "in-inside-out": (tmp_path / "data" / "in", tmp_path / "data"),
        "missing": (tmp_path / "nope", tmp_path / "out"),
    }[layout]
    result = run(src, out)
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert files_under(tmp_path) == ["data/in/x.png"]


# --- models and devices --------------------------------------------------------------------


def test_bad_models_are_refused_before_any_image(tree):
    src, out = tree
    missing = run(src, out, "--model", src / "nope.onnx")
    assert missing.exit_code == 3 and "nope.onnx: model file not found" in missing.output
    corrupt = src.parent / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage")
    bad = run(src, out, "--model", corrupt)
    assert bad.exit_code == 3 and "corrupt.onnx: not a loadable ONNX/ORT model" in bad.output
    assert not out.exists()


def test_a_bad_model_is_one_line_with_helpers_started_early(tmp_path, noisy_digits):
    """Helpers fork before the parent loads the model (they load theirs meanwhile): with a
    corrupt model, the parent's one-line refusal is all stderr says, in a real process whose
    helpers print to the same stderr; nothing is written."""
    from tests.helpers import start_cli

    src = tmp_path / "in"
    for i in range(12):
        save_gray(src / f"{i}.png", noisy_digits[i])
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage")
    args = [str(src), str(tmp_path / "out"), "--model", str(corrupt), "--workers", "2"]
    proc = start_cli([*args, "--batch-size", "2"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3
    assert err.strip().count("\n") == 0 and "not a loadable ONNX/ORT model" in err, err
    assert not (tmp_path / "out").exists()


def test_which_helpers_fork_before_the_session():
    """CPU and OpenVINO sessions are built in every process, so helpers may fork before the
    parent's exists; GPU providers keep the spawn-after-load path."""
    from denoise_cli.core.errors import ProviderError
    from denoise_cli.run.job import Denoise, Noisify

    assert not Denoise(device="cpu").forks_early()  # not known before the run places it
    assert Denoise(device="cpu").placed().forks_early() and Noisify().placed().forks_early()
    try:
        cuda = Denoise(device="cuda").placed()
    except ProviderError:
        pass  # not available here: refused once, before any helper starts
    else:
        assert not cuda.forks_early()  # a GPU: helpers spawn after the session loaded


def test_a_run_decides_its_placement_once_and_helpers_load_it(tmp_path):
    """The provider, precision file and fork policy are decided once, in the driver, and travel
    with the Job: a helper loads the file the Placement names, never re-resolving."""
    from denoise_cli.model.bundled import bundled_models
    from denoise_cli.run.job import Denoise

    spec = Denoise("unet_scenes", device="cpu", precision="int8").placed()
    assert spec.placement.model_file.endswith("unet_scenes.int8.onnx")
    assert spec.placement.providers == ("CPUExecutionProvider",)
    assert spec.placed() is spec  # placed once
    transform = spec.build(threads=1)
    assert transform.denoiser.placement.model_file == spec.placement.model_file
    assert transform.fork_safe and spec.forks_early()
    auto = Denoise(bundled_models()["unet_scenes"]).placed()
    assert auto.placement.model_file.endswith("unet_scenes.onnx")  # fp32 on the CPU provider


def test_a_placement_never_stands_for_another_model_or_device():
    from denoise_cli.core.errors import UsageError
    from denoise_cli.model.placement import place
    from denoise_cli.model.session import Denoiser
    from denoise_cli.run.job import Denoise

    world = place("unet_world", "cpu")
    assert Denoiser("unet_world", "cpu", placement=world).placement.model_file == world.model_file
    with pytest.raises(UsageError, match="placement"):
        Denoiser("unet_scenes", placement=world)
    with pytest.raises(UsageError, match="placement"):
        Denoiser(device="cuda", placement=world)
    spec = Denoise("unet_world", device="cpu").placed()
    with pytest.raises(UsageError, match="placement"):
        dataclasses.replace(spec, model="unet_scenes")  # a stale placement is refused


def test_a_provider_that_falls_back_under_auto_runs_with_the_cpus_rules():
    """device auto: a GPU provider that does not load (here: not in this onnxruntime) leaves
    the CPU, and the session then batches and forks as a CPU session does."""
    from denoise_cli.model.placement import CPU_BATCH_PIXELS, Placement, place
    from denoise_cli.model.session import Denoiser

    cpu = place("unet_world", "cpu")
    gpu = Placement(
        cpu.model_file, "auto", ("CUDAExecutionProvider", "CPUExecutionProvider"), "auto"
    )
    assert gpu.batch_pixels > CPU_BATCH_PIXELS and not gpu.forks_after_load
    with warnings.catch_warnings():  # onnxruntime warns that it has no CUDA here
        warnings.simplefilter("ignore")
        denoiser = Denoiser(placement=gpu)
    if denoiser.provider == "CPUExecutionProvider":
        assert denoiser.placement.providers == ("CPUExecutionProvider",)
        assert denoiser.max_batch_pixels == CPU_BATCH_PIXELS
        assert denoiser.placement.forks_after_load


def test_a_driver_refuses_what_its_actors_could_not_run():
    """What a Ray driver checks on its own CPU before any actor starts: a device name that no
    onnxruntime has, an INT8 file that is not there, a model that is not image-to-image."""
    from denoise_cli.core.errors import ModelError, ProviderError
    from denoise_cli.run.job import Denoise

    assert "unet_world" in Denoise(device="cuda").describe_model()["model"]  # maybe elsewhere
    with pytest.raises(ProviderError, match="not a device name"):
        Denoise(device="cdua").describe_model()
    with pytest.raises(ModelError, match="no INT8 file"):
        Denoise("conv_denoiser", precision="int8").describe_model()


def test_a_small_tile_still_overlaps_by_the_receptive_radius():
    from denoise_cli.model.session import Denoiser

    denoiser = Denoiser("unet_world", "cpu", tile=64)
    th, tw, overlap, _ = denoiser.tile_plan(336, 420)
    assert overlap >= denoiser.info.receptive_radius and min(th, tw) >= 2 * overlap


def _tiny_model(path: Path, in_shape, out_shape, op="Identity"):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], **({"axes": [1]} if op == "ReduceMean" else {}))],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_incompatible_models_are_refused(tree):
    src, out = tree
    rank3 = _tiny_model(src.parent / "rank3.onnx", ["n", 28, 28], ["n", 28, 28])
    result = run(src, out, "--model", rank3)
    assert result.exit_code == 3 and "needs (N, 1, H, W)" in result.output
    rgb = _tiny_model(src.parent / "rgb.onnx", ["n", 3, "h", "w"], ["n", 3, "h", "w"])
    result = run(src, out, "--model", rgb)
    assert result.exit_code == 3 and "incompatible model: input shape" in result.output
    assert not out.exists()


def test_foreign_identity_model_runs(tree, noisy_digits):
    src, out = tree
    ident = _tiny_model(src.parent / "id.onnx", ["n", 1, "h", "w"], ["n", 1, "h", "w"])
    assert run(src, out, "--model", ident).exit_code == 0
    np.testing.assert_allclose(load_gray(out / "d0.png"), load_gray(src / "d0.png"))


def test_openvino_device_matches_the_cpu_in_fp32(tmp_path, noisy_digits):
    """Where onnxruntime's OpenVINO build is installed (never beside the CPU one, so not in
    CI): the same outputs as the CPU provider, since it is pinned to FP32 (its bf16 default
    moved outputs by up to 0.14)."""
    import onnxruntime

    if "OpenVINOExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime's OpenVINO build is not installed ('denoise-batch[openvino]')")
    src = tmp_path / "in"
    for i in range(8):
        save_gray(src / f"{i}.png", noisy_digits[i])
    save_gray(src / "odd.png", noisy_digits[8][:13, :21])
    args = ["--device", "openvino", "--precision", "fp32", "--report", tmp_path / "ov.json"]
    ov = run(src, tmp_path / "ov", *args)
    assert ov.exit_code == 0, ov.output
    assert json.loads((tmp_path / "ov.json").read_text())["provider"] == "OpenVINOExecutionProvider"
    assert run(src, tmp_path / "cpu", "--device", "cpu").exit_code == 0
    for name in files_under(tmp_path / "cpu"):
        a, b = load_gray(tmp_path / "ov" / name), load_gray(tmp_path / "cpu" / name)
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6  # 8-bit outputs: at most one step apart
    # auto takes the verified INT8 file there (measured faster), and says so; two spawned
    # workers, each with its own one-thread OpenVINO session
    args = ["--device", "openvino", "--workers", "2", "--batch-size", "2"]
    auto = run(src, tmp_path / "auto", *args, "--report", tmp_path / "a.json")
    assert auto.exit_code == 0, auto.output
    report = json.loads((tmp_path / "a.json").read_text())
    assert "int8" in report["model"] and report["workers"] == 2 and report["written"] == 9


def test_precision_picks_the_int8_file_only_where_it_is_faster(tmp_path, noisy_digits):
    """On the CPU provider auto keeps fp32 (INT8 measured slower there); int8 asks for the
    verified INT8 export beside the model, and is refused where there is none."""
    import onnxruntime

    if "OpenVINOExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("auto picks INT8 with onnxruntime's OpenVINO build")
    src = tmp_path / "in"
    for i in range(6):
        save_gray(src / f"{i}.png", noisy_digits[i])
    reports = {}
    for precision in ("auto", "fp32", "int8"):
        report = tmp_path / f"{precision}.json"
        args = ["--device", "cpu", "--precision", precision, "--report", report]
        result = run(src, tmp_path / precision, *args)
        assert result.exit_code == 0, result.output
        reports[precision] = json.loads(report.read_text())["model"]
    assert "int8" not in reports["auto"] and reports["auto"] == reports["fp32"]
    assert "unet_world int8-qdq-per-channel" in reports["int8"]
    assert "unet_world.int8.onnx" in reports["int8"]
    for name in files_under(tmp_path / "fp32"):
        a, b = load_gray(tmp_path / "int8" / name), load_gray(tmp_path / "fp32" / name)
        assert np.abs(a - b).mean() < 0.02  # the same image, within INT8's rounding
    refused = run(src, tmp_path / "x", "--model", "conv_denoiser", "--precision", "int8")
    assert refused.exit_code == 3 and "no INT8 file beside it (conv_denoiser.int8.onnx" in (
        refused.output
    )
    assert "unet_world.int8" not in run_tool("info").output  # a variant, not a model


@pytest.mark.parametrize(
    ("device", "provider", "extra"),
    [
        ("cuda", "CUDAExecutionProvider", "gpu"),
        ("openvino", "OpenVINOExecutionProvider", "openvino"),
    ],
)
def test_a_device_whose_build_is_not_installed_is_an_error(tree, device, provider, extra):
    import onnxruntime

    if provider in onnxruntime.get_available_providers():
        pytest.skip(f"this machine has {provider}")
    src, out = tree
    result = run(src, out, "--device", device)
    assert result.exit_code == 3
    assert f"device {device}: {provider} is not available" in result.output
    assert f"denoise-batch[{extra}]" in result.output
    assert not out.exists()


def test_auto_device_says_what_it_picked(tree):
    src, out = tree
    result = run(src, out)
    assert "provider: CPUExecutionProvider" in result.output


def test_jsonl_events(tree):
    src, out = tree
    result = run(src, out, "--jsonl")
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert sum(e["event"] == "written" for e in events) == 6
    assert events[-1]["written"] == 6


def test_jsonl_starts_with_start_and_names_files_as_written_does(tree):
    """Planning runs ahead of the model's loading: its skips and finished outputs come after
    `start` all the same, and every event names a file relative to IN."""
    src, out = tree
    (src / "a" / "notes.txt").write_text("not an image")
    (src / "a" / "scan").write_bytes((src / "d0.png").read_bytes())  # a PNG without its name
    first = run(src, out, "--jsonl")
    assert first.exit_code == 0, first.output
    (out / "a" / "d1.png").unlink()
    again = run(src, out, "--jsonl")
    events = [json.loads(line) for line in again.stdout.splitlines()]
    assert [e["event"] for e in events][:1] + [e["event"] for e in events][-1:] == ["start", "done"]
    by_kind = {k: [e["file"] for e in events if e["event"] == k] for k in ("skipped", "written")}
    assert by_kind == {"skipped": ["a/notes.txt", "a/scan"], "written": ["a/d1.png"]}
    assert sorted(e["file"] for e in events if e["event"] == "exists") == [
        "a/b/d2.png", "a/b/d5.png", "a/d4.png", "d0.png", "d3.png"
    ]  # fmt: skip
    report = tree[1].parent / "r.json"
    run(src, out, "--quiet", "--report", report)
    assert json.loads(report.read_text())["skipped"] == [
        {"file": "a/notes.txt", "reason": "not an image file"},
        {"file": "a/scan", "reason": "no file extension: not read as an image"},
    ]


def test_events_held_before_start_stay_bounded(monkeypatch):
    """Held events cost memory: past the limit they flow as found rather than pile up."""
    from denoise_cli.core import report as report_module

    monkeypatch.setattr(report_module, "MAX_HELD_EVENTS", 3)
    seen: list[str] = []
    recorder = report_module.Recorder(
        report_module.RunReport("in", "out"), lambda e: seen.append(e.get("file", e["event"]))
    )
    for name in "abcde":
        recorder.skipped(name, "not an image file")
    assert seen == ["a", "b", "c", "d"]  # the fourth passed the limit: all four flowed
    recorder.started({}, 1, 1)
    recorder.skipped("f", "not an image file")
    assert seen == ["a", "b", "c", "d", "start", "e", "f"]


def test_quiet_prints_nothing_on_success(tree):
    src, out = tree
    result = run(src, out, "--quiet")
    assert result.exit_code == 0 and result.output == ""


# --- companions and API ----------------------------------------------------------------------


def test_noisify_then_score(tmp_path, clean_digits):
    clean = tmp_path / "clean"
    for i in range(8):
        save_gray(clean / ("x" if i % 2 else "") / f"{i}.png", clean_digits[i])
    noisy, out = tmp_path / "noisy", tmp_path / "out"
    result = run_tool("noisify", clean, noisy, "--level", "0.5", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert files_under(noisy) == files_under(clean)
    again = tmp_path / "noisy2"
    run_tool("noisify", clean, again, "--level", "0.5", "--seed", "3")
    for name in files_under(noisy):
        assert (noisy / name).read_bytes() == (again / name).read_bytes()  # seeded per file

    assert run(noisy, out).exit_code == 0
    scored = run_tool("score", out, clean, "--json", tmp_path / "s.json")
    assert scored.exit_code == 0, scored.output
    base = json.loads(json.dumps(run_tool("score", noisy, clean).stdout))
    data = json.loads((tmp_path / "s.json").read_text())
    assert [f["folder"] for f in data["folders"]] == [".", "x"]
    assert data["overall"]["images"] == 8
    assert data["overall"]["psnr"] > 15 and "| (all) | 8 |" in base


def test_score_reports_missing_results(tmp_path, clean_digits):
    clean, results = tmp_path / "clean", tmp_path / "res"
    save_gray(clean / "a.png", clean_digits[0])
    save_gray(clean / "b.png", clean_digits[1])
    save_gray(results / "a.png", clean_digits[0])
    result = run_tool("score", results, clean)
    assert result.exit_code == 1 and "missing: b.png" in result.output


def test_info_describes_the_bundled_model():
    result = run_tool("info")
    assert result.exit_code == 0
    assert "architecture: unet_lite_gs" in result.output and "model: unet_world (" in result.output
    assert "polarity: either" in result.output
    assert "selected provider: CPUExecutionProvider" in result.output


def test_python_api(tmp_path, noisy_digits, clean_digits):
    from denoise_cli.model.session import Denoiser
    from denoise_cli.run.job import Job
    from denoise_cli.run.runners import denoise_tree

    d = Denoiser(device="cpu", threads=1)
    outs = d.denoise([noisy_digits[0], noisy_digits[1][:20, :25], 1.0 - noisy_digits[2]])
    assert [o.shape for o in outs] == [(28, 28), (20, 25), (28, 28)]
    assert psnr(clean_digits[0], outs[0])[0] > 15
    assert psnr(1.0 - clean_digits[2], outs[2])[0] > 15  # auto polarity
    batch = d.run(noisy_digits[:4, None])
    assert batch.shape == (4, 1, 28, 28) and batch.dtype == np.float32

    src = tmp_path / "in"
    save_gray(src / "a.png", noisy_digits[0])
    report = denoise_tree(src, tmp_path / "out", Job(max_chunk_files=4), device="cpu")
    assert report.written == 1 and report.failed == 0
    assert report.to_dict()["provider"] == "CPUExecutionProvider"


# --- worker processes ------------------------------------------------------------------------


def test_worker_processes_give_the_same_bytes(tmp_path, noisy_digits):
    src = tmp_path / "in"
    for i in range(70):
        save_gray(src / f"{i % 3}" / f"{i:03d}.png", noisy_digits[i % 16])
    (src / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    report = tmp_path / "r.json"
    pooled = run(
        src, tmp_path / "pooled", "--workers", "2", "--batch-size", "8", "--report", report
    )
    assert pooled.exit_code == 1
    assert "1/broken.png: cannot decode" in pooled.output
    data = json.loads(report.read_text())
    assert data["workers"] == 2 and data["written"] == 70 and data["failed"] == 1
    local = run(src, tmp_path / "local", "--workers", "1")
    assert local.exit_code == 1
    assert files_under(tmp_path / "pooled") == files_under(tmp_path / "local")
    for name in files_under(tmp_path / "local"):
        assert (tmp_path / "pooled" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


@pytest.mark.parametrize("name", ["unet_scenes", "unet_scenes_wide", "conv_denoiser"])
def test_bundled_models_by_name(tmp_path, noisy_digits, clean_digits, name):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(4):
        save_gray(src / f"{i}.png", noisy_digits[i])
    save_gray(src / "odd.png", noisy_digits[4][:13, :9])
    save_gray(src / "inverted.png", 1.0 - noisy_digits[5])
    result = run(src, out, "--model", name)
    assert result.exit_code == 0, result.output
    assert name in result.output
    scores = [psnr(clean_digits[i], load_gray(out / f"{i}.png"))[0] for i in range(4)]
    assert np.mean(scores) > 18
    assert load_gray(out / "odd.png").shape == (13, 9)
    assert psnr(1.0 - clean_digits[5], load_gray(out / "inverted.png"))[0] > 15


def test_info_lists_bundled_models():
    result = run_tool("info", "--model", "unet_scenes")
    assert result.exit_code == 0
    assert "size_multiple: 4" in result.output
    listed = "bundled models (--model NAME): conv_denoiser, unet_scenes, unet_scenes_wide"
    listed += ", unet_world (default: unet_world)"
    assert listed in result.output
    default = run_tool("info", "--model", "default")
    assert default.exit_code == 0 and "model: unet_world (" in default.output


def test_a_dying_worker_costs_its_chunk_not_the_run(tmp_path, noisy_digits):
    """A chunk whose helper dies is retried once on another helper, then its files fail with
    how the helper ended; every other file is written, and the counts add up."""
    from denoise_cli.run.job import Job
    from denoise_cli.run.runners import run_job
    from tests.helpers import Crashing

    src, out = tmp_path / "in", tmp_path / "out"
    save_gray(src / "000-crash.png", noisy_digits[0])
    for i in range(1, 40):
        save_gray(src / f"{i:03d}.png", noisy_digits[i % 16])
    job = Job(Crashing(), workers=2, max_chunk_files=4)  # type: ignore[arg-type]
    report = run_job(job, src, out)
    lost = {f.file for f in report.failures}
    assert "000-crash.png" in lost
    assert all(f.error.startswith("a worker process died (exit status 3)") for f in report.failures)
    assert report.written + report.failed == 40 and report.written >= 40 - 4
    assert report.unfinished == 0
    assert len(files_under(out)) == report.written
    rerun = run_job(job.with_(workers=1), src, out)
    assert rerun.written == report.failed and rerun.failed == 0  # in-process: no crash


def test_files_a_dying_worker_wrote_count_as_written(tmp_path, noisy_digits):
    """A helper dies on the second file of its chunk, twice: the first file, written whole
    (an atomic rename) before each death, counts as written, not failed with the chunk; only
    the file that kills fails, and the report matches the disk."""
    from denoise_cli.run.job import Job
    from denoise_cli.run.runners import run_job
    from tests.helpers import Crashing

    src, out = tmp_path / "in", tmp_path / "out"
    save_gray(src / "000.png", noisy_digits[0])
    rng = np.random.default_rng(0)
    save_gray(src / "001-crash.png", rng.random((30, 30)))  # its own batch, after 000.png's
    for i in range(2, 12):
        save_gray(src / f"{i:03d}.png", noisy_digits[i % 16])
    job = Job(Crashing(), workers=2, threads=1, max_chunk_files=2)  # type: ignore[arg-type]
    report = run_job(job, src, out)
    assert [f.file for f in report.failures] == ["001-crash.png"]
    assert (report.written, report.failed, report.unfinished) == (11, 1, 0)
    assert "000.png" in files_under(out) and len(files_under(out)) == 11


def test_a_helper_that_cannot_load_the_model_costs_nothing(tmp_path, noisy_digits):
    """A helper whose build fails where the parent's worked (memory, say): its chunks go to
    the others, replacements are tried a few times, then the parent does the work; the run
    says why in one line, and every file is written."""
    from denoise_cli.run.job import Job
    from denoise_cli.run.runners import run_job
    from tests.helpers import FailsInHelpers

    src = tmp_path / "in"
    for i in range(60):
        save_gray(src / f"{i:02d}.png", noisy_digits[i % len(noisy_digits)])
    events = []
    job = Job(FailsInHelpers(), workers=2, max_chunk_files=2)  # type: ignore[arg-type]
    report = run_job(job, src, tmp_path / "out", on_event=events.append)
    assert report.written == 60 and report.failed == 0 and report.unfinished == 0
    assert len(files_under(tmp_path / "out")) == 60
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert warnings == ["a worker process could not load the model: RuntimeError: out of memory"]


def test_the_end_of_a_run_comes_in_small_chunks():
    """Whole chunks at the end left one worker idle while another finished its queue: the
    last chunks of a run come a quarter the size; every file once, in order; a run of one
    chunk stays one chunk (one worker, no helper to start)."""
    from denoise_cli.run.runners import _chunks

    files = list(range(3000))
    chunks = list(_chunks(iter(files), 256, lookahead=4))  # type: ignore[arg-type]
    assert [f for c in chunks for f in c] == files
    sizes = [len(c) for c in chunks]
    whole = [s for s in sizes if s == 256]
    assert sizes[: len(whole)] == whole and len(whole) == (3000 - 4 * 256) // 256
    assert all(s <= 64 for s in sizes[len(whole) :]) and sum(sizes[len(whole) :]) >= 4 * 256
    assert [len(c) for c in _chunks(iter(range(200)), 256)] == [200]  # type: ignore[arg-type]
    assert [len(c) for c in _chunks(iter(range(300)), 256)] == [64] * 4 + [44]  # type: ignore[arg-type]


def test_large_images_come_in_fewer_files_per_chunk(tmp_path):
    """A chunk is about CHUNK_BYTES of input: 200 pages in one 256-file chunk ran on one
    worker. Sized from the run's first files; files that cannot be sized change nothing."""
    from denoise_cli.run.runners import CHUNK_BYTES, choose_chunk_files
    from denoise_cli.trees.walk import FileJob

    def jobs(size: int, n: int = 4) -> list[FileJob]:
        out = []
        for i in range(n):
            path = tmp_path / f"{size}-{i}.png"
            path.write_bytes(b"\0" * size)
            out.append(FileJob(str(path), path.name, str(tmp_path / "out" / path.name)))
        return out

    size = os.path.getsize
    assert choose_chunk_files(jobs(700), 256, size) == 256  # digits: the file limit
    assert choose_chunk_files(jobs(CHUNK_BYTES // 3), 256, size) == 3  # pages: three per chunk
    assert choose_chunk_files(jobs(CHUNK_BYTES * 5), 256, size) == 1
    gone = [FileJob(str(tmp_path / "gone.png"), "gone.png", str(tmp_path / "o.png"))]
    assert choose_chunk_files(gone, 256, size) == 256 and choose_chunk_files([], 64, size) == 64
    assert choose_chunk_files(jobs(CHUNK_BYTES * 5), 256, None) == 256  # a tree without sizes


def test_openvino_threads_are_set_and_not_pinned():
    """OpenVINO keeps its own thread pool (onnxruntime's thread count does not reach it) and
    pins it to the same cores in every worker process: two one-thread workers shared a core.
    The options give it each worker's thread count and turn pinning off; other providers get
    only their fixed options."""
    from denoise_cli.model.placement import provider_options

    ov = provider_options("OpenVINOExecutionProvider", 1)
    assert ov["num_of_threads"] == "1" and ov["precision"] == "FP32"
    assert json.loads(ov["load_config"]) == {"CPU": {"ENABLE_CPU_PINNING": "NO"}}
    assert "num_of_threads" not in provider_options("OpenVINOExecutionProvider", None)
    assert provider_options("CPUExecutionProvider", 2) == {}


def test_helpers_fork_only_where_it_is_safe(monkeypatch):
    """CPU sessions fork (no import cost per helper); anything else, or another OS, spawns."""
    from denoise_cli.run import runners
    from denoise_cli.run.job import Denoise, Noisify
    from denoise_cli.run.transforms import DenoiseTransform, NoiseTransform
    from tests.helpers import CrashingTransform

    cpu = DenoiseTransform(Denoise(device="cpu"), threads=1)
    noise = NoiseTransform(Noisify("gaussian", 0.5))
    monkeypatch.setattr(runners.sys, "platform", "linux")
    assert runners.start_method(cpu) == "fork"
    assert runners.start_method(noise) == "fork"
    assert runners.start_method(CrashingTransform(os.getpid())) == "spawn"
    cpu.fork_safe = False  # what a CUDA session says: its context cannot cross a fork
    assert runners.start_method(cpu) == "spawn"
    monkeypatch.setattr(runners.sys, "platform", "darwin")
    assert runners.start_method(noise) == "spawn"


def test_a_mistyped_command_is_named_as_one(tmp_path, monkeypatch):
    """`denoise-batch scroe OUT CLEAN` was read as IN 'scroe' ("unexpected extra argument");
    denoise-export's twin: tests/test_export.py."""
    monkeypatch.chdir(tmp_path)
    result = run("scroe", "out", "clean")
    assert result.exit_code == 2
    assert result.output.strip() == "error: scroe: no such command or input (did you mean 'score'?)"
    (tmp_path / "scroe").mkdir()  # a folder by that name is an input like any other
    assert "did you mean" not in run("scroe", "out").output


def test_a_tile_past_4096_is_refused_before_any_work(tmp_path, noisy_digits):
    # --tile 100000 ran a 9-megapixel image as one 2 GB tile, slower than 2048's tiles.
    src = tmp_path / "in"
    src.mkdir()
    save_gray(src / "a.png", noisy_digits[0])
    result = run(src, tmp_path / "out", "--tile", "100000")
    assert result.exit_code == 2 and "100000 is not in the range 32<=x<=4096" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["IN"], "error: Missing argument 'OUT' (usage: denoise-batch run [OPTIONS] {IN} {OUT};"),
        (["IN", "OUT", "--tiel", "3"], "error: No such option: --tiel (Possible options:"),
        (["IN", "OUT", "--invert", "maybe"], "error: Invalid value for '--invert': 'maybe'"),
        (["info", "--model"], "error: Option '--model' requires an argument (usage: denoise-ba"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else None,
)
def test_a_usage_error_is_one_line_naming_the_command(tmp_path, args, said):
    # click printed three lines (usage, a hint, the error) where every other refusal is one.
    (tmp_path / "IN").mkdir()
    args = [str(tmp_path / a) if a in ("IN", "OUT") else a for a in args]
    result = CliRunner().invoke(app, args, prog_name="denoise-batch")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(said) and lines[0].endswith("; -h for help)"), lines[0]
