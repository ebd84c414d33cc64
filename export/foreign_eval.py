"""Score exported models and classical filters on the foreign sets (foreign.py), with time.

Models run as users run them: grey sets through the runtime's `Denoiser` (polarity decision,
padding, tiling), colour sets as RGB PNG files through `denoise_tree`, so whatever the runtime
does with colour (its luminance restored where noise clipped a channel, denoised, the chroma
smoothed back on) is what is scored. Filters run on
the arrays as they are; on colour, per channel (median) or in their colour modes (non-local
means over channels, BM3D's `bm3d_rgb`). Every method runs single-threaded, so its time per
image compares like with like. Per set: mean PSNR (on luminance; colour sets also on RGB and
the chroma error), the share of images made worse than their input, and the background shift
(median background level out minus clean, in grey levels): on clean sets, the do-no-harm check.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from denoise_cli.core.atomic import write_atomic
from denoise_cli.core.errors import UsageError
from denoise_export.foreign import ForeignSet, luminance

PSNR_CAP = 100.0  # an unchanged clean image: +inf dB otherwise
BM3D_LIMIT = 50  # images per set: ~1-2 s a grey strip, ~3-7 s an RGB one on one core
SHEET_SAMPLES = 4  # rows of each contact sheet
#: ITU-R 601 chroma (Cb, Cr) rows, for the chroma error of colour outputs.
CHROMA = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)

Images = list[np.ndarray]


@dataclass(frozen=True)
class Method:
    """Something that restores images; `run(images, colour)` returns them in order."""

    name: str
    kind: str  # "none", "classical" or "model"
    run: Callable[[Images, bool], Images]
    limit: int | None = None  # at most this many images per set (BM3D is slow)


# --- the classical filters, on (H, W) or (H, W, 3) --------------------------------------------


def _sigma(img: np.ndarray) -> float:
    from skimage.restoration import estimate_sigma

    colour = img.ndim == 3
    s = estimate_sigma(img, channel_axis=-1 if colour else None, average_sigmas=colour)
    return max(float(s), 1e-3)  # a clean image estimates ~0, which the filters divide by


def median3(img: np.ndarray) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(img, size=(3, 3, 1) if img.ndim == 3 else 3)


def nl_means(img: np.ndarray) -> np.ndarray:
    """scikit-image's non-local means at compare.py's settings, sigma estimated per image."""
    from skimage.restoration import denoise_nl_means

    sigma = _sigma(img)
    return denoise_nl_means(
        img,
        h=0.8 * sigma,
        sigma=sigma,
        patch_size=3,
        patch_distance=5,
        fast_mode=True,
        channel_axis=-1 if img.ndim == 3 else None,
    )


def bm3d_filter() -> Callable[[np.ndarray], np.ndarray] | None:
    """BM3D when the `bm3d` package is installed (its licence is non-commercial: an optional
    comparison, never a dependency). Sides under 16 px are reflect-padded to 16 and cropped
    back: bm3d 4.0 crashed the process (SIGSEGV) on an 8x8 image here."""
    try:
        import bm3d
    except ImportError:
        return None

    def run(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        pad = [(0, max(0, 16 - h)), (0, max(0, 16 - w))] + [(0, 0)] * (img.ndim - 2)
        x = np.pad(img, pad, mode="reflect" if min(h, w) > 1 else "edge")
        sigma = _sigma(img)
        out = bm3d.bm3d_rgb(x, sigma) if img.ndim == 3 else bm3d.bm3d(x, sigma_psd=sigma)
        return np.asarray(out)[:h, :w]

    return run


def per_image(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Images, bool], Images]:
    return lambda images, colour: [np.asarray(fn(img), np.float32) for img in images]


def classical_methods(bm3d_limit: int | None) -> list[Method]:
    methods = [
        Method("noisy input", "none", lambda images, colour: list(images)),
        Method("median 3x3", "classical", per_image(median3)),
        Method("non-local means", "classical", per_image(nl_means)),
    ]
    bm3d = bm3d_filter() if bm3d_limit != 0 else None
    if bm3d is not None:
        methods.append(Method("BM3D", "classical", per_image(bm3d), bm3d_limit))
    return methods


# --- models, as the runtime runs them ---------------------------------------------------------


def model_method(path: Path, name: str, threads: int = 1) -> Method:
    """An ONNX/ORT file: grey images through Denoiser, colour ones as PNG files through
    denoise_tree (the runtime's decoding and encoding of RGB)."""
    from denoise_cli.model.session import Denoiser

    if path.suffix.lower() not in (".onnx", ".ort"):
        raise UsageError(
            f"{path}: foreign sets score exported models (.onnx, .ort) as the runtime runs "
            "them; export the checkpoint first (denoise-export CHECKPOINT)"
        )
    denoiser = Denoiser(path, device="cpu", threads=threads)  # refuses a bad file now

    def run(images: Images, colour: bool) -> Images:
        if not colour:
            return denoiser.denoise(images, invert="auto")
        return through_files(path, images, threads)

    return Method(name, "model", run)


def through_files(model: Path, images: Images, threads: int) -> Images:
    """RGB images written as PNG files, denoised by `denoise_tree`, read back as RGB."""
    from PIL import Image

    from denoise_cli.run.job import Denoise, Job
    from denoise_cli.run.runners import denoise_tree

    with tempfile.TemporaryDirectory(prefix="denoise-foreign-") as tmp:
        src, dst = Path(tmp, "in"), Path(tmp, "out")
        src.mkdir()
        for i, img in enumerate(images):
            pixels = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(src / f"{i:05d}.png")
        job = Job(Denoise(model=str(model), device="cpu"), workers=1, threads=threads)
        report = denoise_tree(src, dst, job)
        if report.failed:
            raise UsageError(f"{model}: {report.failed} colour image(s) failed in the runtime")
        return [
            np.asarray(Image.open(dst / f"{i:05d}.png").convert("RGB"), np.float32) / 255.0
            for i in range(len(images))
        ]


def model_methods(paths: Sequence[Path], threads: int = 1) -> list[Method]:
    """One method per model file, named by its stem (by its path where stems repeat)."""
    stems = [Path(p).stem for p in paths]
    return [
        model_method(Path(p), str(p) if stems.count(stem) > 1 else stem, threads)
        for p, stem in zip(paths, stems, strict=True)
    ]


# --- scores -------------------------------------------------------------------------------------


def psnr(clean: np.ndarray, out: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(clean, np.float64) - out) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(1.0 / mse))


