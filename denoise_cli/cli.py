"""`denoise-batch`: arguments, progress, messages and exit codes. No numerics live here.

Each command turns its options into a Job (denoise_cli.run.job) once and hands it to
runners.run_job; what happens to each file comes back as events. Library errors become
messages and exit codes in denoise_cli.core.commands (the policy in denoise_cli.core.errors).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer

from denoise_cli.core import commands
from denoise_cli.core.errors import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_USAGE,
    Interrupted,
    UsageError,
)
from denoise_cli.core.noise import MIXES, NOISE_KINDS
from denoise_cli.files.images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_PIXELS
from denoise_cli.model.bundled import DEFAULT_MODEL, bundled_models
from denoise_cli.model.placement import DEVICE_ALIASES, PRECISIONS
from denoise_cli.model.polarity import INVERT_CHOICES
from denoise_cli.model.session import MAX_TILE, MIN_TILE
from denoise_cli.run.job import OUTPUT_FORMATS, Job
from denoise_cli.run.transforms import Denoise, Noisify

MAX_LISTED_FAILURES = 50


Invert = commands.choices("Invert", INVERT_CHOICES)
OutputFormat = commands.choices("OutputFormat", OUTPUT_FORMATS)
Noise = commands.choices("Noise", [*NOISE_KINDS, *MIXES])
Precision = commands.choices("Precision", PRECISIONS)

MODEL_HELP = (
    f"An .onnx/.ort file, or a bundled model's name: {', '.join(bundled_models())} "
    f"(default: {DEFAULT_MODEL}). `denoise-batch info --model NAME` describes one."
)
TILE_HELP = (
    "Images larger than this run in overlapping tiles of at most this size, raised where "
    "needed to fit twice the model's receptive radius (large PNGs stream a row of tiles at a "
    "time: memory follows this, about 250 bytes a pixel of tile for the default model)."
)
PRECISION_HELP = (
    "fp32, int8 (the model's verified NAME.int8.onnx beside it), or auto: INT8 on the "
    "OpenVINO device (measured 1.4x fp32 there), fp32 elsewhere."
)
BATCH_SIZE_HELP = (
    "Two limits at once: the most images of one size per model call (a pixel budget caps it "
    "lower: on CPU about 80 digits, which measured fastest; tiles of large images follow the "
    "budget alone) and the most files per work chunk (large files: about 1 MB of input a chunk)."
)
DEVICE_HELP = (
    f"auto, {', '.join(DEVICE_ALIASES)}, or an onnxruntime provider name. A requested device "
    "that fails to load is an error."
)

HELP = f"""Denoise every image under IN into OUT, mirroring the folder tree.

`denoise-batch IN OUT [OPTIONS]` runs the `run` command; the other commands are listed below.
An input folder named like a command is given as `denoise-batch run score OUT` (or ./score).
Outputs keep the input's format, mode, colour, alpha and metadata (EXIF, ICC, DPI, PNG text);
colour palettes come back as RGB (GIF: re-paletted), as no palette holds the denoised shades.
{EXIT_CODES_HELP}
"""

app = commands.app(HELP, default_command="run")


def _err(message: str) -> None:
    typer.echo(message, err=True)


#: Control characters (C0, DEL, C1) as escapes: a file name holding a newline or a terminal
#: escape sequence stays one line of text and never recolours or moves the terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))} | {
    10: "\\n",
    13: "\\r",
    9: "\\t",
}


def printable(text: str) -> str:
    """`text` for one terminal line: control characters shown as escapes (see _CONTROL)."""
    return text.translate(_CONTROL)


class Output:
    """The terminal side of a run's events: header, progress bar, JSON lines."""

    def __init__(self, quiet: bool, jsonl: bool, total: int | None) -> None:
        from denoise_cli.core.progress import Progress

        self.quiet, self.jsonl = quiet, jsonl
        self.bar = Progress(total, enabled=True) if total is not None else None

    def event(self, event: dict) -> None:
        if self.jsonl:
            try:
                typer.echo(json.dumps(event))
            except BrokenPipeError:  # `| head -1`: the reader left; the run goes on unheard
                self.jsonl = False
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
        if event["event"] == "start" and not self.quiet and not self.jsonl:
            _err("  ".join(f"{k}: {v}" for k, v in event.items() if k != "event"))
        if self.bar is not None and event["event"] in ("written", "failed", "exists"):
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _write_report(path: Path | None, data: dict, inputs: tuple[str | Path, ...]) -> bool:
    """Write the JSON report under the one rule for written files (denoise_cli.core.safety); say why
    not (and return False) rather than crash after the work."""
    if path is None:
        return True
    from denoise_cli.core.safety import write_output_file

    try:
        write_output_file(path, (json.dumps(data, indent=2) + "\n").encode(), inputs, "report")
    except UsageError as exc:
        _err(f"error: cannot write the report: {exc}")
        return False
    except OSError as exc:
        _err(f"error: cannot write the report {path}: {exc.strerror or exc}")
        return False
    return True


