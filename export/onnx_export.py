"""Checkpoint model -> one self-contained ONNX file that has proven it matches PyTorch.

Two facts shape this module, both measured with torch 2.13:
- the dynamo exporter (torch's default) writes weights to a separate `.onnx.data` file; we load
  the export back with its weights and save a single file;
- asked for an opset below 18, the dynamo exporter's version conversion can fail and silently
  keep opset 18. Opsets below 18 therefore go through the TorchScript exporter, and every
  export's opset is checked against the request.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from denoise_cli.core.atomic import write_atomic
from denoise_cli.core.errors import WorkFailed

INPUT_NAME = "noisy"
OUTPUT_NAME = "denoised"
DEFAULT_OPSET = 18
MIN_OPSET = 11
FP32_TOLERANCE = 1e-5  # max abs difference, onnxruntime vs PyTorch, outputs in [0, 1]


class ExportError(WorkFailed):
    """The export failed or did not verify; no output file was written."""


def export_model(
    model: nn.Module,
    fully_convolutional: bool,
    opset: int = DEFAULT_OPSET,
    fixed_shape: tuple[int, int, int, int] | None = None,
    size_multiple: int = 1,
) -> onnx.ModelProto:
    """Export `model` to an in-memory ONNX model with weights embedded.

    Dynamic axes: batch always; height and width too when the model is fully convolutional.
    `fixed_shape` (N, 1, H, W) instead pins every dimension, for accelerators that need it.
    """
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is not supported (minimum {MIN_OPSET})")
    model = model.eval().cpu()
    shape = fixed_shape or (2, 1, 28, 28)
    example = torch.rand(*shape)
    with tempfile.TemporaryDirectory(prefix="denoise-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings(), quiet_logs("torch.onnx"):
            warnings.simplefilter("ignore")  # the exporters' deprecation chatter
            if opset >= 18:
                _export_dynamo(
                    model, example, path, opset, fully_convolutional, fixed_shape, size_multiple
                )
            else:
                _export_torchscript(model, example, path, opset, fully_convolutional, fixed_shape)
        proto = onnx.load(str(path))  # pulls any external .onnx.data back in
    onnx.external_data_helper.convert_model_from_external_data(proto)
    # The exporter's value_info carries torch-internal shape symbols (height_blocks...) and
    # stale entries: tract refused every U-Net over them ("Impossible to unify MulInt(2,
    # Sym(s75)) with MulInt(2, Sym(height_blocks))"), and onnxruntime's fp16 converter kept
    # float32 entries for tensors it made float16, which onnx.checker rejects. Every runtime
    # infers shapes itself, so no file of ours carries any.
    del proto.graph.value_info[:]
    got = {o.domain: o.version for o in proto.opset_import}.get("")
    if got != opset:
        raise ExportError(f"asked for opset {opset} but the exporter produced opset {got}")
    return proto


@contextlib.contextmanager
def quiet_logs(name: str = "", level: int = logging.ERROR):
    """Raise a logger's level for a while (torch.onnx's per-op warnings, onnxruntime tools'
    advice and success lines on the root logger), restoring it whatever happens."""
    logger = logging.getLogger(name)
    saved = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved)


def _export_dynamo(
    model, example, path, opset, fully_convolutional, fixed_shape, size_multiple=1
) -> None:
    dynamic_shapes = None
    if fixed_shape is None:
        dims = {0: torch.export.Dim("batch")}
        if fully_convolutional and size_multiple > 1:
            # Sizes the model needs as multiples (U-Nets): derived dimensions say so.
            dims |= {
                2: size_multiple * torch.export.Dim("height_blocks"),
                3: size_multiple * torch.export.Dim("width_blocks"),
            }
        elif fully_convolutional:
            dims |= {2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
        dynamic_shapes = {"x": dims}
    options = {
        "dynamo": True,
        "dynamic_shapes": dynamic_shapes,
        "external_data": False,
        "verbose": False,
    }
    _torch_export(model, example, path, opset, options)


def _export_torchscript(model, example, path, opset, fully_convolutional, fixed_shape) -> None:
    dynamic_axes = None
    if fixed_shape is None:
        axes = {0: "batch", 2: "height", 3: "width"} if fully_convolutional else {0: "batch"}
        dynamic_axes = {INPUT_NAME: axes, OUTPUT_NAME: axes}
    _torch_export(model, example, path, opset, {"dynamo": False, "dynamic_axes": dynamic_axes})


def _torch_export(model, example, path, opset: int, options: dict) -> None:
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        **options,
    )


def check_model(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"onnx.checker rejected the model: {exc}") from None


def save_atomic(data: onnx.ModelProto | bytes, path: str | Path) -> Path:
    """Write one self-contained file via a temporary name, so no half file is ever visible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(data if isinstance(data, bytes) else data.SerializeToString(), path)
    return path


