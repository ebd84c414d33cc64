"""INT8's float32 nodes: quality on MNIST and on foreign sets, and speed, against fp32.

    python -m benchmarks.int8 [--models unet_world unet_scenes conv_denoiser] [--count 10000]
                              [--foreign 40]

Each model is quantized the way `denoise-export --int8` does it (static QDQ, per-channel 7-bit
weights, min/max calibrated on 1,000 noisy MNIST *training* digits, every 60th, the profile of
the INT8 file bundled beside it) under two rules for what stays float32: the input convolution
and the output tail (the export's rule until 2026-12-05), and the full-resolution stages at
both ends (the export's rule since, `export/variants.py::int8_float_nodes`). Scored on noisy
MNIST *test* digits (Gaussian 0.5, the reference) and on `--foreign` images of the display and
print sets and their clean copies (export/foreign.py; mean PSNR, clean copies capped at 50 dB);
speed on one thread, digits at batch 256 and one 504x504 page, the variants interleaved so each
ratio to fp32 comes from the same minutes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from benchmarks.run import ROOT, clean_digits, machine, noisy_digits, rate
from denoise_cli.core.metrics import psnr

FOREIGN_SETS = ("display", "print", "display-clean", "print-clean")


def _session(data: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _denoise(session, noisy: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: noisy[i : i + 256]})[0] for i in range(0, len(noisy), 256)]
    )


def variants(model: str, calibration: np.ndarray) -> dict[str, bytes]:
    """fp32 as bundled and its INT8 files under each rule."""
    import onnx

    from denoise_cli.model.bundled import resolve_model
    from denoise_export.variants import input_conv_and_tail, int8_float_nodes, to_int8

    path = resolve_model(model)
    proto = onnx.load(str(path))
    profile = bundled_int8_profile(path)
    return {
        "fp32": proto.SerializeToString(),
        "int8, input conv + tail fp32": to_int8(
            proto, calibration, profile, float_nodes=input_conv_and_tail
        ).SerializeToString(),
        "int8, full resolution fp32": to_int8(
            proto, calibration, profile, float_nodes=int8_float_nodes
        ).SerializeToString(),
    }


def bundled_int8_profile(fp32: Path) -> str:
    """The export profile of the INT8 file bundled beside `fp32` (portable without one): the
    onnxruntime profile keeps opset 18, where onnxruntime's AveragePool is fast."""
    import onnx

    from denoise_cli.model.placement import int8_file

    beside = int8_file(fp32)
    if not beside.is_file():
        return "portable"
    meta = {p.key: p.value for p in onnx.load(str(beside), load_external_data=False).metadata_props}
    return meta.get("export_profile", "portable")


def foreign_scores(sessions: dict, count: int) -> dict[str, dict[str, float]]:
    """Mean PSNR per variant on `count` images of each foreign set (clean sets capped)."""
    from denoise_export.foreign import build_set
    from denoise_export.variants import capped_mean_psnr

    digits = clean_digits(2000)
    scores: dict[str, dict[str, float]] = {k: {} for k in sessions}
    for name in FOREIGN_SETS:
        samples = build_set(name, count, digits).samples
        for kind, sess in sessions.items():
            inp = sess.get_inputs()[0].name
            per_image = [
                capped_mean_psnr(s.clean[None], sess.run(None, {inp: s.noisy[None, None]})[0][0])
                for s in samples
            ]
            scores[kind][name] = float(np.mean(per_image))
    return scores


