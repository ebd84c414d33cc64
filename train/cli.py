"""`denoise-train`: list architectures, fetch MNIST, train. Choices come from the registries;
errors become messages and exit codes in denoise_cli.core.commands, not here."""

from __future__ import annotations

from pathlib import Path

import typer

from denoise_cli.core import commands
from denoise_cli.core.errors import EXIT_CODES_HELP, EXIT_REFUSED
from denoise_cli.core.noise import MIXES, NOISE_KINDS
from denoise_cli.core.safety import check_output_file
from denoise_train.config import (
    DATA_KINDS,
    LOSSES,
    LR_SCHEDULES,
    PRECISIONS,
    TrainConfig,
    default_val_size,
)
from denoise_train.models import REGISTRY

Arch = commands.choices("Arch", REGISTRY)
Noise = commands.choices("Noise", [*NOISE_KINDS, *MIXES])
Loss = commands.choices("Loss", LOSSES)
Schedule = commands.choices("Schedule", LR_SCHEDULES)
Precision = commands.choices("Precision", PRECISIONS)
Data = commands.choices("Data", DATA_KINDS)
Device = commands.choices("Device", ["auto", "cpu", "cuda"])

app = commands.app(
    f"Train the digit denoisers and autoencoders on MNIST (PyTorch). {EXIT_CODES_HELP}",
    sigterm_interrupts=True,
)

DATA_DIR_HELP = "MNIST folder (default: $DENOISE_MNIST_DIR, then ~/.cache/denoise-batch/mnist)."


@app.command("list")
def list_command() -> None:
    """Print every registered architecture with its parameter count."""
    from denoise_train.models import count_params

    typer.echo(f"{'name':<20} {'params':>8}  {'task':<11} {'loss':<4}  description")
    for arch in REGISTRY.values():
        n = count_params(arch.build())
        typer.echo(f"{arch.name:<20} {n:>8,}  {arch.task:<11} {arch.loss:<4}  {arch.description}")


@app.command()
def download(data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP)) -> None:
    """Download the four MNIST files (checked against upstream SHA-256) if missing, then
    read all four: files already there that are cut short or altered are refused (exit 3)."""
    from denoise_train.mnist import ensure_files, load_split, resolve_data_dir

    root = resolve_data_dir(data_dir)
    paths = ensure_files(root)
    for split in ("train", "test"):
        load_split(split, root, download=False)  # gzip, IDX header, shape, content digest
    for path in paths.values():
        typer.echo(str(path))


DATA_HELP = (
    "mnist: MNIST's 28x28 frames. scenes: digit strings, 0.7-4x scales, pages, printed "
    "digits and blank paper on --scene-size canvases, with plain frames every third step. "
    "world: the wide world instead of scenes (paper, displays, print in many typefaces, "
    "forms, either polarity; Gaussian, Poisson-Gaussian, impulse, speckle, JPEG noise)."
)

INIT_FROM_HELP = (
    "Fine-tune: start from this checkpoint's weights (same-named tensors; the new "
    "architecture's extra layers keep their initialisation)."
)


WORLD_SCENES_HELP = "With --data world: the share of its steps drawing the scenes' canvases."
WORLD_DISPLAY_HELP = "With --data world: the share of its images that are display readings."
WORLD_READ_HELP = "With --data world: the top of its Poisson-Gaussian read-noise sigma."
WORLD_FRAMED_HELP = (
    "With --data world: the share of display readings drawn as users crop them (a row of"
    " 12-40 px digits inside the image) instead of at any size."
)
WORLD_MODERATE_HELP = (
    "With --data world: the share of its noisy images at the levels cameras and scanners"
    " leave (Gaussian 0.03-0.3, Poisson peak 8-200) instead of barely visible to 0.75."
)
WORLD_FAINT_HELP = (
    "With --data world: the share of its images with faint rules or grids behind the ink"
    " (and displays' unlit segments shown more often, more strongly)."
)
FREEZE_BN_HELP = "Keep batch norm's running statistics (fine-tuning on mixed batches)."


