"""Streaming folder processing: decode, batch, transform, encode and write, all overlapped.

Decoding and encoding run in thread pools (Pillow and numpy release the GIL for the heavy
parts), inference runs on the calling thread (onnxruntime releases it too). Only a bounded
window of images is in flight at any time, so memory stays flat however many files there are.
Every result is written atomically; per-file failures are collected and the batch goes on.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from denoise_cli import __version__
from denoise_cli.errors import ImageError
from denoise_cli.images import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_MAX_PIXELS,
    decode,
    encode,
    write_atomic,
)
from denoise_cli.noise import add_noise
from denoise_cli.session import Denoiser, cpu_count
from denoise_cli.walk import Job, Skip, check_roots, plan_jobs


class Transform(Protocol):
    """Turns same-sized (H, W) float images into results of the same size."""

    def batch_limit(self, height: int, width: int) -> int: ...

    def __call__(self, images: list[np.ndarray], jobs: list[Job]) -> list[np.ndarray]: ...


class DenoiseTransform:
    def __init__(self, denoiser: Denoiser, invert: str = "auto", batch_size: int = 256) -> None:
        self.denoiser, self.invert, self.batch_size = denoiser, invert, batch_size

    def batch_limit(self, height: int, width: int) -> int:
        return self.denoiser.batch_limit(height, width, self.batch_size)

    def __call__(self, images: list[np.ndarray], jobs: list[Job]) -> list[np.ndarray]:
        return self.denoiser.denoise(images, self.invert, self.batch_size)


class NoiseTransform:
    """Seeded noise per file: the same file always gets the same noise, in any order."""

    def __init__(self, kind: str, level: float, seed: int = 0) -> None:
        add_noise(np.zeros((1, 1), np.float32), kind, level, 0)  # validate kind and level now
        self.kind, self.level, self.seed = kind, level, seed

    def batch_limit(self, height: int, width: int) -> int:
        return 64

    def __call__(self, images: list[np.ndarray], jobs: list[Job]) -> list[np.ndarray]:
        out = []
        for img, job in zip(images, jobs, strict=True):
            key = int.from_bytes(hashlib.sha256(job.rel.encode()).digest()[:8], "little")
            out.append(
                add_noise(img, self.kind, self.level, np.random.default_rng([self.seed, key]))
            )
        return out


@dataclass
class RunOptions:
    output_format: str = "keep"  # or "png"
    overwrite: bool = False
    batch_size: int = 256
    workers: int = 0  # decode/encode threads; 0: one per CPU
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    read_ahead: int = 0  # images decoded ahead of inference; 0: 4 x batch size


@dataclass
class Failure:
    file: str
    error: str


@dataclass
class RunReport:
    input: str
    output: str
    found: int = 0
    written: int = 0
    failed: int = 0
    skipped_existing: int = 0
    skipped_other: int = 0
    failures: list[Failure] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # first 100 non-image files
    seconds: float = 0.0
    transform_seconds: float = 0.0
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d["images_per_s"] = round(self.images_per_s, 1)
        d["denoise_batch_version"] = __version__
        return {**d, **extra}


Event = dict[str, Any]


def process_tree(
    in_root: Path,
    out_root: Path,
    transform: Transform,
    options: RunOptions | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> RunReport:
    """Apply `transform` to every image under `in_root`, mirroring the tree into `out_root`.

    Ctrl-C (KeyboardInterrupt) stops reading and inferring, writes the results already
    computed (each atomically), marks the report `interrupted` and re-raises.
    """
    options = options or RunOptions()
    check_roots(in_root, out_root)
    workers = options.workers or cpu_count()
    window = options.read_ahead or 4 * options.batch_size
    report = RunReport(str(in_root), str(out_root))
    emit = on_event or (lambda event: None)
    start = time.perf_counter()

    made_dirs: set[Path] = set()
    dirs_lock = threading.Lock()

    def write_one(job: Job, result: np.ndarray, source) -> None:
        data = encode(result, source, options.output_format, options.jpeg_quality)
        parent = job.dst.parent
        if parent not in made_dirs:
            with dirs_lock:
                parent.mkdir(parents=True, exist_ok=True)
                made_dirs.add(parent)
        try:
            write_atomic(data, job.dst)
        except OSError as exc:
            raise ImageError(f"cannot write {job.dst}: {exc.strerror or exc}") from None

    def fail(job: Job, reason: str) -> None:
        report.failed += 1
        report.failures.append(Failure(job.rel, reason))
        emit({"event": "failed", "file": job.rel, "error": reason})

    reads: deque[tuple[Job, Future]] = deque()
    writes: deque[tuple[Job, Future]] = deque()
    buckets: dict[tuple[int, int], list[tuple[Job, np.ndarray, Any]]] = {}
    buffered = 0

    def reap_writes(block_until: int) -> None:
        """Collect finished writes; block while more than `block_until` are outstanding."""
        while writes and (writes[0][1].done() or len(writes) > block_until):
            job, fut = writes.popleft()
            try:
                fut.result()
            except ImageError as exc:
                fail(job, str(exc))
            except Exception as exc:  # an encoder bug must cost one file, not the batch
                fail(job, f"{type(exc).__name__}: {exc}")
            else:
                report.written += 1
                emit({"event": "written", "file": job.rel, "output": str(job.dst)})

    def flush(shape: tuple[int, int]) -> None:
        nonlocal buffered
        items = buckets.pop(shape)
        buffered -= len(items)
        jobs = [job for job, _, _ in items]
        t0 = time.perf_counter()
        try:
            results = transform([img for _, img, _ in items], jobs)
        except Exception as exc:  # e.g. onnxruntime failing on this size: these files fail
            for job in jobs:
                fail(job, f"model failed on a {shape[1]}x{shape[0]} image: {exc}")
            return
        finally:
            report.transform_seconds += time.perf_counter() - t0
        for (job, _, source), result in zip(items, results, strict=True):
            writes.append((job, write_pool.submit(write_one, job, result, source)))

    decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="denoise-decode")
    write_pool = ThreadPoolExecutor(workers, thread_name_prefix="denoise-encode")
    planned = plan_jobs(in_root, out_root, options.output_format)
    exhausted = False
    try:
        while True:
            while not exhausted and len(reads) < window:
                item = next(planned, None)
                if item is None:
                    exhausted = True
                elif isinstance(item, Skip):
                    report.skipped_other += 1
                    if len(report.skipped) < 100:
                        report.skipped.append({"file": str(item.path), "reason": item.reason})
                    emit({"event": "skipped", "file": str(item.path), "reason": item.reason})
                else:
                    report.found += 1
                    if not options.overwrite and item.dst.exists():
                        report.skipped_existing += 1
                        emit({"event": "exists", "file": item.rel, "output": str(item.dst)})
                    else:
                        reads.append(
                            (item, decode_pool.submit(decode, item.src, options.max_pixels))
                        )
            if not reads:
                break
            job, fut = reads.popleft()
            try:
                gray, source = fut.result()
            except ImageError as exc:
                fail(job, str(exc))
                continue
            bucket = buckets.setdefault(gray.shape, [])
            bucket.append((job, gray, source))
            buffered += 1
            if len(bucket) >= transform.batch_limit(*gray.shape):
                flush(gray.shape)
            elif buffered > window:  # many sizes, none filling a batch: run the biggest group
                flush(max(buckets, key=lambda s: len(buckets[s])))
            reap_writes(block_until=window)
        for shape in list(buckets):
            flush(shape)
        reap_writes(block_until=0)
    except KeyboardInterrupt:
        report.interrupted = True
        for _, fut in reads:
            fut.cancel()
        raise
    finally:
        decode_pool.shutdown(wait=True, cancel_futures=True)
        # Results already computed are still written (each atomically): a few milliseconds,
        # and a resumed run does not have to redo them.
        write_pool.shutdown(wait=True)
        if report.interrupted:
            # Count what did get written, so the report says where a rerun will pick up.
            for _job, fut in writes:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    report.written += 1
        report.seconds = time.perf_counter() - start
    return report


def denoise_tree(
    in_dir: str | Path,
    out_dir: str | Path,
    model: str | Path | None = None,
    device: str = "auto",
    invert: str = "auto",
    threads: int | None = None,
    options: RunOptions | None = None,
) -> RunReport:
    """Python API: denoise every image under `in_dir` into `out_dir` (see `process_tree`)."""
    options = options or RunOptions()
    denoiser = Denoiser(model, device=device, threads=threads)
    report = process_tree(
        Path(in_dir), Path(out_dir), DenoiseTransform(denoiser, invert, options.batch_size), options
    )
    report.extra.update(provider=denoiser.provider, model=denoiser.info.path)
    return report
