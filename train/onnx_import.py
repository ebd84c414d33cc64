"""Rebuild a trainable PyTorch model from one of our ONNX files.

Bundled models ship only as ONNX (runs/ is not packaged), so fine-tuning one starts here: the
file's metadata (`architecture`, `architecture_args`, written by export/metadata.py) names the
registry architecture, and its initializers are copied into it by name. The exporter folds each
batch norm into the convolution before it (`NAME.weight` scaled, `NAME.weight_bias` added): those
weights go into the convolution and the batch norm becomes an identity with the folded bias as
its shift, so the rebuilt model computes exactly what the file does. Checked against
onnxruntime before it is returned.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from denoise_cli.core.errors import RefusedError
from denoise_train.models import get_arch

#: Largest difference allowed between the rebuilt model and onnxruntime on random input.
IMPORT_TOLERANCE = 1e-4


class OnnxImportError(RefusedError):
    """An ONNX file that cannot be turned back into a registry architecture."""


def read_onnx(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The file's metadata and its initializers as arrays."""
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError...
        raise OnnxImportError(f"{path}: not a readable ONNX file ({exc})") from None
    metadata = {p.key: p.value for p in proto.metadata_props}
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return metadata, weights


def _conv_batchnorm_pairs(model: nn.Module) -> dict[str, str]:
    """Each convolution's name -> the batch norm right after it (in module order)."""
    pairs, previous = {}, None
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d) and previous is not None:
            pairs[previous] = name
        previous = name if isinstance(module, nn.Conv2d) else None
    return pairs


