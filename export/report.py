"""The seed chapter's evidence, rebuilt from models: two figures and a PSNR/SSIM table.

- autoencoders.png: 5 random test digits (original on top) through each autoencoder.
- denoisers.png: original / noisy / each denoiser's output for 5 random test digits.
- results.md and results.json: mean PSNR and SSIM on the test digits with fixed-seed Gaussian
  noise (all 10,000 unless limited), autoencoders on clean input, denoisers on noisy input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from denoise_cli.core.atomic import write_atomic
from denoise_cli.core.noise import add_noise
from denoise_export.candidates import load_candidate
from denoise_train.config import EVAL_NOISE_SEED
from denoise_train.loop import model_input, score
from denoise_train.models import REGISTRY

SCALE = 3
LABEL_WIDTH = 170


def _grid(rows: Sequence[tuple[str, np.ndarray]]) -> Image.Image:
    """One labelled row per (label, (K, 1, 28, 28) images), digits upscaled for legibility."""
    k, side = rows[0][1].shape[0], rows[0][1].shape[-1] * SCALE
    pad = 4
    canvas = Image.new("L", (LABEL_WIDTH + k * (side + pad), len(rows) * (side + pad)), 255)
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        y = r * (side + pad)
        draw.text((6, y + side // 2 - 6), label, fill=0)
        for c, img in enumerate(images):
            tile = Image.fromarray(np.round(np.clip(img[0], 0, 1) * 255).astype(np.uint8))
            canvas.paste(
                tile.resize((side, side), Image.NEAREST), (LABEL_WIDTH + c * (side + pad), y)
            )
    return canvas


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def build_report(
    model_paths: Sequence[Path],
    test_images: np.ndarray,
    out_dir: Path,
    noise_level: float = 0.5,
    seed: int = 0,
) -> list[Path]:
    """Evaluate every model (checkpoints or exported ONNX files), write figures and tables
    into `out_dir`; returns the paths."""
    models = [load_candidate(path) for path in model_paths]  # refused before out_dir exists
    out_dir.mkdir(parents=True, exist_ok=True)
    noisy = add_noise(test_images, "gaussian", noise_level, EVAL_NOISE_SEED)
    pick = np.random.default_rng(seed).choice(len(test_images), size=5, replace=False)

    rows: list[dict[str, object]] = [
        {
            "model": "noisy input (no model)",
            "params": 0,
            "task": "-",
            "input": f"gaussian sigma {noise_level}",
            **score(test_images, noisy),
        }
    ]
    ae_rows: list[tuple[int, str, np.ndarray]] = []
    dn_rows: list[tuple[str, np.ndarray]] = []
    order = {name: i for i, name in enumerate(REGISTRY)}
    models.sort(key=lambda m: order.get(m.arch, len(order)))  # stable: files keep their order
    for model in models:
        restored = model.predict(model_input(model.task, test_images, noisy))
        rows.append(
            {
                "model": model.name,
                "params": model.params,
                "task": model.task,
                "input": "clean"
                if model.task == "autoencoder"
                else f"gaussian sigma {noise_level}",
                "epochs": model.epochs,
                "checkpoint": model.source,
                **score(test_images, restored),
            }
        )
        if model.task == "autoencoder":
            ae_rows.append((model.arch_args.get("hidden", 0), model.name, restored[pick]))
        else:
            dn_rows.append((model.name, restored[pick]))

    written: list[Path] = []
    if ae_rows:
        grid = [("original", test_images[pick])]
        grid += [(f"{name} ({h} units)", imgs) for h, name, imgs in sorted(ae_rows)]
        path = out_dir / "autoencoders.png"
        write_atomic(_png_bytes(_grid(grid)), path)
        written.append(path)
    if dn_rows:
        grid = [("original", test_images[pick]), (f"noisy (sigma {noise_level})", noisy[pick])]
        grid += dn_rows
        path = out_dir / "denoisers.png"
        write_atomic(_png_bytes(_grid(grid)), path)
        written.append(path)

    meta = {
        "test_images": len(test_images),
        "noise": "gaussian",
        "noise_level": noise_level,
        "noise_seed": EVAL_NOISE_SEED,
        "rows": rows,
    }
    path = out_dir / "results.json"
    write_atomic((json.dumps(meta, indent=2) + "\n").encode(), path)
    written.append(path)
    path = out_dir / "results.md"
    write_atomic(markdown_table(rows, len(test_images)).encode(), path)
    written.append(path)
    return written


def markdown_table(rows: Sequence[dict[str, object]], n_images: int) -> str:
    lines = [
        f"Mean per-image PSNR / SSIM on {n_images:,} MNIST test digits "
        f"(noise seed {EVAL_NOISE_SEED}).",
        "",
        "| model | params | task | input | PSNR (dB) | SSIM |",
        "|---|---:|---|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['task']} | {r['input']} "
            f"| {r['psnr']:.2f} | {r['ssim']:.3f} |"
        )
    return "\n".join(lines) + "\n"
