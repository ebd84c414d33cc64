"""`denoise-export adapt` (`denoise_export.adapt`): fine-tune a bundled model (or a checkpoint)
on a user's own folder.

Steps: read the folder (denoise-batch's decoders, the model's polarity); estimate its noise
(train/noise_estimate.py); rebuild the starting model in PyTorch (from ONNX for bundled models,
train/onnx_import.py); hold out a split; train within a time budget, batch norm frozen (with
batch statistics the probes of issue 26 collapsed the model), checkpointing every few minutes
and on Ctrl-C; keep the best weights on the held-out split, or the starting ones if nothing beat
them; export through the project's verified path (fp32, INT8 where it verifies) with metadata
naming the folder, the noise and the base model; write a before/after contact sheet.
"""

from __future__ import annotations

import copy
import io
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from denoise_cli.core.atomic import write_atomic
from denoise_cli.core.errors import ModelError, UsageError
from denoise_cli.core.progress import Progress
from denoise_cli.core.safety import check_output_file
from denoise_cli.model.bundled import bundled_models, resolve_model
from denoise_cli.model.placement import int8_file
from denoise_export.adapt_base import BaseModel, resolve_base
from denoise_export.adapt_data import AdaptData, prepare_data
from denoise_export.adapt_eval import Validation, make_validation, run_model
from denoise_export.adapt_folder import check_folder, random_crops
from denoise_export.build import export_checkpoint
from denoise_train.adapt_objectives import METHODS, objective
from denoise_train.checkpoint import FORMAT, CheckpointError, load_checkpoint
from denoise_train.contact_sheet import contact_sheet
from denoise_train.loop import Diverged, checked_loss, pick_device
from denoise_train.noise_estimate import NoiseModel

NOISE_CHOICES = ("auto", "gaussian", "poisson-gaussian")


@dataclass(frozen=True)
class AdaptSettings:
    """How to adapt; saved in the checkpoint so --resume continues the same run."""

    method: str = "auto"  # "auto": r2r without clean images, supervised with them
    minutes: float = 15.0
    max_steps: int | None = None  # tests and benchmarks: stop after this many steps
    batch_size: int = 16
    lr: float = 2e-4
    noise: str = "auto"
    checkpoint_minutes: float = 3.0
    #: How often the held-out split is scored (the best weights kept, the teacher refreshed).
    evaluate_minutes: float = 1.0
    seed: int = 0
    threads: int | None = None
    device: str = "auto"


@dataclass
class AdaptResult:
    model: Path
    files: list[Path]
    contact_sheet: Path
    checkpoint: Path
    noise: NoiseModel
    method: str
    steps: int
    minutes: float
    before: dict[str, float]
    after: dict[str, float]
    kept_base: bool
    warnings: list[str] = field(default_factory=list)


#: Impulses (share of pixels) from which noisy-only adaptation adds pseudo-clean targets.
PSEUDO_FROM_IMPULSES = 0.005


def auto_method(data: AdaptData) -> str:
    """Supervised with clean images; else R2R, with pseudo-clean targets where the folder has
    impulses (R2R leaves them out of its loss, so alone it never learns to remove them; the
    pseudo-clean targets carry re-synthesised impulses). Measured
    (benchmarks/results/adapt-2026-12-03*.md): R2R alone beat R2R + pseudo by 2 dB in equal
    minutes on the display domain (no impulses); on serif print (3% impulses) R2R alone lost
    1.0 dB against the start in 15 minutes."""
    if data.clean is not None:
        return "supervised"
    return "r2r+pseudo" if data.noise.impulse >= PSEUDO_FROM_IMPULSES else "r2r"


def checkpoint_path(out: Path) -> Path:
    """The resumable checkpoint beside the model: MODEL.adapt.pt."""
    return out.with_name(out.with_suffix("").name + ".adapt.pt")


def contact_sheet_path(out: Path) -> Path:
    return out.with_name(out.with_suffix("").name + ".contact.png")


def output_files(out: Path) -> tuple[Path, Path, Path, Path]:
    """Every file adapt writes: the model, its INT8 twin, MODEL.adapt.pt, the contact sheet."""
    return out, int8_file(out), checkpoint_path(out), contact_sheet_path(out)