def _check_report_path(
    path: Path | None, inputs: tuple[str | Path, ...], out_location: str | Path
) -> None:
    """A report never lands on an input, a device or a link (see denoise_cli.core.safety), nor
    on a name inside OUT that an output could have: it overwrote that image, and reruns then
    counted the JSON as the image, done."""
    if path is None:
        return
    from denoise_cli.core.safety import check_output_file, inside, resolved
    from denoise_cli.files.images import is_image_name

    check_output_file(path, inputs, "the report")
    local = "://" not in str(out_location)
    if (
        local
        and is_image_name(path.name)
        and inside(resolved(path), os.path.realpath(out_location))
    ):
        raise UsageError(
            f"the report {path}: an image's name inside the output folder {out_location}, "
            "where it could stand for an output; give it another name (report.json)"
        )


def run_and_report(
    job: Job,
    in_location: str | Path,
    out_location: str | Path,
    quiet: bool = False,
    jsonl: bool = False,
    report_path: Path | None = None,
    runner: Any = None,
) -> None:
    """Shared by `run`, `noisify` and `ray`: run the job, report, exit with the right code."""
    from denoise_cli.run.runners import run_job
    from denoise_cli.trees.walk import FileJob, check_roots, plan_jobs

    _check_report_path(report_path, (in_location,), out_location)
    total = None
    local = "://" not in str(in_location) and "://" not in str(out_location)
    if not quiet and not jsonl and sys.stderr.isatty() and local:
        in_root, out_root = Path(in_location), Path(out_location)
        check_roots(in_root, out_root)  # before counting, so a usage error comes first
        jobs = plan_jobs(in_root, out_root, job.output_format)
        total = sum(isinstance(item, FileJob) for item in jobs)
    out = Output(quiet, jsonl, total)
    try:
        report = run_job(job, in_location, out_location, out.event, runner)
    except Interrupted as exc:
        out.close()
        report = exc.report
        _write_report(report_path, report.to_dict(), (in_location,))
        _err(
            f"\ninterrupted ({exc.signal_name}) after {report.written:,} written "
            f"({report.failed:,} failed); every written file is complete: rerun the same "
            "command to continue"
        )
        code = 128 + int(getattr(signal, exc.signal_name, signal.SIGINT))  # 130, 143, 129
        raise typer.Exit(code) from None
    finally:
        out.close()
    report_ok = _write_report(report_path, report.to_dict(), (in_location,))
    if out.jsonl:
        out.event({"event": "done", **report.to_dict()})
    elif not quiet:
        _err(
            f"{report.written:,} written, {report.failed:,} failed, "
            f"{report.skipped_existing:,} already done, {report.skipped_other:,} skipped "
            f"(non-images, links) in {report.seconds:.2f} s "
            f"({report.images_per_s:,.{1 if report.images_per_s < 10 else 0}f} images/s)"
        )
    if report.failures:
        _err(f"{report.failed} file(s) failed:")
        for f in report.failures[:MAX_LISTED_FAILURES]:
            _err(printable(f"  {f.file}: {f.error}"))
        if report.failed > MAX_LISTED_FAILURES:
            more = report.failed - MAX_LISTED_FAILURES
            _err(f"  ... and {more} more" + (" (all in --report)" if report_path else ""))
    for warning in report.warnings:
        _err(printable(f"warning: {warning}"))
    if report.unfinished:  # never claimed done: every planned file is accounted for
        _err(f"error: {report.unfinished:,} file(s) were not processed; rerun to finish them")
    if report.failures or report.unfinished or not report_ok:
        raise typer.Exit(EXIT_FAILED)


