"""The models that `report` and `compare` score: training checkpoints or exported ONNX files.

An exported file is scored through onnxruntime exactly as `denoise-batch` would run it, and
describes itself from its metadata, so models whose checkpoints live elsewhere (the bundled
ones, say) sit in the same tables as fresh checkpoints. Size and CPU speed always refer to
the ONNX file as deployed: a checkpoint is exported (with the CPU rewrites) to measure them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Candidate:
    name: str
    arch: str
    task: str  # "denoiser" (noisy -> clean) or "autoencoder" (clean -> clean)
    params: int
    trained_on: str  # "gaussian 0.5", "blind mix", ...
    epochs: int
    source: str
    predict: Callable[[np.ndarray], np.ndarray]  # (N, 1, 28, 28) float32 -> same
    onnx: Callable[[], bytes]  # the deployable ONNX model, built on demand
    arch_args: dict[str, Any] = field(default_factory=dict)


def load_candidate(path: Path) -> Candidate:
    """A checkpoint (.pt) or an exported model (.onnx/.ort)."""
    path = Path(path)
    if path.suffix.lower() in (".onnx", ".ort"):
        return _from_onnx(path)
    return _from_checkpoint(path)


def _trained_on(noise: str, level: object) -> str:
    return {"blind": "blind mix", "mixed": "mixed kinds"}.get(noise, f"{noise} {level}")


def _from_checkpoint(path: Path) -> Candidate:
    import torch

    from denoise_export.onnx_export import export_model
    from denoise_export.rewrite import split_single_output_convs
    from denoise_train.checkpoint import (
        deployed,
        display_name,
        load_checkpoint,
        model_from_checkpoint,
    )
    from denoise_train.loop import predict
    from denoise_train.models import count_params, get_arch

    ckpt = deployed(load_checkpoint(path))
    arch = get_arch(ckpt["arch"])
    model = model_from_checkpoint(ckpt)

    def onnx_bytes() -> bytes:
        proto = export_model(model, arch.fully_convolutional, size_multiple=arch.size_multiple)
        split_single_output_convs(proto)
        return proto.SerializeToString()

    config = ckpt["config"]
    return Candidate(
        name=display_name(path, ckpt),
        arch=arch.name,
        task=arch.task,
        params=count_params(model),
        trained_on=_trained_on(config["noise"], config["noise_level"]),
        epochs=int(ckpt["epoch"]),
        source=str(path),
        predict=lambda x: predict(model, x, torch.device("cpu")),
        onnx=onnx_bytes,
        arch_args=dict(ckpt["arch_args"]),
    )


def _from_onnx(path: Path) -> Candidate:
    from denoise_cli.model.session import Denoiser

    denoiser = Denoiser(path, device="cpu")  # ModelError (exit 3) names a file it refuses
    meta = denoiser.info.metadata
    arch = meta.get("architecture", path.stem)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.concatenate([denoiser.run(x[i : i + 1024]) for i in range(0, len(x), 1024)])

    return Candidate(
        name=path.stem,
        arch=arch,
        task="autoencoder" if meta.get("task") == "autoencoder" else "denoiser",
        params=int(meta.get("parameters", 0)),
        trained_on=_trained_on(meta.get("train_noise", "?"), meta.get("train_noise_level", "?")),
        epochs=int(meta.get("train_epochs", 0)),
        source=str(path),
        predict=predict,
        onnx=path.read_bytes,
        arch_args=_architecture_args(path, meta.get("architecture_args", "")),
    )


def _architecture_args(path: Path, text: str) -> dict[str, Any]:
    from denoise_cli.core.errors import ModelError
    from denoise_train.onnx_import import parse_architecture_args

    try:
        return parse_architecture_args(text)
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}") from None
