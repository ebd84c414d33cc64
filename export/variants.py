"""The files of an export: fp32, FP16, calibrated INT8, ORT format, fixed shape.

Each is a `Variant`: how to build it from the verified fp32 export (`Reference`) and what it must
match. export/build.py takes every chosen variant through the same path: build, write into the
staging folder, load that file in onnxruntime, `verify`, measure; nothing reaches the output
folder until every variant has passed.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
from torch import nn

from denoise_cli.core.metrics import psnr
from denoise_export.onnx_export import (
    FP32_TOLERANCE,
    INPUT_NAME,
    ExportError,
    compare_outputs,
    export_model,
    quiet_logs,
    run_session,
    torch_outputs,
)
from denoise_export.rewrite import apply_rewrites

#: What the files are made for. `portable`: no onnxruntime-specific rewrite (OpenCV's classic
#: engine cannot parse its ReduceSum, ncnn gets its channel count wrong), INT8 at an opset
#: whose QuantizeLinear/DequantizeLinear every runtime in export/runtimes.py runs.
#: `onnxruntime`: the exact rewrites that make onnxruntime's CPU kernels faster (1.3-1.4x for
#: the seed model), for files only onnxruntime (denoise-batch) will run.
PROFILES = ("portable", "onnxruntime")
#: onnx.reference implements DequantizeLinear from opset 19 on.
PORTABLE_QDQ_OPSET = 19
#: Operators that raise a graph's resolution (a U-Net's decoder steps).
UPSAMPLING_OPS = ("Resize", "Upsample", "ConvTranspose", "DepthToSpace")

# Acceptance per variant, against the fp32 file on the whole test set.
FP16_MAX_ABS = 1e-2
FP16_MAX_PSNR_DROP = 0.05  # dB
INT8_MAX_PSNR_DROP = 0.5  # dB
#: Test digits (at most) of the comparison with PyTorch of a dynamic-batch file.
TORCH_SAMPLE = 256
#: Per-image PSNR is capped here in a sample that holds clean images: an output within one
#: grey level RMS of its clean image (48 dB) looks the same, and an uncapped mean is +inf
#: (an exact copy) or swings by tens of dB on one image.
PSNR_CAP = 50.0  # dB
#: Canvases per model call on a DomainSample.
DOMAIN_BATCH = 32


@dataclass(frozen=True, eq=False)
class DomainSample:
    """Images of the world a model was trained for, checked beside the test digits: an INT8
    file that MNIST's black-and-white digits passed at -0.18 dB took clean print on paper from
    43.6 to 27.8 dB (docs/export.md, session 15)."""

    name: str  # as the messages and metadata say it ("world")
    clean: np.ndarray  # (N, 1, H, W)
    inputs: np.ndarray  # the model's inputs on them
    outputs: np.ndarray  # the fp32 graph's outputs on `inputs`

    @cached_property
    def psnr(self) -> float:
        """The fp32 graph's capped mean PSNR on the sample (read by every variant's check)."""
        return capped_mean_psnr(self.clean, self.outputs)


def capped_mean_psnr(clean: np.ndarray, restored: np.ndarray) -> float:
    """Mean per-image PSNR, each capped at PSNR_CAP."""
    return float(np.mean(np.minimum(psnr(clean, restored), PSNR_CAP)))


@dataclass(frozen=True, eq=False)
class Reference:
    """The verified fp32 export, and the data every variant is built from and checked on."""

    model: nn.Module  # the PyTorch model
    proto: onnx.ModelProto  # its fp32 graph, verified against PyTorch, fp32 metadata set
    metadata: dict[str, str]
    clean: np.ndarray  # the test digits (N, 1, 28, 28)
    inputs: np.ndarray  # the model's inputs on them (noisy digits for a denoiser)
    outputs: np.ndarray  # the fp32 graph's outputs on `inputs`
    calibration: np.ndarray  # model inputs for INT8 calibration (empty when not asked for)
    opset: int
    profile: str  # one of PROFILES
    fully_convolutional: bool
    domain: DomainSample | None = None  # the model's own world, where it has one

    @property
    def rewrite(self) -> bool:
        """Whether re-exported graphs get export/rewrite.py's onnxruntime rewrites."""
        return self.profile == "onnxruntime"

    def fp32(self) -> onnx.ModelProto:
        """A copy of the fp32 graph, for a builder to change."""
        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        return proto


