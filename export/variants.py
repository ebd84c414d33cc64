"""Edge variants of a verified fp32 ONNX model: FP16, calibrated INT8, ORT format.

(The fixed-shape variant is a re-export from PyTorch: see onnx_export.export_model.)
Each function returns the new model; export/build.py verifies and measures every one of them.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from denoise_export.onnx_export import INPUT_NAME, ExportError, quiet_logs


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and arithmetic in float16; inputs and outputs stay float32 (Cast at the edges)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(proto, keep_io_types=True, disable_shape_infer=False)
    # The converter appends the input Casts after the nodes that read them; onnx.checker
    # (rightly) insists on topological order.
    _sort_topologically(half.graph)
    return half


def _sort_topologically(graph: onnx.GraphProto) -> None:
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ExportError("fp16 conversion produced a graph with a cycle or a missing input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)


class _Calibration:
    """Feeds calibration batches to onnxruntime's quantizer (a CalibrationDataReader)."""

    def __init__(self, images: np.ndarray, batch_size: int = 64) -> None:
        self._batches = iter(
            np.ascontiguousarray(images[i : i + batch_size])
            for i in range(0, len(images), batch_size)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:  # newer onnxruntime versions may call this
        pass


def to_int8(proto: onnx.ModelProto, calibration_images: np.ndarray) -> onnx.ModelProto:
    """Static INT8 quantization, QDQ format, per-channel weights, calibrated on real inputs.

    Activations are uint8 and weights int8 (onnxruntime's recommended CPU combination);
    calibration uses min/max ranges observed on `calibration_images` (the model's real inputs).
    Weights use 7 bits (`reduce_range`): x86 CPUs without VNNI multiply uint8 by int8 in
    instructions whose int16 pair sums saturate with full 8-bit weights. Measured on AVX2
    with unet_ctx (2,000 test digits): full range lost 0.27 dB against fp32, 7-bit 0.06 dB, at
    the same speed (~1.3x fp32); uint8 weights lost 0.005 dB but ran at 0.89x fp32.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # The quantizer's advice to run its pre-processing (symbolic shape inference, fusions) is
    # logged on the root logger at every call; this graph is already shape-inferred and tiny.
    with quiet_logs(), tempfile.TemporaryDirectory(prefix="denoise-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(proto.SerializeToString())
        quantize_static(
            str(src),
            str(dst),
            _Calibration(calibration_images.astype(np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=True,
        )
        out = onnx.load(str(dst))
    onnx.external_data_helper.convert_model_from_external_data(out)
    return out


def to_ort_format(proto: onnx.ModelProto) -> bytes:
    """Convert to the ORT format read by onnxruntime's mobile and minimal builds.

    Only hardware-independent ('basic') graph optimizations are applied, so the file runs on
    any execution provider of the target build.
    """
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="denoise-ort-") as tmp:
        staged = Path(tmp) / "model.ort"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(staged)
        opts.add_session_config_entry("session.save_model_format", "ORT")
        opts.log_severity_level = 3
        ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        if not staged.is_file():
            raise ExportError("onnxruntime did not write an ORT-format file")
        return staged.read_bytes()


def required_operators(ort_path: Path) -> bytes:
    """The operator (and type) list a minimal onnxruntime build needs for this ORT model.

    Feed it to onnxruntime's build.py --include_ops_by_config to build a runtime that holds
    only these kernels.
    """
    from onnxruntime.tools.ort_format_model import create_config_from_models

    with tempfile.TemporaryDirectory(prefix="denoise-ops-") as tmp:
        config = Path(tmp) / "required_operators.config"
        with quiet_logs(level=logging.WARNING):  # it logs its own success at INFO
            create_config_from_models([ort_path], config, True)
        return config.read_bytes()
