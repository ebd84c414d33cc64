"""The whole export job: checkpoint -> fp32 ONNX (+ variants), each verified and measured.

Nothing is written until a file has passed its checks, and each file is written atomically, so a
failed export leaves no output behind (earlier, verified variants stay).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from denoise_export.metadata import build_metadata, file_sha256, get_metadata, set_metadata
from denoise_export.onnx_export import (
    DEFAULT_OPSET,
    FP32_TOLERANCE,
    ExportError,
    ParityCase,
    check_model,
    check_parity,
    compare_outputs,
    export_model,
    odd_size_digits,
    ort_session,
    receptive_radius,
    run_session,
    save_atomic,
    torch_outputs,
)
from denoise_export.rewrite import METADATA_KEY as REWRITES_KEY
from denoise_export.rewrite import SPLIT_SINGLE_OUTPUT_CONV, split_single_output_convs
from denoise_export.variants import required_operators, to_fp16, to_int8, to_ort_format
from denoise_train.checkpoint import load_checkpoint, model_from_checkpoint
from denoise_train.config import EVAL_NOISE_SEED
from denoise_train.loop import model_input
from denoise_train.models import count_params, get_arch

from denoise_cli.core.metrics import psnr, ssim
from denoise_cli.core.noise import add_noise
from denoise_cli.core.timing import best_rate

# Acceptance per variant, against the fp32 file on the whole test set.
FP16_MAX_ABS = 1e-2
FP16_MAX_PSNR_DROP = 0.05  # dB
INT8_MAX_PSNR_DROP = 0.5  # dB


@dataclass
class VariantRow:
    variant: str
    path: str
    size_bytes: int
    psnr: float
    psnr_vs_fp32: float
    max_abs_vs_fp32: float
    images_per_s: float
    bench_batch: int
    check: str


@dataclass
class ExportResult:
    metadata: dict[str, str]
    parity: list[dict[str, Any]]
    rows: list[VariantRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metadata": self.metadata,
            "parity": self.parity,
            "variants": [asdict(r) for r in self.rows],
        }


def measure_speed(session, shape: tuple[int, ...], seconds: float = 0.5, windows: int = 5) -> float:
    """Model-only images/s for one input shape: warm up, then the best of `windows` timing
    windows sharing about `seconds` (see denoise_cli.core.timing.best_rate)."""
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: x})
    return shape[0] * best_rate(lambda: session.run(None, {name: x}), seconds, windows)


def _mean_psnr(clean: np.ndarray, restored: np.ndarray) -> float:
    return float(np.mean(psnr(clean, restored)))


def export_checkpoint(
    checkpoint: Path,
    out: Path,
    test_images: np.ndarray,
    calibration_images: np.ndarray,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    int8: bool = False,
    ort_format: bool = False,
    fixed_shape: tuple[int, int, int, int] | None = None,
    bench_batch: int = 256,
    rewrite: bool = True,
    log: Callable[[str], Any] = lambda msg: None,
) -> ExportResult:
    """Export, verify and measure. `test_images`/`calibration_images`: clean (N, 1, 28, 28).

    `rewrite` applies export/rewrite.py's exact CPU-speed rewrites before verification.
    """
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    arch = get_arch(ckpt["arch"])
    config = ckpt["config"]
    # Blind models are scored at the reference setting, like every other model.
    kind, level = (
        ("gaussian", 0.5)
        if config["noise"] == "blind"
        else (config["noise"], config["noise_level"])
    )
    noisy = add_noise(test_images, kind, level, EVAL_NOISE_SEED)
    inputs = model_input(arch.task, test_images, noisy)

    log(f"exporting {arch.name} (opset {opset})")
    proto = export_model(model, arch.fully_convolutional, opset, size_multiple=arch.size_multiple)
    rewrites = _apply_rewrites(proto, rewrite, log)
    check_model(proto)
    parity = check_parity(proto, model, inputs[:256], arch.fully_convolutional)
    for case in parity:
        log(f"  parity {case.name}: max abs {case.max_abs:.2e} (tolerance {FP32_TOLERANCE:g})")

    session = ort_session(proto)
    fp32_out = run_session(session, inputs)
    metrics = {
        "psnr": _mean_psnr(test_images, fp32_out),
        "ssim": float(np.mean(ssim(test_images, fp32_out))),
        "noisy_psnr": _mean_psnr(test_images, noisy),
    }
    metadata = build_metadata(
        ckpt,
        count_params(model),
        arch.fully_convolutional,
        file_sha256(checkpoint),
        metrics,
        len(test_images),
        size_multiple=arch.size_multiple,
        receptive_radius=receptive_radius(model) if arch.fully_convolutional else 0,
        task=arch.task,
    )
    if rewrites:
        metadata[REWRITES_KEY] = rewrites
    set_metadata(proto, metadata)
    check_model(proto)
    save_atomic(proto, out)
    result = ExportResult(metadata, [asdict(c) for c in parity])
    bench_shape = (bench_batch, 1, 28, 28)
    result.rows.append(
        VariantRow(
            "fp32",
            str(out),
            out.stat().st_size,
            metrics["psnr"],
            0.0,
            0.0,
            measure_speed(session, bench_shape),
            bench_batch,
            f"vs PyTorch max abs <= {FP32_TOLERANCE:g}",
        )
    )
    log(f"  wrote {out} (test PSNR {metrics['psnr']:.2f} dB)")

    def add_row(variant: str, path: Path, sess, outputs: np.ndarray, shape, check: str) -> None:
        p = _mean_psnr(test_images, outputs)
        result.rows.append(
            VariantRow(
                variant,
                str(path),
                path.stat().st_size,
                p,
                p - metrics["psnr"],
                float(np.max(np.abs(outputs - fp32_out))),
                measure_speed(sess, shape),
                shape[0],
                check,
            )
        )
        log(f"  wrote {path} (test PSNR {p:.2f} dB)")

    def add_variant(
        variant: str,
        tag: str,
        model: onnx.ModelProto,
        path: Path,
        max_abs: float | None,
        max_drop: float | None,
        check: str,
    ) -> None:
        """Verify a variant against the fp32 outputs, then (only then) write it."""
        set_metadata(model, metadata | {"variant": tag})
        check_model(model)
        sess = ort_session(model)
        outputs = run_session(sess, inputs)
        _accept(variant, test_images, outputs, fp32_out, max_abs, max_drop)
        add_row(variant, save_atomic(model, path), sess, outputs, bench_shape, check)

    stem = out.with_suffix("")
    if fp16:
        add_variant(
            "fp16",
            "fp16",
            to_fp16(proto),
            Path(f"{stem}.fp16.onnx"),
            FP16_MAX_ABS,
            FP16_MAX_PSNR_DROP,
            f"max abs <= {FP16_MAX_ABS:g}, PSNR drop <= {FP16_MAX_PSNR_DROP} dB",
        )
    if int8:
        calib_noisy = add_noise(calibration_images, kind, level, 1)
        calib = model_input(arch.task, calibration_images, calib_noisy)
        add_variant(
            "int8",
            "int8-qdq-per-channel",
            to_int8(proto, calib),
            Path(f"{stem}.int8.onnx"),
            None,
            INT8_MAX_PSNR_DROP,
            f"PSNR drop <= {INT8_MAX_PSNR_DROP} dB",
        )
    if ort_format:
        ort_proto = onnx.ModelProto()
        ort_proto.CopyFrom(proto)
        set_metadata(ort_proto, metadata | {"variant": "ort-format"})
        data = to_ort_format(ort_proto)
        with tempfile.TemporaryDirectory(prefix="denoise-ort-check-") as tmp:
            staged = Path(tmp) / "model.ort"
            staged.write_bytes(data)
            sess = ort_session(staged)
            outputs = run_session(sess, inputs)
            _accept("ort", test_images, outputs, fp32_out, FP32_TOLERANCE, None)
            path = save_atomic(data, Path(f"{stem}.ort"))
            add_row("ort", path, sess, outputs, bench_shape, f"max abs <= {FP32_TOLERANCE:g}")
            save_atomic(required_operators(staged), Path(f"{stem}.required_operators.config"))
    if fixed_shape is not None:
        if fixed_shape[2] % arch.size_multiple or fixed_shape[3] % arch.size_multiple:
            raise ExportError(f"{arch.name} needs sizes that are multiples of {arch.size_multiple}")
        fixed = export_model(model, arch.fully_convolutional, opset, fixed_shape)
        _apply_rewrites(fixed, rewrite, lambda msg: None)
        check_model(fixed)
        n, _, h, w = fixed_shape
        if (h, w) == (28, 28):
            sample = inputs[:n]
        elif arch.fully_convolutional:
            sample = np.random.default_rng(0).random(fixed_shape, dtype=np.float32)
        else:
            raise ExportError(f"{arch.name} is not fully convolutional: fixed shape must be 28x28")
        sess = ort_session(fixed)
        compare_outputs(
            "fixed", torch_outputs(model, sample), run_session(sess, sample, n), FP32_TOLERANCE
        )
        set_metadata(fixed, metadata | {"variant": f"fixed-{n}x1x{h}x{w}"})
        path = save_atomic(fixed, Path(f"{stem}.fixed-{n}x1x{h}x{w}.onnx"))
        if (h, w) == (28, 28):
            usable = len(inputs) // n * n
            outputs = np.concatenate(
                [run_session(sess, inputs[i : i + n], n) for i in range(0, usable, n)]
            )
            p = _mean_psnr(test_images[:usable], outputs)
            result.rows.append(
                VariantRow(
                    "fixed",
                    str(path),
                    path.stat().st_size,
                    p,
                    p - _mean_psnr(test_images[:usable], fp32_out[:usable]),
                    float(np.max(np.abs(outputs - fp32_out[:usable]))),
                    measure_speed(sess, fixed_shape),
                    n,
                    f"vs PyTorch max abs <= {FP32_TOLERANCE:g}",
                )
            )
            log(f"  wrote {path} (test PSNR {p:.2f} dB)")
    return result


def _apply_rewrites(proto: onnx.ModelProto, enabled: bool, log: Callable[[str], Any]) -> str:
    """Apply the CPU-speed rewrites (in place); returns their metadata value ('' for none)."""
    if not enabled:
        return ""
    count = split_single_output_convs(proto)
    if not count:
        return ""
    log(f"  rewrote {count} single-output convolution(s) as depthwise + channel sum")
    return SPLIT_SINGLE_OUTPUT_CONV


@dataclass
class RewriteResult:
    rewrites: int
    cases: list[ParityCase]


def rewrite_file(source: Path, out: Path, digits: np.ndarray) -> RewriteResult:
    """Apply the CPU-speed rewrites to an existing ONNX file (one exported before them, say).

    The result is checked against the source file in onnxruntime on `digits` (N, 1, 28, 28)
    at batch 1, 7 and 256 and, when the model takes any size, on a 64x48 image; only then is
    `out` written. Nothing is written when no rewrite applies.
    """
    original = onnx.load(str(source))
    proto = onnx.ModelProto()
    proto.CopyFrom(original)
    done = [r for r in get_metadata(original).get(REWRITES_KEY, "").split(",") if r]
    count = split_single_output_convs(proto)
    if not count:
        return RewriteResult(0, [])
    check_model(proto)
    before, after = ort_session(original), ort_session(proto)
    cases = [(f"batch {b}", digits[:b]) for b in (1, 7, 256) if b <= len(digits)]
    dims = before.get_inputs()[0].shape
    if not all(isinstance(d, int) for d in dims[2:]):
        cases.append(("64x48 image", odd_size_digits(digits)))
    results = []
    for name, x in cases:
        expected = run_session(before, x, batch_size=len(x))
        got = run_session(after, x, batch_size=len(x))
        results.append(
            compare_outputs(f"rewritten vs {source.name}, {name}", expected, got, FP32_TOLERANCE)
        )
    metadata = get_metadata(original)
    metadata[REWRITES_KEY] = ",".join([*done, SPLIT_SINGLE_OUTPUT_CONV])
    set_metadata(proto, metadata)
    save_atomic(proto, out)
    return RewriteResult(count, results)


def _accept(
    variant: str,
    clean: np.ndarray,
    outputs: np.ndarray,
    reference: np.ndarray,
    max_abs: float | None,
    max_psnr_drop: float | None,
) -> None:
    """Raise ExportError when a variant strays from the fp32 file beyond its tolerance."""
    diff = float(np.max(np.abs(outputs - reference)))
    if max_abs is not None and not diff <= max_abs:
        raise ExportError(f"{variant}: max abs difference {diff:.3g} vs fp32 exceeds {max_abs:g}")
    if max_psnr_drop is not None:
        drop = _mean_psnr(clean, reference) - _mean_psnr(clean, outputs)
        if not drop <= max_psnr_drop:
            raise ExportError(
                f"{variant}: test PSNR drops {drop:.3f} dB vs fp32 (allowed {max_psnr_drop} dB)"
            )


def markdown_table(rows: list[VariantRow]) -> str:
    base = next((r.images_per_s for r in rows if r.variant == "fp32"), None)
    lines = [
        "| variant | file | size (KB) | test PSNR (dB) | vs fp32 (dB) | max abs vs fp32 "
        "| CPU images/s (batch) | speed vs fp32 | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{r.images_per_s / base:.2f}x" if base else "-"
        lines.append(
            f"| {r.variant} | {Path(r.path).name} | {r.size_bytes / 1024:.1f} | {r.psnr:.2f} "
            f"| {r.psnr_vs_fp32:+.3f} | {r.max_abs_vs_fp32:.1e} | {r.images_per_s:,.0f} "
            f"({r.bench_batch}) | {ratio} | {r.check} |"
        )
    return "\n".join(lines) + "\n"
