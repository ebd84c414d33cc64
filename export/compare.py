"""Score trained denoisers and classical filters on the layouts users have, under every noise.

The suite (see suite.py): every layout of train/scenes.py (single digits, strings, 2-4x
scales, pages, printed digits, dark-on-light, blank paper) at the reference noise (Gaussian
0.5); single digits, a scene layout and blank paper under every noise condition. Every method
sees the same seeded noisy images per cell; models run as the runtime runs them (grouped by
size, padded, through the automatic polarity decision). Margins over the seed model
(conv_denoiser) make the target of issue 18 visible: +1.0 dB on every cell, +1.6 dB at the
reference on all 10,000 test digits, and no more false ink on blank paper than the seed. For
the models the tables add what deployment cares about: parameters, ONNX file size and CPU
images/s through onnxruntime (batch 256), measured in the same run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from denoise_cli.core.atomic import write_atomic
from denoise_cli.core.errors import UsageError
from denoise_cli.core.noise import REFERENCE_KIND, REFERENCE_LEVEL
from denoise_export.candidates import Candidate, load_candidate
from denoise_export.suite import (
    Method,
    cell_images,
    cell_noise,
    checkpoint_runner,
    classical,
    figure_png,
    label,
    layout_clean,
    onnx_runner,
    plan_cells,
    run_method,
    score,
)
from denoise_train.config import EVAL_NOISE_SEED

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
REFERENCE = (REFERENCE_KIND, REFERENCE_LEVEL)
BM3D_LIMIT = 100
#: The layout besides single digits that gets every noise condition: mostly empty paper with
#: a few digits at 0.8-1.5x, the commonest thing users feed in.
SCENE = "page"
#: The seed model, against which margins are measured.
SEED_ARCH = "conv_denoiser"
#: Issue 18's target for a new default model, against the seed model.
TARGET_MARGIN_DB = 1.0  # on every layout and every noise condition
TARGET_REFERENCE_DB = 1.6  # single digits, Gaussian 0.5, all 10,000 test digits
REFERENCE_IMAGES = 10_000


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
        if img.min() == img.max():  # blank paper under speckle or Poisson: no noise to estimate
            out[i, 0] = img
            continue
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
            [
                img[None]
                if img.min() == img.max()  # nothing to estimate the noise from (blank paper)
                else bm3d.bm3d(img, sigma_psd=float(estimate_sigma(img)))[None]
                for img in x[:, 0]
            ]
        ).astype(np.float32)

    return run


def _onnx_facts(onnx_model: bytes) -> tuple[int, float]:
    """(ONNX file size in bytes, onnxruntime CPU images/s at batch 256) for a model."""
    from denoise_export.build import measure_speed
    from denoise_export.onnx_export import ort_session

    return len(onnx_model), measure_speed(ort_session(onnx_model), (256, 1, 28, 28), 1.0)


def _model_method(path: Path, model: Candidate, name: str) -> Method:
    """A model as a method: .onnx/.ort files through the runtime's Denoiser, checkpoints
    through the same handling in PyTorch (see suite.checkpoint_runner)."""
    size, speed = _onnx_facts(model.onnx())
    facts = {
        "params": model.params,
        "onnx_bytes": size,
        "cpu_images_per_s": speed,
        "trained_on": model.trained_on,
        "epochs": model.epochs,
        "checkpoint": model.source,
    }
    if path.suffix.lower() in (".onnx", ".ort"):
        run = onnx_runner(path)
    else:
        from denoise_train.models import get_arch

        arch = get_arch(model.arch)
        run = checkpoint_runner(
            model.predict,
            arch.size_multiple,
            arch.fully_convolutional,
            int(model.arch_args.get("side", 28)),
        )
    return Method(name, "model", run, None, facts)


def _is_seed(model: Candidate) -> bool:
    return model.arch == SEED_ARCH and model.trained_on == label(REFERENCE)


def _models(
    paths: Sequence[Path], baseline: Path | None, log: Callable[[str], Any]
) -> tuple[list[Method], int | None]:
    """The model methods, and which one is the seed model: `baseline` when given, else the
    first conv_denoiser trained on the reference noise, else the bundled conv_denoiser.onnx
    (added first, so every table shows the margins)."""
    from denoise_cli.model.bundled import bundled_models

    paths = [Path(p) for p in paths]
    if baseline is not None and Path(baseline).resolve() not in {p.resolve() for p in paths}:
        paths.insert(0, Path(baseline))
    loaded = [(p, load_candidate(p)) for p in paths]
    loaded = [(p, m) for p, m in loaded if m.task == "denoiser"]
    if baseline is not None:
        seed = next(
            (i for i, (p, _) in enumerate(loaded) if p.resolve() == Path(baseline).resolve()), None
        )
        if seed is None:
            raise UsageError(f"{baseline}: the seed model must be a denoiser, not an autoencoder")
    else:
        seed = next((i for i, (_, m) in enumerate(loaded) if _is_seed(m)), None)
        bundled = bundled_models().get(SEED_ARCH)
        if seed is None and bundled is not None:
            log(f"no seed model given: adding the bundled {bundled.name} for the margins")
            loaded.insert(0, (bundled, load_candidate(bundled)))
            seed = 0
    methods: list[Method] = []
    names: set[str] = set()
    for path, model in loaded:
        name = f"{model.name} ({model.trained_on})"
        if name in names:  # the same model as a checkpoint and as an export, say
            name = f"{name} [{path.name}]"
        names.add(name)
        methods.append(_model_method(path, model, name))
    return methods, seed


def _plan(
    layouts: Mapping[str, int | None] | None,
    conditions: Sequence[tuple[str, float]],
    scene: str,
) -> tuple[dict[str, int | None], dict[str, list[tuple[str, float]]]]:
    """(images per layout, conditions per layout); no layouts: single digits under every
    condition (the table before the suite)."""
    from denoise_train.scenes import LAYOUTS

    if layouts is None:
        return {"single": None}, {"single": list(conditions)}
    counts = dict(layouts)
    if not counts:
        raise UsageError("no layout to score: name at least one")
    if scene not in LAYOUTS:
        raise UsageError(f"unknown scene layout {scene!r}; known: {', '.join(LAYOUTS)}")
    return counts, plan_cells(counts, conditions, scene, REFERENCE)


def _methods(
    models: Sequence[Path],
    baseline: Path | None,
    classical_limit: int | None,
    log: Callable[[str], Any],
    bm3d_limit: int = BM3D_LIMIT,
) -> tuple[list[Method], int | None]:
    """Noisy input, the classical filters, BM3D where installed, then the models; and the
    index of the seed model among them."""
    methods: list[Method] = [Method("noisy input", "none", list)]
    methods += [classical(name, fn, classical_limit) for name, fn in CLASSICAL.items()]
    bm3d = _bm3d() if bm3d_limit > 0 else None
    if bm3d is not None:
        # ~0.35 s per 28x28 digit on this CPU: a small sample keeps the run in minutes.
        methods.append(classical("BM3D", bm3d, bm3d_limit))
    model_methods, seed = _models(models, baseline, log)
    seed_index = None if seed is None else len(methods) + seed
    return methods + model_methods, seed_index


def _layout_info(
    layout: str,
    shape: tuple[int, ...],
    images: int,
    conds: Sequence[tuple[str, float]],
    classical_limit: int | None,
) -> dict[str, Any]:
    from denoise_train.scenes import LAYOUTS

    return {
        "description": LAYOUTS[layout].description,
        "images": images,
        "shape": list(shape),
        "classical_images": cell_images(classical_limit, shape, images),
        "conditions": [label(c) for c in conds],
    }


def compare(
    models: Sequence[Path],
    clean: np.ndarray,
    classical_limit: int | None = 2000,
    conditions: Sequence[tuple[str, float]] = CONDITIONS,
    log: Callable[[str], Any] = lambda m: None,
    layouts: Mapping[str, int | None] | None = None,
    scene: str = SCENE,
    baseline: Path | None = None,
    bm3d_limit: int = BM3D_LIMIT,
) -> dict[str, Any]:
    """Scores of every method in every cell, margins over the seed model, model facts.

    `clean`: (N, 1, 28, 28) test digits, the material of every layout. `models`: checkpoints
    or exported ONNX files (see candidates.py). `layouts`: images per layout (see
    suite.layout_counts; None counts are one per digit); None: single digits only, under
    every condition (the table before the suite). `classical_limit`: 28x28 images per cell
    for the slow classical filters, fewer for bigger images (the same pixels); `bm3d_limit`
    the same for BM3D where installed (0: none).
    """
    clean = np.asarray(clean, np.float32)
    if clean.ndim not in (3, 4) or clean.shape[-2:] != (28, 28) or len(clean) == 0:
        raise UsageError(f"expected (N, 1, 28, 28) test digits, got shape {clean.shape}")
    digits = clean.reshape(-1, 28, 28)
    counts, plan = _plan(layouts, conditions, scene)
    methods, seed_index = _methods(models, baseline, classical_limit, log, bm3d_limit)
    rows: list[dict[str, Any]] = [
        {"method": m.name, "kind": m.kind, **m.facts, "layouts": {}} for m in methods
    ]
    info: dict[str, dict[str, Any]] = {}
    figure_rows: list[tuple[str, list[np.ndarray]]] = []
    for layout, conds in plan.items():
        images = layout_clean(layout, digits, counts[layout], EVAL_NOISE_SEED)
        if not images:
            raise UsageError(f"layout {layout}: no images from {len(digits)} test digits")
        shape = images[0].shape
        info[layout] = _layout_info(layout, shape, len(images), conds, classical_limit)
        for cond in conds:
            noisy = cell_noise(images, layout, cond, EVAL_NOISE_SEED)
            shown = [images[0], noisy[0]]
            for method, row in zip(methods, rows, strict=True):
                n = method.images_for(shape, len(images))
                restored = run_method(method, noisy[:n], f"{layout} ({label(cond)})")
                cells = row["layouts"].setdefault(layout, {})
                cells[label(cond)] = score(images[:n], restored, blank=layout == "blank")
                if method.kind == "model":
                    shown.append(restored[0])
            if cond == REFERENCE:
                figure_rows.append((layout, shown))
            log(f"scored {layout} ({len(images)} images), {label(cond)}")
    for row in rows:
        # Single digits by condition, under the key the tables had before the suite.
        row["scores"] = row["layouts"].get("single", {})
        if seed_index is not None and row["kind"] == "model" and row is not rows[seed_index]:
            row["vs_seed"] = _vs_seed(row, rows[seed_index])
    single = info.get("single", {"images": len(digits)})
    return {
        "conditions": [label(c) for c in conditions],
        "reference": label(REFERENCE),
        "scene": scene if layouts is not None else None,
        "images": single["images"],
        "classical_images": min(classical_limit or single["images"], single["images"]),
        "bm3d_images": min(bm3d_limit, single["images"]) if _bm3d() is not None else 0,
        "noise_seed": EVAL_NOISE_SEED,
        "layouts": info,
        "seed_model": None if seed_index is None else rows[seed_index]["method"],
        "target": {
            "margin_db": TARGET_MARGIN_DB,
            "reference_margin_db": TARGET_REFERENCE_DB,
            "reference_images": REFERENCE_IMAGES,
        },
        "rows": rows,
        # Arrays for the figure; write() draws them and leaves them out of compare.json.
        "samples": {
            "columns": ["clean", f"noisy ({label(REFERENCE)})"]
            + [m.name for m in methods if m.kind == "model"],
            "rows": figure_rows,
        },
    }


def _vs_seed(row: dict[str, Any], seed: dict[str, Any]) -> dict[str, Any]:
    """Margins (dB) over the seed model in every cell both have (blank paper is judged by false
    ink instead: its PSNR rewards an all-black output), the smallest and where it is."""
    margins = {
        f"{layout}, {cond}": cell["psnr"] - seed["layouts"][layout][cond]["psnr"]
        for layout, cells in row["layouts"].items()
        if layout != "blank"
        for cond, cell in cells.items()
    }
    ref = label(REFERENCE)
    ref_cell = row["layouts"].get("single", {}).get(ref)
    ink = row["layouts"].get("blank", {}).get(ref, {}).get("false_ink")
    seed_ink = seed["layouts"].get("blank", {}).get(ref, {}).get("false_ink")
    at = min(margins, key=margins.__getitem__) if margins else None
    result: dict[str, Any] = {
        "min_margin_db": margins[at] if at else None,
        "min_at": at,
        "reference_margin_db": margins.get(f"single, {ref}"),
        "reference_images": ref_cell["images"] if ref_cell else 0,
        "false_ink": ink,
        "seed_false_ink": seed_ink,
        "margins_db": margins,
    }
    judged = at is not None and ref_cell is not None and ink is not None and seed_ink is not None
    result["meets_target"] = (
        bool(
            result["min_margin_db"] >= TARGET_MARGIN_DB
            and result["reference_margin_db"] >= TARGET_REFERENCE_DB
            and ink <= seed_ink
        )
        if judged
        else None
    )
    return result


# --- tables -------------------------------------------------------------------------------------


def _cell(row: dict[str, Any], layout: str, cond: str) -> dict[str, Any] | None:
    return row["layouts"].get(layout, {}).get(cond)


def _score_table(
    result: dict[str, Any], columns: Sequence[tuple[str, str, str]], extra: str = ""
) -> list[str]:
    """Methods x (header, layout, condition) columns: PSNR / SSIM, the best PSNR in bold, then
    each model's margin over the seed model."""
    rows = result["rows"]
    lines = [
        "| method | " + " | ".join(h for h, _, _ in columns) + extra + " |",
        "|---|" + "---:|" * (len(columns) + (1 if extra else 0)),
    ]
    best = {}
    for _, layout, cond in columns:
        values = [c["psnr"] for r in rows if (c := _cell(r, layout, cond))]
        best[(layout, cond)] = max(values, default=None)
    for row in rows:
        cells = []
        for _, layout, cond in columns:
            c = _cell(row, layout, cond)
            if c is None:
                cells.append("—")
                continue
            text = f"{c['psnr']:.2f} / {c['ssim']:.3f}"
            cells.append(f"**{text}**" if c["psnr"] == best[(layout, cond)] else text)
        if extra:
            ink = _cell(row, "blank", result["reference"])
            cells.append(f"{ink['false_ink']:.2%}" if ink else "—")
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    seed = next((r for r in rows if r["method"] == result["seed_model"]), None)
    for row in rows:
        if "vs_seed" not in row or seed is None:
            continue
        cells = []
        for _, layout, cond in columns:
            c, s = _cell(row, layout, cond), _cell(seed, layout, cond)
            cells.append(f"{c['psnr'] - s['psnr']:+.2f}" if c and s else "—")
        if extra:
            v = row["vs_seed"]
            ink, base = v["false_ink"], v["seed_false_ink"]
            cells.append(f"{ink - base:+.2%}" if ink is not None and base is not None else "—")
        lines.append(f"| *{row['method']} vs seed (dB)* | " + " | ".join(cells) + " |")
    return lines


