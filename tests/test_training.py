"""Training on tiny synthetic data: the loss falls, checkpoints round-trip, resume is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from denoise_cli.core.errors import EXIT_REFUSED, EXIT_USAGE  # noqa: E402
from denoise_export.cli import app as export_app  # noqa: E402
from denoise_train.checkpoint import (  # noqa: E402
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
)
from denoise_train.cli import app  # noqa: E402
from denoise_train.config import TrainConfig  # noqa: E402
from denoise_train.loop import Diverged, cpu_has_native_bf16, fit  # noqa: E402
from denoise_train.mnist import load_split  # noqa: E402

TINY = {"batch_size": 16, "val_size": 100, "threads": 1}
RESUME_TINY = ["--val-size", "100", "--batch-size", "16"]  # TINY's, as a resume must repeat


@pytest.fixture(scope="module")
def train_images(tiny_mnist):
    return load_split("train", tiny_mnist, download=False)[0]


def test_training_lowers_the_loss(train_images):
    config = TrainConfig(arch="conv_denoiser", epochs=3, lr=3e-3, **TINY)
    result = fit(config, train_images, log=lambda m: None, progress=False)
    losses = [h["val_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.9
    assert result.history[-1]["val_psnr"] > result.history[0]["val_psnr"]


def test_autoencoder_trains_clean_to_clean(train_images):
    config = TrainConfig(arch="dense_ae_8", epochs=2, **TINY)
    result = fit(config, train_images, log=lambda m: None, progress=False)
    assert result.history[-1]["val_loss"] < result.history[0]["train_loss"]


def test_checkpoint_round_trip(tmp_path, train_images):
    config = TrainConfig(arch="conv_denoiser", epochs=1, **TINY)
    out = tmp_path / "m.pt"
    result = fit(config, train_images, out, log=lambda m: None, progress=False)
    ckpt = load_checkpoint(out)
    assert ckpt["arch"] == "conv_denoiser" and ckpt["epoch"] == 1
    assert ckpt["config"]["batch_size"] == 16 and "val_psnr" in ckpt["metrics"]
    model = model_from_checkpoint(ckpt)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), result.model(x))


def test_a_resume_that_would_change_the_run_or_write_nothing_is_refused(tmp_path, train_images):
    """Resumed with another noise or batch size, the checkpoint's config described a run that
    never happened; resumed past its last epoch into another --out, 'checkpoint: NEW' named a
    file never written. Both are usage errors; more epochs, threads or a new lr are fine."""
    from denoise_cli.core.errors import UsageError

    config = TrainConfig(arch="conv_denoiser", epochs=1, **TINY)
    done = tmp_path / "r.pt"
    fit(config, train_images, done, log=lambda m: None, progress=False)
    quiet = {"log": lambda m: None, "progress": False, "resume_from": done}
    for other in (config.with_(noise="salt-pepper"), config.with_(epochs=2, batch_size=7)):
        with pytest.raises(UsageError, match="resumed with other settings"):
            fit(other, train_images, done, **quiet)
    with pytest.raises(UsageError, match="already trained 1 of --epochs 1"):
        fit(config, train_images, tmp_path / "new.pt", **quiet)
    assert not (tmp_path / "new.pt").exists()
    fit(config.with_(epochs=2, lr=5e-4, threads=1), train_images, tmp_path / "new.pt", **quiet)
    assert load_checkpoint(tmp_path / "new.pt")["epoch"] == 2


@pytest.mark.parametrize(
    "options",
    [
        ["--lr", "nan"],
        ["--lr", "inf"],
        ["--lr", "1e12"],
        ["--seed", "-1"],
        ["--train-limit", "-10"],
        ["--data", "scenes", "--scene-max-scale", "inf"],
        ["--data", "scenes", "--scene-size", "100000"],
    ],
)
def test_fit_options_that_cannot_train_are_one_line_usage_errors(tmp_path, tiny_mnist, options):
    args = ["fit", "--dry-run", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "m.pt")]
    result = CliRunner().invoke(app, [*args, *options])
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    assert not (tmp_path / "m.pt").exists()


def test_a_missing_init_checkpoint_is_refused(tmp_path, tiny_mnist):
    """Exit 3, as for every model or checkpoint that is not there (was 2, a usage error)."""
    args = ["fit", "--dry-run", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "m.pt")]
    missing = tmp_path / "missing.pt"
    result = CliRunner().invoke(app, [*args, "--init-from", str(missing)])
    assert result.exit_code == EXIT_REFUSED, result.output
    assert result.output == f"error: --init-from {missing}: no such checkpoint file\n"
    assert not (tmp_path / "m.pt").exists()


def test_resume_continues_exactly(tmp_path, train_images):
    """Two epochs straight, or one then resume for the second: the same weights."""
    config = TrainConfig(arch="conv_denoiser", epochs=2, **TINY)
    straight = fit(config, train_images, tmp_path / "a.pt", log=lambda m: None, progress=False)
    fit(config.with_(epochs=1), train_images, tmp_path / "b.pt", log=lambda m: None, progress=False)
    resumed = fit(
        config,
        train_images,
        tmp_path / "b.pt",
        resume_from=tmp_path / "b.pt",
        log=lambda m: None,
        progress=False,
    )
    assert len(resumed.history) == 2
    for a, b in zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_a_diverging_run_stops_before_a_nan_reaches_the_saved_weights(tmp_path, train_images):
    """NaN in the data (or a rate that blows up) used to train on, saving NaN weights every
    epoch; the run stops at the first non-finite loss and the last good checkpoint stays."""
    config = TrainConfig(arch="conv_denoiser", epochs=1, **TINY)
    out = tmp_path / "m.pt"
    fit(config, train_images, out, log=lambda m: None, progress=False)
    before = out.read_bytes()
    spoiled = train_images.copy()
    spoiled[:, :, 10:14, 10:14] = np.nan
    with pytest.raises(
        Diverged, match=r"epoch 2: the model's output became NaN .*m\.pt \(epoch 1\) is kept"
    ):
        fit(
            config.with_(epochs=2),
            spoiled,
            out,
            resume_from=out,
            log=lambda m: None,
            progress=False,
        )
    assert out.read_bytes() == before
    fresh = tmp_path / "fresh.pt"
    with pytest.raises(Diverged, match=r"epoch 1: the loss became nan .* nothing was saved; try a"):
        fit(config.with_(loss="mse"), spoiled, fresh, log=lambda m: None, progress=False)
    assert not fresh.exists()


def test_broken_and_foreign_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(bad)
    bad.write_bytes(b"PK\x03\x04 and then nothing")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="a folder, not a checkpoint file"):
        load_checkpoint(tmp_path)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a denoise-batch checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_damaged_checkpoints_are_one_line_errors_in_resume_and_export(
    tmp_path, train_images, tiny_mnist
):
    """A checkpoint without its history was a KeyError deep in a resume; one whose weights do
    not fit its architecture, a 68-line traceback; one whose arguments do not build it, a
    TypeError in export."""
    config = TrainConfig(arch="conv_denoiser", epochs=1, **TINY)
    good = tmp_path / "good.pt"
    fit(config, train_images, good, log=lambda m: None, progress=False)
    ckpt = torch.load(good, weights_only=True)
    state = {k: torch.zeros(3, 3) for k in ckpt["model_state"]}
    damaged = {
        "history": ({k: v for k, v in ckpt.items() if k != "history"}, "'history' is missing"),
        "shapes": ({**ckpt, "model_state": state}, "weights do not fit architecture"),
        "args": ({**ckpt, "arch_args": {"width": -5, "nonsense": 1}}, "do not build"),
    }
    for name, (data, error) in damaged.items():
        path = tmp_path / f"{name}.pt"
        torch.save(data, path)
        for args in (
            ["fit", "--resume", path, "--out", path, "--epochs", "2", *RESUME_TINY],
            ["export", path, "-o", tmp_path / f"{name}.onnx"],
        ):
            tool = app if args[0] == "fit" else export_app
            result = CliRunner().invoke(tool, [str(a) for a in [*args, "--data-dir", tiny_mnist]])
            assert result.exit_code == EXIT_REFUSED, (name, args[0], result.output)
            assert error in result.output, (name, args[0], result.output)
            assert len(result.output.strip().splitlines()) == 1, result.output


def test_validation_split_is_disjoint_and_seeded():
    from denoise_train.loop import split_train_val

    images = np.arange(50, dtype=np.float32).reshape(50, 1, 1, 1)
    a_train, a_val = split_train_val(images, TrainConfig(val_size=10, seed=1))
    _, b_val = split_train_val(images, TrainConfig(val_size=10, seed=1))
    np.testing.assert_array_equal(a_val, b_val)
    assert len(a_train) == 40 and not set(a_train.ravel()) & set(a_val.ravel())
    with pytest.raises(ValueError, match="50 validation images leave none to train on out of"):
        split_train_val(images, TrainConfig(val_size=50))


def test_a_small_train_limit_holds_out_a_tenth(tmp_path, tiny_mnist):
    """`--train-limit 500` failed: the 5,000 validation images left nothing to train on."""
    args = ["fit", "--arch", "conv_denoiser", "--epochs", "1", "--train-limit", "200"]
    args += ["--batch-size", "16", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "m.pt")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "on 180 images, validating on 20" in result.output


def test_dry_run_and_report_via_cli(tmp_path, tiny_mnist):
    runner = CliRunner()
    outs = []
    for arch in ("dense_ae_1", "dense_ae_2", "dense_denoiser_16", "conv_denoiser"):
        out = tmp_path / f"{arch}.pt"
        result = runner.invoke(
            app,
            ["fit", "--arch", arch, "--dry-run", "--data-dir", str(tiny_mnist), "--out", str(out)],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert "epoch 1/1" in result.output and out.is_file()
        outs.append(str(out))
    report_dir = tmp_path / "report"
    result = runner.invoke(
        export_app,
        ["report", *outs, "--data-dir", str(tiny_mnist), "--out-dir", str(report_dir)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    for name in ("autoencoders.png", "denoisers.png", "results.md", "results.json"):
        assert (report_dir / name).is_file()
    rows = json.loads((report_dir / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == [
        "noisy input (no model)",
        "dense_ae_1",
        "dense_ae_2",
        "dense_denoiser_16",
        "conv_denoiser",
    ]
    assert all(np.isfinite(r["psnr"]) for r in rows)


def test_fit_usage_errors(tmp_path, tiny_mnist):
    runner = CliRunner()
    # Choices come from the registry: an unknown name is a usage error that lists them.
    result = runner.invoke(app, ["fit", "--arch", "nope", "--data-dir", str(tiny_mnist)])
    assert result.exit_code == EXIT_USAGE and "'nope' is not one of" in result.output
    assert "unet_lite_near" in result.output
    result = runner.invoke(
        app, ["fit", "--dry-run", "--lr", "0", "--data-dir", str(tiny_mnist), "--out", "x.pt"]
    )
    assert result.exit_code == EXIT_USAGE and "error: epochs and batch_size" in result.output
    # No MNIST where it was asked for, and downloading fails: the data set is refused.
    result = runner.invoke(
        app,
        ["fit", "--dry-run", "--data-dir", str(tmp_path / "empty"), "--out", "x.pt"],
        env={"DENOISE_MNIST_DIR": ""},
    )
    assert result.exit_code == EXIT_REFUSED and "error:" in result.output


def test_cosine_schedule_ends_near_zero(tmp_path, train_images):
    config = TrainConfig(arch="conv_denoiser", epochs=2, lr=1e-2, lr_schedule="cosine", **TINY)
    fit(config, train_images, tmp_path / "c.pt", log=lambda m: None, progress=False)
    lr = load_checkpoint(tmp_path / "c.pt")["optimizer_state"]["param_groups"][0]["lr"]
    assert lr < 1e-2 * 0.01


def test_blind_training_validates_on_the_reference_noise(train_images):
    config = TrainConfig(arch="conv_denoiser", epochs=1, noise="blind", **TINY)
    result = fit(config, train_images, log=lambda m: None, progress=False)
    assert np.isfinite(result.metrics["val_psnr"])


def test_compare_models_and_classical_filters(tmp_path, tiny_mnist, train_images):
    pytest.importorskip("skimage")
    from denoise_export.compare import compare, markdown, write

    ckpt = tmp_path / "m.pt"
    fit(
        TrainConfig(arch="conv_denoiser", epochs=1, **TINY),
        train_images,
        ckpt,
        log=lambda m: None,
        progress=False,
    )
    clean = load_split("test", tiny_mnist, download=False)[0][:40]
    result = compare(
        [ckpt], clean, classical_limit=10, conditions=[("gaussian", 0.5), ("salt-pepper", 0.1)]
    )
    methods = [r["method"] for r in result["rows"]]
    assert methods[0] == "noisy input" and "median 3x3" in methods
    assert methods[-1] == "conv_denoiser (gaussian 0.5)"
    model_row = result["rows"][-1]
    assert model_row["params"] == 3217 and model_row["onnx_bytes"] > 10_000
    assert model_row["cpu_images_per_s"] > 0
    assert result["rows"][1]["scores"]["gaussian 0.5"]["images"] == 10
    text = markdown(result)
    assert "| conv_denoiser (gaussian 0.5) | 3,217 |" in text
    assert {p.name for p in write(result, tmp_path / "out")} == {"compare.json", "compare.md"}


def test_exported_models_score_like_their_checkpoints(tmp_path, tiny_mnist, train_images):
    """compare and report take exported ONNX files too, with the same numbers."""
    from denoise_export.compare import compare
    from denoise_export.report import build_report

    ckpt = tmp_path / "conv_denoiser.pt"
    config = TrainConfig(arch="conv_denoiser", epochs=1, **TINY)
    fit(config, train_images, ckpt, log=lambda m: None, progress=False)
    onnx_path = tmp_path / "mine.onnx"
    exported = CliRunner().invoke(
        export_app, [str(ckpt), "-o", str(onnx_path), "--data-dir", str(tiny_mnist)]
    )
    assert exported.exit_code == 0, exported.output
    clean = load_split("test", tiny_mnist, download=False)[0][:30]
    result = compare([ckpt, onnx_path], clean, classical_limit=5, conditions=[("gaussian", 0.5)])
    from_ckpt, from_onnx = result["rows"][-2:]
    assert from_onnx["method"] == "mine (gaussian 0.5)" and from_onnx["params"] == 3217
    assert from_onnx["onnx_bytes"] == onnx_path.stat().st_size
    a, b = from_ckpt["scores"]["gaussian 0.5"], from_onnx["scores"]["gaussian 0.5"]
    assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-4)
    build_report([onnx_path, ckpt], clean, tmp_path / "report")
    rows = json.loads((tmp_path / "report" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["noisy input (no model)", "mine", "conv_denoiser"]
    assert rows[1]["psnr"] == pytest.approx(rows[2]["psnr"], abs=1e-4)
    assert (tmp_path / "report" / "denoisers.png").is_file()


def test_psnr_loss_is_minus_mean_psnr():
    from denoise_cli.core.metrics import psnr
    from denoise_train.loop import make_loss

    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.random((4, 1, 28, 28), dtype=np.float32))
    pred = (target + 0.1 * torch.from_numpy(rng.standard_normal((4, 1, 28, 28)))).float()
    expected = -np.mean(psnr(target.numpy(), pred.numpy()))
    assert float(make_loss("psnr")(pred, target)) == pytest.approx(expected, abs=1e-3)


def test_bf16_training_learns_and_saves_fp32_weights(tmp_path, train_images):
    config = TrainConfig(arch="unet_tiny", epochs=2, lr=3e-3, precision="bf16", **TINY)
    messages: list[str] = []
    result = fit(config, train_images, tmp_path / "b.pt", log=messages.append, progress=False)
    assert result.history[-1]["val_psnr"] > result.history[0]["val_psnr"]
    emulated = any("no native bfloat16" in m for m in messages)
    assert emulated == (not cpu_has_native_bf16())
    state = load_checkpoint(tmp_path / "b.pt")["model_state"]
    assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16'"):
        TrainConfig(precision="fp16")


def test_batch_norm_unet_trains_and_exports_its_folded_form(tmp_path, train_images):
    """unet_ctx trains in train mode and predicts with its running statistics (eval mode)."""
    config = TrainConfig(arch="unet_ctx", epochs=1, max_steps_per_epoch=3, **TINY)
    result = fit(config, train_images, tmp_path / "c.pt", log=lambda m: None, progress=False)
    model = model_from_checkpoint(load_checkpoint(tmp_path / "c.pt"))
    assert not model.training
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), result.model(x))
        torch.testing.assert_close(model(x[:1]), model(x)[:1])  # no batch statistics at inference


def test_init_from_starts_a_context_model_where_its_plain_twin_ended(tmp_path, train_images):
    """Fine-tuning: every tensor of the source lands, the new GlobalContext branch starts as
    the identity (zero FiLM), so the first outputs equal the source model's."""
    from denoise_train.checkpoint import file_sha256
    from denoise_train.loop import init_weights
    from denoise_train.models import create_model

    plain = TrainConfig(arch="unet_lite_near", epochs=1, max_steps_per_epoch=3, **TINY)
    source = fit(plain, train_images, tmp_path / "plain.pt", log=lambda m: None, progress=False)
    ctx = create_model("unet_lite_ctx")
    message = init_weights(ctx, tmp_path / "plain.pt")
    assert "78 tensors copied, 8 new" in message
    x = torch.rand(3, 1, 32, 36)
    with torch.no_grad():
        assert torch.allclose(ctx.eval()(x), source.model.eval()(x), atol=1e-6)
    tuned = plain.with_(
        arch="unet_lite_ctx",
        init_from=str(tmp_path / "plain.pt"),
        init_sha256=file_sha256(tmp_path / "plain.pt"),
    )
    messages: list[str] = []
    fit(tuned, train_images, tmp_path / "ctx.pt", log=messages.append, progress=False)
    assert any("78 tensors copied, 8 new" in m for m in messages)
    saved = load_checkpoint(tmp_path / "ctx.pt")["config"]
    assert saved["init_sha256"] == file_sha256(tmp_path / "plain.pt")


def test_init_from_refuses_weights_that_do_not_fit(tmp_path, train_images):
    from denoise_cli.core.errors import UsageError

    seed = TrainConfig(arch="conv_denoiser", epochs=1, max_steps_per_epoch=1, **TINY)
    fit(seed, train_images, tmp_path / "seed.pt", log=lambda m: None, progress=False)
    tuned = seed.with_(arch="unet_lite_near", init_from=str(tmp_path / "seed.pt"))
    with pytest.raises(UsageError, match="tensors do not fit this architecture"):
        fit(tuned, train_images, log=lambda m: None, progress=False)


def test_fit_off_a_terminal_prints_progress_lines(train_images, capsys):
    """A log (no terminal) still shows a long epoch is alive: plain lines at an interval."""
    config = TrainConfig(arch="conv_denoiser", epochs=1, max_steps_per_epoch=3, **TINY)
    fit(config, train_images, log=lambda m: None, progress=False, progress_every_s=0.0)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[1].strip() for line in lines] == [
        "33.3% 1/3",
        "66.7% 2/3",
        "100.0% 3/3",
    ]
    assert all(line.startswith("epoch 1/1") and "step/s" in line for line in lines)
