"""`denoise-train`: list models, fetch MNIST, train, report. Errors become exit codes here."""

from __future__ import annotations

from pathlib import Path

import typer

from train.config import TrainConfig

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train the digit denoisers and autoencoders on MNIST (PyTorch).",
)

DATA_DIR_HELP = "MNIST folder (default: $DENOISE_MNIST_DIR, then ~/.cache/denoise-batch/mnist)."


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command("list")
def list_command() -> None:
    """Print every registered architecture with its parameter count."""
    from train.models import REGISTRY, count_params

    typer.echo(f"{'name':<20} {'params':>8}  {'task':<11} {'loss':<4}  description")
    for arch in REGISTRY.values():
        n = count_params(arch.build())
        typer.echo(f"{arch.name:<20} {n:>8,}  {arch.task:<11} {arch.loss:<4}  {arch.description}")


@app.command()
def download(data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP)) -> None:
    """Download the four MNIST files (checked against upstream SHA-256) if missing."""
    from train.mnist import MnistError, ensure_files, resolve_data_dir

    root = resolve_data_dir(data_dir)
    try:
        paths = ensure_files(root)
    except MnistError as exc:
        _fail(str(exc))
    for path in paths.values():
        typer.echo(str(path))


@app.command()
def fit(
    arch: str = typer.Option("conv_denoiser", help="Architecture name (see `list`)."),
    out: Path = typer.Option(None, help="Checkpoint path (default: runs/<arch>.pt)."),
    epochs: int = typer.Option(10, min=1),
    batch_size: int = typer.Option(32, min=1),
    lr: float = typer.Option(1e-3),
    lr_schedule: str = typer.Option("constant", help="constant or cosine (decay to 0)."),
    loss: str | None = typer.Option(
        None, help="mse, bce or psnr (mean per-image PSNR; default: the architecture's)."
    ),
    noise: str = typer.Option("gaussian", help="gaussian, salt-pepper, speckle or poisson."),
    noise_level: float = typer.Option(0.5, help="Sigma, amount or peak, by noise kind."),
    val_size: int = typer.Option(5000, min=1, help="Validation images carved from training."),
    train_limit: int | None = typer.Option(None, help="Use only the first N training images."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: torch's)."),
    precision: str = typer.Option(
        "fp32", help="fp32, or bf16 (autocast convolutions; ~1.6x faster on CPUs with AVX512-BF16)."
    ),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    resume: Path | None = typer.Option(None, help="Continue from this checkpoint."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="One epoch of 2 batches on 256 images: a smoke test."
    ),
) -> None:
    """Train one architecture; writes a checkpoint after every epoch."""
    from train.checkpoint import CheckpointError
    from train.idx import IdxError
    from train.loop import fit as run_fit
    from train.mnist import MnistError, load_split
    from train.models import get_arch

    try:
        get_arch(arch)
        config = TrainConfig(
            arch=arch,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            lr_schedule=lr_schedule,
            loss=loss,
            noise=noise,
            noise_level=noise_level,
            val_size=val_size,
            train_limit=train_limit,
            seed=seed,
            device=device,
            threads=threads,
            precision=precision,
        )
        if dry_run:
            config = config.with_(epochs=1, train_limit=256, val_size=64, max_steps_per_epoch=2)
        images, _ = load_split("train", data_dir)
        result = run_fit(config, images, out or Path("runs") / f"{arch}.pt", resume_from=resume)
    except (KeyError, ValueError, MnistError, IdxError, CheckpointError, RuntimeError) as exc:
        _fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc))
    typer.echo(f"checkpoint: {result.checkpoint}")


@app.command()
def report(
    checkpoints: list[Path] = typer.Argument(
        ..., help="Trained checkpoints (.pt) or exported models (.onnx)."
    ),
    out_dir: Path = typer.Option(Path("docs/report"), help="Where figures and tables go."),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    noise_level: float = typer.Option(0.5, help="Gaussian sigma for the test-set table."),
    limit: int | None = typer.Option(None, help="Score only the first N test digits."),
    seed: int = typer.Option(0, help="Chooses the 5 random digits of the figures."),
) -> None:
    """Reproduce the seed chapter's figures and its PSNR/SSIM table on the MNIST test set."""
    from train.checkpoint import CheckpointError
    from train.idx import IdxError
    from train.mnist import MnistError, load_split
    from train.report import build_report

    try:
        images, _ = load_split("test", data_dir)
        if limit:
            images = images[:limit]
        written = build_report(checkpoints, images, out_dir, noise_level, seed)
    except (MnistError, IdxError, CheckpointError, ValueError) as exc:
        _fail(str(exc))
    for path in written:
        typer.echo(str(path))


@app.command()
def compare(
    checkpoints: list[Path] = typer.Argument(
        ..., help="Trained denoisers: checkpoints (.pt) or exported models (.onnx)."
    ),
    out_dir: Path = typer.Option(Path("docs/compare"), help="Where the tables go."),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    limit: int | None = typer.Option(None, help="Score only the first N test digits."),
    classical_limit: int = typer.Option(2000, help="Test digits for the (slow) classical filters."),
) -> None:
    """Models vs classical filters across noise types and levels, with size and CPU speed."""
    from train.checkpoint import CheckpointError
    from train.compare import compare as run_compare
    from train.compare import markdown, write
    from train.idx import IdxError
    from train.mnist import MnistError, load_split

    try:
        images, _ = load_split("test", data_dir)
        result = run_compare(
            checkpoints,
            images[:limit] if limit else images,
            classical_limit,
            log=lambda m: typer.echo(m, err=True),
        )
    except (MnistError, IdxError, CheckpointError, ValueError) as exc:
        _fail(str(exc))
    write(result, out_dir)
    typer.echo(markdown(result), nl=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
