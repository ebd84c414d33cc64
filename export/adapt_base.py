"""The model an adaptation starts from: a bundled model by name, an ONNX file or a checkpoint.

Whatever the source, the result is the registry architecture with its weights (PyTorch, eval
mode), plus what the export must carry over: the polarity the model expects its images in, and
how it was trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from denoise_cli.core.errors import ModelError
from denoise_train.checkpoint import file_sha256, load_checkpoint, model_from_checkpoint
from denoise_train.models import get_arch
from denoise_train.onnx_import import model_from_onnx, read_onnx


@dataclass
class BaseModel:
    model: nn.Module  # eval mode, on the CPU
    arch: str
    arch_args: dict
    source: str  # what was asked for: a bundled name or a path (saved for --resume)
    path: Path  # the file read
    name: str  # for messages and metadata: "unet_scenes (bundled)", a file name
    sha256: str
    polarity: str  # "light-on-dark", "dark-on-light", "either" or "unknown"
    trained_on: str
    size_multiple: int


def default_base() -> str:
    """The bundled default of denoise-batch (whichever it is today)."""
    from denoise_cli.model.bundled import DEFAULT_MODEL

    return DEFAULT_MODEL


def resolve_base(source: str | Path | None) -> BaseModel:
    """A bundled name (default: denoise-batch's default model), an .onnx file or a .pt
    checkpoint. Raises ModelError (exit 3, as for
    `denoise-batch --model`) naming what was not found."""
    from denoise_cli.model.bundled import bundled_models

    source = str(source) if source is not None else default_base()
    bundled = bundled_models()
    if source in bundled:
        return _from_onnx(bundled[source], source, f"{source} (bundled)")
    path = Path(source)
    if not path.is_file():
        raise ModelError(
            f"{source}: not a bundled model ({', '.join(bundled)}), nor a checkpoint or ONNX file"
        )
    if path.suffix == ".onnx":
        return _from_onnx(path, source, path.name)
    ckpt = load_checkpoint(path)
    config = ckpt["config"]
    polarity = config.get("polarity") or (
        "either" if config.get("data") == "world" else "light-on-dark"
    )
    return BaseModel(
        model=model_from_checkpoint(ckpt),
        arch=ckpt["arch"],
        arch_args=dict(ckpt["arch_args"]),
        source=source,
        path=path,
        name=path.name,
        sha256=file_sha256(path),
        polarity=ckpt.get("adapt", {}).get("polarity", polarity),
        trained_on=ckpt.get("adapt", {}).get("trained_on", f"checkpoint {path.name}"),
        size_multiple=get_arch(ckpt["arch"]).size_multiple,
    )


def _from_onnx(path: Path, source: str, name: str) -> BaseModel:
    model, arch, args = model_from_onnx(path)
    metadata, _ = read_onnx(path)
    return BaseModel(
        model=model,
        arch=arch,
        arch_args=json.loads(json.dumps(args)),
        source=source,
        path=path,
        name=name,
        sha256=file_sha256(path),
        polarity=metadata.get("polarity", "unknown"),
        trained_on=metadata.get("trained_on", "unknown"),
        size_multiple=get_arch(arch).size_multiple,
    )
