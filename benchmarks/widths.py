"""What a wider U-Net costs at run time: model-only images/s of unet_lite_near's layout at other
channel widths, against the seed model, measured in the same run.

    python -m benchmarks.widths                            # the default widths, 2 threads
    python -m benchmarks.widths --widths 8-16-64,8-24-96 --threads 1 --out DIR
    python -m benchmarks.widths --widths 8-16-64 --archs unet_lite_nl   # registered layouts too

Issue 18's speed floor is one third of the seed model's model-only speed (onnxruntime CPU, 2
threads, batch 256 of 28x28 digits). The quality a wider net buys is measured by training it
(docs/models.md); what it costs does not depend on the weights, so this exports each width with
random weights through the project's exporter and times it in interleaved rounds (the best
window of each round, the best round), so that a slow moment of the machine hits every width
alike. Multiply-adds are counted per output pixel at 28x28.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.run import machine
from denoise_cli.core.timing import best_rate

DEFAULT_WIDTHS = "8-16-64,8-24-64,8-16-96,8-24-96,12-24-96,8-16-128,16-32-96"
BASE = (8, 16, 64)  # unet_lite_near, the default model's architecture


def parse_widths(text: str) -> list[tuple[int, int, int]]:
    """'8-16-64,16-32-96' -> [(8, 16, 64), (16, 32, 96)]."""
    widths = []
    for item in text.split(","):
        try:
            parts = tuple(int(p) for p in item.strip().split("-"))
        except ValueError:
            parts = ()
        if len(parts) != 3 or min(parts) < 1:
            raise SystemExit(f"--widths: {item!r} is not three positive widths like 8-16-64")
        widths.append(parts)
    return widths


def multiply_adds_per_pixel(model: Any, side: int = 28) -> float:
    """Convolution multiply-adds per output pixel for one side x side image."""
    import torch

    total = 0

    def count(module: Any, inputs: Any, output: Any) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * (module.in_channels // module.groups) * k

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(count) for m in convs]
    with torch.no_grad():
        model(torch.zeros(1, 1, side, side))
    for hook in hooks:
        hook.remove()
    return total / (side * side)


def export_width(
    widths: tuple[int, int, int], folder: Path, arch_name: str = "unet_lite_near"
) -> tuple[Path, int, float]:
    """A registered layout (unet_lite_near unless named) at `widths` with seeded random weights,
    exported like a trained model. Multiply-adds count convolutions only (not attention)."""
    import onnx
    import torch

    from denoise_export.onnx_export import export_model
    from denoise_train.models import REGISTRY

    arch = REGISTRY[arch_name]
    torch.manual_seed(0)
    model = arch.build(widths=list(widths)).eval()
    params = sum(p.numel() for p in model.parameters())
    macs = multiply_adds_per_pixel(model)
    proto = export_model(model, True, size_multiple=arch.size_multiple)
    prefix = "unet-" if arch_name == "unet_lite_near" else f"{arch_name}-"
    path = folder / (prefix + "-".join(map(str, widths)) + ".onnx")
    onnx.save(proto, str(path))
    return path, params, macs


def runner(path: Path, threads: int, batch: int) -> Callable[[], object]:
    """One model call on `batch` 28x28 images, in a session set up as the runtime sets its own
    (no spinning: an idle session's threads would busy-wait through the others' timings)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {
        session.get_inputs()[0].name: np.random.default_rng(0).random(
            (batch, 1, 28, 28), dtype=np.float32
        )
    }
    for _ in range(3):
        session.run(None, feed)
    return lambda: session.run(None, feed)


def measure(
    runs: dict[str, Callable[[], object]], batch: int, rounds: int, seconds: float
) -> dict[str, float]:
    """Best images/s of each call over `rounds` interleaved rounds, each round in a new order
    (rotated), so that no model always runs right after the same neighbour."""
    names = list(runs)
    best = dict.fromkeys(names, 0.0)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            best[name] = max(best[name], batch * best_rate(runs[name], seconds, 5))
    return best


def table(rows: list[dict[str, Any]], seed_rate: float, seed_params: int) -> str:
    lines = [
        "| widths | parameters | multiply-adds / pixel | images/s | x seed | x unet_lite_near |",
        "|---|---:|---:|---:|---:|---:|",
        f"| seed conv_denoiser | {seed_params:,} | - | {seed_rate:,.0f} | 1.00x | |",
    ]
    plain = [r for r in rows if r["arch"] == "unet_lite_near"]
    base = next(r for r in plain if r["widths"] == list(BASE))["images_per_s"]
    for r in rows:
        name = "-".join(map(str, r["widths"]))
        if r["arch"] != "unet_lite_near":
            name = f"{r['arch']} {name}"
        elif r["widths"] == list(BASE):
            name += " (unet_lite_near)"
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['multiply_adds']:,.0f} | "
            f"{r['images_per_s']:,.0f} | {r['images_per_s'] / seed_rate:.2f}x | "
            f"{r['images_per_s'] / base:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import tempfile

    import onnx

    from denoise_cli.model.bundled import bundled_models
    from denoise_export.metadata import get_metadata

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default=DEFAULT_WIDTHS, help="comma-separated A-B-C widths")
    parser.add_argument(
        "--archs", default="", help="comma-separated registered U-Nets, at unet_lite_near's widths"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="per width per round")
    parser.add_argument("--out", type=Path, help="write widths.md and widths.json here")
    args = parser.parse_args(argv)
    widths = parse_widths(args.widths)
    if BASE not in widths:
        widths.insert(0, BASE)
    seed = bundled_models()["conv_denoiser"]
    with tempfile.TemporaryDirectory(prefix="denoise-widths-") as tmp:
        files, rows, stems = {"seed": seed}, [], []
        specs = [("unet_lite_near", w) for w in widths]
        specs += [(name, BASE) for name in filter(None, args.archs.split(","))]
        for arch_name, w in specs:
            path, params, macs = export_width(w, Path(tmp), arch_name)
            files[path.stem] = path
            stems.append(path.stem)
            rows.append(
                {"arch": arch_name, "widths": list(w), "parameters": params, "multiply_adds": macs}
            )
        runs = {name: runner(path, args.threads, args.batch) for name, path in files.items()}
        rates = measure(runs, args.batch, args.rounds, args.seconds)
    for r, stem in zip(rows, stems, strict=True):
        r["images_per_s"] = rates[stem]
    seed_params = int(get_metadata(onnx.load(str(seed)))["parameters"])
    info = machine()
    head = (
        f"{info['cpu']} ({info['simd']}, {info['cores']} cores), onnxruntime "
        f"{info['onnxruntime']}, {args.threads} threads, batch {args.batch} of 28x28, "
        f"best of {args.rounds} interleaved rounds"
    )
    text = head + "\n\n" + table(rows, rates["seed"], seed_params)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "widths.md").write_text(text + "\n")
        report = {"machine": info, "seed_images_per_s": rates["seed"], "rows": rows}
        (args.out / "widths.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
