"""The images an adaptation learns from: the noisy folder, an optional clean one, their held-out
splits, the training crop and the noise model estimated from the noisy folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from denoise_cli.core.errors import UsageError
from denoise_export.adapt_base import BaseModel
from denoise_export.adapt_folder import FolderError, ImageFolder, crop_side, read_folder
from denoise_train.noise_estimate import CLEAN_SIGMA, NoiseModel, estimate_noise

#: A crop of this side shows a digit with context; smaller images train at their own size.
CROP = 64
#: Images under this side are skipped (listed): the crop is the smallest image's side.
MIN_CROP = 16
#: The share of a folder held out for the before/after figure (at most MAX_HELD_OUT images).
HELD_OUT_SHARE = 0.1
MAX_HELD_OUT = 128
#: Clean images needed at least: the held-out figure of supervised training is PSNR on clean
#: images it never trained on, so one image cannot be both (it was, and the figure flattered).
#: Training noisy-only instead would quietly drop the clean images asked for: refused.
MIN_CLEAN = 2
#: Noisy images needed at least, for the same reason: one image was trained on and held out at
#: once, and its noise estimate (sigma 0, impulses only) made a model 10 dB worse than the base.
MIN_NOISY = 2
#: Share of impulse-like pixels from which 'clean' images are said to look noisy: clean MNIST
#: strokes' edges read as 0.38% (sigma 0), salt-and-pepper noise as several percent.
NOISY_CLEAN_IMPULSES = 0.01
#: Above this share of clipped-noise pixels (clipped_noise_share) the noisy-only methods are
#: warned about: the bundled samples read 0.47 (r2r+pseudo lost 2.7 dB to the base on them);
#: clean MNIST digits 0.11 (black beside stroke edges), mid-grey with sigma 0.3 noise 0.09.
CLIPPED_NOISE_SHARE = 0.2
#: Images read from a folder (evenly spread over it): more adds little in minutes of training.
MAX_IMAGES = 4000


@dataclass
class AdaptData:
    noisy: ImageFolder
    noisy_train: list[np.ndarray]
    noisy_held_out: list[np.ndarray]
    clean: ImageFolder | None
    clean_train: list[np.ndarray] | None
    clean_held_out: list[np.ndarray] | None
    noise: NoiseModel  # in the files' own polarity: what is reported
    crop: int
    warnings: list[str] = field(default_factory=list)
    #: The --clean images carry noise of their own: PSNR against them rewards keeping noise,
    #: so the residual-noise guard applies to supervised training too.
    clean_looks_noisy: bool = False

    @property
    def mostly_inverted(self) -> bool:
        """Whether most of the noisy folder was inverted to the model's polarity."""
        return self.noisy.inverted * 2 > len(self.noisy.images)

    @property
    def model_noise(self) -> NoiseModel:
        """The noise in the model's polarity, where training happens (the files' own, or
        inverted when most of the noisy folder was)."""
        return self.noise.inverted() if self.mostly_inverted else self.noise

    def train_images(self, method: str) -> list[np.ndarray]:
        """What training crops come from: clean images for supervised training, else noisy."""
        if method == "supervised":
            if self.clean_train is None:
                raise UsageError("supervised adaptation needs clean images (--clean)")
            return self.clean_train
        return self.noisy_train


