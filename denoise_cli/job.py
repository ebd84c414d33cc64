"""What a run does, said once: a frozen, picklable description built by the CLI or the Python API.

A `Job` travels as-is to every place that does work — this process, helper processes, Ray actors
— and each builds its transform (its onnxruntime session) from it. Every setting is named here
and acts in one place downstream; nothing is re-derived on the way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from denoise_cli.core.noise import NOISE_KINDS, add_noise
from denoise_cli.errors import UsageError
from denoise_cli.images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from denoise_cli.transforms import Transform

OUTPUT_FORMATS = ("keep", "png")
INVERT_CHOICES = ("auto", "yes", "no")
#: Which file of a model runs: fp32, its INT8 export beside it, or auto (session.precision_file).
PRECISIONS = ("auto", "fp32", "int8")
#: Providers whose helper processes fork before the parent's session exists (Denoise.forks_early).
EARLY_FORK_PROVIDERS = frozenset({"CPUExecutionProvider", "OpenVINOExecutionProvider"})


@dataclass(frozen=True)
class Denoise:
    """Run a denoising model (a path, or a bundled model's name; None: the default one)."""

    model: str | None = None
    device: str = "auto"
    invert: str = "auto"  # polarity: auto decides per image from the model's metadata
    batch_size: int = 256  # most images per model call (CPU sessions cap it lower by pixels)
    tile: int = 1024  # larger images run in overlapping tiles of at most this size
    precision: str = "auto"  # session.PRECISIONS: fp32, int8, or the faster one per provider

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.invert not in INVERT_CHOICES:
            raise UsageError(f"invert must be one of {INVERT_CHOICES}, got {self.invert!r}")
        if self.batch_size < 1 or self.tile < 32:
            raise UsageError("batch size must be >= 1 and tile >= 32 pixels")

    def build(self, threads: int | None) -> Transform:
        from denoise_cli.transforms import DenoiseTransform

        return DenoiseTransform(self, threads)

    def forks_early(self) -> bool:
        """Whether helper processes may fork before this process builds its session (they then
        build theirs meanwhile): for the CPU and OpenVINO providers, which each process builds
        for itself. GPU providers' helpers are spawned once the session has loaded."""
        from denoise_cli.session import import_onnxruntime, resolve_providers

        try:
            available = import_onnxruntime().get_available_providers()
            return resolve_providers(self.device, available)[0] in EARLY_FORK_PROVIDERS
        except Exception:  # a device that cannot load: build() says why
            return False


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

    def build(self, threads: int | None) -> Transform:
        from denoise_cli.transforms import NoiseTransform

        return NoiseTransform(self)

    def forks_early(self) -> bool:
        return True  # no session: nothing to copy


NOISE_CHOICES = tuple(NOISE_KINDS)


@dataclass(frozen=True)
class Job:
    """One run over a tree: the transform, how outputs are written, and how work is shared out.

    `workers` and `threads` may be left None; `parallelism()` decides them together, once.
    """

    transform: Denoise | Noisify = field(default_factory=Denoise)
    output_format: str = "keep"  # or "png": lossless whatever the input was
    overwrite: bool = False  # redo outputs that exist (never an input: see walk.check_roots)
    files_per_chunk: int = 256  # a worker decodes, transforms and writes a chunk start to end
    workers: int | None = None  # processes (or Ray actors); None: one per CPU
    threads: int | None = None  # onnxruntime threads per worker; None: CPUs / workers
    cpus: int | None = None  # CPUs to share out (Ray: the cluster's share); None: this machine's
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused, per file
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    chunk_pixels: int = 1 << 24  # decoded pixels a worker holds before it runs the model
    model_timeout: float = 600.0  # seconds one model call may take before its files fail

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise UsageError(f"output format must be one of {OUTPUT_FORMATS}")
        for name in ("files_per_chunk", "max_pixels", "chunk_pixels"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name.replace('_', ' ')} must be >= 1")
        if not self.model_timeout > 0:  # NaN too
            raise UsageError(f"model timeout must be > 0 seconds, got {self.model_timeout}")
        if not 1 <= self.jpeg_quality <= 100:
            raise UsageError(f"JPEG quality must be 1-100, got {self.jpeg_quality}")
        for name in ("workers", "threads", "cpus"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1")

    def with_(self, **changes: object) -> Job:
        return replace(self, **changes)

    def parallelism(self, chunks: int | None = None) -> tuple[int, int]:
        """(worker processes, threads per worker) for a run of `chunks` chunks (None: many).

        Decided here only. A run of fewer chunks than CPUs gets fewer workers, each with more
        threads, so a 200-file run on 16 cores is one worker with 16 threads, not one with 1.
        """
        cpus = self.cpus or cpu_count()
        workers = self.workers or cpus
        if chunks is not None:
            workers = max(1, min(workers, chunks))
        threads = self.threads or max(1, cpus // workers)
        return workers, threads


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
