"""Training and evaluation. Functions receive what they use; nothing here parses arguments."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from denoise_cli.core.errors import UsageError, WorkFailed
from denoise_cli.core.metrics import psnr, ssim
from denoise_cli.core.noise import add_noise
from denoise_cli.core.progress import Progress
from denoise_train.checkpoint import build_model, load_checkpoint, load_weights, save_checkpoint
from denoise_train.config import EVAL_NOISE_SEED, TrainConfig, eval_noise
from denoise_train.models import get_arch
from denoise_train.scenes import training_scenes
from denoise_train.world import WorldMix, world_batch


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {requested!r} requested but torch sees no CUDA device")
    return torch.device(requested)


class PsnrLoss(nn.Module):
    """Minus the mean per-image PSNR: the report's own metric, as a loss (for fine-tuning).

    MSE averages errors over all pixels; mean PSNR averages log-errors per image, so it weighs
    the easy images more. The small floor keeps log10 finite on a perfect image.
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = ((pred - target) ** 2).flatten(1).mean(dim=1)
        return 10.0 * torch.log10(mse + 1e-6).mean()


def make_loss(name: str) -> nn.Module:
    return {"bce": nn.BCELoss, "psnr": PsnrLoss}.get(name, nn.MSELoss)()


def _as_model_input(batch: torch.Tensor, fully_convolutional: bool) -> torch.Tensor:
    # Channels-last is oneDNN's native conv layout on CPU: measured 1.47x faster training of
    # unet_small here, with the same fp32 arithmetic. Dense models reshape it away anyway.
    return batch.contiguous(memory_format=torch.channels_last) if fully_convolutional else batch


@torch.no_grad()
def predict(
    model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 1024
) -> np.ndarray:
    """Run the model over (N, 1, H, W) float32 images in batches; returns numpy float32."""
    model.eval()
    out = np.empty_like(images, dtype=np.float32)
    for i in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).to(device)
        out[i : i + batch_size] = model(batch).float().cpu().numpy()
    return out


def score(clean: np.ndarray, restored: np.ndarray) -> dict[str, float]:
    """Mean per-image PSNR (dB) and SSIM."""
    return {
        "psnr": float(np.mean(psnr(clean, restored))),
        "ssim": float(np.mean(ssim(clean, restored))),
    }