def split_held_out(images: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train, held out): every k-th image held out, so the split is spread over the folder.
    A noisy folder of one image trains and validates on it (nothing better is possible); a
    clean folder needs two (see MIN_CLEAN)."""
    if len(images) < 2:
        return images, images
    count = min(MAX_HELD_OUT, max(1, round(len(images) * HELD_OUT_SHARE)))
    held = set(np.linspace(0, len(images) - 1, count).round().astype(int).tolist())
    train = [im for i, im in enumerate(images) if i not in held]
    return train, [images[i] for i in sorted(held)]


def prepare_data(
    noisy_dir: Path,
    clean_dir: str | Path | None,
    base: BaseModel,
    noise_kind: str,
    log: Callable[[str], Any],
) -> AdaptData:
    """Read, check and split the folders; estimate the noise. Raises FolderError on bad input."""
    noisy = read_folder(noisy_dir, base.polarity, MAX_IMAGES, MIN_CROP, bilevel=False)
    _log_folder(noisy, log)
    if len(noisy.images) < MIN_NOISY:
        raise FolderError(
            f"{noisy_dir}: {_images(len(noisy.images))} could be used; at least {MIN_NOISY} are "
            "needed: one is held out to judge the training, never trained on"
        )
    originals = noisy.originals()
    estimated = estimate_noise(originals)
    if estimated.clean:
        raise FolderError(
            f"{noisy_dir}: no noise found in these images (sigma {float(estimated.sigma(0.5)):.4f} "
            "at mid-grey): they look clean; give clean images as --clean, beside a noisy folder"
        )
    noise = estimated.restricted(noise_kind) if noise_kind != "auto" else estimated
    log(f"estimated noise: {noise.describe()}")
    noisy_train, noisy_held = split_held_out(noisy.images)
    clean = clean_train = clean_held = None
    warnings: list[str] = []
    if clean_dir is None and (cut := clipped_noise_share(originals)) > CLIPPED_NOISE_SHARE:
        warnings.append(
            f"{noisy_dir}: {100 * cut:.0f}% of pixels are noise cut off at black or white, which "
            "the self-supervised methods cannot model: the result may be worse than the starting "
            "model (kept only where its held-out figure says better); give clean images as --clean"
        )
        log(f"warning: {warnings[-1]}")
    if clean_dir is not None:
        clean = read_folder(Path(clean_dir), base.polarity, MAX_IMAGES, MIN_CROP)
        _log_folder(clean, log)
        if len(clean.images) < MIN_CLEAN:
            raise FolderError(
                f"{clean_dir}: {_images(len(clean.images), 'clean ')} could be used; at least "
                f"{MIN_CLEAN} are needed: one is held out to judge the training, never trained on"
            )
        clean_train, clean_held = split_held_out(clean.images)
        own = estimate_noise(clean.originals())
        warnings = domain_warnings(noisy, clean, own)
        for warning in warnings:
            log(f"warning: {warning}")
    sources = noisy.images + (clean.images if clean is not None else [])
    crop = crop_side(sources, CROP, base.size_multiple, MIN_CROP)
    return AdaptData(
        noisy, noisy_train, noisy_held, clean, clean_train, clean_held, noise, crop, warnings,
        clean_looks_noisy=clean is not None and looks_noisy(own),
    )  # fmt: skip


def clipped_noise_share(images: list[np.ndarray]) -> float:
    """The share of pixels at exactly black or white beside a pixel that is not: noise cut off
    at the ends of the range (MNIST's clipped Gaussian: 44% of its pixels are 0, scattered),
    not paper or ink that is flat at an end (its saturated pixels lie in runs)."""
    sample = images[:: max(1, len(images) // 200)]
    shares = []
    for im in sample:
        ends = (im <= 0.0) | (im >= 1.0)
        beside = np.zeros_like(ends)
        beside[:, 1:] |= ~ends[:, :-1]
        beside[:, :-1] |= ~ends[:, 1:]
        beside[1:, :] |= ~ends[:-1, :]
        beside[:-1, :] |= ~ends[1:, :]
        shares.append(float((ends & beside).mean()))
    return float(np.mean(shares)) if shares else 0.0


def looks_noisy(noise: NoiseModel) -> bool:
    """Whether images said to be clean carry noise: a Gaussian part, or impulses beyond what
    clean strokes' edges read as (NOISY_CLEAN_IMPULSES)."""
    return float(noise.sigma(0.5)) >= CLEAN_SIGMA or noise.impulse >= NOISY_CLEAN_IMPULSES


def _images(count: int, kind: str = "") -> str:
    return f"{count} {kind}image{'' if count == 1 else 's'}"


def _log_folder(folder: ImageFolder, log: Callable[[str], Any]) -> None:
    inverted = f", {folder.inverted} inverted to the model's polarity" if folder.inverted else ""
    log(f"{folder.root}: {_images(len(folder.images))}{inverted}")
    for line in folder.skipped[:5]:
        log(f"  skipped {line}")
    if len(folder.skipped) > 5:
        log(f"  ... and {len(folder.skipped) - 5} more skipped files")


def _statistics(images: list[np.ndarray]) -> dict[str, float]:
    """Brightness, ink share (pixels over 0.5, in the model's polarity) and image side."""
    sample = images[:: max(1, len(images) // 200)]
    return {
        "mean": float(np.mean([im.mean() for im in sample])),
        "ink": float(np.mean([(im > 0.5).mean() for im in sample])),
        "side": float(np.median([np.sqrt(im.size) for im in sample])),
    }


def domain_warnings(
    noisy: ImageFolder, clean: ImageFolder, own: NoiseModel | None = None
) -> list[str]:
    """Why the clean folder may show another domain than the noisy one (empty: none seen);
    `own` is the noise estimated in the clean images themselves (None: estimated here)."""
    own = estimate_noise(clean.originals()) if own is None else own
    a, b = _statistics(noisy.images), _statistics(clean.images)
    out = []
    if abs(a["mean"] - b["mean"]) > 0.2:
        out.append(
            f"{clean.root}: mean brightness {b['mean']:.2f} against {a['mean']:.2f} in "
            f"{noisy.root}: are they images of the same kind?"
        )
    if max(a["ink"], b["ink"]) > 3 * max(min(a["ink"], b["ink"]), 1e-3):
        out.append(
            f"{clean.root}: {100 * b['ink']:.1f}% ink pixels against {100 * a['ink']:.1f}% "
            f"in {noisy.root}: are they images of the same kind?"
        )
    if max(a["side"], b["side"]) > 4 * min(a["side"], b["side"]):
        out.append(
            f"{clean.root}: images of about {b['side']:.0f} px against {a['side']:.0f} px "
            f"in {noisy.root}: the digits may be drawn at another scale"
        )
    if looks_noisy(own):
        out.append(f"{clean.root}: these 'clean' images look noisy ({own.describe()})")
    return out
