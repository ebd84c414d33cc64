"""Where BM3D beats the default on display readings, and why: each model beside BM3D on the
foreign display set, on that set with one ingredient taken out, and on displays the training
world draws itself, all under the foreign set's camera noise.

    python -m benchmarks.display_gap MODEL.onnx [MODEL.onnx ...] [--count 24] [--out DIR]

If a model loses to BM3D on the world's own readings as much as on the foreign ones, the
renderer is not what it lacks (that would be a gap a wider world closes); if it loses on some
draws of the world and wins on others, the table says which. Needs the optional `bm3d` package
(non-commercial licence; the comparison is optional, never a dependency). The models run as the
runtime runs them (Denoiser, automatic polarity), two threads; BM3D with the foreign runs' sigma
estimate. Images: seeded, the same for every model.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmarks.run import machine
from denoise_cli.model.session import Denoiser
from denoise_export import foreign
from denoise_export.foreign_eval import bm3d_filter
from denoise_train import world

Render = Callable[[np.random.Generator], np.ndarray]


def foreign_display(
    blur: bool = True, ghost: bool = True, spot: bool = True, height_scale: float = 1.0
) -> Render:
    """foreign.render_display with ingredients switchable (the same draws otherwise)."""

    def render(rng: np.random.Generator) -> np.ndarray:
        height, width = foreign.DISPLAY_SHAPE
        height = int(height * height_scale)
        lit, unlit = foreign.display_layers(rng, (height, width))
        bg_rgb, ink_rgb = foreign._LCDS[int(rng.integers(0, len(foreign._LCDS)))]
        bg = float(np.dot(foreign.LUMA, bg_rgb)) * rng.uniform(0.9, 1.1)
        ink = float(np.dot(foreign.LUMA, ink_rgb)) * rng.uniform(0.9, 1.05)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        s = np.exp(-((xx - cx) ** 2 + ((yy - cy) * 3) ** 2) / (2 * (0.4 * width) ** 2))
        background = bg * (1 + (rng.uniform(0.05, 0.15) if spot else 0.0) * (s - s.mean()))
        level = rng.uniform(0.06, 0.18) if ghost else 0.0
        image = background + (ink - background) * np.clip(lit + level * unlit, 0, 1)
        if blur:
            image = ndimage.gaussian_filter(image, rng.uniform(0.5, 0.9))
        return np.clip(image, 0, 1).astype(np.float32)

    return render


def world_display(shape: tuple[int, int], framed: bool) -> Render:
    """The world's seven-segment and dot-matrix ink (framed: 12-40 px rows; else 10-160 px) on
    a flat background of either polarity, blurred a little like the foreign set."""

    def render(rng: np.random.Generator) -> np.ndarray:
        while True:
            ink, ghost = world.display_ink(*shape, rng, framed=framed)
            if ink.max() >= 0.5:
                break
        bg = rng.uniform(0.2, 0.7)
        level = bg + rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.5)
        image = bg + (level - bg) * np.clip(ink + 0.1 * ghost, 0, 1)
        return np.clip(ndimage.gaussian_filter(image, 0.7), 0, 1).astype(np.float32)

    return render


def no_banding(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """foreign.display_noise without its row banding."""
    peak = float(np.exp(rng.uniform(np.log(15.0), np.log(60.0))))
    shot = rng.poisson(np.clip(image, 0, 1).astype(np.float64) * peak) / peak
    read = rng.uniform(0.06, 0.10) * rng.standard_normal(image.shape)
    return np.clip(shot + read, 0, 1).astype(np.float32)


CASES: dict[str, tuple[Render, Callable]] = {
    "foreign display": (foreign_display(), foreign.display_noise),
    "  without row banding": (foreign_display(), no_banding),
    "  without blur": (foreign_display(blur=False), foreign.display_noise),
    "  without unlit segments": (foreign_display(ghost=False), foreign.display_noise),
    "  without backlight spot": (foreign_display(spot=False), foreign.display_noise),
    "  strip 2x taller": (foreign_display(height_scale=2.0), foreign.display_noise),
    "world display, 10-160 px, 40x160": (world_display((40, 160), False), foreign.display_noise),
    "world reading, 12-40 px, 40x160": (world_display((40, 160), True), foreign.display_noise),
    "world reading, 12-40 px, 64x64": (world_display((64, 64), True), foreign.display_noise),
}


def mean_psnr(images: list[np.ndarray], clean: list[np.ndarray]) -> float:
    errors = [np.mean((a.astype(np.float64) - b) ** 2) for a, b in zip(images, clean, strict=True)]
    return float(np.mean(10 * np.log10(1.0 / np.asarray(errors))))


def run(models: list[Path], count: int, seed: int) -> dict:
    bm3d = bm3d_filter()
    denoisers = {m.name: Denoiser(m, device="cpu", threads=2) for m in models}
    rows = []
    for i, (case, (render, noise)) in enumerate(CASES.items()):
        rng = np.random.default_rng([seed, i])
        clean = [render(rng) for _ in range(count)]
        noisy = [noise(c, rng) for c in clean]
        row = {"case": case.strip(), "noisy": mean_psnr(noisy, clean)}
        row["BM3D"] = mean_psnr([bm3d(n) for n in noisy], clean) if bm3d else None
        for name, denoiser in denoisers.items():
            row[name] = mean_psnr(denoiser.denoise(noisy, invert="auto"), clean)
        rows.append(row)
        print(f"{case}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "case" and v))
    return {"machine": machine(), "count": count, "seed": seed, "rows": rows}


def table(result: dict, models: list[str]) -> str:
    head = ["case", "noisy", "BM3D"] + [f"{m} (vs BM3D)" for m in models]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row in result["rows"]:
        cells = [row["case"], f"{row['noisy']:.2f}", f"{row['BM3D']:.2f}" if row["BM3D"] else "-"]
        for m in models:
            gap = f" ({row[m] - row['BM3D']:+.2f})" if row["BM3D"] else ""
            cells.append(f"{row[m]:.2f}{gap}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="exported models (.onnx, .ort)")
    parser.add_argument("--count", type=int, default=24, help="images per case")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, help="write display_gap.md and .json here")
    args = parser.parse_args(argv)
    result = run(args.models, args.count, args.seed)
    text = f"{args.count} images per case, seed {args.seed}; {machine()['cpu']}\n\n"
    text += table(result, [m.name for m in args.models])
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "display_gap.md").write_text(text + "\n")
        (args.out / "display_gap.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