@app.command()
def fit(
    arch: Arch = typer.Option("conv_denoiser", help="Architecture (see `list`)."),
    out: Path = typer.Option(None, help="Checkpoint path (default: runs/<arch>.pt)."),
    epochs: int = typer.Option(10, min=1),
    batch_size: int = typer.Option(32, min=1),
    lr: float = typer.Option(1e-3),
    lr_schedule: Schedule = typer.Option("constant", help="cosine decays to 0 over all epochs."),
    loss: Loss | None = typer.Option(
        None, help="psnr: mean per-image PSNR (default: the architecture's own)."
    ),
    noise: Noise = typer.Option(
        "gaussian",
        help="One kind at --noise-level, or a per-image mix: blind (Gaussian 0.05-0.7, "
        "salt-and-pepper, speckle), mixed (all four kinds, Gaussian up to 0.75).",
    ),
    noise_level: float = typer.Option(0.5, help="Sigma, amount or peak, by noise kind."),
    data: Data = typer.Option("mnist", help=DATA_HELP),
    scene_size: int = typer.Option(64, help="Side of the training canvases with --data scenes."),
    steps_per_epoch: int = typer.Option(1000, help="Steps per epoch with --data scenes."),
    scene_max_scale: float = typer.Option(
        4.0, help="Largest digit scale in training scenes (drawn log-uniformly from 0.7x)."
    ),
    val_size: int | None = typer.Option(
        None,
        min=1,
        help="Validation images carved from training (default: 5,000, or a tenth of "
        "--train-limit when that is smaller).",
    ),
    train_limit: int | None = typer.Option(None, help="Use only the first N training images."),
    seed: int = typer.Option(0),
    device: Device = typer.Option("auto"),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads (default: torch's)."),
    precision: Precision = typer.Option(
        "fp32", help="bf16 autocasts convolutions (~1.6x faster on CPUs with AVX512-BF16)."
    ),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    init_from: Path | None = typer.Option(None, help=INIT_FROM_HELP),
    frames_inverted_share: float = typer.Option(0.0, help="Share of frames made dark-on-light."),
    world_scenes_share: float = typer.Option(0.0, help=WORLD_SCENES_HELP),
    world_display_share: float = typer.Option(0.20, help=WORLD_DISPLAY_HELP),
    world_read_noise_max: float = typer.Option(0.06, help=WORLD_READ_HELP),
    world_framed_share: float = typer.Option(0.0, help=WORLD_FRAMED_HELP),
    world_moderate_share: float = typer.Option(0.0, help=WORLD_MODERATE_HELP),
    world_faint_share: float = typer.Option(0.0, help=WORLD_FAINT_HELP),
    freeze_bn: bool = typer.Option(False, "--freeze-bn", help=FREEZE_BN_HELP),
    resume: Path | None = typer.Option(
        None, help="Continue from this checkpoint (give the same settings and --epochs total)."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="One epoch of 2 batches (192 images to train on, 64 to validate): a smoke test.",
    ),
) -> None:
    """Train one architecture; writes a checkpoint after every epoch."""
    from denoise_train.checkpoint import file_sha256, load_checkpoint
    from denoise_train.loop import fit as run_fit
    from denoise_train.mnist import load_split

    if init_from is not None and not init_from.exists():
        commands.fail(f"--init-from {init_from}: no such checkpoint file", EXIT_REFUSED)
    if init_from is not None:
        load_checkpoint(init_from)  # a folder, unreadable, damaged: refused (exit 3) up front
    config = TrainConfig(
        arch=arch.value,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        lr_schedule=lr_schedule.value,
        loss=loss.value if loss else None,
        noise=noise.value,
        noise_level=noise_level,
        val_size=val_size or default_val_size(train_limit),
        train_limit=train_limit,
        seed=seed,
        device=device.value,
        threads=threads,
        precision=precision.value,
        data=data.value,
        scene_size=scene_size,
        steps_per_epoch=steps_per_epoch,
        scene_max_scale=scene_max_scale,
        init_from=str(init_from) if init_from else None,
        init_sha256=file_sha256(init_from) if init_from else None,
        freeze_bn=freeze_bn,
        frames_inverted_share=frames_inverted_share,
        world_scenes_share=world_scenes_share,
        world_display_share=world_display_share,
        world_read_noise_max=world_read_noise_max,
        world_framed_share=world_framed_share,
        world_moderate_share=world_moderate_share,
        world_faint_share=world_faint_share,
    )
    if dry_run:
        config = config.with_(epochs=1, train_limit=256, val_size=64, max_steps_per_epoch=2)
    out = out or Path("runs") / f"{arch.value}.pt"
    check_output_file(out, [p for p in (init_from, data_dir) if p], "--out")  # resume: same file
    images, _ = load_split("train", data_dir)
    result = run_fit(config, images, out, resume_from=resume)
    typer.echo(f"checkpoint: {result.checkpoint}")