@dataclass(frozen=True)
class Scores:
    """A variant's outputs on the test digits, against the fp32 graph's."""

    psnr: float  # mean test PSNR, dB
    psnr_vs_fp32: float  # dB; negative: worse than fp32
    max_abs_vs_fp32: float
    digits: int  # how many test digits the figures are means over
    #: dB against fp32 on the reference's DomainSample (capped PSNR); None without one.
    domain_psnr_vs_fp32: float | None = None


def _serialize(proto: onnx.ModelProto) -> bytes:
    return proto.SerializeToString()


def _mean_psnr(clean: np.ndarray, restored: np.ndarray) -> float:
    return float(np.mean(psnr(clean, restored)))


@dataclass(frozen=True)
class Variant:
    """One file of an export: how it is built and what it must match.

    Tolerances left at None are not checked. `fixed_shape` (N, 1, H, W) pins the file's input;
    at another size than 28x28 it cannot run the test digits, so it is only compared with
    PyTorch (on random images) and gets no row in the results table.
    """

    name: str  # the results table's name
    tag: str  # the file's `variant` metadata
    suffix: str  # the file is the output's stem + suffix
    build: Callable[[Reference], onnx.ModelProto]
    encode: Callable[[onnx.ModelProto], bytes] = _serialize
    torch_max_abs: float | None = None  # vs PyTorch, on test digits (or random images)
    max_abs: float | None = None  # vs the fp32 outputs on the test digits
    max_psnr_drop: float | None = None  # dB below the fp32 test PSNR
    fixed_shape: tuple[int, int, int, int] | None = None
    #: Files made from the verified file: suffix -> maker, given that file's path.
    companions: dict[str, Callable[[Path], bytes]] = field(default_factory=dict)

    @property
    def check(self) -> str:
        """The checks, as the results table states them."""
        parts = []
        if self.torch_max_abs is not None:
            parts.append(f"vs PyTorch max abs <= {self.torch_max_abs:g}")
        if self.max_abs is not None:
            parts.append(f"max abs <= {self.max_abs:g}")
        if self.max_psnr_drop is not None:
            parts.append(f"PSNR drop <= {self.max_psnr_drop} dB")
        return ", ".join(parts)

    @property
    def suffixes(self) -> tuple[str, ...]:
        """Its files' names, after the output's stem: the file's own, then its companions'."""
        return (self.suffix, *self.companions)

    @property
    def bench_batch(self) -> int | None:
        """The batch the file must be timed at (None: any)."""
        return self.fixed_shape[0] if self.fixed_shape else None

    def verify(self, ref: Reference, session) -> Scores | None:
        """Raise ExportError naming this variant and the check it failed; else its scores
        (None when its fixed size cannot take the test digits)."""
        if self.torch_max_abs is not None:
            sample = self._torch_sample(ref)
            got = run_session(session, sample, self.bench_batch or len(sample))
            compare_outputs(self.name, torch_outputs(ref.model, sample), got, self.torch_max_abs)
        if self.fixed_shape is None:
            clean, reference = ref.clean, ref.outputs
            outputs = run_session(session, ref.inputs)
        elif self.fixed_shape[2:] == (28, 28):
            usable = len(ref.inputs) // self.fixed_shape[0] * self.fixed_shape[0]
            clean, reference = ref.clean[:usable], ref.outputs[:usable]
            outputs = run_session(session, ref.inputs[:usable], self.fixed_shape[0])
        else:
            return None
        mean_psnr = _mean_psnr(clean, outputs)
        scores = Scores(
            mean_psnr,
            mean_psnr - _mean_psnr(clean, reference),
            float(np.max(np.abs(outputs - reference))),
            len(clean),
        )
        if self.max_abs is not None and not scores.max_abs_vs_fp32 <= self.max_abs:
            raise ExportError(
                f"{self.name}: max abs difference {scores.max_abs_vs_fp32:.3g} vs fp32 "
                f"exceeds {self.max_abs:g}"
            )
        if self.max_psnr_drop is not None and not -scores.psnr_vs_fp32 <= self.max_psnr_drop:
            raise ExportError(
                f"{self.name}: test PSNR drops {-scores.psnr_vs_fp32:.3f} dB vs fp32 "
                f"(allowed {self.max_psnr_drop} dB)"
            )
        if self.max_psnr_drop is not None and self.fixed_shape is None and ref.domain:
            scores = replace(scores, domain_psnr_vs_fp32=self._domain_change(ref.domain, session))
        return scores

    def _domain_change(self, domain: DomainSample, session) -> float:
        """dB against fp32 on the model's own world; raise ExportError past max_psnr_drop."""
        outputs = run_session(session, domain.inputs, DOMAIN_BATCH)
        change = capped_mean_psnr(domain.clean, outputs) - domain.psnr
        if not -change <= self.max_psnr_drop:
            raise ExportError(
                f"{self.name}: PSNR on {len(domain.clean)} {domain.name} canvases drops "
                f"{-change:.3f} dB vs fp32 (allowed {self.max_psnr_drop} dB; the test "
                "digits alone do not show it)"
            )
        return change

    def _torch_sample(self, ref: Reference) -> np.ndarray:
        if self.fixed_shape is None:
            return ref.inputs[:TORCH_SAMPLE]
        if self.fixed_shape[2:] == (28, 28):
            return ref.inputs[: self.fixed_shape[0]]
        return np.random.default_rng(0).random(self.fixed_shape, dtype=np.float32)