def denoise_job(
    denoise: Denoise,
    output_format: str,
    overwrite: bool,
    workers: int | None,
    threads: int | None,
    max_pixels: int,
    jpeg_quality: int,
    model_timeout: float = 600.0,
) -> Job:
    """The Job that `run` and `ray` describe: --batch-size is both the most images per model
    call (`Denoise.batch_size`) and the most files per work chunk (`Job.max_chunk_files`),
    said here once."""
    return Job(
        denoise,
        output_format=output_format,
        overwrite=overwrite,
        max_chunk_files=denoise.batch_size,
        workers=workers,
        threads=threads,
        max_pixels=max_pixels,
        jpeg_quality=jpeg_quality,
        model_timeout=model_timeout,
    )


@app.command(help="Denoise every image under IN into OUT (the default command).")
def run(
    in_dir: str = typer.Argument(..., metavar="IN", help="Input folder (or a single image)."),
    out_dir: str = typer.Argument(..., metavar="OUT", help="Output folder (created)."),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    invert: Invert = typer.Option(
        "auto",
        help="Polarity: auto decides per image from the model's metadata (the default takes "
        "either, and turns only pure white paper to black; unet_scenes and conv_denoiser "
        "expect light digits on dark).",
    ),
    output_format: OutputFormat = typer.Option(
        "keep", help="keep: same format and bit depth as each input; png: lossless PNG."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist."),
    batch_size: int = typer.Option(
        256,
        min=1,
        help=BATCH_SIZE_HELP,
    ),
    threads: int | None = typer.Option(
        None, min=1, help="onnxruntime threads per worker (default: CPUs / workers)."
    ),
    workers: int | None = typer.Option(
        None,
        min=1,
        help="Worker processes, each decoding, denoising and writing whole chunks "
        "(default: one per CPU, fewer for small runs; 1: all in this process).",
    ),
    tile: int = typer.Option(1024, min=MIN_TILE, max=MAX_TILE, help=TILE_HELP),
    precision: Precision = typer.Option("auto", help=PRECISION_HELP),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, min=1, help="Refuse larger images."),
    jpeg_quality: int = typer.Option(
        DEFAULT_JPEG_QUALITY, min=1, max=100, help="JPEG outputs' quality (no chroma subsampling)."
    ),
    model_timeout: float = typer.Option(
        600.0, help="Seconds one model call may take; its files fail after that."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
    jsonl: bool = typer.Option(False, "--jsonl", help="JSON lines on stdout, one per event."),
    report: Path | None = typer.Option(None, help="Write a JSON report (counts, failures...)."),
) -> None:
    from denoise_cli.trees.plan import local_location

    in_path, out_path = local_location(in_dir), local_location(out_dir)
    job = denoise_job(
        Denoise(model, device, invert.value, batch_size, tile, precision.value),
        output_format.value, overwrite, workers, threads, max_pixels, jpeg_quality, model_timeout,
    )  # fmt: skip
    run_and_report(job, in_path, out_path, quiet, jsonl, report)


@app.command()
def noisify(
    clean_dir: str = typer.Argument(..., metavar="CLEAN", help="Folder of clean images."),
    out_dir: str = typer.Argument(..., metavar="OUT", help="Where the noisy copies go."),
    noise: Noise = typer.Option(
        "gaussian", help="One kind at --level, or a per-image mix (blind, mixed)."
    ),
    level: float = typer.Option(0.5, help="Sigma (gaussian, speckle), amount or peak."),
    seed: int = typer.Option(0, min=0, help="Same seed, same noise, per file, in any order."),
    output_format: OutputFormat = typer.Option("png", help="png (default) or keep."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
) -> None:
    """Make a noisy copy of a folder of clean images (the training toolkit's noise, seeded)."""
    job = Job(
        Noisify(noise.value, level, seed), output_format=output_format.value, overwrite=overwrite
    )
    from denoise_cli.trees.plan import local_location

    run_and_report(job, local_location(clean_dir), local_location(out_dir), quiet)


@app.command()
def score(
    results: Path = typer.Argument(..., help="Folder of denoised (or noisy) images."),
    references: Path = typer.Argument(..., help="Folder of the clean originals."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the scores as JSON."),
) -> None:
    """Score RESULTS against clean REFERENCES: mean PSNR and SSIM per folder and overall."""
    from denoise_cli.run.score import score_tree

    if json_path is not None:
        from denoise_cli.core.safety import check_output_file

        try:
            check_output_file(json_path, (results, references), "--json")
        except UsageError as exc:
            commands.fail(str(exc), EXIT_USAGE)
    report = score_tree(results, references)
    typer.echo(report.markdown(), nl=False)
    json_ok = _write_report(json_path, report.to_dict(), (results, references))
    for rel in report.missing[:MAX_LISTED_FAILURES]:
        _err(f"missing: {rel}: no result found in {results}")
    for f in report.failures[:MAX_LISTED_FAILURES]:
        _err(f"error: {f['file']}: {f['error']}")
    if report.missing or report.failures or not json_ok:
        raise typer.Exit(EXIT_FAILED)


@app.command("ray")
def ray_command(
    in_dir: str = typer.Argument(
        ..., metavar="IN", help="Input folder seen by every worker, or a URI (s3://bucket/in)."
    ),
    out_dir: str = typer.Argument(..., metavar="OUT", help="Output folder or URI."),
    address: str | None = typer.Option(
        None, help="Ray cluster to join ('auto', 'ray://head:10001'); default: a local Ray."
    ),
    workers: int = typer.Option(2, min=1, help="Ray actors, one onnxruntime session each."),
    cpus_per_worker: float = typer.Option(1.0, min=0.0, help="CPUs Ray reserves per actor."),
    gpus_per_worker: float = typer.Option(0.0, min=0.0, help="GPUs per actor (0.25 with cuda)."),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    device: str = typer.Option("auto", help="Execution provider inside each actor."),
    invert: Invert = typer.Option("auto"),
    output_format: OutputFormat = typer.Option("keep"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist."),
    batch_size: int = typer.Option(256, min=1, help=BATCH_SIZE_HELP),
    threads: int | None = typer.Option(
        None, min=1, help="onnxruntime threads per actor (default: its reserved CPUs)."
    ),
    tile: int = typer.Option(1024, min=MIN_TILE, max=MAX_TILE, help=TILE_HELP),
    precision: Precision = typer.Option("auto", help=PRECISION_HELP),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, min=1, help="Refuse larger images."),
    jpeg_quality: int = typer.Option(
        DEFAULT_JPEG_QUALITY, min=1, max=100, help="JPEG outputs' quality (no chroma subsampling)."
    ),
    model_timeout: float = typer.Option(
        600.0, help="Seconds one model call may take; its files fail after that."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
    jsonl: bool = typer.Option(False, "--jsonl", help="JSON lines on stdout, one per event."),
    report: Path | None = typer.Option(None, help="Write a JSON report."),
) -> None:
    """The same job on Ray Data actors: same planner, outputs, skips and report as locally."""
    from denoise_cli.run.ray_runner import RayRunner

    job = denoise_job(
        Denoise(model, device, invert.value, batch_size, tile, precision.value),
        output_format.value, overwrite, workers, threads, max_pixels, jpeg_quality, model_timeout,
    ).with_(cpus=max(1, round(workers * cpus_per_worker)))  # fmt: skip
    runner = RayRunner(address, cpus_per_worker, gpus_per_worker)
    run_and_report(job, in_dir, out_dir, quiet, jsonl, report, runner)


@app.command()
def info(
    model: str | None = typer.Option(None, help=MODEL_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Describe the model (metadata, input shape) and the execution providers."""
    from denoise_cli.model.placement import conflicting_runtimes, import_onnxruntime
    from denoise_cli.model.session import Denoiser

    ort = import_onnxruntime()
    denoiser = Denoiser(model, device=device)
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


def _reopen_closed_std_streams() -> None:
    """`2>&-`: a closed stderr made every message an error (exit 1 before any work), and the
    first file opened would have taken descriptor 2 and received them. /dev/null takes it."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115


def _exit_past_stuck_model_calls(code: object) -> None:
    """A model call abandoned by the watchdog (a stop, a timeout) still runs in its thread,
    inside onnxruntime: letting the interpreter finalize around it aborted the process
    ("terminate called without an active exception", exit -6) after the report was written.
    Everything is flushed and reported by now: leave without finalizing."""
    from denoise_cli.run.chunk import MODEL_CALL_THREAD

    if any(t.name == MODEL_CALL_THREAD and t.is_alive() for t in threading.enumerate()):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code if isinstance(code, int) else EXIT_FAILED)


def main() -> None:
    _reopen_closed_std_streams()
    try:
        app(prog_name="denoise-batch")
    except SystemExit as exc:
        _exit_past_stuck_model_calls(exc.code)
        raise


if __name__ == "__main__":
    main()
