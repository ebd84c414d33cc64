"""Streaming folder processing: decode, batch, transform, encode and write.

Work is cut into chunks of files. A chunk is processed start to finish by one worker: decode
every file, run same-sized images through the model together, encode and write each result
atomically. With several workers, chunks run in separate processes (each with its own
onnxruntime session), so decoding in one overlaps inference in another with no GIL contention;
small runs stay in-process. Only a bounded number of chunks is in flight, so memory stays flat
however many files there are. Per-file failures are collected and the batch goes on.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from denoise_cli import __version__
from denoise_cli.core.atomic import write_atomic
from denoise_cli.core.noise import add_noise
from denoise_cli.errors import DenoiseError, ImageError, Interrupted
from denoise_cli.images import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_MAX_PIXELS,
    SourceInfo,
    decode,
    decode_bytes,
    encode,
)
from denoise_cli.session import Denoiser, cpu_count
from denoise_cli.walk import Job, Skip, check_roots, plan_jobs


class Transform(Protocol):
    """Turns same-sized (H, W) float images into results of the same size.

    A transform may set `fork_safe = True` when a forked copy of it may build its own: helper
    processes then start by fork instead of spawn (see _start_method).
    """

    def batch_limit(self, height: int, width: int) -> int: ...

    def __call__(self, images: list[np.ndarray], jobs: list[Job]) -> list[np.ndarray]: ...


class FileIO(Protocol):
    """Where a job's bytes come from and go to, when not local files."""

    def read(self, job: Job) -> bytes: ...

    def write(self, job: Job, data: bytes) -> None: ...


class DenoiseTransform:
    def __init__(self, denoiser: Denoiser, invert: str = "auto", batch_size: int = 256) -> None:
        self.denoiser, self.invert, self.batch_size = denoiser, invert, batch_size
        self.fork_safe = denoiser.provider == "CPUExecutionProvider"  # see _start_method

    def batch_limit(self, height: int, width: int) -> int:
        return self.denoiser.batch_limit(height, width, self.batch_size)

    def __call__(self, images: list[np.ndarray], jobs: list[Job]) -> list[np.ndarray]:
        return self.denoiser.denoise(images, self.invert, self.batch_size)


def make_denoise_transform(
    model: str | Path | None,
    device: str = "auto",
    threads: int | None = None,
    invert: str = "auto",
    batch_size: int = 256,
    tile: int = 512,
) -> DenoiseTransform:
    """Picklable recipe for a DenoiseTransform: worker processes build their own from it."""
    return DenoiseTransform(Denoiser(model, device, threads, tile=tile), invert, batch_size)


class NoiseTransform:
    """Seeded noise per file: the same file always gets the same noise, in any order."""

    fork_safe = True

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
    batch_size: int = 256  # also the number of files per chunk
    workers: int = 0  # processes; 0: one per CPU
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    chunk_pixels: int = 1 << 24  # decoded pixels a worker holds before it runs the model


@dataclass(frozen=True)
class Outcome:
    rel: str
    output: str
    error: str | None = None  # None: written


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
    workers: int = 1
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


# --- one chunk, start to finish (in-process or in a worker) -----------------------------------

_made_dirs: set[str] = set()  # per process; chunks run one at a time in each


def _write_result(
    job: Job, result: np.ndarray, source: SourceInfo, options: RunOptions, io: FileIO | None
) -> None:
    data = encode(result, source, options.output_format, options.jpeg_quality)
    if io is not None:
        try:
            io.write(job, data)
        except OSError as exc:
            raise ImageError(f"cannot write {job.dst}: {exc}") from None
        return
    try:
        folder = os.path.dirname(job.dst)
        if folder not in _made_dirs:  # one mkdir per folder, not per file
            os.makedirs(folder, exist_ok=True)
            _made_dirs.add(folder)
        write_atomic(data, job.dst)
    except OSError as exc:
        raise ImageError(f"cannot write {job.dst}: {exc.strerror or exc}") from None


