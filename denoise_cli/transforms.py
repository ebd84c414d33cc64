"""What a worker does to a group of same-sized images: denoise them, or add noise to them.

Built from the Job's transform description in the process that uses it (each worker process or
Ray actor builds its own onnxruntime session).
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import numpy as np

from denoise_cli.core.noise import add_noise
from denoise_cli.job import Denoise, Noisify
from denoise_cli.session import Denoiser
from denoise_cli.walk import FileJob


class Transform(Protocol):
    """Turns (N, H, W) float images in [0, 1] into results of the same shape.

    `fork_safe`: whether a forked copy of this process may build its own (helper processes then
    start by fork instead of spawn; see runners.start_method).
    """

    fork_safe: bool

    def batch_limit(self, height: int, width: int) -> int: ...

    def __call__(self, images: np.ndarray, jobs: list[FileJob]) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class DenoiseTransform:
    def __init__(self, spec: Denoise, threads: int | None) -> None:
        self.spec = spec
        self.denoiser = Denoiser(
            spec.model, spec.device, threads, tile=spec.tile, precision=spec.precision
        )
        # A CUDA context cannot cross a fork; a CPU session is rebuilt by each helper anyway.
        self.fork_safe = self.denoiser.provider == "CPUExecutionProvider"

    def batch_limit(self, height: int, width: int) -> int:
        return self.denoiser.batch_limit(height, width, self.spec.batch_size)

    def __call__(self, images: np.ndarray, jobs: list[FileJob]) -> np.ndarray:
        return self.denoiser.denoise_group(images, self.spec.invert)

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

    def __call__(self, images: np.ndarray, jobs: list[FileJob]) -> np.ndarray:
        out = np.empty_like(images)
        for i, job in enumerate(jobs):
            key = int.from_bytes(hashlib.sha256(job.rel.encode()).digest()[:8], "little")
            rng = np.random.default_rng([self.spec.seed, key])
            out[i] = add_noise(images[i], self.spec.kind, self.spec.level, rng)
        return out

    def describe(self) -> dict[str, Any]:
        return {"noise": self.spec.kind, "level": self.spec.level, "seed": self.spec.seed}