def measure(
    model: str, count: int, calibration: np.ndarray, seconds: float, foreign: int
) -> list[dict]:
    clean = clean_digits(count)[:, None]
    noisy = noisy_digits(count)[:, None]
    grid = noisy_digits(18 * 18, seed=2).reshape(18, 18, 28, 28).transpose(0, 2, 1, 3)
    page = np.ascontiguousarray(grid.reshape(1, 1, 504, 504))
    sessions = {k: _session(v) for k, v in variants(model, calibration).items()}
    outputs = {k: _denoise(s, noisy) for k, s in sessions.items()}
    rows = []
    batch = np.ascontiguousarray(noisy[:256])
    speeds: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(3):  # interleaved rounds: every variant under the same load
        for kind, sess in sessions.items():
            name = sess.get_inputs()[0].name
            digits = rate(lambda s=sess, n=name: s.run(None, {n: batch}), 256, seconds)
            pages = rate(lambda s=sess, n=name: s.run(None, {n: page}), 1, seconds)
            speeds[kind].append((digits, pages))
    best = {k: tuple(max(v[i] for v in s) for i in range(2)) for k, s in speeds.items()}
    scores = {k: float(np.mean(psnr(clean, out))) for k, out in outputs.items()}
    off_mnist = foreign_scores(sessions, foreign)
    for kind in sessions:
        rows.append(
            {
                "model": model,
                "variant": kind,
                "psnr_db": scores[kind],
                "vs_fp32_db": scores[kind] - scores["fp32"],
                "max_abs_vs_fp32": float(np.abs(outputs[kind] - outputs["fp32"]).max()),
                "foreign_db": off_mnist[kind],
                "digits_per_s": best[kind][0],
                "digits_vs_fp32": best[kind][0] / best["fp32"][0],
                "pages_per_s": best[kind][1],
                "pages_vs_fp32": best[kind][1] / best["fp32"][1],
            }
        )
    return rows


def main() -> None:
    from denoise_cli.core.noise import REFERENCE_KIND, REFERENCE_LEVEL, add_noise
    from denoise_train.mnist import load_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["unet_world", "unet_scenes", "conv_denoiser"]
    )
    parser.add_argument("--count", type=int, default=10_000, help="noisy test digits to score")
    parser.add_argument("--seconds", type=float, default=1.0, help="per speed measurement")
    parser.add_argument("--foreign", type=int, default=40, help="images of each foreign set")
    parser.add_argument(
        "--mnist",
        default=None,
        help="MNIST folder (default: $DENOISE_MNIST_DIR, else ../shared/data/mnist)",
    )
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    mnist = args.mnist or os.environ.get("DENOISE_MNIST_DIR", ROOT.parent / "shared/data/mnist")
    train = load_split("train", mnist, download=False)[0][::60][:1000]  # as the export picks
    calibration = add_noise(train, REFERENCE_KIND, REFERENCE_LEVEL, 1).astype(np.float32)
    info = machine()
    print(
        f"{info['cpu']} ({info['simd']}, {info['cores']} cores), onnxruntime {info['onnxruntime']}"
    )
    print(
        f"{args.count} noisy MNIST test digits (Gaussian 0.5), {args.foreign} images of each "
        "foreign set (clean copies capped at 50 dB); speed on one thread\n"
    )
    print(
        "| model | variant | MNIST (dB) | vs fp32 | "
        + " | ".join(FOREIGN_SETS)
        + " | max abs vs fp32 | digits/s (256) | x fp32 | 504x504 pages/s | x fp32 |"
    )
    print("|---|---|" + "---:|" * (len(FOREIGN_SETS) + 8))
    rows = []
    for model in args.models:
        for r in measure(model, args.count, calibration, args.seconds, args.foreign):
            rows.append(r)
            foreign = " | ".join(f"{r['foreign_db'][name]:.2f}" for name in FOREIGN_SETS)
            print(
                f"| {r['model']} | {r['variant']} | {r['psnr_db']:.2f} | {r['vs_fp32_db']:+.3f} "
                f"| {foreign} | {r['max_abs_vs_fp32']:.3f} | {r['digits_per_s']:,.0f} "
                f"| {r['digits_vs_fp32']:.2f}x "
                f"| {r['pages_per_s']:.2f} | {r['pages_vs_fp32']:.2f}x |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
