"""Training configuration: one frozen dataclass, saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from denoise_cli.core.errors import UsageError
from denoise_cli.core.noise import MIXES, REFERENCE_KIND, REFERENCE_LEVEL

LOSSES = ("mse", "bce", "psnr")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")
#: Bounds that keep a typo from training into NaN or allocating terabytes (NaN and inf fail
#: them too): Adam at 10 only diverges; a 1,024-pixel canvas is already a page a step.
MAX_LR = 10.0
MAX_SCENE_SIZE = 1024
MAX_SCENE_SCALE = 64.0
DATA_KINDS = ("mnist", "scenes", "world")


def eval_noise(config: dict[str, Any]) -> tuple[str, float]:
    """The noise a model is validated and tested at: its own, or for a model trained on a mix
    (blind, mixed) the reference setting, so its numbers compare with the specialists'."""
    if config["noise"] in MIXES:
        return REFERENCE_KIND, REFERENCE_LEVEL
    return config["noise"], config["noise_level"]


#: Seed for the fixed noise on validation and test images, so every model sees the same inputs.
EVAL_NOISE_SEED = 20_240_501


def default_val_size(train_limit: int | None) -> int:
    """5,000 validation images, or a tenth of a smaller training limit (a quick run on 500
    images had none left to train on)."""
    full = TrainConfig.val_size
    return full if train_limit is None else max(1, min(full, train_limit // 10))


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
    # "mnist": MNIST's own frames, one pass per epoch. "scenes": train.scenes canvases of
    # scene_size px (strings, 0.7-4x scales, pages, printed digits, blank paper), with every
    # third step a batch of plain 28x28 frames (4x batch_size of them: the same pixel count);
    # an epoch is then steps_per_epoch steps. "world": train.world's wide world (paper,
    # displays, print, forms, either polarity, its own noise kinds) in place of the scenes.
    data: str = "mnist"
    scene_size: int = 64
    steps_per_epoch: int = 1000
    scene_max_scale: float = 4.0  # digits in scenes are drawn at 0.7x up to this
    # Start from another checkpoint's weights (fine-tuning): every tensor of the same name and
    # shape is copied; the new architecture's extra layers (a GlobalContext branch) keep their
    # initialisation. Recorded as the checkpoint's path and SHA-256.
    init_from: str | None = None
    init_sha256: str | None = None
    # Keep batch norm's running statistics as they are (normalise with them in training too):
    # for fine-tuning on batches whose statistics differ from step to step (the world's
    # canvases against plain MNIST frames), where batch statistics made train and eval
    # disagree (validation fell 5 dB in two epochs of the world run while the loss improved).
    freeze_bn: bool = False
    # The share of the plain MNIST frames (every third step of scene and world training)
    # turned dark-on-light before the noise: a model for either polarity (metadata
    # `polarity: either`, inverted by the runtime only at the white clip) must be as good on
    # inverted digits.
    frames_inverted_share: float = 0.0
    # With data "world": the share of its steps that draw the scenes' canvases (white ink on
    # black, strings, scales, pages) under `noise` instead: the world alone left a faint haze on
    # black pages at heavy Gaussian noise (page G0.5: 27.1 dB against unet_scenes' 30.7).
    world_scenes_share: float = 0.0
    # With data "world": its share of display readings and the top of its Poisson-Gaussian
    # read noise, and how many readings come framed as users crop them (world.WorldMix; the
    # defaults are what stages 1-4 of the default trained on).
    world_display_share: float = 0.20
    world_read_noise_max: float = 0.06
    world_framed_share: float = 0.0
    # With data "world": the share of its noisy images whose level comes from users' range
    # (Gaussian 0.03-0.3, Poisson peak 8-200) instead of barely visible to 0.75.
    world_moderate_share: float = 0.0
    # With data "world": the share of its images with faint guides behind the ink (rules,
    # grids; displays then show unlit segments more often and more strongly).
    world_faint_share: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not 0 < self.lr <= MAX_LR:
            raise UsageError(f"epochs and batch_size must be >= 1 and lr in (0, {MAX_LR:g}]")
        if self.seed < 0 or (self.train_limit is not None and self.train_limit < 1):
            raise UsageError("seed must be >= 0 and train_limit >= 1")
        if self.loss is not None and self.loss not in LOSSES:
            raise UsageError(f"loss must be 'mse', 'bce' or 'psnr', got {self.loss!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(
                f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}"
            )
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.data not in DATA_KINDS:
            raise UsageError(f"data must be one of {', '.join(DATA_KINDS)}, got {self.data!r}")
        if not 0.7 <= self.scene_max_scale <= MAX_SCENE_SCALE:
            raise UsageError(
                f"scene_max_scale must be in [0.7, {MAX_SCENE_SCALE:g}], got {self.scene_max_scale}"
            )
        if not 8 <= self.scene_size <= MAX_SCENE_SIZE or self.scene_size % 4:
            raise UsageError(f"scene_size must be a multiple of 4 in [8, {MAX_SCENE_SIZE}]")
        if self.steps_per_epoch < 1:
            raise UsageError("steps_per_epoch must be >= 1")
        if not 0.0 <= self.frames_inverted_share <= 1.0:
            raise UsageError("frames_inverted_share must be in [0, 1]")
        if not 0.0 <= self.world_scenes_share <= 1.0:
            raise UsageError("world_scenes_share must be in [0, 1]")
        if self.world_scenes_share and self.data != "world":
            raise UsageError("world_scenes_share needs data 'world' (it shares out its steps)")
        if not 0.0 <= self.world_display_share <= 0.95:
            raise UsageError("world_display_share must be in [0, 0.95]")
        if not 0.0 <= self.world_read_noise_max <= 0.5:
            raise UsageError("world_read_noise_max must be in [0, 0.5]")
        if not 0.0 <= self.world_framed_share <= 1.0:
            raise UsageError("world_framed_share must be in [0, 1]")
        if not 0.0 <= self.world_moderate_share <= 1.0:
            raise UsageError("world_moderate_share must be in [0, 1]")
        if not 0.0 <= self.world_faint_share <= 1.0:
            raise UsageError("world_faint_share must be in [0, 1]")
        if self.val_size < 1:
            raise UsageError("val_size must be >= 1: the test set is for reporting only")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)
