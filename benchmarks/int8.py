"""INT8 with and without the input convolution in float32: quality and speed against fp32.

    python -m benchmarks.int8 [--models unet_world unet_scenes conv_denoiser] [--count 10000]

Each model is quantized twice the way `denoise-export --int8` does it (static QDQ,
per-channel 7-bit weights, min/max calibrated on 1,000 noisy MNIST *training* digits, every
60th): every convolution, and every one but the convolution that reads the image (the
export's default). Scored on
noisy MNIST *test* digits (Gaussian 0.5, the reference): mean PSNR, the largest pixel change
against fp32; speed on one thread, digits at batch 256 and one 504x504 page, the variants
interleaved so each ratio to fp32 comes from the same minutes.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from benchmarks.run import ROOT, clean_digits, machine, noisy_digits, rate
from denoise_cli.core.metrics import psnr


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
    """fp32 as bundled, INT8 of every convolution, INT8 with the input convolution in float."""
    import onnx

    from denoise_cli.model.bundled import resolve_model
    from denoise_export.variants import to_int8

    proto = onnx.load(str(resolve_model(model)))
    return {
        "fp32": proto.SerializeToString(),
        "int8, all": to_int8(proto, calibration, float_input_conv=False).SerializeToString(),
        "int8, input conv fp32": to_int8(proto, calibration).SerializeToString(),
    }


def measure(model: str, count: int, calibration: np.ndarray, seconds: float) -> list[dict]:
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
    for kind in sessions:
        rows.append(
            {
                "model": model,
                "variant": kind,
                "psnr_db": scores[kind],
                "vs_fp32_db": scores[kind] - scores["fp32"],
                "max_abs_vs_fp32": float(np.abs(outputs[kind] - outputs["fp32"]).max()),
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
    print(f"{args.count} noisy MNIST test digits (Gaussian 0.5); speed on one thread\n")
    print(
        "| model | variant | PSNR (dB) | vs fp32 (dB) | max abs vs fp32 | digits/s (256) | x fp32 "
        "| 504x504 pages/s | x fp32 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for model in args.models:
        for r in measure(model, args.count, calibration, args.seconds):
            rows.append(r)
            print(
                f"| {r['model']} | {r['variant']} | {r['psnr_db']:.2f} | {r['vs_fp32_db']:+.3f} "
                f"| {r['max_abs_vs_fp32']:.3f} | {r['digits_per_s']:,.0f} "
                f"| {r['digits_vs_fp32']:.2f}x "
                f"| {r['pages_per_s']:.2f} | {r['pages_vs_fp32']:.2f}x |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
