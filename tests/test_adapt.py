"""`denoise-export adapt` on small folders made here: digits in Pillow's own default font at odd
sizes on tinted paper with Poisson-Gaussian noise, a domain no bundled model was trained on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from denoise_cli.core.errors import (  # noqa: E402
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    EXIT_USAGE,
    UsageError,
)
from denoise_cli.core.metrics import psnr  # noqa: E402
from denoise_cli.model.bundled import bundled_models, default_model_path  # noqa: E402
from denoise_cli.model.placement import int8_file  # noqa: E402
from denoise_cli.model.session import Denoiser  # noqa: E402
from denoise_export.adaptation import AdaptSettings, adapt, checkpoint_path  # noqa: E402
from denoise_export.cli import app  # noqa: E402
from denoise_train.noise_estimate import NoiseModel, estimate_noise, synthesize  # noqa: E402

SIDE = 44  # not a multiple of 8: crops and padding must cope
#: The domain's noise: var = 0.012 x + 0.0012 (sigma 0.035 at black, 0.11 at white).
NOISE = NoiseModel(0.012, 0.0012)
FAST = {"threads": 1, "batch_size": 8, "checkpoint_minutes": 60.0}


def draw_digits(rng: np.random.Generator) -> np.ndarray:
    """Dark digits in Pillow's default font at an odd size on tinted paper, gray (H, W)."""
    tint = tuple(int(v) for v in rng.integers(150, 230, 3))
    im = Image.new("RGB", (SIDE, SIDE), tint)
    text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(1, 3))))
    font = ImageFont.load_default(size=int(rng.choice([17, 21, 25])))
    ink = tuple(int(v) for v in rng.integers(10, 70, 3))
    ImageDraw.Draw(im).text((rng.integers(0, 10), rng.integers(-4, 10)), text, fill=ink, font=font)
    return np.asarray(im.convert("L"), np.float32) / 255.0


def _save(pixels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(pixels * 255).astype(np.uint8), "L").save(path)


@pytest.fixture(scope="module")
def domain(tmp_path_factory) -> Path:
    """noisy/ (80), clean/ (40, drawn apart), test pairs (24): all of the same domain."""
    root = tmp_path_factory.mktemp("pillow-digits")
    rng = np.random.default_rng(5)
    for i in range(80):
        _save(synthesize(draw_digits(rng), NOISE, rng), root / "noisy" / f"{i:03d}.png")
    for i in range(40):
        _save(draw_digits(rng), root / "clean" / f"{i:03d}.png")
    for i in range(24):
        clean = draw_digits(rng)
        _save(clean, root / "test_clean" / f"{i:03d}.png")
        _save(synthesize(clean, NOISE, rng), root / "test_noisy" / f"{i:03d}.png")
    return root


def test_psnr(model: Path, root: Path) -> float:
    """Mean PSNR of an ONNX model, run as denoise-batch runs it, on the domain's test pairs."""
    names = sorted(p.name for p in (root / "test_clean").glob("*.png"))
    read = lambda p: np.asarray(Image.open(p), np.float32) / 255.0  # noqa: E731
    clean = np.stack([read(root / "test_clean" / n) for n in names])
    noisy = [read(root / "test_noisy" / n) for n in names]
    out = np.stack(Denoiser(model, threads=1).denoise(noisy))
    return float(np.mean(psnr(clean, out)))


test_psnr.__test__ = False  # a helper, not a test


#: The base the adaptation tests start from: `unet_scenes`, trained on white-on-black digits
#: only, handles this domain badly (the wide-world default already does well on it: 31 dB).
BASE = "unet_scenes"


@pytest.fixture(scope="module")
def noisy_only(domain, tmp_path_factory):
    out = tmp_path_factory.mktemp("noisy-only") / "mine.onnx"
    settings = AdaptSettings(max_steps=60, lr=5e-4, **FAST)
    return adapt(domain / "noisy", out, base=BASE, settings=settings, log=lambda m: None), out


@pytest.fixture(scope="module")
def with_clean(domain, tmp_path_factory):
    out = tmp_path_factory.mktemp("with-clean") / "mine.onnx"
    settings = AdaptSettings(max_steps=60, lr=5e-4, **FAST)
    result = adapt(
        domain / "noisy", out, domain / "clean", base=BASE, settings=settings, log=lambda m: None
    )
    return result, out


