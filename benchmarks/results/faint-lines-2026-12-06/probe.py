"""Faint printed structure on clean and lightly noisy forms: how much of a ruled line's
contrast comes back, and the PSNR, per model. Forms drawn here (not by train/world.py):
Pillow's bundled font, ruled or grid lines 1-2 px in grey or colour at 12-60 levels below the
paper, ink strokes in dark colours; Gaussian noise per channel, 8-bit, clipped.

Usage: python probe.py NAME=MODEL.onnx ...   (one thread, through the runtime's files path)
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from denoise_export.foreign_eval import through_files

rng = np.random.default_rng(2026)
H, W, COUNT = 96, 288, 40


def form() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean RGB float, mask of line pixels away from ink, mask of paper away from both)."""
    paper = rng.uniform(205, 252) - rng.uniform(0, 20, 3) * np.array([0, 0.3, 1.0])
    depth = rng.uniform(12, 60)
    tint = rng.uniform(0, 1, 3) if rng.random() < 0.6 else np.ones(3)  # coloured or grey
    line = paper - depth * tint / tint.mean() * rng.uniform(0.7, 1.0)
    img = np.tile(paper, (H, W, 1))
    pitch, thick = int(rng.integers(10, 30)), 1 if rng.random() < 0.7 else 2
    lines = np.zeros((H, W), bool)
    for r in range(int(rng.integers(3, pitch)), H, pitch):
        lines[r : r + thick] = True
    if rng.random() < 0.3:  # a grid
        for c in range(int(rng.integers(3, pitch)), W, pitch):
            lines[:, c : c + thick] = True
    img[lines] = line
    im = Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=int(rng.integers(14, 28)))
    ink = tuple(int(v) for v in rng.uniform(0, 90, 3))
    text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(4, 10))))
    draw.text((int(rng.integers(4, 60)), int(rng.integers(4, 40))), text, fill=ink, font=font)
    clean = np.asarray(im, np.float32) / 255.0
    inked = np.abs(clean - np.clip(np.round(img), 0, 255) / 255.0).max(axis=2) > 1 / 255
    from scipy.ndimage import binary_dilation

    near_ink = binary_dilation(inked, iterations=3)
    near_line = binary_dilation(lines, iterations=2)
    return clean, lines & ~near_ink, ~near_ink & ~near_line


def luma(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], np.float32)


forms = [form() for _ in range(COUNT)]
models = dict(arg.split("=", 1) for arg in sys.argv[1:])
for sigma in (0, 6, 12):
    noisy = [
        np.clip(np.round((c + rng.normal(0, sigma / 255, c.shape)) * 255), 0, 255) / 255
        for c, _, _ in forms
    ]
    row = [f"sigma {sigma:2d}"]
    for name, path in [("input", None), *models.items()]:
        outs = noisy if path is None else through_files(Path(path), noisy, 1)
        kept, psnr = [], []
        for (clean, line_px, paper_px), out in zip(forms, outs, strict=True):
            y_clean, y_out = luma(clean), luma(np.asarray(out, np.float32))
            depth = y_clean[paper_px].mean() - y_clean[line_px].mean()
            kept.append((y_out[paper_px].mean() - y_out[line_px].mean()) / depth)
            psnr.append(-10 * np.log10(np.mean((np.asarray(out) - clean) ** 2) + 1e-10))
        row.append(f"{name}: line contrast kept {100 * np.mean(kept):.0f}% (min {100 * np.min(kept):.0f}%), RGB {np.mean(psnr):.2f} dB")
    print(" | ".join(row), flush=True)