def choose_variants(
    suffix: str,
    fp16: bool = False,
    int8: bool = False,
    ort_format: bool = False,
    fixed_shape: tuple[int, int, int, int] | None = None,
) -> list[Variant]:
    """The variants asked for, fp32 (named `suffix`: the output's own) first.

    The tolerances are read here, at each call, so a test can tighten one.
    """
    chosen = [Variant("fp32", "fp32", suffix, Reference.fp32, torch_max_abs=FP32_TOLERANCE)]
    if fp16:
        chosen.append(
            Variant(
                "fp16",
                "fp16",
                ".fp16.onnx",
                lambda ref: to_fp16(ref.fp32()),
                max_abs=FP16_MAX_ABS,
                max_psnr_drop=FP16_MAX_PSNR_DROP,
            )
        )
    if int8:
        chosen.append(
            Variant(
                "int8",
                "int8-qdq-per-channel",
                ".int8.onnx",
                lambda ref: to_int8(ref.fp32(), ref.calibration, ref.profile),
                max_psnr_drop=INT8_MAX_PSNR_DROP,
            )
        )
    if ort_format:
        chosen.append(
            Variant(
                "ort",
                "ort-format",
                ".ort",
                Reference.fp32,
                encode=to_ort_format,
                max_abs=FP32_TOLERANCE,
                companions={".required_operators.config": required_operators},
            )
        )
    if fixed_shape is not None:
        n, _, h, w = fixed_shape
        chosen.append(
            Variant(
                "fixed",
                f"fixed-{n}x1x{h}x{w}",
                f".fixed-{n}x1x{h}x{w}.onnx",
                lambda ref: to_fixed_shape(ref, fixed_shape),
                torch_max_abs=FP32_TOLERANCE,
                fixed_shape=fixed_shape,
            )
        )
    return chosen


def check_fixed_shape(
    shape: tuple[int, int, int, int],
    name: str,
    fully_convolutional: bool,
    size_multiple: int,
    n_test: int,
) -> None:
    """Raise ExportError, before any work, when architecture `name` cannot take `shape` or the
    `n_test` test digits cannot fill one batch of it."""
    n, _, h, w = shape
    if h % size_multiple or w % size_multiple:
        raise ExportError(f"{name} needs sizes that are multiples of {size_multiple}")
    if (h, w) != (28, 28) and not fully_convolutional:
        raise ExportError(f"{name} is not fully convolutional: fixed shape must be 28x28")
    if (h, w) == (28, 28) and n > n_test:
        raise ExportError(f"fixed batch {n} is more than the {n_test} test digits")