def test_noise_estimate_finds_the_poisson_gaussian_model():
    rng = np.random.default_rng(0)
    ramps = [np.tile(np.linspace(0.05, 0.95, 64, dtype=np.float32), (64, 1)) for _ in range(20)]
    found = estimate_noise([synthesize(r, NOISE, rng) for r in ramps])
    assert found.signal_dependent and not found.clean
    assert abs(found.sigma(0.5) - NOISE.sigma(0.5)) < 0.15 * NOISE.sigma(0.5), found
    assert abs(found.sigma(0.1) - NOISE.sigma(0.1)) < 0.25 * NOISE.sigma(0.1), found
    gaussian = estimate_noise([synthesize(r, NoiseModel(0.0, 0.004), rng) for r in ramps])
    assert not gaussian.signal_dependent and abs(gaussian.sigma(0.5) - 0.063) < 0.01, gaussian
    assert estimate_noise(ramps).clean


def test_bundled_default_is_rebuilt_exactly_in_torch():
    from denoise_train.onnx_import import check_against_onnxruntime, model_from_onnx

    model, arch, args = model_from_onnx(default_model_path())
    assert arch and args
    assert check_against_onnxruntime(model, default_model_path(), size=48) < 1e-4


def test_a_fixed_shape_export_is_rebuilt_and_checked_at_its_shape(tmp_path):
    """adapt --from NAME.fixed-2x1x32x40.onnx failed in onnxruntime (fed 2x1x32x32)."""
    onnx = pytest.importorskip("onnx")
    from denoise_train.onnx_import import check_against_onnxruntime, model_from_onnx

    proto = onnx.load(str(default_model_path()))
    for tensor in (proto.graph.input[0], proto.graph.output[0]):
        for dim, value in zip(tensor.type.tensor_type.shape.dim, (2, 1, 32, 40), strict=True):
            dim.dim_value = value
    fixed = tmp_path / "m.fixed-2x1x32x40.onnx"
    onnx.save(proto, str(fixed))
    model, _, _ = model_from_onnx(fixed)
    assert check_against_onnxruntime(model, fixed) < 1e-4


def test_noisy_only_adaptation_improves_psnr(noisy_only, domain):
    result, out = noisy_only
    before, after = test_psnr(bundled_models()[BASE], domain), test_psnr(out, domain)
    assert not result.kept_base and result.steps == 60
    assert after > before + 1.0, (before, after)
    assert result.after["r2r_loss"] < result.before["r2r_loss"]
    assert result.noise.signal_dependent


def test_clean_images_beat_noisy_only(noisy_only, with_clean, domain):
    assert with_clean[0].method == "supervised" and with_clean[0].after["psnr"] > 0
    assert test_psnr(with_clean[1], domain) > test_psnr(noisy_only[1], domain)


