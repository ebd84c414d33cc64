"""Adaptation measured on two foreign digit domains of our own: the default model as shipped,
BM3D, `denoise-train adapt` on the noisy folder alone, and with 300 clean images.

    python -m benchmarks.adapt --out DIR [--minutes 15] [--domains display,serif] [--threads 1]
    python -m benchmarks.adapt --out DIR --make-only     # write the folders and stop

Domains (neither is in any training world of the bundled models):
- display: 7-segment readings, light segments on an uneven grey panel (LCD-like), with
  Poisson-Gaussian noise, var = 0.01 x + 0.0009 (sigma 0.035 at black, 0.1 at white);
- serif: dark Computer Modern (matplotlib's cmr10.ttf) digits on textured paper, with Gaussian
  noise (sigma 0.08) plus 3% impulses (salt and pepper).
Each: 3,000 noisy training images (64x64, 1-3 digits), 300 clean images drawn apart, 250
clean/noisy test pairs drawn apart again. PSNR is the mean over the test pairs of the model's
(ONNX, through denoise_cli's Denoiser) or BM3D's output against the clean image. BM3D gets an
oracle: the true noise sigma of each image (root mean variance), with impulses left in (BM3D
has no impulse model).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIDE = 64
#: Segments of a 7-segment digit: a b c d e f g.
SEGMENTS = {
    "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg",
    "5": "acdfg", "6": "acdefg", "7": "abc", "8": "abcdefg", "9": "abcdfg",
}  # fmt: skip


def _segment_boxes(x: float, y: float, w: float, h: float, t: float) -> dict[str, tuple]:
    """Each segment's rectangle for a digit cell at (x, y) of size w x h, stroke t."""
    half = h / 2
    return {
        "a": (x + t, y, x + w - t, y + t),
        "b": (x + w - t, y + t, x + w, y + half),
        "c": (x + w - t, y + half, x + w, y + h - t),
        "d": (x + t, y + h - t, x + w - t, y + h),
        "e": (x, y + half, x + t, y + h - t),
        "f": (x, y + t, x + t, y + half),
        "g": (x + t, y + half - t / 2, x + w - t, y + half + t / 2),
    }


def display_image(rng: np.random.Generator) -> np.ndarray:
    """Light 7-segment digits on an uneven grey panel, (SIDE, SIDE) in [0, 1]."""
    scale = 4
    big = SIDE * scale
    im = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(im)
    n = int(rng.integers(1, 4))
    h = rng.uniform(0.35, 0.7) * big
    w, t = h * rng.uniform(0.45, 0.6), h * rng.uniform(0.08, 0.14)
    gap = w * 0.3
    x0 = rng.uniform(0, max(1.0, big - n * (w + gap)))
    y0 = rng.uniform(0, big - h)
    for k in range(n):
        digit = str(int(rng.integers(0, 10)))
        boxes = _segment_boxes(x0 + k * (w + gap), y0, w, h, t)
        for s in SEGMENTS[digit]:
            draw.rectangle(boxes[s], fill=255)
    im = im.resize((SIDE, SIDE), Image.LANCZOS).filter(ImageFilter.GaussianBlur(0.5))
    mask = np.asarray(im, np.float32) / 255.0
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    panel = rng.uniform(0.3, 0.45) + rng.uniform(-0.08, 0.08) * (xx - 0.5 + yy - 0.5)
    ink = rng.uniform(0.7, 0.85)
    return np.clip(panel * (1 - mask) + ink * mask, 0, 1).astype(np.float32)


def _serif_font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "cmr10.ttf"
    return ImageFont.truetype(str(path), size)


def serif_image(rng: np.random.Generator) -> np.ndarray:
    """Dark Computer Modern digits on textured paper, (SIDE, SIDE) in [0, 1]."""
    text = "".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(1, 4))))
    font = _serif_font(int(rng.integers(22, 44)))
    im = Image.new("L", (SIDE, SIDE), 0)
    draw = ImageDraw.Draw(im)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = rng.uniform(-left, max(-left + 1, SIDE - right))
    y = rng.uniform(-top, max(-top + 1, SIDE - bottom))
    draw.text((x, y), text, fill=255, font=font)
    mask = np.asarray(im, np.float32) / 255.0
    paper = rng.uniform(0.82, 0.95) + 0.02 * _smooth_texture(rng)
    ink = rng.uniform(0.08, 0.25)
    return np.clip(paper * (1 - mask) + ink * mask, 0, 1).astype(np.float32)