def to_fixed_shape(ref: Reference, shape: tuple[int, int, int, int]) -> onnx.ModelProto:
    """A re-export from PyTorch with every dimension pinned (for accelerators that need it)."""
    proto = export_model(ref.model, ref.fully_convolutional, ref.opset, shape)
    apply_rewrites(proto, ref.rewrite)
    return proto


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and arithmetic in float16; inputs and outputs stay float32 (Cast at the edges).

    A U-Net's full-resolution encoder (the nodes before its first MaxPool) stays float32: its
    features reach the output through the skip connection, and in half precision they were
    where the default trained for mean PSNR (stage 10) lost most (max abs 0.0087 against 0.0028
    with them kept, on 256 noisy test digits; over the 0.01 tolerance on the verification set).
    At 8 of the network's channels they are ~5% of its multiply-adds. Guided smoothing after
    the output's Sigmoid runs in half precision: kept float32 it scored the same on 40 foreign
    display readings (28.81 dB; clean copies 46.42 against 46.35) and ran at 0.70x fp32's speed
    instead of 0.82x (the converter casts around every kept node).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(
        proto,
        keep_io_types=True,
        disable_shape_infer=False,
        node_block_list=full_resolution_encoder(proto.graph),
    )
    # The converter appends the input Casts after the nodes that read them; onnx.checker
    # (rightly) insists on topological order.
    _sort_topologically(half.graph)
    return half