def background_shift(clean: np.ndarray, out: np.ndarray, background: np.ndarray) -> float:
    """Median background level of the output minus the clean image's, in grey levels."""
    if not background.any():
        return 0.0
    a, b = luminance(clean)[background], luminance(out)[background]
    return float(np.median(b) - np.median(a)) * 255.0


def chroma_error(clean: np.ndarray, out: np.ndarray) -> float:
    """Mean absolute Cb/Cr difference in grey levels (0 for grey outputs of grey inputs)."""
    return float(np.mean(np.abs((out - clean) @ CHROMA.T))) * 255.0


def image_scores(fset: ForeignSet, outputs: Images) -> dict[str, list[float]]:
    """Per-image scores of one method's outputs on the first len(outputs) samples."""
    scores: dict[str, list[float]] = {"psnr": [], "input_psnr": [], "background_shift": []}
    if fset.colour:
        scores |= {"psnr_rgb": [], "chroma_error": []}
    for sample, out in zip(fset.samples, outputs, strict=False):
        out = np.clip(np.asarray(out, np.float32), 0, 1)
        scores["psnr"].append(psnr(luminance(sample.clean), luminance(out)))
        scores["input_psnr"].append(psnr(luminance(sample.clean), luminance(sample.noisy)))
        scores["background_shift"].append(background_shift(sample.clean, out, sample.background))
        if fset.colour:
            scores["psnr_rgb"].append(psnr(sample.clean, out))
            scores["chroma_error"].append(chroma_error(sample.clean, out))
    return scores


def summary(scores: dict[str, list[float]], seconds: float, first: int) -> dict[str, Any]:
    """Means over the method's images (and over the first `first`, which every method ran)."""
    p, before = np.array(scores["psnr"]), np.array(scores["input_psnr"])
    shift = np.array(scores["background_shift"])
    row: dict[str, Any] = {
        "images": len(p),
        "psnr": float(p.mean()),
        f"psnr_first_{first}": float(p[:first].mean()),
        "worse_than_input": float(np.mean(p < before - 1e-6)),
        "seconds_per_image": seconds / len(p),
        "background_shift": float(shift.mean()),
        "background_shift_worst": float(shift[np.argmax(np.abs(shift))]),
    }
    if "psnr_rgb" in scores:
        row["psnr_rgb"] = float(np.mean(scores["psnr_rgb"]))
        row["chroma_error"] = float(np.mean(scores["chroma_error"]))
    row["psnr_per_image"] = [round(v, 3) for v in p]
    return row


