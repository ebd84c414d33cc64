"""A model, checkpoint or data set that is missing, unreadable or not what it claims is refused
before any work, in one line naming it, with exit 3 (README, "Exit codes"), by every command.

An audit (session 12) found the export commands printing tracebacks for a bad .onnx file
(`runtimes`, `tflite`, `report`, `compare`), `optimize` exiting 0 on an empty file and
silently ignoring a corrupt `--data-dir`, `download` approving truncated files, unreadable
files surfacing as exit 1 or as the parser's three-line usage text, and the bundled
conv_denoiser refused by `adapt --from`. Each test here fails on that code.
"""

from __future__ import annotations

import gzip
import re
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from typer.testing import CliRunner

from denoise_cli.cli import app as batch_app
from denoise_cli.model.bundled import bundled_models, default_model_path
from denoise_export.cli import app as export_app
from denoise_train import checkpoint
from denoise_train.cli import app as train_app
from tests.helpers import write_idx_set


def _run(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output and len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A text file and an empty file named .onnx, beside a real model."""
    root = tmp_path_factory.mktemp("bad-models")
    (root / "text.onnx").write_text("hello world")
    (root / "empty.onnx").write_bytes(b"")
    shutil.copy(default_model_path(), root / "good.onnx")
    return root


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    return write_idx_set(tmp_path_factory.mktemp("refusal-mnist"), n_train=64, n_test=64)


@pytest.mark.parametrize("name", ["text.onnx", "empty.onnx"])
def test_runtimes_refuses_a_bad_second_file_in_one_line(bad, mnist, name):
    result = _run(
        export_app, "runtimes", bad / "good.onnx", bad / name, "--data-dir", mnist,
        "--runtime", "onnxruntime", "--images", "8",
    )  # fmt: skip
    assert result.exit_code == 3
    assert f"{bad / name}: not a loadable ONNX/ORT model" in _one_error_line(result)


def test_runtimes_refuses_a_checkpoint_among_exported_files(bad, mnist, tmp_path):
    (tmp_path / "m.pt").write_bytes(b"PK\x03\x04")
    """A checkpoint where an exported file belongs is the wrong argument (2), as in foreign;
    it reached onnx's parser and a traceback."""
    result = _run(export_app, "runtimes", bad / "good.onnx", tmp_path / "m.pt", "--data-dir", mnist)
    assert result.exit_code == 2
    assert "m.pt: not an exported model (.onnx, .ort, .tflite)" in _one_error_line(result)


@pytest.mark.parametrize(
    "command",
    [
        ["tflite", "{bad}/text.onnx", "-o", "{tmp}/t.tflite"],
        ["optimize", "{bad}/text.onnx", "-o", "{tmp}/x.onnx"],
        ["optimize", "{bad}/empty.onnx", "-o", "{tmp}/x.onnx"],  # said "no rewrite", exit 0
        ["report", "{bad}/text.onnx", "--out-dir", "{tmp}/report"],
        ["compare", "{bad}/good.onnx", "--seed-model", "{bad}/text.onnx", "--out-dir", "{tmp}/c"],
    ],
    ids=lambda c: " ".join(c[:2]).replace("{bad}/", ""),
)
def test_export_commands_refuse_a_bad_onnx_file_before_any_work(bad, mnist, tmp_path, command):
    args = [a.format(bad=bad, tmp=tmp_path) for a in command]
    result = _run(export_app, *args, "--data-dir", mnist)
    assert result.exit_code == 3
    assert "not a loadable ONNX/ORT model" in _one_error_line(result)
    assert list(tmp_path.iterdir()) == []  # report made its folder before looking


def test_optimize_refuses_a_named_data_dir_whose_files_are_broken(bad, mnist, tmp_path):
    """It used to say "no MNIST test files found", check on random images and exit 0."""
    broken = tmp_path / "mnist"
    shutil.copytree(mnist, broken)
    images = broken / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:100])
    result = _run(export_app, "optimize", bad / "good.onnx", "-o", tmp_path / "x.onnx",
                  "--data-dir", broken)  # fmt: skip
    assert result.exit_code == 3
    assert "t10k-images-idx3-ubyte.gz: corrupt or truncated gzip data" in _one_error_line(result)
    assert not (tmp_path / "x.onnx").exists()