def load_onnx_weights(model: nn.Module, weights: dict[str, np.ndarray], path: Path) -> None:
    """Copy `weights` into `model`; every parameter must be set, folded batch norms included."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = _conv_batchnorm_pairs(model)
    assigned: set[str] = set()
    for name, value in weights.items():
        tensor = torch.from_numpy(np.array(value, dtype=np.float32))
        if name in state and state[name].shape == tensor.shape:
            state[name] = tensor
            assigned.add(name)
        elif name.endswith(".weight_bias") and name.removesuffix(".weight_bias") in pairs:
            bn = pairs[name.removesuffix(".weight_bias")]
            eps = dict(model.named_modules())[bn].eps
            state[f"{bn}.weight"] = torch.ones_like(tensor)
            state[f"{bn}.bias"] = tensor
            state[f"{bn}.running_mean"] = torch.zeros_like(tensor)
            # var + eps = 1: the normalisation divides by exactly one.
            state[f"{bn}.running_var"] = torch.full_like(tensor, 1.0 - eps)
            assigned |= {f"{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var")}
    _undo_depthwise_split(state, weights, assigned)
    missing = [k for k in state if k not in assigned and not k.endswith("num_batches_tracked")]
    if missing:
        raise OnnxImportError(
            f"{path}: {len(missing)} weights of its architecture are not in the file "
            f"({', '.join(missing[:3])}); is it one of ours?"
        )
    model.load_state_dict(state)


def _undo_depthwise_split(
    state: dict[str, torch.Tensor], weights: dict[str, np.ndarray], assigned: set[str]
) -> None:
    """Put back the single-output convolutions that export/rewrite.py split into a depthwise
    convolution and a channel sum (the bundled conv_denoiser's last layer): its `OUT__dw_weight`
    (C, 1, k, k) is the (1, C, k, k) weight, `OUT__bias` the bias. The file names them after
    the output tensor, not the layer, so they are matched by shape, and only where each shape
    is one layer's: anything else is left missing (and refused, naming the weights)."""
    split = {name: np.asarray(weights[name], np.float32) for name in weights
             if name.endswith("__dw_weight")}  # fmt: skip
    convs = {
        k.removesuffix(".weight"): tuple(v.shape)
        for k, v in state.items()
        if k not in assigned and k.endswith(".weight") and v.ndim == 4 and v.shape[0] == 1
    }
    by_shape = {(1, w.shape[0], *w.shape[2:]): name for name, w in split.items()}
    if len(by_shape) != len(split) or len(set(convs.values())) != len(convs):
        return  # two of one shape: which is which is not known
    for conv, shape in convs.items():
        name = by_shape.get(shape)
        if name is None:
            continue
        state[f"{conv}.weight"] = torch.from_numpy(split[name].reshape(shape).copy())
        assigned.add(f"{conv}.weight")
        bias = weights.get(name.removesuffix("__dw_weight") + "__bias")
        if bias is not None and f"{conv}.bias" in state:
            state[f"{conv}.bias"] = torch.from_numpy(np.array(bias, np.float32).reshape(1))
            assigned.add(f"{conv}.bias")


def check_against_onnxruntime(model: nn.Module, path: Path, size: int = 32) -> float:
    """Max abs difference between `model` and the file in onnxruntime on random images."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape

    def dim(axis: int, default: int) -> int:
        """A fixed-shape export (--fixed-shape, --all) takes only its own shape: checked at it."""
        value = shape[axis] if len(shape) == 4 else None
        return value if isinstance(value, int) and value > 0 else default

    x = np.random.default_rng(0).random((dim(0, 2), 1, dim(2, size), dim(3, size)), np.float32)
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    return float(np.max(np.abs(got - expected)))


_OLD_VALUE = r"(?:\[[^\]]*\]|\([^)]*\)|[^,]*)"  # a list, a tuple, or up to the next comma
_OLD_ARGS = re.compile(rf"\w+={_OLD_VALUE}(?:,\w+={_OLD_VALUE})*")
_OLD_ARG = re.compile(rf"(\w+)=({_OLD_VALUE})")


def parse_architecture_args(text: str) -> dict[str, Any]:
    """Metadata `architecture_args` back into values: JSON, or as files exported before it
    was JSON wrote it, Python values as `k=v,...` (the bundled conv_denoiser:
    "filters=[16,8,8,16]"). ValueError when it is neither."""
    if text.startswith("{"):
        args = json.loads(text)
        if not isinstance(args, dict):
            raise ValueError(f"architecture_args {text[:80]!r}: not a JSON object")
        return args
    if not text:
        return {}
    if not _OLD_ARGS.fullmatch(text):
        raise ValueError(f"architecture_args {text[:80]!r}: neither JSON nor name=value pairs")
    args: dict[str, Any] = {}
    for key, value in _OLD_ARG.findall(text):
        try:
            args[key] = ast.literal_eval(value)  # str() of lists, tuples, bools, numbers
        except (ValueError, SyntaxError):
            args[key] = value
    return args


def model_from_onnx(path: Path) -> tuple[nn.Module, str, dict]:
    """(model in eval mode, architecture name, its arguments), verified against the file."""
    metadata, weights = read_onnx(path)
    if (variant := metadata.get("variant", "fp32")) != "fp32":
        raise OnnxImportError(
            f"{path}: a {variant} variant: only fp32 files can be fine-tuned (give the "
            "fp32 .onnx it was made from)"
        )
    if "architecture" not in metadata or "architecture_args" not in metadata:
        raise OnnxImportError(
            f"{path}: no architecture in its metadata: only files exported by denoise-export "
            "can be fine-tuned"
        )
    try:
        arch = get_arch(metadata["architecture"])
        args = parse_architecture_args(metadata["architecture_args"])
    except KeyError as exc:
        raise OnnxImportError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise OnnxImportError(
            f"{path}: {exc}; re-export its checkpoint, or give the checkpoint itself"
        ) from None
    model = arch.build(**args).eval()
    load_onnx_weights(model, weights, path)
    diff = check_against_onnxruntime(model, path)
    if not diff < IMPORT_TOLERANCE:
        raise OnnxImportError(
            f"{path}: rebuilt {arch.name} differs from the file by {diff:.2g} "
            f"(tolerance {IMPORT_TOLERANCE:g}); it cannot be fine-tuned"
        )
    return model, arch.name, args
