"""What a worker does to a group of same-sized images: denoise them, or add noise to them.

`Denoise` and `Noisify` are the frozen, picklable descriptions a Job carries; each process that
works (worker process, Ray actor) calls `build` to make the transform itself (with its own
onnxruntime session).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from denoise_cli.core.errors import UsageError
from denoise_cli.core.noise import add_noise
from denoise_cli.model.placement import PRECISIONS, Placement, place
from denoise_cli.model.polarity import DECIDED, INVERT_CHOICES, inversion_from_samples
from denoise_cli.model.session import Denoiser, check_model_here, check_tile
from denoise_cli.model.tiling import bordered
from denoise_cli.trees.walk import FileJob


class Transform(Protocol):
    """Turns (N, H, W) float images in [0, 1] into results of the same shape.

    `fork_safe`: whether a forked copy of this process may build its own (helper processes then
    start by fork instead of spawn; see runners.start_method).
    """

    fork_safe: bool

    def batch_limit(self, height: int, width: int) -> int: ...

    def streams(self, height: int, width: int) -> bool:
        """Whether an image of this size goes a band of rows at a time (then the transform is
        a StreamingTransform)."""
        ...

    def __call__(self, images: np.ndarray, jobs: list[FileJob]) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class StreamingTransform(Transform, Protocol):
    """A Transform that can also take an image a band of rows at a time (see streamed)."""

    def samples_needed(self) -> bool:
        """Whether `denoise_rows` uses the polarity samples (else they are not gathered)."""
        ...

    def denoise_rows(
        self, height: int, width: int, samples: np.ndarray, rows: Callable[[int, int], np.ndarray]
    ) -> Iterator[np.ndarray]:
        """The image's result, top to bottom, from `rows(y0, y1)` of its gray pixels."""
        ...


#: Images above this many pixels stream (when they tile): 4.2 MP, a 2048x2048 page, whose
#: whole-image path peaks at ~20 bytes a pixel.
STREAM_MIN_PIXELS = 1 << 22


@dataclass(frozen=True)
class Denoise:
    """Run a denoising model (a path, or a bundled model's name; None: the default one)."""

    model: str | None = None
    device: str = "auto"
    invert: str = "auto"  # polarity: auto decides per image from the model's metadata
    batch_size: int = 256  # most images per model call (a pixel budget caps it: batch_limit)
    tile: int = 1024  # larger images run in overlapping tiles of at most this size
    precision: str = "auto"  # placement.PRECISIONS: fp32, int8, or the faster one per provider
    placement: Placement | None = None  # decided once per run (`placed`), then carried as is

    def __post_init__(self) -> None:
        if self.placement is not None and not self.placement.agrees(
            self.model, self.device, self.precision
        ):
            raise UsageError("a Denoise's placement must be its own: call placed() again")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.invert not in INVERT_CHOICES:
            raise UsageError(f"invert must be one of {INVERT_CHOICES}, got {self.invert!r}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size!r}")
        check_tile(self.tile)

    def build(self, threads: int | None) -> DenoiseTransform:
        return DenoiseTransform(self, threads)

    def placed(self) -> Denoise:
        """This spec with its Placement decided (once per run, before any helper starts:
        helpers and actors then load what it says); refuses a missing model or device."""
        if self.placement is not None:
            return self
        return replace(self, placement=place(self.model, self.device, self.precision))

    def forks_early(self) -> bool:
        """Whether helper processes may fork before this process builds its session (they then
        build theirs meanwhile); known once placed."""
        return self.placement is not None and self.placement.forks_early

    def describe_model(self) -> dict[str, Any]:
        """What the run's start reports, from the model checked on this CPU alone (a Ray
        driver may lack the device its actors have)."""
        info = check_model_here(self.model, self.device, self.precision)
        provider = f"each actor's own (device {self.device})"
        return {"model": info.summary(), "provider": provider, "invert": self.invert}


