"""`denoise-batch`: arguments, progress, messages and exit codes. No numerics live here.

Exit codes: 0 all good; 1 one or more files failed (the others were still written);
2 usage error; 3 model or device refused (before any image was touched); 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer

from denoise_cli.errors import DenoiseError, Interrupted, ModelError, ProviderError, UsageError
from denoise_cli.images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_PIXELS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODEL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
COMPANIONS = ("noisify", "score", "info", "ray")
MAX_LISTED_FAILURES = 50


class Invert(str, Enum):
    auto = "auto"
    yes = "yes"
    no = "no"


class OutputFormat(str, Enum):
    keep = "keep"
    png = "png"


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _exit_for(exc: DenoiseError) -> int:
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, (ModelError, ProviderError)):
        return EXIT_MODEL
    return EXIT_FAILED


def _write_json(path: Path, data: dict) -> None:
    from denoise_cli.core.atomic import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic((json.dumps(data, indent=2) + "\n").encode(), path)


def _count_jobs(in_dir: Path, out_dir: Path, output_format: str) -> int:
    from denoise_cli.walk import Job, plan_jobs

    return sum(isinstance(item, Job) for item in plan_jobs(in_dir, out_dir, output_format))


def _run_tree(
    in_dir: Path,
    out_dir: Path,
    make_transform,
    options,
    quiet: bool,
    jsonl: bool,
    report_path: Path | None,
    header: dict,
    build_here=None,
    runner=None,
) -> None:
    """Shared by the main command and `noisify`: run, report, and exit with the right code.

    `make_transform` is picklable: worker processes call it to build their own transform.
    `build_here`, if given, builds this process's transform instead (and may describe it).
    """
    from denoise_cli.core.progress import Progress
    from denoise_cli.pipeline import process_tree
    from denoise_cli.walk import check_roots

    # The Ray runner checks its own locations (they may be URIs) and has no bar yet.
    show_progress = not quiet and not jsonl and sys.stderr.isatty() and runner is None
    bar = None
    try:
        if runner is None:
            check_roots(in_dir, out_dir)  # usage errors before the model loads
        transform = (build_here or make_transform)()
        if jsonl:
            typer.echo(json.dumps({"event": "start", **header}))
        elif not quiet:
            _err("  ".join(f"{k}: {v}" for k, v in header.items()))
        if show_progress:
            bar = Progress(_count_jobs(in_dir, out_dir, options.output_format), enabled=True)

        def on_event(event: dict) -> None:
            if jsonl:
                typer.echo(json.dumps(event))
            if bar is not None and event["event"] in ("written", "failed", "exists"):
                bar.update(1)

        report = (runner or process_tree)(
            in_dir, out_dir, make_transform, options, on_event, transform
        )
    except DenoiseError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(_exit_for(exc)) from None
    except Interrupted as exc:
        report = exc.report
        report.extra.update(header)
        if report_path is not None:
            _write_json(report_path, report.to_dict())
        _err(
            f"\ninterrupted after {report.written:,} written ({report.failed:,} failed); "
            "every written file is complete: rerun the same command to continue"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:  # before the run started
        _err("\ninterrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        if bar is not None:
            bar.close()
    report.extra.update(header)
    if report_path is not None:
        _write_json(report_path, report.to_dict())
    summary = (
        f"{report.written:,} written, {report.failed:,} failed, "
        f"{report.skipped_existing:,} already done, {report.skipped_other:,} skipped "
        f"(non-images, links) in {report.seconds:.2f} s ({report.images_per_s:,.0f} images/s)"
    )
    if jsonl:
        typer.echo(json.dumps({"event": "done", **report.to_dict()}))
    elif not quiet:
        _err(summary)
    if report.failures:
        _err(f"{report.failed} file(s) failed:")
        for f in report.failures[:MAX_LISTED_FAILURES]:
            _err(f"  {f.file}: {f.error}")
        if report.failed > MAX_LISTED_FAILURES:
            more = report.failed - MAX_LISTED_FAILURES
            _err(f"  ... and {more} more" + (" (all in --report)" if report_path else ""))
        raise typer.Exit(EXIT_FAILED)


HELP = """Denoise every image under IN into OUT, mirroring the folder tree.

Runs the bundled digit denoiser (or --model) with onnxruntime. Existing outputs are skipped,
so an interrupted run resumes where it stopped; failed files are listed and the exit code is 1.