def model_input(task: str, clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """Autoencoders reconstruct clean digits; denoisers restore noisy ones."""
    return clean if task == "autoencoder" else noisy


def split_train_val(images: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Carve a seeded validation split from the training images (the test set stays unseen)."""
    if config.train_limit is not None:
        images = images[: config.train_limit]
    if config.val_size >= len(images):
        raise UsageError(
            f"{config.val_size} validation images leave none to train on out of "
            f"{len(images)}: hold out fewer"
        )
    order = np.random.default_rng(config.seed).permutation(len(images))
    return images[order[config.val_size :]], images[order[: config.val_size]]


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively here (else it emulates them, slowly)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def epoch_batches(
    config: TrainConfig, task: str, train_x: np.ndarray, rng: np.random.Generator
) -> tuple[int, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """This epoch's step count and its (input, target) batches, all drawn from `rng`."""
    if config.data in ("scenes", "world"):
        steps = config.steps_per_epoch
        if config.max_steps_per_epoch:
            steps = min(steps, config.max_steps_per_epoch)
        return steps, _scene_batches(config, task, train_x[:, 0], rng, steps)
    order = rng.permutation(len(train_x))
    noisy = add_noise(train_x, config.noise, config.noise_level, rng)
    inputs = model_input(task, train_x, noisy)
    steps = -(-len(train_x) // config.batch_size)
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for step in range(steps):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            yield inputs[idx], train_x[idx]

    return steps, batches()


def _scene_batches(
    config: TrainConfig, task: str, digits: np.ndarray, rng: np.random.Generator, steps: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Scenes (or the wide world) drawn fresh each step (cheaper than the step itself: ~1 ms
    per 64x64 canvas); every third step plain MNIST frames, so the reference framing is never
    forgotten. The world brings its own noise (world.world_noise); frames and scenes get
    `config.noise`."""
    size = config.scene_size
    for step in range(steps):
        if step % 3 == 2:
            idx = rng.integers(0, len(digits), config.batch_size * 4)
            clean = digits[idx][:, None]
            if config.frames_inverted_share > 0:  # dark-on-light frames, noised as they are
                flip = rng.random(len(clean)) < config.frames_inverted_share
                clean = np.where(flip[:, None, None, None], 1.0 - clean, clean)
        elif config.data == "world" and not _scenes_instead(config, rng):
            noisy, clean = world_batch(config.batch_size, size, digits, rng, world_mix(config))
            yield model_input(task, clean, noisy), clean
            continue
        else:
            clean = training_scenes(
                config.batch_size, size, size, digits, rng, max_scale=config.scene_max_scale
            )
        noisy = add_noise(clean, config.noise, config.noise_level, rng)
        yield model_input(task, clean, noisy), clean


def world_mix(config: TrainConfig) -> WorldMix:
    """The world's draws as the config asks for them."""
    return WorldMix(
        config.world_display_share,
        config.world_read_noise_max,
        config.world_framed_share,
        config.world_moderate_share,
        config.world_faint_share,
    )


def _scenes_instead(config: TrainConfig, rng: np.random.Generator) -> bool:
    """Whether this world step draws the scenes' canvases (drawn only when asked, so a run
    without them keeps its random stream)."""
    return config.world_scenes_share > 0 and rng.random() < config.world_scenes_share


def _scene_metrics(
    model: nn.Module, scenes: tuple[np.ndarray, np.ndarray], task: str, device: torch.device
) -> dict[str, float]:
    clean, noisy = scenes
    restored = predict(model, model_input(task, clean, noisy), device)
    return {f"val_scene_{k}": v for k, v in score(clean, restored).items()}


def validation_scenes(
    config: TrainConfig, val_digits: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Fixed (clean, noisy) canvases from the validation digits, for scene and world training:
    the same every epoch and every run of a config."""
    rng = np.random.default_rng(EVAL_NOISE_SEED)
    count, size = min(256, len(val_digits)), config.scene_size
    if config.data == "world":
        noisy, clean = world_batch(count, size, val_digits, rng)
        return clean, noisy
    if config.data != "scenes":
        return None
    clean = training_scenes(count, size, size, val_digits, rng, max_scale=config.scene_max_scale)
    return clean, add_noise(clean, config.noise, config.noise_level, rng)


def train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """Training mode, with batch norm left normalising by its running statistics if asked."""
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def init_weights(model: nn.Module, source: Path) -> str:
    """Copy a checkpoint's weights into `model` for fine-tuning; says what was copied.

    Every tensor of the source must land (same name, same shape): a fine-tune that silently
    dropped half its starting point would be a fresh training under a misleading name. Tensors
    only the new model has keep their initialisation.
    """
    state = load_checkpoint(source)["model_state"]
    own = model.state_dict()
    unfit = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if unfit:
        raise UsageError(
            f"{source}: {len(unfit)} tensors do not fit this architecture ({', '.join(unfit[:3])})"
        )
    model.load_state_dict(state, strict=False)
    fresh = [k for k in own if k not in state]
    return f"initialised from {source}: {len(state)} tensors copied, {len(fresh)} new"


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict[str, float]]
    metrics: dict[str, float]
    checkpoint: Path | None


@dataclass(frozen=True)
class Validation:
    """What every epoch is scored on, fixed for the whole run: the held-out digits, their
    noisy versions at the reference setting, and (scene and world training) fixed canvases."""

    clean: np.ndarray
    noisy: np.ndarray
    scenes: tuple[np.ndarray, np.ndarray] | None


def fit(
    config: TrainConfig,
    train_images: np.ndarray,
    out_path: Path | None = None,
    resume_from: Path | None = None,
    log: Callable[[str], Any] = lambda msg: print(msg, file=sys.stderr),
    progress: bool | None = None,
    progress_every_s: float | None = 60.0,
) -> FitResult:
    """Train `config.arch` on `train_images` (N, 1, 28, 28) in [0, 1]; checkpoint every epoch.

    `progress`: a live bar (None: when stderr is a terminal); off one, a plain progress line
    every `progress_every_s` seconds (None: none), so a log shows a long epoch is alive.
    """
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    arch = get_arch(config.arch)
    ckpt = load_checkpoint(resume_from) if resume_from is not None else None
    if ckpt is not None:
        check_resume(ckpt, config, resume_from, out_path)
    arch_args = ckpt["arch_args"] if ckpt is not None else dict(arch.args)
    model = build_model(arch, arch_args).to(device)
    if arch.fully_convolutional:
        model = model.to(memory_format=torch.channels_last)
    use_bf16 = _bf16_wanted(config, device, log)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = make_loss(config.loss or arch.loss)

    train_x, val_x = split_train_val(train_images, config)
    validation = _validation(config, val_x)
    history, start_epoch = _start_from(model, optimizer, config, ckpt, resume_from, log)
    log(
        f"training {config.arch} ({sum(p.numel() for p in model.parameters()):,} params) on "
        f"{len(train_x):,} images, validating on {len(val_x):,}, device {device}"
    )
    metrics: dict[str, float] = history[-1] if history else {}
    for epoch in range(start_epoch, config.epochs):
        # Fresh noise and order every epoch, derived from (seed, epoch): a resumed run
        # sees exactly the batches the uninterrupted one would have.
        rng = np.random.default_rng([config.seed, epoch])
        steps, batches = epoch_batches(config, arch.task, train_x, rng)
        bar = Progress(
            steps, f"epoch {epoch + 1}/{config.epochs}", "step", None, progress, progress_every_s
        )
        t0 = time.perf_counter()
        step = _Step(model, optimizer, loss_fn, device, arch.fully_convolutional, use_bf16)
        try:
            loss_sum, seen = train_epoch(step, config, epoch, steps, batches, bar)
        except Diverged as exc:
            bar.close()
            last = out_path if epoch > start_epoch else resume_from
            kept = f"{last} (epoch {epoch}) is kept" if last is not None else "nothing was saved"
            raise Diverged(
                f"training diverged in epoch {epoch + 1}: {exc}; {kept}; try a lower learning "
                f"rate than {config.lr:g}"
            ) from None
        seconds = time.perf_counter() - t0
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            **evaluate(model, loss_fn, arch.task, validation, device),
            "seconds": seconds,
            "images_per_s": seen / seconds if seconds > 0 else 0.0,
        }
        history.append(metrics)
        log(_epoch_line(metrics, config.epochs))
        if out_path is not None:
            save_checkpoint(
                out_path, model, config, arch_args, epoch + 1, metrics, history, optimizer
            )
    return FitResult(model.eval(), history, metrics, out_path)


#: What a resumed run may change: how long, how fast and where, and how it optimises (a
#: second cosine cycle, a PSNR fine-tune: scripts/train_strong_models.sh). Everything else
#: decides which images, batches and noise the next epochs see, so a change would leave a
#: checkpoint whose config describes a run that never happened.
RESUME_MAY_CHANGE = frozenset(
    {"epochs", "lr", "lr_schedule", "loss", "freeze_bn", "threads", "device", "precision"}
    | {"max_steps_per_epoch", "init_from", "init_sha256"}
)


def check_resume(
    ckpt: dict[str, Any], config: TrainConfig, resume_from: Path | None, out_path: Path | None
) -> None:
    """UsageError unless `config` continues the run `ckpt` was saved from, and there is an
    epoch left to train into `out_path` (else the run would claim a file it never wrote)."""
    if ckpt["arch"] != config.arch:
        raise UsageError(f"{resume_from}: checkpoint is {ckpt['arch']}, not {config.arch}")
    saved, now = ckpt.get("config", {}), config.to_dict()
    changed = sorted(
        k for k in saved.keys() & now.keys() if k not in RESUME_MAY_CHANGE and saved[k] != now[k]
    )
    if changed:
        what = ", ".join(f"{k} {saved[k]!r} -> {now[k]!r}" for k in changed)
        raise UsageError(f"{resume_from}: resumed with other settings ({what}); give its own")
    done = int(ckpt.get("epoch", 0))
    same_file = (
        out_path is not None
        and resume_from is not None
        and (os.path.realpath(out_path) == os.path.realpath(resume_from))
    )
    if done >= config.epochs and out_path is not None and not same_file:
        raise UsageError(
            f"{resume_from}: already trained {done} of --epochs {config.epochs}; nothing would "
            f"be written to {out_path} (raise --epochs to train on)"
        )


def _bf16_wanted(config: TrainConfig, device: torch.device, log: Callable[[str], Any]) -> bool:
    """bf16 autocast: convolutions in bfloat16 (AVX512-BF16 / tensor cores), weights, loss and
    optimizer in fp32. Measured 1.6x faster unet_small training on an AVX-512 CPU."""
    use_bf16 = config.precision == "bf16"
    if use_bf16 and device.type == "cpu" and not cpu_has_native_bf16():
        log(
            "warning: this CPU has no native bfloat16 (AVX512-BF16 or AMX); bf16 is emulated "
            "and slow (unet_ctx trained at 33 images/s on an AVX2-only CPU): use --precision fp32"
        )
    return use_bf16


def _validation(config: TrainConfig, val_x: np.ndarray) -> Validation:
    # Validation always uses the same fixed noise; a blind model is validated on the
    # reference setting (Gaussian sigma 0.5) so its numbers compare with the specialists'.
    val_kind, val_level = eval_noise(config.to_dict())
    val_noisy = add_noise(val_x, val_kind, val_level, EVAL_NOISE_SEED)
    return Validation(val_x, val_noisy, validation_scenes(config, val_x[:, 0]))


def _start_from(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    ckpt: dict[str, Any] | None,
    resume_from: Path | None,
    log: Callable[[str], Any],
) -> tuple[list[dict[str, float]], int]:
    """Load a resumed checkpoint's weights and optimizer (or --init-from's weights); the
    history so far and the number of epochs it holds."""
    if ckpt is None:
        if config.init_from is not None:
            log(init_weights(model, Path(config.init_from)))
        return [], 0
    load_weights(model, ckpt["model_state"], config.arch)
    if ckpt.get("optimizer_state"):
        optimizer.load_state_dict(ckpt["optimizer_state"])
        for group in optimizer.param_groups:  # this run's --lr, not the saved one
            group["lr"] = config.lr
    start_epoch = int(ckpt["epoch"])
    log(f"resuming {config.arch} from {resume_from} after epoch {start_epoch}")
    return list(ckpt["history"]), start_epoch


class Diverged(WorkFailed):
    """The loss became NaN or infinite: a step on it would turn every weight into NaN."""


def checked_loss(loss: torch.Tensor) -> float:
    """The loss as a float (the sync point a step has anyway), or Diverged before its
    gradients can reach the weights."""
    value = loss.item()
    if not math.isfinite(value):
        raise Diverged(
            f"the loss became {value} (data or start weights with NaN, or too high a learning rate)"
        )
    return value


def _loss(loss_fn: nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss, or Diverged where the output is NaN (BCE raises on it, a traceback)."""
    try:
        return loss_fn(pred, target)
    except RuntimeError:
        if bool(torch.isfinite(pred).all()):
            raise
        raise Diverged("the model's output became NaN or infinite") from None


@dataclass(frozen=True)
class _Step:
    """What one optimisation step needs, gathered once per epoch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    device: torch.device
    fully_convolutional: bool
    use_bf16: bool


def train_epoch(
    step: _Step,
    config: TrainConfig,
    epoch: int,
    steps: int,
    batches: Iterator[tuple[np.ndarray, np.ndarray]],
    bar: Progress,
) -> tuple[float, int]:
    """One epoch of `steps` optimiser steps; (sum of per-image losses, images seen)."""
    train_mode(step.model, config.freeze_bn)
    running, seen = 0.0, 0
    for i in range(steps):
        if config.lr_schedule == "cosine":
            done = (epoch * steps + i) / (config.epochs * steps)
            for group in step.optimizer.param_groups:
                group["lr"] = config.lr * 0.5 * (1.0 + math.cos(math.pi * done))
        inputs, targets = next(batches)
        x = _as_model_input(torch.from_numpy(inputs).to(step.device), step.fully_convolutional)
        y = torch.from_numpy(targets).to(step.device)
        step.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(step.device.type, dtype=torch.bfloat16, enabled=step.use_bf16):
            pred = step.model(x)
        loss = _loss(step.loss_fn, pred.float(), y)
        value = checked_loss(loss)
        loss.backward()
        step.optimizer.step()
        running += value * len(targets)
        seen += len(targets)
        bar.update(1, loss=running / seen)
    bar.close()
    return running, seen


def evaluate(
    model: nn.Module, loss_fn: nn.Module, task: str, validation: Validation, device: torch.device
) -> dict[str, float]:
    """Validation loss, PSNR and SSIM (and on the fixed scenes, when there are some)."""
    restored = predict(model, model_input(task, validation.clean, validation.noisy), device)
    with torch.no_grad():
        val_loss = float(loss_fn(torch.from_numpy(restored), torch.from_numpy(validation.clean)))
    return {
        "val_loss": val_loss,
        **{f"val_{k}": v for k, v in score(validation.clean, restored).items()},
        **(_scene_metrics(model, validation.scenes, task, device) if validation.scenes else {}),
    }


def _epoch_line(metrics: dict[str, float], epochs: int) -> str:
    scene = metrics.get("val_scene_psnr")
    return (
        f"epoch {metrics['epoch']}/{epochs}: train_loss {metrics['train_loss']:.4f} "
        f"val_loss {metrics['val_loss']:.4f} val_psnr {metrics['val_psnr']:.2f} dB "
        f"val_ssim {metrics['val_ssim']:.3f}"
        + (f" val_scene_psnr {scene:.2f} dB" if scene is not None else "")
        + f" ({metrics['seconds']:.1f} s, {metrics['images_per_s']:,.0f} img/s)"
    )