def test_export_runs_in_the_runtime_without_torch(noisy_only, domain, tmp_path):
    _, model = noisy_only
    assert model.with_name("mine.int8.onnx").is_file()
    assert model.with_name("mine.contact.png").is_file()
    info = Denoiser(model).info.metadata
    assert info["adapt_source_sha256"] and info["adapted_from"].startswith("unet")
    assert json.loads(info["adapt_noise_model"])["a"] > 0
    # torch and onnx made unimportable: the runtime alone must run the adapted model.
    code = (
        "import sys; sys.modules['torch'] = sys.modules['onnx'] = None; "
        "from denoise_cli.cli import main; sys.argv[0] = 'denoise-batch'; main()"
    )
    out = tmp_path / "denoised"
    run = subprocess.run(
        [sys.executable, "-c", code, str(domain / "test_noisy"), str(out), "--model", str(model)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr
    assert len(list(out.glob("*.png"))) == 24


def test_resume_continues_and_ctrl_c_saves(domain, tmp_path, monkeypatch):
    import denoise_export.adaptation as adaptation

    out = tmp_path / "mine.onnx"
    real, calls = adaptation.objective, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(adaptation, "objective", interrupted)
    with pytest.raises(KeyboardInterrupt):
        adapt(domain / "noisy", out, settings=AdaptSettings(max_steps=12, **FAST), log=print)
    saved = torch.load(checkpoint_path(out), weights_only=True)
    assert saved["adapt"]["step"] == 7 and not out.exists()
    monkeypatch.setattr(adaptation, "objective", real)
    other = _invoke(str(domain / "noisy"), "--out", str(out), "--resume", "--from", "unet_scenes")
    assert other.exit_code == EXIT_USAGE  # another base model used to be ignored silently
    assert "unet_scenes: not the base model" in other.output and "started from" in other.output
    # Another method or noise model trained one way and recorded the other in the metadata.
    ckpt, was = checkpoint_path(out), saved["adapt"]["method"]
    for flags, said in (
        (("--method", "pseudo"), f"method pseudo: {ckpt} trained with {was}; resume with"),
        (("--noise", "gaussian"), f"{ckpt} trained with another; resume with"),
    ):
        changed = _invoke(str(domain / "noisy"), "--out", str(out), "--resume", *flags,
                          "--max-steps", "7")  # fmt: skip
        assert changed.exit_code == EXIT_USAGE and said in changed.output, changed.output
    result = CliRunner().invoke(
        app,
        ["adapt", str(domain / "noisy"), "--out", str(out), "--resume", "--max-steps", "12"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "12 steps" in result.output and out.is_file()
    assert torch.load(checkpoint_path(out), weights_only=True)["adapt"]["step"] == 12


def test_diverging_training_keeps_the_starting_weights(domain, tmp_path):
    out = tmp_path / "mine.onnx"
    lines: list[str] = []
    settings = AdaptSettings(max_steps=6, lr=5.0, **FAST)  # absurd rate: the model breaks
    result = adapt(domain / "noisy", out, settings=settings, log=lines.append)
    assert result.kept_base
    assert any("keeping the starting model's weights" in line for line in lines)
    x = [np.random.default_rng(1).random((SIDE, SIDE), dtype=np.float32)]
    base, adapted = Denoiser(default_model_path()).denoise(x), Denoiser(out).denoise(x)
    assert np.max(np.abs(base[0] - adapted[0])) < 1e-4


def _invoke(*args: str):
    return CliRunner().invoke(app, ["adapt", *args], catch_exceptions=False)


def test_bad_folders_get_one_line_errors(domain, tmp_path):
    out = str(tmp_path / "m.onnx")
    (tmp_path / "empty").mkdir()
    result = _invoke(str(tmp_path / "empty"), "--out", out)
    assert result.exit_code == EXIT_USAGE and "no images in this folder" in result.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    result = _invoke(str(broken), "--out", out)
    assert result.exit_code == EXIT_USAGE and "could be used (a.png: cannot decode" in result.output
    small = tmp_path / "small"
    for i in range(3):
        _save(np.random.default_rng(i).random((9, 30)), small / f"{i}.png")
    result = _invoke(str(small), "--out", out)
    assert result.exit_code == EXIT_USAGE and "(0.png: 30x9, under 16 px on a side" in result.output
    result = _invoke(str(domain / "clean"), "--out", out)
    assert result.exit_code == EXIT_USAGE and "look clean" in result.output
    for result in (_invoke(str(broken), "--out", out),):
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3


def test_the_bundled_seed_model_can_be_adapted(domain, tmp_path):
    """Its last layer was rewritten for speed (depthwise + channel sum) and its arguments
    written before they were JSON: `--from conv_denoiser` was refused on both counts."""
    out = tmp_path / "m.onnx"
    result = _invoke(str(domain / "noisy"), "--out", str(out), "--from", "conv_denoiser",
                     "--max-steps", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_noisy_clean_images_cannot_make_it_keep_a_noisier_model(domain, tmp_path):
    """--clean pointing at noisy images: PSNR against them rewarded learning to keep the
    noise, and a model 10 dB worse than the base was kept as "adapted" (a warning only)."""
    out = tmp_path / "m.onnx"
    noisy = str(domain / "noisy")
    result = _invoke(noisy, "--clean", noisy, "--out", str(out), "--max-steps", "20")
    assert result.exit_code == 0, result.output
    assert "look noisy" in result.output and "kept the starting weights" in result.output


def test_one_bit_images_in_the_noisy_folder_are_skipped_and_listed(domain, tmp_path):
    """Three 1-bit scans among 43 images moved the noise estimate to "impulses 4.93%" and
    cost the adapted model 1.3 dB; an INT8 file as the base was "weights not in the file"."""
    from denoise_export.adapt_folder import read_folder

    mixed = tmp_path / "mixed"
    shutil.copytree(domain / "noisy", mixed)
    Image.fromarray(np.eye(40, dtype=bool)).save(mixed / "bw.png")
    folder = read_folder(mixed, bilevel=False)
    assert "bw.png" not in folder.names
    assert any(s.startswith("bw.png: 1-bit") for s in folder.skipped)
    assert "bw.png" in read_folder(mixed).names  # clean folders keep them
    out = tmp_path / "m.onnx"
    assert _invoke(str(mixed), "--out", str(out), "--max-steps", "1").exit_code == 0
    int8 = tmp_path / "base.int8.onnx"
    int8.write_bytes(default_model_path().with_suffix(".int8.onnx").read_bytes())
    again = _invoke(str(mixed), "--out", str(tmp_path / "n.onnx"), "--from", str(int8),
                    "--max-steps", "1")  # fmt: skip
    assert again.exit_code == 3 and "only fp32 files can be fine-tuned" in again.output


def test_nothing_to_resume_is_refused_like_a_missing_checkpoint(domain, tmp_path):
    out = tmp_path / "m.onnx"
    result = _invoke(str(domain / "noisy"), "--out", str(out), "--resume", "--max-steps", "1")
    assert result.exit_code == EXIT_REFUSED and "nothing to resume" in result.output


def test_a_missing_base_model_is_refused_as_denoise_batch_refuses_it(domain, tmp_path):
    """One policy for a model that is not there: exit 3, as `denoise-batch --model` (was 2)."""
    out = tmp_path / "m.onnx"
    result = _invoke(str(domain / "noisy"), "--out", str(out), "--from", str(tmp_path / "no.pt"))
    assert result.exit_code == EXIT_REFUSED, result.output
    assert "no.pt: not a bundled model" in result.output and not out.exists()


def test_a_tiny_scan_among_the_images_is_skipped_not_fatal(domain, tmp_path):
    """One 8x8 image used to refuse the whole folder (the crop is the smallest side)."""
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in sorted((domain / "noisy").iterdir())[:12]:
        (mixed / path.name).write_bytes(path.read_bytes())
    _save(np.random.default_rng(0).random((8, 8)), mixed / "uci.png")
    result = _invoke(str(mixed), "--out", str(tmp_path / "m.onnx"), "--max-steps", "2")
    assert result.exit_code == 0, result.output
    assert "skipped uci.png: 8x8, under 16 px on a side to train on" in result.output
    # A second run into the same --out used to replace the first without a word.
    before = (tmp_path / "m.onnx").read_bytes()
    again = _invoke(str(mixed), "--out", str(tmp_path / "m.onnx"), "--max-steps", "2")
    assert again.exit_code == EXIT_USAGE
    assert "m.adapt.pt: an earlier run's; continue it (--resume) or replace it" in again.output
    assert (tmp_path / "m.onnx").read_bytes() == before
    replaced = _invoke(
        str(mixed), "--out", str(tmp_path / "m.onnx"), "--max-steps", "1", "--overwrite"
    )
    assert replaced.exit_code == 0, replaced.output


def test_outputs_never_replace_the_base_model_or_land_in_the_folders_read(domain, tmp_path):
    """adapt overwrote its own --from model (directly, or through OUT.adapt.pt), and wrote its
    model and contact sheet into the folder it learns from; all refused before training, each
    file left as it was."""
    base = tmp_path / "base.onnx"
    base.write_bytes(default_model_path().read_bytes())
    checkpoint = tmp_path / "g.adapt.pt"
    checkpoint.write_bytes(b"a user's checkpoint")
    before = {p: p.read_bytes() for p in (base, checkpoint, *(domain / "noisy").iterdir())}
    cases = [
        ("--from", str(base), "--out", str(base)),
        ("--from", str(checkpoint), "--out", str(tmp_path / "g.onnx")),
        ("--out", str(domain / "noisy" / "model.onnx")),
        ("--clean", str(domain / "clean"), "--out", str(domain / "clean" / "m.onnx")),
    ]
    for options in cases:
        result = _invoke(str(domain / "noisy"), *options, "--max-steps", "1")
        assert result.exit_code == EXIT_USAGE, (options, result.output)
        assert "--out " in result.output and "inside the input" in result.output
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.onnx", "g.adapt.pt"]


def test_a_stale_int8_twin_is_removed_when_this_runs_int8_fails(tmp_path, monkeypatch):
    """A run whose INT8 fails to verify exports fp32 only; an earlier run's OUT.int8.onnx beside
    it would be paired with the new model by `--precision int8`, so it goes."""
    from denoise_export import adaptation

    out = tmp_path / "m.onnx"
    stale = tmp_path / "m.int8.onnx"
    stale.write_bytes(b"an earlier run's INT8 model")
    calls = []

    def export(checkpoint, out, digits, calib, log, int8=False, int8_optional=False, **options):
        calls.append((int8, int8_optional))  # INT8 missed its check: fp32 published alone
        out.write_bytes(b"fp32")
        return type("Result", (), {"rows": [type("Row", (), {"path": str(out)})()]})()

    monkeypatch.setattr(adaptation, "export_checkpoint", export)
    lines: list[str] = []
    adaptation.export_adapted(tmp_path / "c.pt", out, np.zeros((1, 1, 28, 28)), {}, lines.append)
    assert calls == [(True, True)] and out.exists() and not stale.exists()
    assert any("an earlier run's INT8 model" in line for line in lines)


def test_a_link_out_of_the_folder_is_not_one_of_its_images(domain, tmp_path):
    from denoise_export.adapt_folder import image_paths

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "a.png").write_bytes((domain / "noisy" / "000.png").read_bytes())
    (folder / "inside.png").symlink_to(folder / "a.png")
    (folder / "outside.png").symlink_to(domain / "noisy" / "001.png")
    assert [p.name for p in image_paths(folder)] == ["a.png", "inside.png"]


def test_clean_folder_of_another_domain_is_warned_about(domain, tmp_path):
    from denoise_export.adapt_data import domain_warnings
    from denoise_export.adapt_folder import read_folder

    other = tmp_path / "other"
    for i in range(10):  # light digits on black, 200 px: another world
        canvas = np.zeros((200, 200), np.float32)
        canvas[60:140, 90:110] = 1.0
        _save(canvas, other / f"{i}.png")
    warnings = domain_warnings(read_folder(domain / "noisy"), read_folder(other))
    assert any("same kind" in w for w in warnings) and any("scale" in w for w in warnings)
    assert domain_warnings(read_folder(domain / "noisy"), read_folder(domain / "clean")) == []
    assert EXIT_INTERRUPTED == 130


def test_denoise_train_has_the_adapt_command():
    """`denoise-train adapt` (the installed entry point, export/train_entry.py) is the same
    command as `denoise-export adapt`; `fit` and `list` are still there."""
    from denoise_export.train_entry import app as train_app

    runner = CliRunner()
    result = runner.invoke(train_app, ["adapt", "--help"])
    assert result.exit_code == 0 and "NOISY_DIR" in result.output.upper()
    listing = runner.invoke(train_app, ["--help"]).output
    assert all(name in listing for name in ("adapt", "fit", "list"))
    missing = runner.invoke(train_app, ["adapt", "/nonexistent-folder", "--out", "x.onnx"])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_noisy_only_adaptation_never_keeps_weights_that_leave_more_noise():
    """The R2R loss leaves impulses out, so it may improve while outputs get noisier (serif
    print: 0.0305 -> 0.0287 loss, residual sigma 0.0020 -> 0.0115, -1.0 dB): such weights are
    refused, and a folder with impulses trains with pseudo-clean targets as well."""
    from types import SimpleNamespace

    from denoise_export.adapt_eval import RESIDUAL_SLACK, Validation
    from denoise_export.adaptation import auto_method

    held = np.zeros((1, 1, 8, 8), np.float32)
    validation = Validation("r2r", held, None, held, NoiseModel(0, 0.01), torch.device("cpu"))
    validation.base = {"r2r_loss": 0.0305, "residual_sigma": 0.0020}
    assert not validation.acceptable({"r2r_loss": 0.0287, "residual_sigma": 0.0115})
    assert validation.acceptable({"r2r_loss": 0.0287, "residual_sigma": 0.002 + RESIDUAL_SLACK})
    impulses = SimpleNamespace(clean=None, noise=NoiseModel(0, 0.0058, 0.03))
    plain = SimpleNamespace(clean=None, noise=NoiseModel(0.009, 0.0013, 0.0001))
    assert auto_method(impulses) == "r2r+pseudo" and auto_method(plain) == "r2r"
    assert auto_method(SimpleNamespace(clean=object(), noise=impulses.noise)) == "supervised"


def test_a_non_finite_loss_stops_adapting_and_keeps_the_best_weights(domain, tmp_path, monkeypatch):
    """A NaN loss used to be stepped on (every weight NaN) until the budget ran out."""
    import denoise_export.adaptation as adaptation

    out = tmp_path / "mine.onnx"
    real, calls = adaptation.objective, []

    def breaks_at_step_five(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) >= 5 else loss

    monkeypatch.setattr(adaptation, "objective", breaks_at_step_five)
    lines: list[str] = []
    adapt(domain / "noisy", out, settings=AdaptSettings(max_steps=40, **FAST), log=lines.append)
    assert len(calls) == 5
    assert any("stopped after 4 steps: the loss became nan" in line for line in lines), lines
    x = [np.random.default_rng(1).random((SIDE, SIDE), dtype=np.float32)]
    assert np.isfinite(Denoiser(out).denoise(x)[0]).all()


def test_resume_finds_the_base_file_from_another_folder_or_asks_for_it(
    domain, tmp_path, monkeypatch
):
    """The base's path was saved as given ("../base.onnx"): a resume from another folder
    failed even when the same file was named again."""
    base = tmp_path / "base.onnx"
    base.write_bytes(default_model_path().read_bytes())
    out, noisy = str(tmp_path / "m.onnx"), str(domain / "noisy")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert _invoke(noisy, "--out", out, "--from", "../base.onnx", "--max-steps", "1").exit_code == 0
    monkeypatch.chdir(tmp_path)
    resumed = _invoke(noisy, "--out", out, "--resume", "--max-steps", "2")
    assert resumed.exit_code == 0, resumed.output
    base.rename(tmp_path / "moved.onnx")
    lost = _invoke(noisy, "--out", out, "--resume", "--max-steps", "3")
    assert lost.exit_code == EXIT_REFUSED and "is not there (moved" in lost.output
    named = _invoke(noisy, "--out", out, "--resume", "--from", "moved.onnx", "--max-steps", "3")
    assert named.exit_code == 0, named.output


def test_a_file_adapt_did_not_write_is_refused_and_left_as_it_is(domain, tmp_path):
    """A model of another kind at OUT (or any file where a companion goes) was called "an
    earlier run's", and --overwrite replaced it; it is refused whatever is asked."""
    noisy, out = str(domain / "noisy"), tmp_path / "m.onnx"
    cases = {
        out: default_model_path().read_bytes(),  # a real model, not an adaptation's
        tmp_path / "m.adapt.pt": b"a user's notes",
        tmp_path / "m.int8.onnx": b"someone's INT8 model",
        tmp_path / "m.contact.png": b"a picture",
    }
    for path, content in cases.items():
        path.write_bytes(content)
        for flags in ((), ("--overwrite",), ("--resume",)):
            result = _invoke(noisy, "--out", str(out), "--max-steps", "1", *flags)
            assert result.exit_code == EXIT_USAGE, (path, flags, result.output)
            assert f"{path}: a file that is not an adaptation's output is there" in result.output
            assert "an earlier run's" not in result.output
        assert path.read_bytes() == content
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
        path.unlink()


def test_an_earlier_runs_file_left_alone_is_still_its_own(noisy_only, tmp_path):
    """An earlier run's contact sheet alone was refused as another's file even with
    --overwrite, and its INT8 twin alone was replaced unasked."""
    from denoise_export.adaptation import check_earlier, contact_sheet_path, written_by_adapt

    earlier = noisy_only[1]
    assert written_by_adapt(contact_sheet_path(earlier))  # the sheet carries its mark
    for source in (contact_sheet_path(earlier), int8_file(earlier)):
        out = tmp_path / source.parent.name / "m.onnx"
        left = out.with_name(source.name.replace("mine", "m"))
        left.parent.mkdir(exist_ok=True)
        left.write_bytes(source.read_bytes())
        said = f"{left}: an earlier run's; replace it (--overwrite; it left no checkpoint"
        with pytest.raises(UsageError, match=re.escape(said)):
            check_earlier(out, resume=False, overwrite=False)
        check_earlier(out, resume=False, overwrite=True)  # replaced when asked
        left.unlink()


def test_a_broken_link_in_a_folder_is_named_as_one(domain, tmp_path):
    """A dangling symlink was skipped as "cannot read: file vanished"."""
    from denoise_export.adapt_folder import read_folder

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in sorted((domain / "noisy").iterdir())[:3]:
        (mixed / path.name).write_bytes(path.read_bytes())
    (mixed / "gone.png").symlink_to("deleted.png")
    (mixed / "far.png").symlink_to("/nonexistent/scan.png")  # was dropped without a word
    (mixed / "loop.png").symlink_to("loop.png")
    folder = read_folder(mixed)
    assert "gone.png" not in folder.names and len(folder.names) == 3
    assert folder.skipped == [
        "far.png: broken link: its target does not exist",
        "gone.png: broken link: its target does not exist",
        "loop.png: broken link: a loop of symlinks",
    ]
    links = tmp_path / "links"
    links.mkdir()
    (links / "gone.png").symlink_to("deleted.png")
    out = str(tmp_path / "m.onnx")
    for args in ((str(links),), (str(domain / "noisy"), "--clean", str(links))):
        result = _invoke(*args, "--out", out)
        assert result.exit_code == EXIT_USAGE, result.output
        assert "(gone.png: broken link: its target does not exist)" in result.output
        assert "vanished" not in result.output


def test_a_missing_clean_folder_is_refused_before_any_work(domain, tmp_path, monkeypatch):
    """`--clean nope` was found only after the base model was loaded and NOISY_DIR read."""
    from denoise_export import adaptation

    real, loaded = adaptation.resolve_base, []
    monkeypatch.setattr(adaptation, "resolve_base", lambda *a: loaded.append(a) or real(*a))
    monkeypatch.chdir(tmp_path)
    result = _invoke(str(domain / "noisy"), "--clean", "nope", "--out", "m.onnx")
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.output.strip().splitlines() == ["error: nope: not a folder"]
    assert loaded == [] and list(tmp_path.iterdir()) == []


def test_resume_and_overwrite_together_are_refused(domain, tmp_path):
    """They contradict (continue the earlier run, or discard it); resume used to win unsaid."""
    out, noisy = tmp_path / "m.onnx", domain / "noisy"
    result = _invoke(str(noisy), "--out", str(out), "--resume", "--overwrite")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "resume and overwrite contradict each other" in result.output
    with pytest.raises(ValueError, match="choose one"):
        adapt(noisy, out, resume=True, overwrite=True, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_no_training_time_is_refused_before_any_work(domain, tmp_path):
    """--minutes 0 used to take one step and export it as an adapted model."""
    out = tmp_path / "m.onnx"
    result = _invoke(str(domain / "noisy"), "--out", str(out), "--minutes", "0")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--minutes 0: needs a time above 0" in result.output
    assert list(tmp_path.iterdir()) == []


def test_one_clean_image_is_refused_not_trained_on_and_held_out(domain, tmp_path):
    """One clean image was both the training set and the held-out one (the figure that picks
    the weights kept); two split into one of each."""
    from denoise_export.adapt_data import split_held_out

    one = tmp_path / "one"
    one.mkdir()
    (one / "000.png").write_bytes((domain / "clean" / "000.png").read_bytes())
    out = tmp_path / "m.onnx"
    result = _invoke(str(domain / "noisy"), "--clean", str(one), "--out", str(out),
                     "--max-steps", "1")  # fmt: skip
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"{one}: 1 clean image could be used; at least 2 are needed" in result.output
    assert not out.exists() and not checkpoint_path(out).exists()
    a, b = np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)
    train, held = split_held_out([a, b])
    assert len(train) == len(held) == 1 and train[0] is not held[0]


def test_one_noisy_image_is_refused_and_clean_strokes_do_not_look_noisy(domain, tmp_path):
    """One noisy image was trained on and held out at once; its noise estimate (sigma 0,
    impulses only) made a model 10 dB worse than the base, kept as "adapted". Clean MNIST
    strokes' edges read as 0.38% impulses and were called noisy "clean" images."""
    from denoise_export.adapt_data import looks_noisy

    one = tmp_path / "one"
    one.mkdir()
    (one / "000.png").write_bytes((domain / "noisy" / "000.png").read_bytes())
    out = tmp_path / "m.onnx"
    result = _invoke(str(one), "--out", str(out), "--max-steps", "1")
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"{one}: 1 image could be used; at least 2 are needed" in result.output
    assert not out.exists() and not checkpoint_path(out).exists()
    assert not looks_noisy(NoiseModel(0.0, 0.0, 0.0038))
    assert looks_noisy(NoiseModel(0.0, 0.02**2, 0.0)) and looks_noisy(NoiseModel(0.0, 0.0, 0.03))


def test_a_failed_int8_exports_the_fp32_model_once(noisy_only, tmp_path, monkeypatch):
    from denoise_export import build, variants
    from denoise_export.adaptation import export_adapted

    monkeypatch.setattr(variants, "INT8_MAX_PSNR_DROP", -1.0)  # no INT8 file can pass
    real, exported = build.reference, []
    monkeypatch.setattr(build, "reference", lambda *a: exported.append(1) or real(*a))
    digits = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    out = tmp_path / "m.onnx"
    files = export_adapted(checkpoint_path(noisy_only[1]), out, digits, {}, lambda m: None)
    assert files == [out] and not (tmp_path / "m.int8.onnx").exists()
    assert len(exported) == 1


def test_noise_cut_off_at_black_is_warned_about_without_clean_images(tmp_path):
    """On the bundled samples (MNIST, Gaussian 0.5 clipped: 44% of pixels are 0, scattered)
    r2r+pseudo made outputs 2.7 dB worse than the base and its guard saw nothing."""
    from denoise_export.adapt_data import CLIPPED_NOISE_SHARE, clipped_noise_share

    samples = Path(__file__).resolve().parents[1] / "denoise_cli" / "samples"
    files = sorted((samples / "noisy").glob("*.png"))  # light on dark, as MNIST's
    noisy = [np.asarray(Image.open(f).convert("L"), np.float32) / 255 for f in files]
    assert clipped_noise_share(noisy) > CLIPPED_NOISE_SHARE
    paper = np.ones((64, 64), np.float32)  # paper flat at white, ink flat at black: runs
    paper[20:40, 10:50] = 0.0
    assert clipped_noise_share([paper]) < CLIPPED_NOISE_SHARE / 4
    out = tmp_path / "m.onnx"
    result = _invoke(str(samples / "noisy"), "--out", str(out), "--max-steps", "1")
    assert result.exit_code == 0, result.output
    assert "of pixels are noise cut off at black or white" in result.output


def test_the_residual_guard_sees_noise_on_a_small_folder():
    """The guard read 2 held-out 28 px crops (24 images): too few samples for the estimator,
    which said 0 for every model, so weights 2.7 dB worse than the base were kept. It reads
    training images too now: a model keeping a tenth of the noise is refused."""
    from denoise_export.adapt_base import resolve_base
    from denoise_export.adapt_data import prepare_data
    from denoise_export.adapt_eval import make_validation

    class KeepsNoise(torch.nn.Module):
        def __init__(self, model: torch.nn.Module, share: float) -> None:
            super().__init__()
            self.model, self.share = model, share

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.model(x)
            return y + self.share * (x - y)

    samples = Path(__file__).resolve().parents[1] / "denoise_cli" / "samples" / "noisy"
    base = resolve_base(None)
    data = prepare_data(samples, None, base, "auto", lambda m: None)
    assert len(data.noisy_held_out) <= 3  # the small folder the guard was blind on
    validation = make_validation(data, "r2r", base.model, torch.device("cpu"))
    noisier = validation.evaluate(KeepsNoise(base.model, 0.1).eval())
    assert noisier["residual_sigma"] > 0.03 and not validation.acceptable(noisier)


def test_a_folder_it_may_not_list_says_so(tmp_path, monkeypatch):
    """A 000-permission folder said "no images in this folder". (Root reads anything, so the
    refusal is simulated where os.walk meets it.)"""
    from denoise_export import adapt_folder

    locked = tmp_path / "locked"
    locked.mkdir()

    def walk(top, onerror=None):
        onerror(PermissionError(13, "Permission denied", str(top)))
        return iter(())

    monkeypatch.setattr(adapt_folder.os, "walk", walk)
    with pytest.raises(adapt_folder.FolderError, match=f"{locked}: cannot list this folder: Perm"):
        adapt_folder.image_paths(locked)
