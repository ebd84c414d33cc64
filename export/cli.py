"""`denoise-export`: checkpoint -> verified ONNX files; `optimize`, `compare` and `report`.

Errors become messages and exit codes in denoise_cli.core.commands, not here.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import typer

from denoise_cli.core import commands
from denoise_cli.core.errors import EXIT_CODES_HELP, EXIT_REFUSED, EXIT_USAGE
from denoise_cli.core.safety import check_output_file, write_output_file
from denoise_export import runtimes as engines
from denoise_export.onnx_export import DEFAULT_OPSET, MIN_OPSET
from denoise_export.variants import PROFILES
from denoise_train.scenes import LAYOUTS

app = commands.app(
    "Export trained checkpoints to verified ONNX files, and score models side by side. "
    "`denoise-export CHECKPOINT` runs `export`. " + EXIT_CODES_HELP,
    default_command="export",
    sigterm_interrupts=True,
)

DATA_DIR_HELP = "MNIST folder (default: $DENOISE_MNIST_DIR, then ~/.cache/denoise-batch/mnist)."
Profile = commands.choices("Profile", PROFILES)
PROFILE_HELP = (
    "portable: files that run the same in every runtime (OpenVINO, OpenCV, tract, "
    "onnx.reference, onnxruntime); onnxruntime: add the exact CPU rewrites that only "
    "onnxruntime runs faster (see `denoise-export optimize --help`)."
)
RUNTIMES_HELP = (
    "Runtimes to run every file in, comma-separated, 'all' or 'none' (default: all; those not "
    f"installed are listed as not checked): {', '.join(engines.RUNTIMES)}."
)


def _parse_runtimes(text: str) -> tuple[str, ...] | None:
    if text.strip() == "all":
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    if unknown := [n for n in names if n not in engines.RUNTIMES]:
        raise typer.BadParameter(
            f"unknown runtime(s) {', '.join(unknown)}; know {', '.join(engines.RUNTIMES)}"
        )
    return names


#: What a --report must not be named: it would stand for, or replace, a model or checkpoint.
MODEL_SUFFIXES = (".onnx", ".ort", ".pt", ".pth")


def _check_report(report: Path | None, reads: list[Path]) -> None:
    """A --report (JSON) is checked with the outputs, before any work: it once replaced the
    checkpoint it was exported from, and the fresh export itself, with JSON."""
    if report is None:
        return
    if report.suffix.lower() in MODEL_SUFFIXES:
        commands.fail(f"--report {report}: a model file's name; the report is JSON (.json)", 2)
    check_output_file(report, reads, "--report")


def _write_report(report: Path | None, data: object, reads: list[Path]) -> None:
    if report is not None:
        text = json.dumps(data, indent=2) + "\n"
        write_output_file(report, text.encode(), reads, "--report")


def _parse_shape(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)x1x(\d+)x(\d+)", text.strip().lower())
    if not m or min(int(g) for g in m.groups()) < 1:
        raise typer.BadParameter(f"{text!r}: expected NX1XHXW, e.g. 1x1x28x28")
    n, h, w = (int(g) for g in m.groups())
    return n, 1, h, w


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `denoise-train fit`."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Output .onnx (default: next to the checkpoint). Variants are written beside it.",
    ),
    opset: int = typer.Option(
        DEFAULT_OPSET,
        min=MIN_OPSET,
        help="ONNX opset (11-18+; below 18 uses torch's TorchScript exporter, for older runtimes).",
    ),
    fp16: bool = typer.Option(False, "--fp16", help="Also write <out>.fp16.onnx (fp32 I/O)."),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Also write <out>.int8.onnx (static QDQ, per-channel, calibrated on training digits).",
    ),
    ort_format: bool = typer.Option(
        False, "--ort", help="Also write <out>.ort (ORT format) and its required_operators.config."
    ),
    fixed_shape: str | None = typer.Option(
        None,
        "--fixed-shape",
        help="Also write a variant with every dimension fixed, e.g. 1x1x28x28.",
    ),
    all_variants: bool = typer.Option(False, "--all", help="fp16, int8, ort and 1x1x28x28."),
    data_dir: Path | None = typer.Option(
        None, help="MNIST folder (test digits for checks, training digits for INT8 calibration)."
    ),
    test_limit: int | None = typer.Option(
        None, min=16, help="Verify on the first N test digits only (default: all 10,000)."
    ),
    calibration_images: int = typer.Option(1000, min=16, help="Training digits for INT8."),
    profile: Profile = typer.Option("portable", help=PROFILE_HELP),
    runtimes: str = typer.Option("all", "--runtimes", "--runtime", help=RUNTIMES_HELP),
    report: Path | None = typer.Option(None, help="Write the verification results as JSON."),
) -> None:
    """Export a trained checkpoint to one self-contained ONNX file, verified against PyTorch.

    Checks: onnx.checker (full), onnxruntime and onnx.reference vs PyTorch on real digits at
    batch 1, 7 and 256 and on a 64x48 image (fp32 tolerance: 1e-5 max abs). Each variant is run
    on the test digits and compared with the fp32 file; a failed check writes no file.
    """
    from denoise_export.build import export_checkpoint, markdown_table
    from denoise_train.mnist import load_split

    shape = _parse_shape("1x1x28x28" if all_variants and fixed_shape is None else fixed_shape)
    _need_files(checkpoint)  # before MNIST is looked for (or downloaded) for its checks
    out = out or checkpoint.with_suffix(".onnx")
    reads = [checkpoint, *([data_dir] if data_dir else [])]
    check_output_file(out, reads, "-o")
    _check_report(report, reads)
    test_images, _ = load_split("test", data_dir)
    train_images, _ = load_split("train", data_dir) if (int8 or all_variants) else (None, None)
    calib = (
        train_images[:: max(1, len(train_images) // calibration_images)][:calibration_images]
        if train_images is not None
        else test_images[:0]
    )
    result = export_checkpoint(
        checkpoint,
        out,
        test_images[:test_limit] if test_limit else test_images,
        calib,
        opset=opset,
        fp16=fp16 or all_variants,
        int8=int8 or all_variants,
        ort_format=ort_format or all_variants,
        fixed_shape=shape,
        profile=profile.value,
        runtimes=_parse_runtimes(runtimes),
        log=lambda msg: typer.echo(msg, err=True),
    )
    typer.echo(markdown_table(result.rows), nl=False)
    if result.runtimes:
        from denoise_export.runtimes import markdown_table as runtimes_table

        typer.echo("\n" + runtimes_table(result.runtimes), nl=False)
    _write_report(report, result.to_dict(), reads)


@app.command()
def optimize(
    source: Path = typer.Argument(..., help="An ONNX file exported by denoise-export."),
    out: Path = typer.Option(..., "--out", "-o", help="Where the rewritten file goes."),
    data_dir: Path | None = typer.Option(None, help="MNIST folder (test digits for the check)."),
) -> None:
    """Rewrite an existing ONNX file for onnxruntime's CPU kernels, verified against itself.

    A convolution with one output channel (the conv denoiser's last layer) becomes a depthwise
    convolution plus a sum over channels: the same arithmetic, which onnxruntime's blocked CPU
    kernels no longer pad 16-fold (measured: the seed model 1.3-1.4x faster). The result must
    match the source file within 1e-5 on real test digits before it is written. Exports with
    `--profile onnxruntime` get this rewrite; the default portable profile does not.
    """
    from denoise_cli.core.noise import REFERENCE_KIND, REFERENCE_LEVEL, add_noise
    from denoise_export.build import rewrite_file
    from denoise_export.onnx_export import ExportError
    from denoise_train.idx import IdxError
    from denoise_train.mnist import ENV_VAR, MnistError, load_split

    _need_files(source)
    check_output_file(out, [source], "-o")
    if out.resolve() == source.resolve():
        typer.echo(
            "error: --out must differ from the source file (inputs are never overwritten)", err=True
        )
        raise typer.Exit(2)
    try:
        # Real noisy digits when MNIST is at hand; the rewrite is plain arithmetic, so seeded
        # random images check it as well where it is not (nothing is downloaded for this).
        digits = load_split("test", data_dir, download=False)[0][:256]
    except (MnistError, IdxError):
        if data_dir is not None or os.environ.get(ENV_VAR):  # named: broken files are news
            raise
        typer.echo("  (no MNIST test files found: checking on random images)", err=True)
        digits = np.random.default_rng(0).random((256, 1, 28, 28), dtype=np.float32)
    try:
        result = rewrite_file(source, out, add_noise(digits, REFERENCE_KIND, REFERENCE_LEVEL, 0))
    except (ExportError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # onnx raises its own types for unreadable files
        typer.echo(f"error: {source}: not a readable ONNX model ({exc})", err=True)
        raise typer.Exit(1) from None
    if not result.rewrites:
        typer.echo(f"{source}: no rewrite applies; nothing written")
        return
    for case in result.cases:
        typer.echo(f"  {case.name}: max abs {case.max_abs:.2e}", err=True)
    typer.echo(f"wrote {out} ({result.rewrites} rewrite(s), verified)")


@app.command()
def runtimes(
    files: list[Path] = typer.Argument(
        ...,
        help="Exported files (.onnx, .ort, .tflite); the first is the reference, run in "
        "onnxruntime: "
        "normally the fp32 file.",
    ),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    runtime: str = typer.Option("all", "--runtime", "--runtimes", help=RUNTIMES_HELP),
    images: int = typer.Option(256, min=8, help="Noisy test digits per check."),
    report: Path | None = typer.Option(None, help="Write the table as JSON."),
) -> None:
    """Run exported files in every inference engine installed here, against onnxruntime.

    Each file runs at batch 1, at a batch of many and on a 64x48 image, on noisy MNIST test
    digits (Gaussian 0.5), and is scored against onnxruntime running the first file: max abs
    difference, PSNR, images/s. fp32 files must stay within 1e-4 and 0.05 dB of it, fp16
    within 0.01 and 0.05 dB, INT8 within 0.5 dB. Engines: onnxruntime, OpenVINO (f32 pinned),
    OpenCV's classic and new engines, tract, onnx.reference, onnxruntime-web and -node and
    TensorFlow Lite (onnx2tf + LiteRT) where set up. Exit 1 when an installed engine cannot
    load or run a file it should read, or runs it wrongly.
    """
    from denoise_cli.core.noise import REFERENCE_KIND, REFERENCE_LEVEL, add_noise
    from denoise_export.runtimes import as_dicts, baseline, check_runtimes, failures
    from denoise_export.runtimes import markdown_table as runtimes_table
    from denoise_train.config import EVAL_NOISE_SEED
    from denoise_train.mnist import load_split

    _need_files(*files)
    for path in files:
        if path.suffix.lower() not in (".onnx", ".ort", ".tflite"):
            # A checkpoint where an exported file belongs: the wrong argument, as in foreign.
            commands.fail(f"{path}: not an exported model (.onnx, .ort, .tflite)", EXIT_USAGE)
    _check_report(report, files)
    clean = load_split("test", data_dir)[0][:images]
    noisy = add_noise(clean, REFERENCE_KIND, REFERENCE_LEVEL, EVAL_NOISE_SEED)
    rows = check_runtimes(files, baseline(files[0], clean, noisy), _parse_runtimes(runtime))
    typer.echo(runtimes_table(rows), nl=False)
    _write_report(report, as_dicts(rows), files)
    if bad := failures(rows):
        for row in bad:
            typer.echo(
                f"error: {row.runtime} runs {row.file} {row.verdict}: {row.reason}", err=True
            )
        raise typer.Exit(1)


def _need_files(*paths: Path) -> None:
    """Exit 3 (refused, as `denoise-batch --model` does) naming the first input that is
    not a file, or an .onnx file that the runtime would refuse (unreadable, not ONNX, not
    image-to-image), before any work or download."""
    from denoise_cli.model.session import check_model_here

    for path in paths:
        if not path.is_file():
            commands.fail(f"{path}: no such file", EXIT_REFUSED)
        if path.suffix.lower() in (".onnx", ".ort"):
            check_model_here(path)  # ModelError: one line, exit 3


@app.command()
def tflite(
    source: Path = typer.Argument(..., help="The fp32 .onnx file (dynamic height and width)."),
    out: Path = typer.Option(..., "-o", "--out", help="The .tflite file to write."),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    images: int = typer.Option(256, min=8, help="Noisy test digits for the check."),
) -> None:
    """Convert to TensorFlow Lite with onnx2tf, on a copy, and check the result in LiteRT.

    Needs onnx2tf, tensorflow and ai-edge-litert, in this Python or in the one that
    $DENOISE_TFLITE_PYTHON names. The file is NHWC in and out, float32, (N, H, W, 1) in
    [0, 1]; `OUT.json` beside it carries the model's metadata (polarity, size multiple...).
    Written only when LiteRT matches onnxruntime running the source (max abs 1e-4).
    """
    from denoise_cli.core.noise import REFERENCE_KIND, REFERENCE_LEVEL, add_noise
    from denoise_export.runtimes import markdown_table as runtimes_table
    from denoise_export.tflite import convert
    from denoise_train.config import EVAL_NOISE_SEED
    from denoise_train.mnist import load_split

    _need_files(source)
    check_output_file(out, [source], "-o")
    clean = load_split("test", data_dir)[0][:images]
    noisy = add_noise(clean, REFERENCE_KIND, REFERENCE_LEVEL, EVAL_NOISE_SEED)
    rows = convert(source, out, clean, noisy, log=lambda m: typer.echo(m, err=True))
    typer.echo(runtimes_table(rows), nl=False)
    typer.echo(f"wrote {out} and {out}.json (verified in LiteRT)")


@app.command()
def report(
    checkpoints: list[Path] = typer.Argument(
        ..., help="Trained checkpoints (.pt) or exported models (.onnx)."
    ),
    out_dir: Path = typer.Option(
        Path("denoise-report"), help="Where figures and tables go (a project's docs/report)."
    ),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    noise_level: float = typer.Option(0.5, help="Gaussian sigma for the test-set table."),
    limit: int | None = typer.Option(None, min=1, help="Score only the first N test digits."),
    seed: int = typer.Option(0, help="Chooses the 5 random digits of the figures."),
) -> None:
    """Reproduce the seed chapter's figures and its PSNR/SSIM table on the MNIST test set."""
    from denoise_export.report import build_report
    from denoise_train.mnist import load_split

    images, _ = load_split("test", data_dir)
    written = build_report(
        checkpoints, images[:limit] if limit else images, out_dir, noise_level, seed
    )
    for path in written:
        typer.echo(str(path))


@app.command()
def compare(
    checkpoints: list[Path] = typer.Argument(
        ..., help="Trained denoisers: checkpoints (.pt) or exported models (.onnx)."
    ),
    out_dir: Path = typer.Option(
        Path("denoise-compare"), help="Where the tables and figure go (a project's docs/compare)."
    ),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    limit: int | None = typer.Option(None, min=1, help="Score only the first N test digits."),
    classical_limit: int = typer.Option(
        2000,
        min=1,
        help="28x28 images per cell for the (slow) classical filters; bigger images fewer, "
        "the same pixels.",
    ),
    bm3d_limit: int = typer.Option(
        100,
        min=0,
        help="28x28 images per cell for BM3D, where installed (~0.35 s each; bigger images "
        "fewer, the same pixels); 0: none.",
    ),
    layout: list[str] | None = typer.Option(
        None,
        "--layout",
        help=f"Score only this layout (repeatable; default: all of {', '.join(LAYOUTS)}).",
    ),
    count: list[str] = typer.Option(
        [],
        "--count",
        metavar="LAYOUT=N",
        help="Images for a layout (repeatable), e.g. --count page=50; default: every test "
        "digit for single, 100-500 for the others.",
    ),
    scene: str = typer.Option(
        "page", help="The layout that gets every noise condition besides single digits."
    ),
    seed_model: Path | None = typer.Option(
        None,
        help="The model margins are measured against (default: the first conv_denoiser "
        "trained on Gaussian 0.5 among the models, else the bundled conv_denoiser.onnx).",
    ),
    foreign: int = typer.Option(
        0,
        "--foreign",
        min=0,
        metavar="N",
        help="Also score the .onnx/.ort models on N images of each foreign set (300 is "
        "`denoise-export foreign`'s default; BM3D on at most 50), into OUT_DIR/foreign.",
    ),
) -> None:
    """Every model on the layouts users have (strings, scales, pages, printed, inverted, blank
    paper) and under every noise condition, against the seed model and classical filters,
    with size and CPU speed."""
    from denoise_export.compare import compare as run_compare
    from denoise_export.compare import markdown, write
    from denoise_export.suite import layout_counts
    from denoise_train.mnist import load_split

    exported = [p for p in checkpoints if p.suffix.lower() in (".onnx", ".ort")]
    if foreign and not exported:
        commands.fail("--foreign scores exported models: give at least one .onnx or .ort file", 2)
    images, _ = load_split("test", data_dir)
    result = run_compare(
        checkpoints,
        images[:limit] if limit else images,
        classical_limit,
        log=lambda m: typer.echo(m, err=True),
        layouts=layout_counts(layout or None, count),
        bm3d_limit=bm3d_limit,
        scene=scene,
        baseline=seed_model,
    )
    write(result, out_dir)
    typer.echo(markdown(result), nl=False)
    if foreign:
        from denoise_export.foreign_eval import BM3D_LIMIT, run_foreign
        from denoise_export.foreign_eval import markdown as foreign_markdown

        scored, _ = run_foreign(
            exported,
            images,
            out_dir / "foreign",
            count=foreign,
            bm3d_limit=min(foreign, BM3D_LIMIT),
            log=lambda m: typer.echo(m, err=True),
        )
        typer.echo("\n" + foreign_markdown(scored), nl=False)


@app.command()
def foreign(
    models: list[Path] = typer.Argument(
        None, help="Exported models (.onnx, .ort); default: the bundled ones."
    ),
    out_dir: Path = typer.Option(
        Path("denoise-compare/foreign"),
        help="Where foreign.md, foreign.json and the sheets go.",
    ),
    bundled: bool = typer.Option(False, "--bundled", help="Add the bundled models to MODELS."),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    limit: int = typer.Option(300, "--limit", min=1, help="Images per set."),
    bm3d_limit: int = typer.Option(
        50,
        min=0,
        help="Images per set for BM3D, where installed (3-14 s each on a 2-core VM); 0: none.",
    ),
    sets: list[str] | None = typer.Option(
        None, "--set", help="Score only this set (repeatable; default: all)."
    ),
    seed: int | None = typer.Option(None, help="Seed of the sets (default: the fixed one)."),
) -> None:
    """Every model beside median 3x3, non-local means and BM3D on foreign digit sets that no
    training world draws (displays, print on paper, colour ink, 8x8 scans, and clean copies
    for the do-no-harm check), with time per image. See export/foreign.py."""
    from denoise_cli.model.bundled import bundled_models, resolve_model
    from denoise_cli.model.session import check_model_here
    from denoise_export.foreign_eval import markdown, run_foreign
    from denoise_train.mnist import load_split

    chosen = [resolve_model(m) for m in models or []]  # bundled names as elsewhere
    for path in chosen:  # refused before minutes of sets are built
        if path.suffix.lower() not in (".onnx", ".ort") and path.is_file():
            commands.fail(
                f"{path}: foreign sets score exported models (.onnx, .ort) as the runtime runs "
                "them; export the checkpoint first (denoise-export CHECKPOINT)",
                EXIT_USAGE,
            )
        check_model_here(path)
    if bundled or not chosen:
        chosen += [p for p in bundled_models().values() if p not in chosen]
    digits, _ = load_split("test", data_dir)
    result, written = run_foreign(
        chosen, digits, out_dir, sets, limit, seed, bm3d_limit, lambda m: typer.echo(m, err=True)
    )
    typer.echo(markdown(result), nl=False)
    for path in written:
        typer.echo(f"wrote {path}", err=True)


# Issue 26: fine-tune a model on a user's own folder (export/adapt_cli.py).
from denoise_export.adapt_cli import adapt_command  # noqa: E402

app.command("adapt")(adapt_command)