def _smooth_texture(rng: np.random.Generator) -> np.ndarray:
    small = rng.standard_normal((SIDE // 8, SIDE // 8)).astype(np.float32)
    im = Image.fromarray(small, "F").resize((SIDE, SIDE), Image.BICUBIC)
    return np.asarray(im, np.float32)


def display_noise(clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Poisson-Gaussian, var = 0.01 x + 0.0009; returns (noisy, root mean variance)."""
    var = 0.01 * clean + 0.0009
    noisy = clean + np.sqrt(var) * rng.standard_normal(clean.shape).astype(np.float32)
    return np.clip(noisy, 0, 1).astype(np.float32), float(np.sqrt(var.mean()))


def serif_noise(clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Gaussian sigma 0.08 plus 3% salt and pepper."""
    noisy = np.clip(clean + 0.08 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
    u = rng.random(clean.shape)
    noisy[u < 0.015] = 0.0
    noisy[(u >= 0.015) & (u < 0.03)] = 1.0
    return noisy, 0.08


DOMAINS: dict[str, tuple[Callable, Callable]] = {
    "display": (display_image, display_noise),
    "serif": (serif_image, serif_noise),
}


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(image * 255).astype(np.uint8), "L").save(path)


def make_domain(root: Path, name: str, n_train: int, n_clean: int, n_test: int, seed: int) -> None:
    """root/{noisy,clean,test_clean,test_noisy}/NNNNN.png, unless already there."""
    if (root / "done").exists():
        return
    draw, noise = DOMAINS[name]
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        _save(noise(draw(rng), rng)[0], root / "noisy" / f"{i:05d}.png")
    for i in range(n_clean):
        _save(draw(rng), root / "clean" / f"{i:05d}.png")
    for i in range(n_test):
        clean = draw(rng)
        _save(clean, root / "test_clean" / f"{i:05d}.png")
        _save(noise(clean, rng)[0], root / "test_noisy" / f"{i:05d}.png")
    (root / "done").write_text("")


def load_pairs(root: Path) -> tuple[np.ndarray, np.ndarray]:
    names = sorted(p.name for p in (root / "test_clean").glob("*.png"))
    read = lambda p: np.asarray(Image.open(p), np.float32) / 255.0  # noqa: E731
    clean = np.stack([read(root / "test_clean" / n) for n in names])
    noisy = np.stack([read(root / "test_noisy" / n) for n in names])
    return clean, noisy


def model_psnr(model: str | Path | None, clean: np.ndarray, noisy: np.ndarray) -> float:
    """Mean PSNR of an ONNX model run as denoise-batch runs it (polarity auto)."""
    from denoise_cli.core.metrics import psnr
    from denoise_cli.model.session import Denoiser

    out = np.stack(Denoiser(model, threads=1).denoise(list(noisy)))
    return float(np.mean(psnr(clean, out)))


def bm3d_psnr(name: str, clean: np.ndarray, noisy: np.ndarray, seed: int) -> float:
    """BM3D with each image's true noise sigma (an oracle no user has)."""
    import bm3d

    from denoise_cli.core.metrics import psnr

    _, noise = DOMAINS[name]
    rng = np.random.default_rng(seed)
    out = []
    for c, y in zip(clean, noisy, strict=True):
        sigma = noise(c, rng)[1]  # the sigma only: the noise drawn here is discarded
        out.append(np.clip(bm3d.bm3d(y, sigma_psd=sigma), 0, 1))
    return float(np.mean(psnr(clean, np.stack(out).astype(np.float32))))


def adapt_psnr(root: Path, out: Path, clean: bool, minutes: float, threads: int, **kw) -> dict:
    from denoise_export.adaptation import AdaptSettings, adapt

    settings = AdaptSettings(minutes=minutes, threads=threads, **kw)
    t0 = time.perf_counter()
    clean_dir = root / "clean" if clean else None
    result = adapt(root / "noisy", out, clean_dir, settings=settings, overwrite=True)  # a rerun
    wall = time.perf_counter() - t0
    c, y = load_pairs(root)
    return {
        "psnr": model_psnr(out, c, y),
        "train_minutes": result.minutes,
        "wall_minutes": wall / 60,
        "steps": result.steps,
        "method": result.method,
        "kept_base": result.kept_base,
        "noise": result.noise.describe(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for data and results")
    parser.add_argument("--domains", default="display,serif", help="comma list of domains")
    parser.add_argument("--minutes", type=float, default=15.0, help="adapt's training time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--method", default="auto", help="noisy-only method (adapt_objectives)")
    parser.add_argument("--skip", default="", help="comma list of: default,bm3d,noisy,clean")
    parser.add_argument("--make-only", action="store_true", help="write the folders and stop")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    results = {}
    for k, name in enumerate(args.domains.split(",")):
        root = args.out / name
        make_domain(root, name, 3000, 300, 250, seed=100 + k)
        if args.make_only:
            continue
        clean, noisy = load_pairs(root)
        row: dict = {"noisy_input": _mean_psnr(clean, noisy)}
        if "default" not in skip:
            row["default"] = model_psnr(None, clean, noisy)
        if "bm3d" not in skip:
            row["bm3d"] = bm3d_psnr(name, clean, noisy, seed=7)
        if "noisy" not in skip:
            row["noisy_only"] = adapt_psnr(
                root,
                root / "noisy_only.onnx",
                False,
                args.minutes,
                args.threads,
                method=args.method,
            )
        if "clean" not in skip:
            row["with_clean"] = adapt_psnr(
                root, root / "with_clean.onnx", True, args.minutes, args.threads
            )
        results[name] = row
        print(json.dumps({name: row}, indent=1), flush=True)
    if results:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (args.out / f"results-{stamp}.json").write_text(json.dumps(results, indent=1))


def _mean_psnr(clean: np.ndarray, noisy: np.ndarray) -> float:
    from denoise_cli.core.metrics import psnr

    return float(np.mean(psnr(clean, noisy)))


if __name__ == "__main__":
    main()