def check_outputs(
    out: Path, noisy_dir: str | Path, clean_dir: str | Path | None, base: str | Path | None
) -> None:
    """Every file adapt writes checked before any training: none may replace the base model or
    land in the folders it learns from (it overwrote its own --from model, and trained on its
    own contact sheet)."""
    reads = [Path(noisy_dir), *([Path(clean_dir)] if clean_dir else [])]
    base_file = resolve_model(base)
    if base_file.exists():
        reads.append(base_file)
    for path in output_files(out):
        check_output_file(path, reads, "--out")


#: The contact sheet's PNG text key (its value: the model's name), so a rerun knows it.
SHEET_KEY = "denoise_adapt_contact_sheet"


def written_by_adapt(path: Path) -> bool:
    """Whether `path` is an adaptation's: an ONNX file carrying the adapt_* metadata
    (_metadata), a checkpoint carrying the run's state (what resume reads), a contact sheet
    carrying SHEET_KEY."""
    if path.suffix == ".png":
        from PIL import Image

        try:
            with Image.open(path) as im:
                return SHEET_KEY in getattr(im, "text", {})
        except (OSError, ValueError, SyntaxError):  # not an image Pillow reads: not ours
            return False
    if path.suffix == ".onnx":
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception:  # onnx raises DecodeError, OSError...: not a model of ours
            return False
        return any(p.key == "adapt_source_sha256" for p in proto.metadata_props)
    try:
        return "adapt" in load_checkpoint(path)
    except CheckpointError:
        return False


def check_earlier(out: Path, resume: bool, overwrite: bool) -> None:
    """Before any work: a file there that adapt did not write is refused whatever is asked
    (overwrite replaces an earlier run's files only; any file used to be called one); an
    earlier run's model or checkpoint is continued (resume) or replaced (overwrite) only when
    asked, and so is any one of its files left alone (an INT8 twin was replaced unasked). A
    contact sheet from before sheets were marked (SHEET_KEY) is an earlier run's beside one."""
    model, int8, checkpoint, sheet = output_files(out)
    present = [p for p in (checkpoint, model, int8, sheet) if p.exists()]
    ours = [p for p in present if written_by_adapt(p)]
    if sheet in present and sheet not in ours and ours:
        ours.append(sheet)
    if others := [p for p in present if p not in ours]:
        raise UsageError(
            f"{others[0]}: a file that is not an adaptation's output is there; it is left as "
            "it is: move it, or choose another output"
        )
    if ours and not (resume or overwrite):
        raise UsageError(f"{ours[0]}: an earlier run's; {_what_to_do(checkpoint in ours)}")


def _what_to_do(resumable: bool) -> str:
    """The way on from an earlier run's files: --resume only where its checkpoint is there."""
    if resumable:
        return "continue it (--resume) or replace it (--overwrite)"
    return "replace it (--overwrite; it left no checkpoint to --resume)"


def check_request(
    out: Path,
    noisy_dir: str | Path,
    clean_dir: str | Path | None,
    base: str | Path | None,
    settings: AdaptSettings,
    resume: bool,
    overwrite: bool,
) -> None:
    """Everything that can be refused before the base model is loaded or a file is read."""
    if out.suffix != ".onnx":
        raise UsageError(f"{out}: the output must be an .onnx file")
    if settings.method not in ("auto", "supervised", *METHODS):
        raise UsageError(f"unknown method {settings.method!r}; use auto, supervised or {METHODS}")
    if settings.noise not in NOISE_CHOICES:
        raise UsageError(f"unknown noise {settings.noise!r}; use one of {NOISE_CHOICES}")
    if resume and overwrite:  # the first continues the earlier run, the second discards it
        raise UsageError(
            "resume and overwrite contradict each other: resume continues the earlier run, "
            "overwrite replaces it; choose one"
        )
    for folder in (noisy_dir, *([clean_dir] if clean_dir is not None else [])):
        check_folder(Path(folder))
    check_outputs(out, noisy_dir, clean_dir, base)
    check_earlier(out, resume, overwrite)