def score_set(
    fset: ForeignSet, methods: Sequence[Method], log: Callable[[str], Any]
) -> tuple[dict[str, Any], list[tuple[str, Images]]]:
    """Every method on one set: (rows by method name, each method's first outputs for the
    contact sheet)."""
    n = len(fset.samples)
    first = min([n] + [m.limit for m in methods if m.limit])
    inputs = [s.noisy for s in fset.samples]
    rows, shown = {}, []
    for method in methods:
        todo = inputs[: method.limit or n]
        start = time.perf_counter()
        outputs = method.run(todo, fset.colour)
        seconds = time.perf_counter() - start
        for src, out in zip(todo, outputs, strict=True):
            if np.shape(out) != src.shape:
                raise UsageError(f"{method.name} on {fset.name}: returned a wrong-sized image")
        rows[method.name] = summary(image_scores(fset, outputs), seconds, first)
        shown.append((method.name, outputs[:SHEET_SAMPLES]))
        log(f"{fset.name}: {method.name} {rows[method.name]['psnr']:.2f} dB, {len(todo)} images")
    return rows, shown


def evaluate(
    sets: Sequence[ForeignSet],
    models: Sequence[Path],
    bm3d_limit: int | None = BM3D_LIMIT,
    log: Callable[[str], Any] = lambda m: None,
) -> dict[str, Any]:
    """Scores of every method on every set, and the images of the contact sheets."""
    if not sets:
        raise UsageError("no foreign set to score: name at least one")
    methods = classical_methods(bm3d_limit) + model_methods(models)
    result: dict[str, Any] = {
        "methods": [{"name": m.name, "kind": m.kind, "limit": m.limit} for m in methods],
        "models": [str(p) for p in models],
        "threads": 1,
        "sets": {},
        "sheets": {},
    }
    for fset in sets:
        rows, shown = score_set(fset, methods, log)
        result["sets"][fset.name] = {
            "description": fset.description,
            "images": len(fset.samples),
            "shape": list(fset.samples[0].clean.shape),
            "colour": fset.colour,
            "clean_only": fset.clean_only,
            "first": min(row["images"] for row in rows.values()),
            "scores": rows,
        }
        clean = [s.clean for s in fset.samples[:SHEET_SAMPLES]]
        inputs = [s.noisy for s in fset.samples[:SHEET_SAMPLES]]
        result["sheets"][fset.name] = [("input", inputs), *shown[1:], ("clean", clean)]
    return result


# --- tables and files ---------------------------------------------------------------------------


def _set_table(name: str, data: dict[str, Any]) -> list[str]:
    first, colour, clean = data["first"], data["colour"], data["clean_only"]
    h, w = data["shape"][:2]
    head = f"### {name} ({data['images']} images, {h}x{w}{', RGB' if colour else ''})"
    cols = ["method", "PSNR (dB)", f"first {first}", "worse than input", "ms / image"]
    cols += ["background shift (worst)"] + (["RGB PSNR", "chroma error"] if colour else [])
    lines = [head, "", data["description"], "", "| " + " | ".join(cols) + " |"]
    lines.append("|---|" + "---:|" * (len(cols) - 1))
    best = max(r[f"psnr_first_{first}"] for k, r in data["scores"].items() if k != "noisy input")
    for method, r in data["scores"].items():
        at_first = f"{r[f'psnr_first_{first}']:.2f}"
        if r[f"psnr_first_{first}"] == best and not clean:
            at_first = f"**{at_first}**"
        cells = [
            f"{r['psnr']:.2f}" + ("" if r["images"] == data["images"] else f" ({r['images']})"),
            at_first,
            "—" if clean or method == "noisy input" else f"{r['worse_than_input']:.0%}",
            f"{r['seconds_per_image'] * 1e3:.2f}",
            f"{r['background_shift']:+.1f} ({r['background_shift_worst']:+.1f})",
        ]
        if colour:
            cells += [f"{r['psnr_rgb']:.2f}", f"{r['chroma_error']:.1f}"]
        shown = "input, unchanged" if clean and method == "noisy input" else method
        lines.append(f"| {shown} | " + " | ".join(cells) + " |")
    return lines


