"""Compare trained denoisers with classical filters across noise types and levels.

Every method sees the same test digits with the same seeded noise per condition. For the
models the table adds what deployment cares about: parameters, ONNX file size and CPU
images/s through onnxruntime (batch 256), measured in the same run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from denoise_export.candidates import load_candidate
from denoise_train.config import EVAL_NOISE_SEED

from denoise_cli.core.atomic import write_atomic
from denoise_cli.core.metrics import psnr, ssim
from denoise_cli.core.noise import add_noise

CONDITIONS: tuple[tuple[str, float], ...] = (
    ("gaussian", 0.1),
    ("gaussian", 0.3),
    ("gaussian", 0.5),
    ("gaussian", 0.7),
    ("salt-pepper", 0.1),
    ("salt-pepper", 0.3),
    ("speckle", 0.5),
    ("poisson", 10.0),
)
REFERENCE = ("gaussian", 0.5)
BM3D_LIMIT = 100


def _median(x: np.ndarray) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(x, size=(1, 1, 3, 3))


def _blur(x: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=(0, 0, 1, 1))


def _nl_means(x: np.ndarray) -> np.ndarray:
    from skimage.restoration import denoise_nl_means, estimate_sigma

    out = np.empty_like(x)
    for i, img in enumerate(x[:, 0]):
        sigma = float(estimate_sigma(img))
        out[i, 0] = denoise_nl_means(
            img, h=0.8 * sigma, sigma=sigma, patch_size=3, patch_distance=5, fast_mode=True
        )
    return out


def _total_variation(x: np.ndarray) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(x[:, 0], weight=0.3, channel_axis=0)[:, None].astype(np.float32)


#: Classical baselines. Parameters are fixed, reasonable settings (not tuned per condition).
CLASSICAL: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "median 3x3": _median,
    "Gaussian blur sigma 1": _blur,
    "non-local means": _nl_means,
    "total variation (Chambolle, 0.3)": _total_variation,
}


def _bm3d() -> Callable[[np.ndarray], np.ndarray] | None:
    """BM3D when the `bm3d` package is installed (its licence is non-commercial)."""
    try:
        import bm3d
    except ImportError:
        return None

    def run(x: np.ndarray) -> np.ndarray:
        from skimage.restoration import estimate_sigma

        return np.stack(
            [bm3d.bm3d(img, sigma_psd=float(estimate_sigma(img)))[None] for img in x[:, 0]]
        ).astype(np.float32)

    return run


def _onnx_facts(onnx_model: bytes) -> tuple[int, float]:
    """(ONNX file size in bytes, onnxruntime CPU images/s at batch 256) for a model."""
    from denoise_export.build import measure_speed
    from denoise_export.onnx_export import ort_session

    return len(onnx_model), measure_speed(ort_session(onnx_model), (256, 1, 28, 28), 1.0)


def compare(
    models: Sequence[Path],
    clean: np.ndarray,
    classical_limit: int | None = 2000,
    conditions: Sequence[tuple[str, float]] = CONDITIONS,
    log: Callable[[str], Any] = lambda m: None,
) -> dict[str, Any]:
    """Scores of every method under every condition, plus model facts. `clean`: (N,1,28,28).

    `models`: checkpoints or exported ONNX files (see train/candidates.py)."""
    noisy = {c: add_noise(clean, c[0], c[1], EVAL_NOISE_SEED) for c in conditions}
    rows: list[dict[str, Any]] = []

    def score(name: str, kind: str, fn, limit: int | None, facts: dict[str, Any]) -> None:
        row: dict[str, Any] = {"method": name, "kind": kind, **facts, "scores": {}}
        n = min(limit or len(clean), len(clean))
        for c in conditions:
            restored = fn(noisy[c][:n])
            row["scores"][f"{c[0]} {c[1]:g}"] = {
                "psnr": float(np.mean(psnr(clean[:n], restored))),
                "ssim": float(np.mean(ssim(clean[:n], restored))),
                "images": n,
            }
        rows.append(row)
        log(f"scored {name}")

    score("noisy input", "none", lambda x: x, None, {})
    for name, fn in CLASSICAL.items():
        score(name, "classical", fn, classical_limit, {})
    bm3d = _bm3d()
    if bm3d is not None:
        # ~0.35 s per 28x28 digit on this CPU: a small sample keeps the run in minutes.
        score("BM3D", "classical", bm3d, min(classical_limit or BM3D_LIMIT, BM3D_LIMIT), {})
    for path in models:
        model = load_candidate(path)
        if model.task != "denoiser":
            continue
        size, speed = _onnx_facts(model.onnx())
        facts = {
            "params": model.params,
            "onnx_bytes": size,
            "cpu_images_per_s": speed,
            "trained_on": model.trained_on,
            "epochs": model.epochs,
            "checkpoint": model.source,
        }
        score(f"{model.name} ({model.trained_on})", "model", model.predict, None, facts)
    return {
        "conditions": [f"{k} {v:g}" for k, v in conditions],
        "images": len(clean),
        "classical_images": min(classical_limit or len(clean), len(clean)),
        "noise_seed": EVAL_NOISE_SEED,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    conds = result["conditions"]
    lines = [
        f"Mean PSNR (dB) on {result['images']:,} MNIST test digits "
        f"(classical filters: first {result['classical_images']:,}; BM3D, when installed: "
        f"first {min(BM3D_LIMIT, result['classical_images'])}); noise seed "
        f"{result['noise_seed']}. Levels: Gaussian and speckle sigma, salt-and-pepper "
        "fraction, Poisson peak.",
        "",
        "| method | " + " | ".join(conds) + " |",
        "|---|" + "---:|" * len(conds),
    ]
    for row in result["rows"]:
        best = {c: max(r["scores"][c]["psnr"] for r in result["rows"]) for c in conds}
        cells = []
        for c in conds:
            value = row["scores"][c]["psnr"]
            cells.append(f"**{value:.2f}**" if value == best[c] else f"{value:.2f}")
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    ref = f"{REFERENCE[0]} {REFERENCE[1]:g}"
    lines += [
        "",
        f"Models (SSIM and PSNR at {ref}; CPU images/s: onnxruntime, batch 256, this machine):",
        "",
        "| model | params | ONNX KB | CPU images/s | PSNR (dB) | SSIM |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if row["kind"] != "model":
            continue
        s = row["scores"][ref]
        lines.append(
            f"| {row['method']} | {row['params']:,} | {row['onnx_bytes'] / 1024:.1f} | "
            f"{row['cpu_images_per_s']:,.0f} | {s['psnr']:.2f} | {s['ssim']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "compare.json", out_dir / "compare.md"]
    texts = [json.dumps(result, indent=2) + "\n", markdown(result)]
    for path, text in zip(paths, texts, strict=True):
        write_atomic(text.encode(), path)
    return paths