def adapt(
    noisy_dir: str | Path,
    out: str | Path,
    clean_dir: str | Path | None = None,
    base: str | Path | None = None,
    settings: AdaptSettings | None = None,
    resume: bool = False,
    log: Callable[[str], Any] = lambda msg: print(msg, file=sys.stderr),
    progress: bool | None = None,
    overwrite: bool = False,
) -> AdaptResult:
    """Adapt `base` (default: the bundled default model) to the images of `noisy_dir`; write
    `out` (ONNX, verified) and its companions. See the module docstring for the steps.
    An earlier run's model or checkpoint at `out` is continued (`resume`) or replaced only
    when asked (`overwrite`, not both): a second run used to replace minutes of training
    unasked. Another file there is never replaced (see check_earlier)."""
    settings = settings or AdaptSettings()
    out = Path(out)
    check_request(out, noisy_dir, clean_dir, base, settings, resume, overwrite)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    saved = _load_resume(out) if resume else None
    base_model = resolve_base(base) if saved is None else _resumed_base(saved, base, out)
    data = prepare_data(Path(noisy_dir), clean_dir, base_model, settings.noise, log)
    method = settings.method
    if method == "auto":
        method = auto_method(data)
    if saved is not None:
        _check_same_run(saved["adapt"], data, method, checkpoint_path(out))
    device = pick_device(settings.device)
    validation = make_validation(data, method, base_model.model, device)
    log(f"held out {validation.count} images")
    trained = train(
        base_model, data, method, validation, settings, out, saved, device, log, progress
    )
    return finish(base_model, data, method, validation, trained, settings, out, log)


def _check_same_run(state: dict, data: AdaptData, method: str, checkpoint: Path) -> None:
    """A resume goes on with the saved run as it was: another folder, method or noise model
    trained one way and recorded another (--method pseudo relabelled an r2r+pseudo run)."""
    if state["folder_sha256"] != data.noisy.digest:
        raise UsageError(f"{data.noisy.root}: not the folder {checkpoint} was trained on")
    again = "resume with the settings it had, or start over with --overwrite"
    if state["method"] != method:
        raise UsageError(f"method {method}: {checkpoint} trained with {state['method']}; {again}")
    if state["noise"] != data.noise.to_dict():
        raise UsageError(
            f"noise {data.noise.describe()}: {checkpoint} trained with another; {again}"
        )