def full_resolution_encoder(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes before the first MaxPool, in graph order; none without a MaxPool."""
    names = []
    for node in graph.node:
        if node.op_type == "MaxPool":
            return names
        names.append(node.name)
    return []


def output_tail(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes after the last Sigmoid: arithmetic on the output image (guided
    smoothing's variances and division), which INT8 files keep in float32."""
    last = _last_index(graph, ("Sigmoid",))
    return [] if last is None else [n.name for n in graph.node[last + 1 :]]


def full_resolution_decoder(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes from the last upsampling to the output's Sigmoid (the U-Net's last,
    full-resolution stage); without upsampling, the output convolution (`output_convolution`)
    and the Sigmoid. Empty without a Sigmoid, or when a dense layer feeds it."""
    end = _last_index(graph, ("Sigmoid",))
    if end is None:
        return []
    start = _last_index(graph, UPSAMPLING_OPS, before=end)
    if start is not None:
        return [n.name for n in graph.node[start + 1 : end + 1]]
    head = output_convolution(graph, end)
    return [*head, graph.node[end].name] if head else []


#: How far back from the Sigmoid the output convolution may lie: the onnxruntime profile's
#: depthwise Conv -> ReduceSum -> Add is three nodes; one more for slack, and no further (a
#: graph whose Sigmoid is further from any Conv has no output layer of this kind).
OUTPUT_LAYER_DEPTH = 4


def output_convolution(graph: onnx.GraphProto, sigmoid_index: int) -> list[str]:
    """Names of the nodes between the last Conv and the Sigmoid at `sigmoid_index`, the Conv
    included: one node, or the onnxruntime profile's depthwise Conv, ReduceSum and bias Add
    (export/rewrite.py). Empty when a Gemm or MatMul comes first (dense models keep their
    quantization) or no Conv is within OUTPUT_LAYER_DEPTH nodes."""
    producer = {out: n for n in graph.node[:sigmoid_index] for out in n.output}
    chain, frontier = [], [graph.node[sigmoid_index]]
    for _ in range(OUTPUT_LAYER_DEPTH):
        frontier = [producer[i] for n in frontier for i in n.input if i in producer]
        if not frontier or any(n.op_type in ("Gemm", "MatMul") for n in frontier):
            return []
        chain.extend(frontier)
        if any(n.op_type == "Conv" for n in frontier):
            order = {id(n): i for i, n in enumerate(graph.node)}
            return [n.name for n in sorted(chain, key=lambda n: order[id(n)])]
    return []


def int8_float_nodes(graph: onnx.GraphProto) -> list[str]:
    """The nodes an INT8 file keeps in float32: the input convolution, the full-resolution
    stages at both ends (encoder and decoder) and the output tail; the lower-resolution
    middle, where most of a U-Net's multiply-adds are, is quantized.

    Why the full-resolution stages: uint8 steps on the output layer's logits move the output
    by several grey levels where the Sigmoid is steep, i.e. on every grey or paper
    background, which MNIST's black-and-white test digits never reach. On stage 36gs the old
    rule (`input_conv_and_tail`) lost 1.3 dB on foreign displays and 2.9 on print, and took
    clean print from 43.6 to 27.8 dB; this one is within 0.01 dB of fp32 there, at 1.34x
    fp32's speed on digits instead of 1.52x (`python -m benchmarks.int8`, docs/export.md).
    """
    keep = (
        input_convolutions(graph)
        + full_resolution_encoder(graph)
        + full_resolution_decoder(graph)
        + output_tail(graph)
    )
    if "" in keep:  # the quantizer excludes nodes by name
        raise ExportError("int8: a node to keep in float32 has no name; name the graph's nodes")
    return list(dict.fromkeys(keep))


def input_conv_and_tail(graph: onnx.GraphProto) -> list[str]:
    """The rule before 2026-12-05 (the input convolution and the output tail in float32),
    kept for benchmarks/int8.py's comparison and the tests that show what it lost."""
    return input_convolutions(graph) + output_tail(graph)


def _last_index(
    graph: onnx.GraphProto, op_types: tuple[str, ...], before: int | None = None
) -> int | None:
    nodes = graph.node[:before] if before is not None else graph.node
    return max((i for i, n in enumerate(nodes) if n.op_type in op_types), default=None)


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


def to_int8(
    proto: onnx.ModelProto,
    calibration_images: np.ndarray,
    profile: str = "portable",
    float_nodes: Callable[[onnx.GraphProto], list[str]] = int8_float_nodes,
) -> onnx.ModelProto:
    """Static INT8 quantization, QDQ format, per-channel weights, calibrated on real inputs.

    Activations are uint8 and weights int8 (onnxruntime's recommended CPU combination);
    calibration uses min/max ranges observed on `calibration_images` (the model's real inputs).
    Weights use 7 bits (`reduce_range`): x86 CPUs without VNNI multiply uint8 by int8 in
    instructions whose int16 pair sums saturate with full 8-bit weights. Measured on AVX2
    with unet_ctx (2,000 test digits): full range lost 0.27 dB against fp32, 7-bit 0.06 dB, at
    the same speed (~1.3x fp32); uint8 weights lost 0.005 dB but ran at 0.89x fp32.
    The nodes `float_nodes` names stay float32 (`int8_float_nodes`: the input convolution,
    the full-resolution stages, the output tail). The input convolution alone, on stage 29m:
    quantized 0.28-0.29 dB against fp32 on 10,000 test digits, kept 0.10 dB, at no loss of
    speed (`python -m benchmarks.int8`); the tail (guided smoothing) quantized took 40
    foreign display readings from 28.03 dB to 20.17 (fp32: 28.80).
    The portable profile raises the file to opset 19 at least (PORTABLE_QDQ_OPSET).
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
            nodes_to_exclude=float_nodes(proto.graph),
        )
        out = onnx.load(str(dst))
    onnx.external_data_helper.convert_model_from_external_data(out)
    opset = next(o.version for o in out.opset_import if o.domain in ("", "ai.onnx"))
    if profile == "portable" and opset < PORTABLE_QDQ_OPSET:
        try:
            out = onnx.version_converter.convert_version(out, PORTABLE_QDQ_OPSET)
        except Exception as exc:  # the converter raises bare RuntimeErrors and its own types
            raise ExportError(
                f"int8: onnx cannot raise opset {opset} to {PORTABLE_QDQ_OPSET} for the portable "
                f"profile ({exc}); export with --profile onnxruntime or a newer --opset"
            ) from None
    return out


def input_convolutions(graph: onnx.GraphProto) -> list[str]:
    """Names of the convolutions fed by the image itself: one input channel, few weights,
    and activations whose range the calibration digits do not pin down."""
    return [n.name for n in graph.node if n.op_type == "Conv" and INPUT_NAME in n.input]


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
        # It logs its own success at INFO, on a logger it sets to DEBUG itself.
        with quiet_logs("ort_format_model.utils", logging.WARNING):
            create_config_from_models([ort_path], config, True)
        return config.read_bytes()
