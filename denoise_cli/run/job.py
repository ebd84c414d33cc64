"""What a run does, said once: a frozen, picklable description built by the CLI or the Python API.

A `Job` travels as-is to every place that does work — this process, helper processes, Ray actors
— and each builds its transform (its onnxruntime session) from it. Every setting is named here
and acts in one place downstream; nothing is re-derived on the way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from denoise_cli.core.errors import UsageError
from denoise_cli.files.images import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_PIXELS
from denoise_cli.run.transforms import Denoise, Noisify

OUTPUT_FORMATS = ("keep", "png")


@dataclass(frozen=True)
class Job:
    """One run over a tree: the transform, how outputs are written, and how work is shared out.

    `workers` and `threads` may be left None; `parallelism()` decides them together, once.
    """

    transform: Denoise | Noisify = field(default_factory=Denoise)
    output_format: str = "keep"  # or "png": lossless whatever the input was
    overwrite: bool = False  # redo outputs that exist (never an input: see walk.check_roots)
    # The most files in a chunk, which a worker decodes, transforms and writes start to end
    # (runners.choose_chunk_files makes chunks of large files smaller).
    max_chunk_files: int = 256
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
        for name in ("max_chunk_files", "max_pixels", "chunk_pixels"):
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