def test_foreign_names_a_misspelled_model_before_building_sets(mnist, tmp_path):
    result = _run(export_app, "foreign", "unet_wrold", "--out-dir", tmp_path / "f",
                  "--data-dir", mnist, "--limit", "2", "--set", "tiny")  # fmt: skip
    assert result.exit_code == 3
    line = _one_error_line(result)  # "built 1 foreign set(s)" used to come first
    assert "unet_wrold: no such model file or bundled model (bundled: " in line
    assert all(name in line for name in bundled_models())
    bundled = _run(export_app, "foreign", "conv_denoiser", "--out-dir", tmp_path / "g",
                   "--data-dir", mnist, "--limit", "2", "--bm3d-limit", "0",
                   "--set", "tiny")  # fmt: skip
    assert bundled.exit_code == 0, bundled.output  # a bundled name, as --model takes it


@pytest.mark.parametrize(
    ("model", "said"),
    [
        ("unet_wrold", "unet_wrold: no such model file or bundled model (bundled: conv_denoiser"),
        ("{tmp}", "{tmp}: a folder, not a model file"),
        ("", "an empty model name: give a model file or a bundled name"),
    ],
    ids=["misspelled", "folder", "empty"],
)
def test_denoise_batch_says_what_is_wrong_with_a_model_name(tmp_path, model, said):
    result = _run(batch_app, "info", "--model", model.format(tmp=tmp_path))
    assert result.exit_code == 3
    assert said.format(tmp=tmp_path) in _one_error_line(result)


def test_a_fifo_as_model_is_refused_not_waited_on(tmp_path):
    """Opening a FIFO to read blocks until a writer comes: the run hung before any work."""
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(tmp_path / "pipe.onnx")
    result = _run(batch_app, "info", "--model", tmp_path / "pipe.onnx")
    assert result.exit_code == 3
    assert "pipe.onnx: not a regular file" in _one_error_line(result)


def test_a_folder_named_like_a_bundled_model_does_not_hide_it(tmp_path, monkeypatch):
    """`denoise-batch scans unet_world --model unet_world`, run twice, found its own OUT."""
    (tmp_path / "unet_world").mkdir()
    monkeypatch.chdir(tmp_path)
    result = _run(batch_app, "info", "--model", "unet_world")
    assert result.exit_code == 0, result.output
    assert "models/unet_world.onnx" in result.output


def test_download_refuses_files_that_are_there_but_cut_short(mnist, tmp_path):
    """`download` approved any file of the right name: training then failed on it later."""
    cut = tmp_path / "mnist"
    shutil.copytree(mnist, cut)
    labels = cut / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-10]))
    result = _run(train_app, "download", "--data-dir", cut)
    assert result.exit_code == 3
    assert "train-labels-idx1-ubyte.gz" in _one_error_line(result)
    assert _run(train_app, "download", "--data-dir", mnist).exit_code == 0


def test_an_unreadable_checkpoint_is_refused_not_an_os_error(tmp_path, monkeypatch, mnist):
    """Read permission denied surfaced as exit 1 ("Permission denied") from a bare open()."""
    blocked = tmp_path / "blocked.pt"
    blocked.write_bytes(b"PK\x03\x04")

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint, "open", denied, raising=False)
    result = _run(train_app, "fit", "--dry-run", "--data-dir", mnist, "--out", tmp_path / "m.pt",
                  "--init-from", blocked)  # fmt: skip
    assert result.exit_code == 3
    assert f"{blocked}: cannot read the checkpoint (Permission denied)" in _one_error_line(result)


def test_unreadable_mnist_files_are_refused(tmp_path, monkeypatch, mnist):
    from pathlib import Path

    real = Path.read_bytes

    def denied(self):
        if self.name.endswith(".gz"):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    result = _run(train_app, "fit", "--dry-run", "--data-dir", mnist, "--out", tmp_path / "m.pt")
    assert result.exit_code == 3
    assert "-idx3-ubyte.gz: cannot read (Permission denied)" in _one_error_line(result)