def _overview(result: dict[str, Any]) -> list[str]:
    """Sets x methods, each on the images every method ran; clean sets add the shift."""
    methods = [m["name"] for m in result["methods"]]
    lines = ["| set | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for name, data in result["sets"].items():
        key = f"psnr_first_{data['first']}"
        cells = []
        for method in methods:
            r = data["scores"][method]
            cell = f"{r[key]:.2f}"
            if data["clean_only"]:
                cell += f" ({r['background_shift']:+.1f})"
            cells.append(cell)
        lines.append(f"| {name} ({data['first']}) | " + " | ".join(cells) + " |")
    times = [
        np.mean([d["scores"][m]["seconds_per_image"] for d in result["sets"].values()]) * 1e3
        for m in methods
    ]
    lines.append("| *ms / image, mean of sets* | " + " | ".join(f"{t:.2f}" for t in times) + " |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "Foreign digit sets (export/foreign.py): renderers, backgrounds and noise that "
        "train/world.py does not use; MNIST test digits and the held-out fonts only. PSNR on "
        "luminance (RGB too for colour sets), against the clean image. `first N`: the mean "
        "over the images every method ran (BM3D runs on fewer). Worse than input: share of "
        "images whose PSNR fell below the input's. Background shift: median background level "
        "out minus clean, grey levels (mean over images; worst in brackets); on the clean sets "
        "this and the PSNR are the do-no-harm check (target: >= 35 dB, within 3 levels). "
        "Chroma error: mean |Cb|, |Cr| difference, grey levels. Time: one thread each; models "
        "through the runtime (colour: PNG files in and out, so it includes coding).",
        "",
        "Mean PSNR (dB) on the images every method ran (the first N of each set); on the clean "
        "sets, the background shift in brackets:",
        "",
        *_overview(result),
    ]
    for name, data in result["sets"].items():
        lines += ["", *_set_table(name, data)]
    return "\n".join(lines) + "\n"


def _enlarge(img: np.ndarray, k: int) -> np.ndarray:
    return img.repeat(k, axis=0).repeat(k, axis=1)


def write(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """foreign.json, foreign.md and a contact sheet per set (foreign-SET.png: rows are the
    first images; columns the input, each method's output, the clean image)."""
    from denoise_export.suite import figure_png

    out_dir.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in result.items() if k != "sheets"}
    outputs = [
        (out_dir / "foreign.json", (json.dumps(data, indent=1) + "\n").encode()),
        (out_dir / "foreign.md", markdown(result).encode()),
    ]
    for name, columns in result["sheets"].items():
        scale = 2 if columns[0][1][0].shape[0] > 8 else 1  # 8x8 scans are enlarged anyway
        inputs = columns[0][1]
        rows = [  # an image a method did not run on (past BM3D's limit) is left white
            (
                f"#{i}",
                [_enlarge(imgs[i] if i < len(imgs) else 1 + 0 * inp, scale) for _, imgs in columns],
            )
            for i, inp in enumerate(inputs)
        ]
        outputs.append((out_dir / f"foreign-{name}.png", figure_png([c for c, _ in columns], rows)))
    for path, payload in outputs:
        write_atomic(payload, path)
    return [path for path, _ in outputs]


def run_foreign(
    models: Sequence[Path],
    digits: np.ndarray,
    out_dir: Path,
    names: Sequence[str] | None = None,
    count: int = 300,
    seed: int | None = None,
    bm3d_limit: int | None = BM3D_LIMIT,
    log: Callable[[str], Any] = lambda m: None,
) -> tuple[dict[str, Any], list[Path]]:
    """Build the named sets (default: all) from MNIST test `digits`, score, write the files."""
    from denoise_export.foreign import DEFAULT_SEED, SET_NAMES, build_set

    seed = DEFAULT_SEED if seed is None else seed
    sets = [build_set(name, count, digits, seed) for name in (names or SET_NAMES)]
    log(f"built {len(sets)} foreign set(s) of {count} images (seed {seed})")
    result = {"seed": seed, "count": count, "bm3d_limit": bm3d_limit}
    result |= evaluate(sets, models, bm3d_limit, log)
    return result, write(result, out_dir)
