"""Checkpoints: weights plus everything needed to rebuild and judge the model.

A checkpoint is a plain dict of tensors, strings and numbers, saved with torch.save and read back
with `torch.load(weights_only=True)`, so loading one never unpickles arbitrary objects.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from denoise_cli.core.atomic import write_atomic
from denoise_cli.core.errors import RefusedError
from denoise_train.config import TrainConfig
from denoise_train.models import Arch, get_arch

FORMAT = "denoise-batch-checkpoint/1"


class CheckpointError(RefusedError):
    """A checkpoint is missing, unreadable or not one of ours."""


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: TrainConfig,
    arch_args: dict[str, Any],
    epoch: int,
    metrics: dict[str, float],
    history: list[dict[str, float]],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write atomically: a crash mid-save never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "arch": config.arch,
        "arch_args": arch_args,
        "config": config.to_dict(),
        "epoch": epoch,
        "metrics": metrics,
        "history": history,
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "torch_version": str(torch.__version__),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(buffer.getvalue(), path)
    return path


#: What every checkpoint of ours holds, and of what type: checked on load, so a damaged or
#: hand-made file is one line here, not a KeyError deep in a resume or an export.
CHECKPOINT_FIELDS = {
    "arch": str,
    "arch_args": dict,
    "model_state": dict,
    "config": dict,
    "epoch": int,
    "history": list,
}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:  # permissions, a file that vanished: refused, as a model is
        raise CheckpointError(
            f"{path}: cannot read the checkpoint ({exc.strerror or exc})"
        ) from None
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (torch.save writes a zip)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({_reason(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a denoise-batch checkpoint (format {FORMAT} expected)")
    for field, kind in CHECKPOINT_FIELDS.items():
        if not isinstance(ckpt.get(field), kind):
            raise CheckpointError(f"{path}: damaged checkpoint: its {field!r} is missing or wrong")
    return ckpt


def file_sha256(path: str | Path) -> str:
    """A checkpoint's identity: what exported files and fine-tunes record as their source."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture named in the checkpoint and load its weights (eval mode)."""
    try:
        arch = get_arch(ckpt["arch"])
    except KeyError as exc:
        raise CheckpointError(str(exc.args[0])) from None
    model = build_model(arch, ckpt["arch_args"])
    load_weights(model, ckpt["model_state"], arch.name)
    return model.eval()


def build_model(arch: Arch, args: dict[str, Any]) -> nn.Module:
    """`arch` built with a checkpoint's arguments, or CheckpointError saying they do not fit."""
    try:
        return arch.build(**args)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"arguments do not build architecture {arch.name}: {exc}") from None


def load_weights(model: nn.Module, state: dict[str, Any], arch: str) -> None:
    """`state` into `model`, or CheckpointError in one line (torch's is one per tensor)."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = f"{lines[1] if len(lines) > 1 else lines[0] if lines else exc}"
        more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
        raise CheckpointError(f"weights do not fit architecture {arch}: {detail}{more}") from None


def deployed(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint as it is exported: an architecture trained with re-parameterised branches
    (`Arch.deploys_as`) becomes its plain architecture with the branches folded in; any other
    checkpoint is returned as it is. The training config stays, with `trained_as` added."""
    arch = get_arch(ckpt["arch"])
    if arch.deploys_as is None:
        return ckpt
    from denoise_train.reparam import fuse

    plain = fuse(model_from_checkpoint(ckpt))
    args = {k: v for k, v in ckpt["arch_args"].items() if k != "rep"}
    config = {**ckpt["config"], "trained_as": arch.name}
    return {
        **ckpt,
        "arch": arch.deploys_as,
        "arch_args": args,
        "config": config,
        "model_state": plain.state_dict(),
    }


def _reason(exc: Exception) -> str:
    """The informative line of torch.load's often multi-paragraph errors."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line or "error" in line.lower():
            return line.removeprefix("WeightsUnpickler error: ")
    return lines[0] if lines else type(exc).__name__


def display_name(path: Path, ckpt: dict[str, Any]) -> str:
    """The architecture, or the file's stem when it names a variant of it (unet_small_e40)."""
    stem = Path(path).stem
    return stem if stem != ckpt["arch"] and stem.startswith(ckpt["arch"]) else ckpt["arch"]