Companion commands: `denoise-batch noisify CLEAN OUT` (make a noisy copy),
`denoise-batch score RESULTS CLEAN` (PSNR/SSIM per folder), `denoise-batch info` (model and
devices), `denoise-batch ray IN OUT` (the same job on a Ray cluster). Exit codes: 0 ok,
1 some files failed, 2 usage error, 3 model or device refused, 130 interrupted.
"""

denoise_app = typer.Typer(add_completion=False, rich_markup_mode=None)


@denoise_app.command(help=HELP)
def denoise(
    in_dir: Path = typer.Argument(..., metavar="IN", help="Input folder (or a single image)."),
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Output folder (created)."),
    model: str | None = typer.Option(
        None,
        help="An .onnx/.ort file, or a bundled model's name: conv_denoiser (the default; "
        "the seed model, fastest), unet_lite_near (+1.8 dB), unet_lite (the same, ~1.1x "
        "slower), unet_small (+1.6 dB, slower still), unet_small_blind (unknown or mixed "
        "noise). See `denoise-batch info`.",
    ),
    device: str = typer.Option(
        "auto",
        help="auto, cpu, cuda, tensorrt, rocm, directml, coreml, openvino, or an "
        "onnxruntime provider name. A requested device that fails to load is an error.",
    ),
    invert: Invert = typer.Option(
        Invert.auto,
        help="Polarity: auto decides per image from the model's metadata "
        "(the default model expects light digits on dark).",
    ),
    output_format: OutputFormat = typer.Option(
        OutputFormat.keep, help="keep: same format and bit depth as each input; png: lossless PNG."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist."),
    batch_size: int = typer.Option(
        256,
        min=1,
        help="Files per work chunk and most images per model call (on CPU, calls "
        "are capped near 80 digits, which measured fastest).",
    ),
    threads: int | None = typer.Option(
        None, min=1, help="onnxruntime threads per worker (default: CPUs / workers)."
    ),
    workers: int | None = typer.Option(
        None,
        min=1,
        help="Worker processes, each decoding, denoising and writing whole chunks "
        "(default: one per CPU; 1: all in this process).",
    ),
    tile: int = typer.Option(512, min=32, help="Images larger than this run in tiles."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, min=1, help="Refuse larger images."),
    jpeg_quality: int = typer.Option(DEFAULT_JPEG_QUALITY, min=1, max=100),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
    jsonl: bool = typer.Option(False, "--jsonl", help="JSON lines on stdout, one per event."),
    report: Path | None = typer.Option(None, help="Write a JSON report (counts, failures...)."),
) -> None:
    from functools import partial

    from denoise_cli.pipeline import RunOptions, make_denoise_transform
    from denoise_cli.session import cpu_count

    options = RunOptions(
        output_format=output_format.value,
        overwrite=overwrite,
        batch_size=batch_size,
        workers=workers or 0,
        max_pixels=max_pixels,
        jpeg_quality=jpeg_quality,
    )
    n_workers = workers or cpu_count()
    # Each worker process runs its own session: share the cores out rather than oversubscribe.
    per_worker = threads or max(1, cpu_count() // n_workers)
    make = partial(
        make_denoise_transform, model, device, per_worker, invert.value, batch_size, tile
    )
    header: dict = {}

    def make_and_describe():
        transform = make()
        denoiser = transform.denoiser
        header.update(
            model=denoiser.info.summary(), provider=denoiser.provider, invert=invert.value
        )
        return transform

    _run_tree(in_dir, out_dir, make, options, quiet, jsonl, report, header, make_and_describe)


tools_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True)


@tools_app.command()
def noisify(
    clean_dir: Path = typer.Argument(..., metavar="CLEAN", help="Folder of clean images."),
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Where the noisy copies go."),
    noise: str = typer.Option("gaussian", help="gaussian, salt-pepper, speckle or poisson."),
    level: float = typer.Option(0.5, help="Sigma (gaussian, speckle), amount or peak."),
    seed: int = typer.Option(0, help="Same seed, same noise, per file, in any order."),
    output_format: OutputFormat = typer.Option(OutputFormat.png, help="png (default) or keep."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Make a noisy copy of a folder of clean images (the training toolkit's noise, seeded)."""
    from functools import partial

    from denoise_cli.pipeline import NoiseTransform, RunOptions

    try:
        NoiseTransform(noise, level, seed)
    except ValueError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    header = {"noise": noise, "level": level, "seed": seed}
    options = RunOptions(output_format=output_format.value, overwrite=overwrite)
    make = partial(NoiseTransform, noise, level, seed)
    _run_tree(clean_dir, out_dir, make, options, quiet, False, None, header)