def process_chunk(
    jobs: list[Job],
    transform: Transform,
    options: RunOptions,
    outcomes: list[Outcome],
    should_stop: Callable[[], bool] = lambda: False,
    io: FileIO | None = None,
) -> None:
    """Decode, transform and write `jobs`, appending one Outcome per finished file.

    `io` reads and writes somewhere other than local paths (the Ray runner's URIs).
    """
    groups: dict[tuple[int, int], list[tuple[Job, np.ndarray, SourceInfo]]] = {}
    held = 0

    def run_group(shape: tuple[int, int]) -> None:
        nonlocal held
        items = groups.pop(shape)
        held -= len(items) * shape[0] * shape[1]
        try:
            results = transform([img for _, img, _ in items], [job for job, _, _ in items])
        except Exception as exc:  # e.g. onnxruntime failing on this size: these files fail
            for job, _, _ in items:
                outcomes.append(Outcome(job.rel, job.dst, f"model failed: {exc}"))
            return
        for (job, _, source), result in zip(items, results, strict=True):
            if should_stop():
                return
            try:
                _write_result(job, result, source, options, io)
            except ImageError as exc:
                outcomes.append(Outcome(job.rel, job.dst, str(exc)))
            except Exception as exc:  # an encoder bug must cost one file, not the batch
                outcomes.append(Outcome(job.rel, job.dst, f"{type(exc).__name__}: {exc}"))
            else:
                outcomes.append(Outcome(job.rel, job.dst))

    for job in jobs:
        if should_stop():
            return
        try:
            if io is None:
                gray, source = decode(job.src, options.max_pixels)
            else:
                suffix = os.path.splitext(job.src)[1]
                gray, source = decode_bytes(io.read(job), suffix, options.max_pixels)
        except OSError as exc:
            outcomes.append(Outcome(job.rel, job.dst, f"cannot read: {exc}"))
            continue
        except ImageError as exc:
            outcomes.append(Outcome(job.rel, job.dst, str(exc)))
            continue
        group = groups.setdefault(gray.shape, [])
        group.append((job, gray, source))
        held += gray.size
        if len(group) >= transform.batch_limit(*gray.shape):
            run_group(gray.shape)
        elif held > options.chunk_pixels:  # many sizes or large images: bound the memory
            run_group(max(groups, key=lambda s: len(groups[s]) * s[0] * s[1]))
    for shape in list(groups):
        if should_stop():
            return
        run_group(shape)


# --- worker processes --------------------------------------------------------------------------

MAX_POOL_RESTARTS = 3
LOST_TO_CRASH = "a worker process died while this file's chunk was in flight; rerun to retry"

_worker: dict[str, Any] = {}


def _init_worker(make_transform: Callable[[], Transform], options: RunOptions, stop) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells us
    _worker.update(transform=make_transform(), options=options, stop=stop)