@dataclass
class Trained:
    """Where training stands: steps, seconds, and the best weights so far (None: the start's)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    elapsed: float = 0.0
    best_score: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def _load_resume(out: Path) -> dict[str, Any]:
    path = checkpoint_path(out)
    if not path.is_file():  # missing or refused checkpoints are exit 3, as in fit --resume
        raise ModelError(f"{path}: nothing to resume (no checkpoint of an earlier run)")
    saved = load_checkpoint(path)
    if "adapt" not in saved:
        raise ModelError(f"{path}: not an adaptation checkpoint")
    return saved


def _resumed_base(saved: dict[str, Any], base: str | Path | None, out: Path) -> BaseModel:
    """The base model the saved run started from, unchanged since; a different `base` asked
    for is refused (it used to be ignored without a word)."""
    began, digest = saved["adapt"]["base_source"], saved["adapt"]["base_sha256"]
    if base is not None:  # the same file, wherever it is now (the run may have begun elsewhere)
        named = resolve_base(base)
        if named.sha256 != digest:
            raise UsageError(
                f"{base}: not the base model {checkpoint_path(out)} started from ({began}); "
                "resume without naming one, or start a new run"
            )
        return named
    try:
        base_model = resolve_base(began)
    except ModelError:
        raise ModelError(
            f"{began}: the base model {checkpoint_path(out)} started from is not there (moved, "
            "or named from another folder); name it to resume"
        ) from None
    if base_model.sha256 != digest:
        raise ModelError(f"{began}: changed since {checkpoint_path(out)} started from it")
    return base_model


def _lr(settings: AdaptSettings, fraction: float) -> float:
    """Cosine decay over the run (by time, or by steps with max_steps): stateless, resumable."""
    return settings.lr * 0.5 * (1.0 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))


def _fraction(trained: Trained, settings: AdaptSettings) -> float:
    by_time = trained.elapsed / max(settings.minutes * 60.0, 1e-9)
    if settings.max_steps is not None:
        return max(by_time, trained.step / max(settings.max_steps, 1))
    return by_time


def _start(
    base: BaseModel, method: str, settings: AdaptSettings, saved: dict | None, device
) -> tuple[Trained, nn.Module | None]:
    """The model to train (a copy of the base, or the saved run's state) and the teacher."""
    # eval() for good: batch norm keeps the base model's statistics (issue 26's probes: with
    # batch statistics fine-tuning collapsed the model); only weights and shifts learn.
    model = copy.deepcopy(base.model).to(device).eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    trained = Trained(model, optimizer)
    if saved is not None:
        state = saved["adapt"]
        model.load_state_dict(state["current_state"])
        optimizer.load_state_dict(saved["optimizer_state"])
        trained.step, trained.elapsed = int(state["step"]), float(state["elapsed"])
        trained.best_score = float(state["best_score"])
        trained.best_state = state.get("best_state")
        trained.history = list(saved["history"])
    teacher = None
    if "pseudo" in method:
        teacher = copy.deepcopy(base.model).to(device).eval()
        teacher.requires_grad_(False)
        if trained.best_state is not None:
            teacher.load_state_dict(trained.best_state)
    return trained, teacher


def _evaluate(trained: Trained, validation: Validation) -> bool:
    """Score the current weights on the held-out split; keep them when they are the best
    (then True)."""
    metrics = validation.evaluate(trained.model)
    score = validation.score(metrics)
    trained.history.append({"step": trained.step, "elapsed": trained.elapsed, **metrics})
    if score > trained.best_score and validation.acceptable(metrics):
        trained.best_score = score
        state = trained.model.state_dict()
        trained.best_state = {k: v.detach().cpu().clone() for k, v in state.items()}
        return True
    return False


def train(
    base: BaseModel,
    data: AdaptData,
    method: str,
    validation: Validation,
    settings: AdaptSettings,
    out: Path,
    saved: dict | None,
    device: torch.device,
    log: Callable[[str], Any],
    progress: bool | None,
) -> Trained:
    """Train until the time (or step) budget is spent; checkpoint every few minutes and on
    Ctrl-C (then re-raise, so the CLI exits 130 and --resume continues)."""
    trained, teacher = _start(base, method, settings, saved, device)
    if saved is None:
        trained.best_score = validation.score(validation.base)
    rng = np.random.default_rng(settings.seed + trained.step)
    torch.manual_seed(settings.seed + trained.step)
    limit = settings.max_steps
    total, unit = (limit, "step") if limit else (int(settings.minutes * 60), "s")
    bar = Progress(total, "adapting", unit, enabled=progress)
    images = data.train_images(method)
    log(f"adapting {base.name} ({method}) on {len(images)} images, crops {data.crop}px")
    began, offset = time.perf_counter(), trained.elapsed
    last_eval = last_save = began
    diverged = ""
    try:
        while _fraction(trained, settings) < 1.0:
            batch = random_crops(images, settings.batch_size, data.crop, rng)
            for group in trained.optimizer.param_groups:
                group["lr"] = _lr(settings, _fraction(trained, settings))
            inputs = torch.from_numpy(batch).to(device)
            loss = objective(method, trained.model, teacher, inputs, data.model_noise)
            try:
                value = checked_loss(loss)
            except Diverged as exc:  # the weights are still this step's: the best stay kept
                diverged = f"stopped after {trained.step} steps: {exc}; the best weights are kept"
                break
            trained.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trained.optimizer.step()
            trained.step += 1
            trained.elapsed = offset + time.perf_counter() - began
            bar.update(1 if limit else int(trained.elapsed) - bar.done, loss=value)
            if time.perf_counter() - last_eval > settings.evaluate_minutes * 60:
                # Self-training: pseudo-clean targets come from the best weights so far.
                if _evaluate(trained, validation) and teacher is not None:
                    teacher.load_state_dict(trained.best_state)
                last_eval = time.perf_counter()
            if time.perf_counter() - last_save > settings.checkpoint_minutes * 60:
                save_adapt_checkpoint(out, base, data, method, trained, settings, validation)
                last_save = time.perf_counter()
    except KeyboardInterrupt:
        bar.close()
        path = save_adapt_checkpoint(out, base, data, method, trained, settings, validation)
        log(f"interrupted after {trained.step} steps: saved {path}; --resume continues")
        raise
    bar.close()
    if diverged:
        log(diverged)
    _evaluate(trained, validation)
    return trained


def _train_config(
    base: BaseModel, data: AdaptData, settings: AdaptSettings, validation: Validation
) -> Any:
    """A TrainConfig for the export's metadata: the held-out split, Gaussian at the noise's
    mid-grey sigma as the test noise of the export's checks."""
    from denoise_train.config import TrainConfig

    return TrainConfig(
        arch=base.arch,
        epochs=1,
        batch_size=settings.batch_size,
        lr=settings.lr,
        noise="gaussian",
        noise_level=round(float(data.noise.sigma(0.5)), 4),
        val_size=validation.count,
        seed=settings.seed,
        device=settings.device,
        threads=settings.threads,
        data="world" if base.polarity == "either" else "scenes",
        init_from=base.source,
        init_sha256=base.sha256,
    )


def save_adapt_checkpoint(
    out: Path,
    base: BaseModel,
    data: AdaptData,
    method: str,
    trained: Trained,
    settings: AdaptSettings,
    validation: Validation,
) -> Path:
    """MODEL.adapt.pt: an ordinary checkpoint of the best weights so far (so `--from` and
    denoise-export take it) plus the run's state under "adapt" (for --resume)."""
    best = trained.best_state or {k: v.clone() for k, v in base.model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "arch": base.arch,
        "arch_args": base.arch_args,
        "config": _train_config(base, data, settings, validation).to_dict(),
        "epoch": 1,
        "metrics": trained.history[-1] if trained.history else {},
        "history": trained.history,
        "model_state": best,
        "optimizer_state": trained.optimizer.state_dict(),
        "torch_version": str(torch.__version__),
        "adapt": {
            # A file as an absolute path: a resume from another folder finds it.
            "base_source": base.source
            if base.source in bundled_models()
            else str(base.path.resolve()),
            "base_sha256": base.sha256,
            "polarity": base.polarity,
            "trained_on": f"{base.trained_on}; adapted to {data.noisy.root.name}",
            "folder_sha256": data.noisy.digest,
            "noise": data.noise.to_dict(),
            "method": method,
            "settings": asdict(settings),
            "step": trained.step,
            "elapsed": trained.elapsed,
            "best_score": trained.best_score,
            "best_state": trained.best_state,
            "current_state": {k: v.detach().cpu() for k, v in trained.model.state_dict().items()},
        },
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = checkpoint_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(buffer.getvalue(), path)
    return path


def finish(
    base: BaseModel,
    data: AdaptData,
    method: str,
    validation: Validation,
    trained: Trained,
    settings: AdaptSettings,
    out: Path,
    log: Callable[[str], Any],
) -> AdaptResult:
    """Keep the best weights (the starting ones if nothing beat them), export, contact sheet."""
    kept_base = trained.best_state is None
    model = copy.deepcopy(base.model).eval()
    if not kept_base:
        model.load_state_dict(trained.best_state)
    model = model.to(validation.device)
    after = validation.evaluate(model) if not kept_base else dict(validation.base)
    log(f"held-out split, starting model: {validation.describe(validation.base)}")
    start = validation.score(validation.base)
    noisier = kept_base and [
        h for h in trained.history if validation.score(h) > start and not validation.acceptable(h)
    ]
    if noisier:
        log(
            "warning: weights that bettered the held-out figure left more noise in the outputs "
            f"(residual sigma up to {max(h['residual_sigma'] for h in noisier):.4f}, the start "
            f"{validation.base['residual_sigma']:.4f}): keeping the starting model's weights "
            "(give --clean images)"
        )
    elif kept_base:
        log(
            "warning: adaptation did not improve the held-out figure: keeping the starting "
            "model's weights (try more --minutes, or --clean images)"
        )
    else:
        log(f"held-out split, adapted model:  {validation.describe(after)}")
    checkpoint = save_adapt_checkpoint(out, base, data, method, trained, settings, validation)
    model = model.cpu()
    metadata = _metadata(base, data, method, trained, validation, after, kept_base)
    files = export_adapted(checkpoint, out, _export_digits(data, model), metadata, log)
    real, cpu = validation.real_noisy[:8], torch.device("cpu")
    columns = [real, run_model(base.model.cpu(), real, cpu), run_model(model, real, cpu)]
    if data.mostly_inverted:  # shown as in the files, not in the model's polarity
        columns = [1.0 - c for c in columns]
    sheet = contact_sheet(columns, contact_sheet_path(out), text={SHEET_KEY: out.name})
    log(f"contact sheet (noisy | {base.name} | adapted): {sheet}")
    return AdaptResult(
        model=out,
        files=files,
        contact_sheet=sheet,
        checkpoint=checkpoint,
        noise=data.noise,
        method=method,
        steps=trained.step,
        minutes=trained.elapsed / 60.0,
        before=dict(validation.base),
        after=after,
        kept_base=kept_base,
        warnings=list(data.warnings),
    )


def _metadata(
    base: BaseModel,
    data: AdaptData,
    method: str,
    trained: Trained,
    validation: Validation,
    after: dict[str, float],
    kept_base: bool,
) -> dict[str, str]:
    """What the ONNX file says about its adaptation (export/metadata.py's keys, overridden
    where the adaptation knows better, plus adapt_* keys)."""
    return {
        "polarity": base.polarity,
        "trained_on": f"{base.trained_on}; adapted to the folder {data.noisy.root.name} "
        f"({len(data.noisy.images)} images)"
        + (f" with {len(data.clean.images)} clean images" if data.clean is not None else ""),
        "adapted_from": f"{base.name}, sha256 {base.sha256}",
        "adapt_source_folder": str(data.noisy.root),
        "adapt_source_sha256": data.noisy.digest,
        "adapt_noise": data.noise.describe(),
        "adapt_noise_model": json.dumps(data.noise.to_dict()),
        "adapt_method": method,
        "adapt_steps": str(trained.step),
        "adapt_minutes": f"{trained.elapsed / 60:.2f}",
        "adapt_held_out_before": validation.describe(validation.base),
        "adapt_held_out_after": validation.describe(after),
        "adapt_kept_base_weights": "true" if kept_base else "false",
        "test_set": "28x28 crops of the held-out images: "
        + ("clean ones" if data.clean is not None else "the adapted model's outputs")
        + " under Gaussian noise at the estimated mid-grey sigma",
    }


def _export_digits(data: AdaptData, model: nn.Module, count: int = 64) -> np.ndarray:
    """(count, 1, 28, 28) crops for the export's checks: held-out clean images, or without
    them the adapted model's outputs on held-out noisy ones (pseudo-clean)."""
    rng = np.random.default_rng(0)
    source = data.clean_held_out if data.clean_held_out is not None else data.noisy_held_out
    padded = [np.pad(im, [(0, max(0, 28 - s)) for s in im.shape], mode="reflect") for im in source]
    crops = random_crops(padded, count, 28, rng)
    if data.clean_held_out is None:
        crops = run_model(model, crops, torch.device("cpu"))
    return np.ascontiguousarray(crops, dtype=np.float32)


def export_adapted(
    checkpoint: Path,
    out: Path,
    digits: np.ndarray,
    metadata: dict[str, str],
    log: Callable[[str], Any],
) -> list[Path]:
    """The project's verified export: fp32 and, where it passes its accuracy check, INT8 (one
    export: a failed INT8 used to mean exporting and verifying fp32 a second time)."""
    result = export_checkpoint(
        checkpoint,
        out,
        digits,
        digits,
        log,
        int8=True,
        int8_optional=True,
        runtimes=(),
        metadata=metadata,
    )
    files = [Path(row.path) for row in result.rows]
    stale = int8_file(out)
    if stale not in files and stale.is_file():  # an earlier run's: --precision int8 would pair it
        stale.unlink()
        log(f"removed {stale}: an earlier run's INT8 model, not this one's")
    return files