@dataclass(frozen=True)
class Noisify:
    """Add seeded noise: the same file always gets the same noise, in any order."""

    kind: str = "gaussian"
    level: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise UsageError(f"seed must be >= 0, got {self.seed}")
        try:  # checks both, on black and white (a Poisson peak of 1e30 fails only on ink)
            add_noise(np.array([[0.0, 1.0]], np.float32), self.kind, self.level, 0)
        except UsageError:
            raise
        except ValueError as exc:
            raise UsageError(
                f"noise level {self.level:g} is out of range for {self.kind} ({exc})"
            ) from None

    def build(self, threads: int | None) -> NoiseTransform:
        return NoiseTransform(self)

    def placed(self) -> Noisify:
        return self  # no model: nothing to place

    def describe_model(self) -> dict[str, Any]:
        return NoiseTransform(self).describe()

    def forks_early(self) -> bool:
        return True  # no session: nothing to copy


class DenoiseTransform:
    def __init__(self, spec: Denoise, threads: int | None) -> None:
        self.spec = spec
        self.denoiser = Denoiser(
            spec.model,
            spec.device,
            threads,
            tile=spec.tile,
            precision=spec.precision,
            placement=spec.placement,
        )
        self.fork_safe = self.denoiser.placement.forks_after_load

    def batch_limit(self, height: int, width: int) -> int:
        return self.denoiser.batch_limit(height, width, self.spec.batch_size)

    def __call__(self, images: np.ndarray, jobs: list[FileJob]) -> np.ndarray:
        return self.denoiser.denoise_group(images, self.spec.invert)

    def streams(self, height: int, width: int) -> bool:
        # Images that tile anyway and whose float copies would pass ~64 MB each; never a strip
        # thin enough for the small-image rules (left alone or resampled: whole-image only).
        return (
            height * width > STREAM_MIN_PIXELS
            and min(height, width) >= self.denoiser.resample_below
            and not self.denoiser.accepts_whole(height, width)
        )

    def samples_needed(self) -> bool:
        return self.spec.invert == "auto" and self.denoiser.info.polarity in DECIDED

    def denoise_rows(
        self, height: int, width: int, samples: np.ndarray, rows: Callable[[int, int], np.ndarray]
    ) -> Iterator[np.ndarray]:
        polarity = self.denoiser.info.polarity
        flip = bool(inversion_from_samples(samples[None], self.spec.invert, polarity)[0])
        border = self.denoiser.border
        if samples.size:  # none gathered: the border (always cheap on a page that streams)
            model_side = 1.0 - samples if flip else samples
            border *= bool(bordered(model_side[None], height, width, border)[0])
        if not flip:
            yield from self.denoiser.denoise_rows(height, width, rows, border)
            return

        def inverted(y0: int, y1: int) -> np.ndarray:
            return 1.0 - rows(y0, y1)

        for band in self.denoiser.denoise_rows(height, width, inverted, border):
            yield 1.0 - band

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.denoiser.info.summary(),
            "provider": self.denoiser.provider,
            "invert": self.spec.invert,
        }


class NoiseTransform:
    """Seeded per file (by its path relative to the input root): reruns and any order agree."""

    fork_safe = True

    def __init__(self, spec: Noisify) -> None:
        self.spec = spec

    def batch_limit(self, height: int, width: int) -> int:
        return 64

    def streams(self, height: int, width: int) -> bool:
        return False  # per-file noise is drawn for the whole image at once

    def __call__(self, images: np.ndarray, jobs: list[FileJob]) -> np.ndarray:
        out = np.empty_like(images)
        for i, job in enumerate(jobs):
            key = int.from_bytes(hashlib.sha256(job.rel.encode()).digest()[:8], "little")
            rng = np.random.default_rng([self.spec.seed, key])
            out[i] = add_noise(images[i], self.spec.kind, self.spec.level, rng)
        return out

    def describe(self) -> dict[str, Any]:
        return {"noise": self.spec.kind, "level": self.spec.level, "seed": self.spec.seed}