def _ink_table(result: dict[str, Any]) -> list[str]:
    conds = result["layouts"]["blank"]["conditions"]
    lines = ["| method | " + " | ".join(conds) + " |", "|---|" + "---:|" * len(conds)]
    for row in result["rows"]:
        cells = [f"{_cell(row, 'blank', c)['false_ink']:.2%}" for c in conds]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    return lines


def _summary_table(result: dict[str, Any]) -> list[str]:
    target = result["target"]
    lines = [
        f"Against the seed model ({result['seed_model']}). Target for a new default: "
        f"≥ +{target['margin_db']:.1f} dB in every cell above (blank paper aside), "
        f"≥ +{target['reference_margin_db']:.1f} dB at the reference (single digits, "
        f"{result['reference']}, all {target['reference_images']:,} test digits), false ink "
        "on blank paper no higher than the seed's.",
        "",
        "| model | smallest margin (dB) | where | reference margin (dB) | false ink "
        "(seed's) | target |",
        "|---|---:|---|---:|---:|---|",
    ]
    for row in result["rows"]:
        v = row.get("vs_seed")
        if v is None:
            continue
        low = "—" if v["min_margin_db"] is None else f"{v['min_margin_db']:+.2f}"
        ref = "—" if v["reference_margin_db"] is None else f"{v['reference_margin_db']:+.2f}"
        if v["reference_margin_db"] is not None and v["reference_images"] < REFERENCE_IMAGES:
            ref += f" ({v['reference_images']:,} digits)"
        ink = "—" if v["false_ink"] is None else f"{v['false_ink']:.2%} ({v['seed_false_ink']:.2%})"
        met = {True: "met", False: "not met", None: "not judged"}[v["meets_target"]]
        if v["meets_target"] and v["reference_images"] < REFERENCE_IMAGES:
            met = "met on this sample"
        lines.append(f"| {row['method']} | {low} | {v['min_at'] or '—'} | {ref} | {ink} | {met} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    ref = result["reference"]
    layouts = result["layouts"]
    classical = result["classical_images"]
    lines = [
        f"Mean PSNR (dB) / SSIM; noise seed {result['noise_seed']}, the same noisy images for "
        "every method. Levels: Gaussian and speckle sigma, salt-and-pepper fraction, Poisson "
        f"peak. Classical filters: at most {classical:,} images per cell at 28x28 (fewer for "
        f"bigger images, the same pixels); BM3D: {result.get('bm3d_images', BM3D_LIMIT)} "
        "(0: not installed or not asked for). Models run as "
        "`denoise-batch` runs them: grouped by size, padded to their size multiple, through "
        "the automatic polarity decision (the filters run as they are).",
        "",
    ]
    if result["scene"] is not None:
        lines += [
            "| layout | what | size | images | classical filters |",
            "|---|---|---|---:|---:|",
        ]
        for name, lay in layouts.items():
            h, w = lay["shape"]
            lines.append(
                f"| {name} | {lay['description']} | {h}x{w} | {lay['images']:,} | "
                f"{lay['classical_images']:,} |"
            )
        cols = [(n, n, ref) for n in layouts if n != "blank"]
        extra = " | blank: false ink" if "blank" in layouts else ""
        lines += ["", f"### Layouts at {ref}", ""]
        lines += _score_table(result, cols, extra)
        if extra:
            lines += [
                "",
                "False ink: the share of output pixels above 0.25 on blank paper (pure noise).",
            ]
    sections = [("single", f"single digits ({result['images']:,} MNIST test digits)")]
    if result["scene"] not in (None, "single"):
        sections.append((result["scene"], f"{result['scene']} layout"))
    for name, title in sections:
        if name in layouts and (len(layouts[name]["conditions"]) > 1 or result["scene"] is None):
            conds = layouts[name]["conditions"]
            lines += ["", f"### Noise conditions, {title}", ""]
            lines += _score_table(result, [(c, name, c) for c in conds])
    if (
        result["scene"] is not None
        and "blank" in layouts
        and len(layouts["blank"]["conditions"]) > 1
    ):
        lines += ["", "### False ink on blank paper, by noise", ""]
        lines += _ink_table(result)
    if result["seed_model"] is not None and any("vs_seed" in r for r in result["rows"]):
        lines += ["", "### Against the seed model", ""]
        lines += _summary_table(result)
    lines += [
        "",
        f"Models (PSNR and SSIM on single digits at {ref}; CPU images/s: onnxruntime, batch "
        "256, this machine):",
        "",
        "| model | params | ONNX KB | CPU images/s | PSNR (dB) | SSIM |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if row["kind"] != "model":
            continue
        s = row["scores"].get(ref)
        quality = f"{s['psnr']:.2f} | {s['ssim']:.3f}" if s else "— | —"
        lines.append(
            f"| {row['method']} | {row['params']:,} | {row['onnx_bytes'] / 1024:.1f} | "
            f"{row['cpu_images_per_s']:,.0f} | {quality} |"
        )
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """compare.json, compare.md and, when the suite ran, compare.png (one row per layout at the
    reference noise: clean, noisy, each model's output), each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in result.items() if k != "samples"}
    outputs = [
        (out_dir / "compare.json", (json.dumps(data, indent=2) + "\n").encode()),
        (out_dir / "compare.md", markdown(result).encode()),
    ]
    samples = result.get("samples")
    if result.get("scene") is not None and samples and samples["rows"]:
        outputs.append((out_dir / "compare.png", figure_png(samples["columns"], samples["rows"])))
    for path, data_bytes in outputs:
        write_atomic(data_bytes, path)
    return [path for path, _ in outputs]
