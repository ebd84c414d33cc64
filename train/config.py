"""Training configuration: one frozen dataclass, saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

#: Seed for the fixed noise on validation and test images, so every model sees the same inputs.
EVAL_NOISE_SEED = 20_240_501


@dataclass(frozen=True)
class TrainConfig:
    """Defaults reproduce the seed recipe: Adam 1e-3, 10 epochs, batch 32, Gaussian sigma 0.5."""

    arch: str = "conv_denoiser"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine": decays to 0 over all steps (stateless, resumable)
    loss: str | None = None  # None: the architecture's own; "psnr" fine-tunes for mean PSNR
    noise: str = "gaussian"
    noise_level: float = 0.5
    val_size: int = 5_000
    train_limit: int | None = None  # use only the first N training images (tests, quick runs)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    precision: str = "fp32"  # or "bf16": autocast matmuls/convs (weights and optimizer stay fp32)
    max_steps_per_epoch: int | None = None  # the dry run sets this

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if self.loss not in (None, "mse", "bce", "psnr"):
            raise ValueError(f"loss must be 'mse', 'bce' or 'psnr', got {self.loss!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}"
            )
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.val_size < 1:
            raise ValueError("val_size must be >= 1: the test set is for reporting only")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)