@tools_app.command()
def score(
    results: Path = typer.Argument(..., help="Folder of denoised (or noisy) images."),
    references: Path = typer.Argument(..., help="Folder of the clean originals."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the scores as JSON."),
) -> None:
    """Score RESULTS against clean REFERENCES: mean PSNR and SSIM per folder and overall."""
    from denoise_cli.score import score_tree

    try:
        report = score_tree(results, references)
    except DenoiseError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(_exit_for(exc)) from None
    typer.echo(report.markdown(), nl=False)
    if json_path is not None:
        _write_json(json_path, report.to_dict())
    for rel in report.missing[:MAX_LISTED_FAILURES]:
        _err(f"missing: {rel}: no result found in {results}")
    for f in report.failures[:MAX_LISTED_FAILURES]:
        _err(f"error: {f['file']}: {f['error']}")
    if report.missing or report.failures:
        raise typer.Exit(EXIT_FAILED)


@tools_app.command("ray")
def ray_command(
    in_dir: str = typer.Argument(
        ..., metavar="IN", help="Input folder seen by every worker, or a URI (s3://bucket/in)."
    ),
    out_dir: str = typer.Argument(..., metavar="OUT", help="Output folder or URI."),
    address: str | None = typer.Option(
        None, help="Ray cluster to join ('auto', 'ray://head:10001'); default: a local Ray."
    ),
    workers: int = typer.Option(2, min=1, help="Ray actors, one onnxruntime session each."),
    cpus_per_worker: float = typer.Option(1.0, help="CPUs Ray reserves per actor."),
    gpus_per_worker: float = typer.Option(0.0, help="GPUs per actor (e.g. 0.25 with cuda)."),
    model: str | None = typer.Option(None, help="Model file or bundled name."),
    device: str = typer.Option("auto", help="Execution provider inside each actor."),
    invert: Invert = typer.Option(Invert.auto),
    output_format: OutputFormat = typer.Option(OutputFormat.keep),
    overwrite: bool = typer.Option(False, "--overwrite"),
    batch_size: int = typer.Option(256, min=1, help="Files per chunk handed to an actor."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    report: Path | None = typer.Option(None, help="Write a JSON report."),
) -> None:
    """Run the denoising job on Ray Data actors (same outputs, skips and report as locally)."""
    from functools import partial

    from denoise_cli.pipeline import RunOptions, make_denoise_transform
    from denoise_cli.ray_runner import process_tree_on_ray

    threads = max(1, int(cpus_per_worker))
    make = partial(make_denoise_transform, model, device, threads, invert.value, batch_size)
    options = RunOptions(
        output_format=output_format.value, overwrite=overwrite, batch_size=batch_size
    )
    header: dict = {}

    def check_model():
        transform = make()  # refuse a bad model here, before any actor starts
        header.update(model=transform.denoiser.info.summary(), runner="ray", workers=workers)
        return transform

    def run_on_ray(in_root, out_root, make_transform, opts, on_event, transform):
        return process_tree_on_ray(
            in_root,
            out_root,
            make_transform,
            opts,
            workers,
            cpus_per_worker,
            gpus_per_worker,
            address,
            on_event,
        )

    _run_tree(
        in_dir, out_dir, make, options, quiet, False, report, header, check_model, runner=run_on_ray
    )


@tools_app.command()
def info(
    model: str | None = typer.Option(None, help="Model file or bundled name (default: default)."),
    device: str = typer.Option("auto"),
) -> None:
    """Describe the model (metadata, input shape) and the execution providers."""
    from denoise_cli.session import (
        DEFAULT_MODEL,
        Denoiser,
        bundled_models,
        conflicting_runtimes,
        import_onnxruntime,
    )

    try:
        ort = import_onnxruntime()
        denoiser = Denoiser(model, device=device)
    except DenoiseError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(_exit_for(exc)) from None
    typer.echo(f"model: {denoiser.info.summary()}")
    typer.echo(f"input: {denoiser.info.input_name} {list(denoiser.info.input_shape)}")
    for key, value in denoiser.info.metadata.items():
        typer.echo(f"  {key}: {value}")
    typer.echo(f"onnxruntime {ort.__version__}: {', '.join(ort.get_available_providers())}")
    typer.echo(f"selected provider: {denoiser.provider}")
    typer.echo(
        f"bundled models (--model NAME): {', '.join(bundled_models())} (default: {DEFAULT_MODEL})"
    )
    clash = conflicting_runtimes()
    if clash:
        typer.echo(f"warning: {' and '.join(clash)} are both installed; keep only one")


def main() -> None:
    """Entry point: companion commands by name, otherwise the main denoising command."""
    args = sys.argv[1:]
    if args and args[0] in COMPANIONS:
        tools_app(args=args, prog_name="denoise-batch")
    else:
        denoise_app(args=args, prog_name="denoise-batch")


if __name__ == "__main__":
    main()