def test_no_path_option_is_checked_for_readability_by_the_parser():
    """The parser's "Path '...' is not readable" was three lines of usage text and exit 2;
    the loaders say it in one line with the exit code of what the file is for."""
    import typer

    for app in (batch_app, train_app, export_app):
        group = typer.main.get_command(app)
        for name in group.list_commands(None):
            command = group.get_command(None, name)
            readable = [p.name for p in command.params if getattr(p.type, "readable", False)]
            assert readable == [], (name, readable)


def test_architecture_args_of_old_and_new_exports_parse():
    from denoise_train.onnx_import import parse_architecture_args

    assert parse_architecture_args('{"filters": [16, 8]}') == {"filters": [16, 8]}
    assert parse_architecture_args("filters=[16,8,8,16],upsample=nearest") == {
        "filters": [16, 8, 8, 16],
        "upsample": "nearest",
    }
    assert parse_architecture_args("") == {}
    # Old exports wrote str() of the values: tuples and booleans come back as such.
    assert parse_architecture_args("widths=(8, 16, 32),batch_norm=False") == {
        "widths": (8, 16, 32),
        "batch_norm": False,
    }
    for text in ("[1, 2]", "garbage", "filters=[16,8] junk"):
        with pytest.raises(ValueError):
            parse_architecture_args(text)


def _api_cases():
    import numpy as np

    img = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    nan = img.copy()
    nan[3, 4] = np.nan
    return [
        ("denoise", img, "one 40x50 image: give a list of images"),
        ("denoise", [(img * 255).astype(np.uint8)], "uint8 values up to 254"),  # 0-255 as 0-1
        ("denoise", [nan], "image 0: 1 values are NaN or infinite"),  # spread to 1,764 pixels
        # 0-255 floats came back as a white page
        ("denoise", [img, img * 255], "image 1: values from 0.0484504 to 254.873;"),
        ("denoise", [img * 255], "images are floats in [0, 1] (0-255 floats: divide by 255"),
        ("run", img, "run takes (N, 1, H, W) float32 images, got shape (40, 50)"),
    ]


@pytest.mark.parametrize(("method", "images", "said"), _api_cases(), ids=lambda c: str(c)[:20])
def test_the_api_names_what_is_wrong_with_images(method, images, said):
    """uint8 pixels were read as 0-255 "floats" (8 dB out), one NaN came back as a blotch."""
    from denoise_cli.api import Denoiser
    from denoise_cli.core.errors import UsageError

    with pytest.raises(UsageError, match=re.escape(said)):
        getattr(Denoiser(threads=1), method)(images)


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"threads": "2"}, "threads must be None or a whole number 1-1024, got '2'"),
        ({"threads": 10**6}, "threads must be None"),  # reserved ~41 GB of stacks and hung
        ({"device": None}, "device must be a name"),  # AttributeError on None.lower()
        ({"tile": 0}, "tile must be a whole number 32-4096 pixels, got 0"),
        ({"tile": 100_000}, "tile must be a whole number 32-4096 pixels, got 100000"),
        ({"overlap": -10}, "overlap must be a whole number of pixels >= 0"),
        ({"max_batch_pixels": -1}, "max_batch_pixels must be None or >= 1"),
    ],
    ids=lambda c: str(c)[:24],
)
def test_denoiser_settings_are_refused_by_name(settings, said):
    from denoise_cli.api import Denoiser
    from denoise_cli.core.errors import UsageError

    with pytest.raises(UsageError, match=re.escape(said)):
        Denoiser(**settings)


def test_a_mistyped_command_is_one_line_in_every_tool():
    """denoise-train said "No such command 'fi'. Did you mean 'fit'?" after a usage line."""
    cases = [
        (train_app, "fi", "error: fi: no such command (did you mean 'fit'?)"),
        (train_app, "xyz", "error: xyz: no such command (commands: list, download, fit"),
        (export_app, "exprot", "error: exprot: no such command or input (did you mean 'export'?)"),
    ]
    for app, typed, said in cases:
        result = _run(app, typed)
        assert result.exit_code == 2 and _one_error_line(result).startswith(said)