def _run_chunk_in_worker(jobs: list[Job]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    process_chunk(jobs, _worker["transform"], _worker["options"], outcomes, _worker["stop"].is_set)
    return outcomes


# --- the whole tree ----------------------------------------------------------------------------


Event = dict[str, Any]


def process_tree(
    in_root: Path,
    out_root: Path,
    make_transform: Callable[[], Transform],
    options: RunOptions | None = None,
    on_event: Callable[[Event], None] | None = None,
    transform: Transform | None = None,
) -> RunReport:
    """Apply a transform to every image under `in_root`, mirroring the tree into `out_root`.

    `make_transform` must be picklable (a module-level function or a functools.partial of
    one): worker processes call it to build their own transform. `transform`, if given, is the
    already-built one for in-process work. Ctrl-C (KeyboardInterrupt) stops the workers after
    the file each is writing and raises `Interrupted`, a KeyboardInterrupt carrying the report.
    """
    options = options or RunOptions()
    check_roots(in_root, out_root)
    transform = transform or make_transform()
    workers = options.workers or cpu_count()
    report = RunReport(str(in_root), str(out_root), workers=1)
    emit = on_event or (lambda event: None)
    start = time.perf_counter()

    def record(outcome: Outcome) -> None:
        if outcome.error is None:
            report.written += 1
            emit({"event": "written", "file": outcome.rel, "output": outcome.output})
        else:
            report.failed += 1
            report.failures.append(Failure(outcome.rel, outcome.error))
            emit({"event": "failed", "file": outcome.rel, "error": outcome.error})

    chunks = _chunks(pending_jobs(in_root, out_root, options, report, emit), options.batch_size)
    head = list(itertools.islice(chunks, 2))
    try:
        if len(head) < 2 or workers == 1:
            # A small run (or one worker asked for): no process start-up to pay.
            for chunk in itertools.chain(head, chunks):
                _run_local(chunk, transform, options, record)
        else:
            report.workers = workers
            all_chunks = itertools.chain(head, chunks)
            _run_pool(all_chunks, transform, make_transform, options, workers, record)
    except KeyboardInterrupt:
        report.interrupted = True
        report.seconds = time.perf_counter() - start
        raise Interrupted(report) from None
    report.seconds = time.perf_counter() - start
    return report


def _run_local(chunk: list[Job], transform: Transform, options: RunOptions, record) -> None:
    outcomes: list[Outcome] = []
    try:
        process_chunk(chunk, transform, options, outcomes)
    finally:  # on Ctrl-C too: count what was written
        for outcome in outcomes:
            record(outcome)


def _run_pool(
    chunks: Iterator[list[Job]],
    transform: Transform,
    make_transform: Callable[[], Transform],
    options: RunOptions,
    workers: int,
    record: Callable[[Outcome], None],
) -> None:
    """This process plus `workers - 1` helper processes, each taking whole chunks.

    The parent works too: it keeps every helper two chunks ahead and processes the next chunk
    itself meanwhile, which saves one process start-up and its share of the traffic.
    """
    ctx = multiprocessing.get_context(_start_method(transform))
    stop = ctx.Event()
    helpers = workers - 1

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            helpers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(make_transform, options, stop),
        )

    pool = new_pool()
    restarts = 0
    inflight: deque[tuple[list[Job], Future]] = deque()

    def collect(chunk: list[Job], fut: Future) -> None:
        nonlocal pool, restarts
        try:
            outcomes = fut.result()
        except BrokenProcessPool:
            # A helper died (a crashing decoder, the OOM killer...): its pool and every chunk
            # in flight are lost. Those files fail (a rerun retries them); the run goes on.
            lost = [chunk, *(c for c, _ in inflight)]
            inflight.clear()
            for job in itertools.chain.from_iterable(lost):
                record(Outcome(job.rel, job.dst, LOST_TO_CRASH))
            restarts += 1
            if restarts > MAX_POOL_RESTARTS:
                raise DenoiseError(
                    f"worker processes died {restarts} times; stopping (rerun with --workers 1 "
                    "to see the error in this process)"
                ) from None
            pool.shutdown(wait=False, cancel_futures=True)
            pool = new_pool()
            return
        for outcome in outcomes:
            record(outcome)

    try:
        for chunk in chunks:
            if len(inflight) < 2 * helpers:
                inflight.append((chunk, pool.submit(_run_chunk_in_worker, chunk)))
            else:
                _run_local(chunk, transform, options, record)
            while inflight and inflight[0][1].done():
                collect(*inflight.popleft())
        while inflight:
            collect(*inflight.popleft())
    except KeyboardInterrupt:
        stop.set()  # helpers finish the file they are writing, then return what they did
        for _, fut in inflight:
            if fut.cancel():
                continue
            try:
                for outcome in fut.result(timeout=60):
                    record(outcome)
            except Exception:  # a helper lost during shutdown has nothing to report
                pass
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _start_method(transform: Transform) -> str:
    """How helper processes start. A spawned helper must import numpy and onnxruntime afresh
    before its first file (measured: 208 ms to its first result, against 37 ms forked), which
    on a run of a few seconds is work lost. Fork is used only where it is safe: on Linux, with
    a transform that says so (CPU sessions: each helper builds its own session and never
    touches the parent's; a CUDA context, by contrast, cannot cross a fork)."""
    if sys.platform == "linux" and getattr(transform, "fork_safe", False):
        return "fork"
    return "spawn"


def pending_jobs(
    in_root: Path, out_root: Path, options: RunOptions, report: RunReport, emit
) -> Iterator[Job]:
    """Jobs still to do; skipped and already-done files are counted on the way."""
    listed_dir: str | None = None
    existing: set[str] = set()
    for item in plan_jobs(in_root, out_root, options.output_format):
        if isinstance(item, Skip):
            report.skipped_other += 1
            if len(report.skipped) < 100:
                report.skipped.append({"file": str(item.path), "reason": item.reason})
            emit({"event": "skipped", "file": str(item.path), "reason": item.reason})
            continue
        report.found += 1
        if not options.overwrite:
            folder, name = os.path.split(item.dst)
            if folder != listed_dir:
                # Jobs come folder by folder: one listing per output folder, not a stat per file.
                listed_dir = folder
                try:
                    existing = set(os.listdir(folder))
                except OSError:
                    existing = set()
            if name in existing:
                report.skipped_existing += 1
                emit({"event": "exists", "file": item.rel, "output": item.dst})
                continue
        yield item


def _chunks(jobs: Iterator[Job], size: int) -> Iterator[list[Job]]:
    chunk: list[Job] = []
    for job in jobs:
        chunk.append(job)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
    make = partial(make_denoise_transform, model, device, threads, invert, options.batch_size)
    transform = make()
    report = process_tree(Path(in_dir), Path(out_dir), make, options, transform=transform)
    report.extra.update(provider=transform.denoiser.provider, model=transform.denoiser.info.path)
    return report
