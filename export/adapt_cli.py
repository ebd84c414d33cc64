"""`denoise-export adapt`: the command-line face of denoise_export.adaptation (registered on
export/cli.py's app). It lives beside the export because it ends in one, and reads folders with
the runtime's decoders: training code (train/) may use neither (tests/test_boundary.py)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from denoise_cli.core import commands

Device = commands.choices("Device", ["auto", "cpu", "cuda"])
AdaptNoise = commands.choices("AdaptNoise", ["auto", "gaussian", "poisson-gaussian"])
AdaptMethod = commands.choices("AdaptMethod", ["auto", "supervised", "r2r", "pseudo", "r2r+pseudo"])


def adapt_command(
    noisy_dir: Path = typer.Argument(..., help="Your noisy images (any that denoise-batch reads)."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="The adapted model (.onnx); its INT8 file, "
        "checkpoint (.adapt.pt) and contact sheet (.contact.png) go beside.",
    ),
    clean: Path | None = typer.Option(
        None,
        help="A few hundred clean images of the same kind (not pairs): noise synthesised "
        "from the model estimated on NOISY_DIR, supervised training.",
    ),
    from_: str | None = typer.Option(
        None,
        "--from",
        help="Start from a bundled model's name, a checkpoint (.pt) or an ONNX "
        "file of ours (default: denoise-batch's default model).",
    ),
    minutes: float = typer.Option(
        15.0,
        min=0.0,
        help="Training time (export comes after); with --resume, the time already spent counts.",
    ),
    max_steps: int | None = typer.Option(None, min=1, help="Stop after this many steps too."),
    noise: AdaptNoise = typer.Option(
        "auto",
        help="auto: as estimated; gaussian: no signal-dependent part; poisson-gaussian: "
        "no impulses.",
    ),
    method: AdaptMethod = typer.Option(
        "auto", help="auto: r2r on the noisy folder, supervised with --clean."
    ),
    device: Device = typer.Option("auto"),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads (default: torch's)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from OUT's .adapt.pt (not with --overwrite)."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace an earlier run's OUT and .adapt.pt (else refused); a file adapt did not "
        "write is never replaced.",
    ),
    seed: int = typer.Option(0, min=0),
) -> None:
    """Fine-tune a model on your own folder of noisy digit images, in minutes."""
    from denoise_export.adaptation import AdaptSettings
    from denoise_export.adaptation import adapt as run_adapt

    if not math.isfinite(minutes):
        commands.fail(f"--minutes {minutes}: needs a number of minutes", 2)
    if minutes == 0:  # a budget of nothing used to take one step and export it
        commands.fail("--minutes 0: needs a time above 0 (--max-steps caps the steps)", 2)
    settings = AdaptSettings(
        method=method.value,
        minutes=minutes,
        max_steps=max_steps,
        noise=noise.value,
        seed=seed,
        threads=threads,
        device=device.value,
    )
    result = run_adapt(noisy_dir, out, clean, from_, settings, resume=resume, overwrite=overwrite)
    verdict = "kept the starting weights (no improvement)" if result.kept_base else "adapted"
    typer.echo(
        f"{verdict}: {result.steps} steps in {result.minutes:.1f} min ({result.method}); "
        f"wrote {', '.join(str(p) for p in result.files)}"
    )
    typer.echo(f"run it: denoise-batch IN OUT --model {result.model}")