def ort_session(model: onnx.ModelProto | bytes | str | Path):
    """A CPU onnxruntime session over an in-memory or on-disk model."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    if isinstance(source, Path):
        source = str(source)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def run_session(session, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    input_name = session.get_inputs()[0].name
    outs = [
        session.run(None, {input_name: np.ascontiguousarray(images[i : i + batch_size])})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outs).astype(np.float32, copy=False)


@torch.no_grad()
def torch_outputs(model: nn.Module, images: np.ndarray) -> np.ndarray:
    return model.eval()(torch.from_numpy(np.ascontiguousarray(images))).numpy()


def odd_size_digits(digits: np.ndarray) -> np.ndarray:
    """Real digits laid out on a 64 x 48 (H x W) canvas: a non-square, non-28 test input."""
    if len(digits) < 6:
        raise ValueError("need at least 6 digits to build the odd-size canvas")
    rows = [np.concatenate(list(digits[i : i + 2, 0]), axis=1) for i in (0, 2, 4)]  # 3 x (28x56)
    canvas = np.concatenate(rows, axis=0)[:64, :48]
    return canvas[None, None].astype(np.float32)


@dataclass
class ParityCase:
    name: str
    shape: tuple[int, ...]
    max_abs: float


def check_parity(
    proto: onnx.ModelProto,
    model: nn.Module,
    digits: np.ndarray,
    fully_convolutional: bool,
    tolerance: float = FP32_TOLERANCE,
    batch_sizes: tuple[int, ...] = (1, 7, 256),
) -> list[ParityCase]:
    """onnxruntime (and onnx.reference) vs PyTorch on real digits; raises ExportError on a miss."""
    session = ort_session(proto)
    cases: list[tuple[str, np.ndarray]] = [
        (f"batch {b}", digits[:b]) for b in batch_sizes if b <= len(digits)
    ]
    if fully_convolutional:
        cases.append(("64x48 image", odd_size_digits(digits)))
    results = []
    for name, x in cases:
        expected = torch_outputs(model, x)
        got = run_session(session, x, batch_size=len(x))
        results.append(compare_outputs(f"onnxruntime, {name}", expected, got, tolerance))
    from onnx.reference import ReferenceEvaluator

    x = digits[:2]
    got = ReferenceEvaluator(proto).run(None, {INPUT_NAME: x})[0]
    results.append(
        compare_outputs("onnx.reference, batch 2", torch_outputs(model, x), got, tolerance)
    )
    return results


def compare_outputs(
    name: str, expected: np.ndarray, got: np.ndarray, tolerance: float
) -> ParityCase:
    if got.shape != expected.shape:
        raise ExportError(f"{name}: output shape {got.shape}, PyTorch gives {expected.shape}")
    max_abs = float(np.max(np.abs(got.astype(np.float64) - expected)))
    if not max_abs <= tolerance:  # also catches NaN
        raise ExportError(
            f"{name}: max abs difference {max_abs:.3g} vs PyTorch exceeds tolerance {tolerance:g}"
        )
    return ParityCase(name, tuple(got.shape), max_abs)


def receptive_radius(model: nn.Module, size: int = 96, phases: int = 1) -> int:
    """How far an output pixel sees, measured: the input gradients of the centre output pixels.

    A network that pools sees further from some pixels than from others (the pooling grid):
    `phases` (its size multiple) takes the widest of the centre pixel and its neighbours up to
    phases - 1 right and down (unet_lite_near: 34 at the centre, 35 at worst).
    """
    model = model.eval()
    radius = 0
    for dy in range(phases):
        for dx in range(phases):
            x = torch.rand(1, 1, size, size, requires_grad=True)
            cy, cx = size // 2 + dy, size // 2 + dx
            model(x)[0, 0, cy, cx].backward()
            ys, xs = np.nonzero(x.grad[0, 0].abs().numpy() > 0)
            if len(ys):
                radius = max(radius, int(abs(ys - cy).max()), int(abs(xs - cx).max()))
    return radius
