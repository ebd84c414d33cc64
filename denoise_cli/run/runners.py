"""Running a Job over a tree: plan, share the chunks out, record every file's outcome.

A chunk of files is processed start to finish by one worker: decode every file, run same-sized
images through the transform together, check and encode each result, write it atomically.
`run_job` plans (plan.plan), sizes the run (Job.parallelism), and hands the chunks to a runner;
runners differ only in where chunks execute: this process, a pool of helper processes (each
with its own onnxruntime session, so decoding in one overlaps inference in another with no GIL
contention), or Ray actors (ray_runner). Only a bounded number of chunks is in flight, so memory
stays flat however many files there are. Per-file failures are recorded and the batch goes on.

A chunk runs in a chunk.ChunkWorker wherever it runs; helper processes are a pool.HelperPool.

Signals: SIGINT, SIGTERM and SIGHUP stop the run cleanly, even during a model call: helpers
finish the file they are writing (a large image streamed a band at a time is dropped unwritten
instead, at its next row of tiles), what was done is reported, and `Interrupted` carries the
report up (exit 128 + the signal's number). Helpers also stop when the main process dies, even
by kill -9 (Linux: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from denoise_cli.core.errors import Interrupted, ModelError
from denoise_cli.core.report import Event, Recorder, RunReport
from denoise_cli.model.streamed import Stopped
from denoise_cli.run.chunk import ChunkWorker, ModelTimeout, call_watched, check_results
from denoise_cli.run.job import Job
from denoise_cli.run.pool import HelperPool
from denoise_cli.run.transforms import Denoise, Transform
from denoise_cli.trees.plan import SourceTree, TargetTree, open_trees, plan
from denoise_cli.trees.walk import FileJob

__all__ = ["Run", "Runner", "check_results", "denoise_tree", "run_job", "run_local"]


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One run in progress, as `run_job` set it up for a runner: what to do, where, sized."""

    job: Job
    source: SourceTree
    target: TargetTree
    recorder: Recorder
    stop: Callable[[], bool]  # true once SIGINT or SIGTERM asked the run to stop
    workers: int
    threads: int
    chunk_files: int = 256  # files per chunk, as run_job chose them (choose_chunk_files)


class Runner(Protocol):
    """Executes the planned chunks of a Run (in-process, process pool, Ray actors)."""

    def __call__(self, run: Run, chunks: Iterator[list[FileJob]]) -> None: ...


def run_job(
    job: Job,
    in_location: str | Path,
    out_location: str | Path,
    on_event: Callable[[Event], None] | None = None,
    runner: Runner | None = None,
) -> RunReport:
    """Apply `job` to every image under `in_location`, mirroring the tree into `out_location`.

    Refuses unsafe locations (UsageError) and a bad model or device (ModelError,
    ProviderError) before any image is read. SIGINT or SIGTERM stops the run cleanly and raises
    `Interrupted`, a KeyboardInterrupt carrying the report.
    """
    source, target = open_trees(in_location, out_location)
    report = RunReport(str(in_location), str(out_location))
    recorder = Recorder(report, on_event)
    start = time.perf_counter()
    with stop_on_signals() as stop:
        try:
            wanted, _ = job.parallelism()
            lookahead = 2 * wanted  # what the workers can have queued, and one more
            jobs = plan(source, target, job.output_format, job.overwrite, recorder)
            sample = list(itertools.islice(jobs, SIZE_SAMPLE))
            size = choose_chunk_files(sample, job.max_chunk_files, getattr(source, "size", None))
            head = sample + list(
                itertools.islice(jobs, max(0, (lookahead + 1) * size - len(sample)))
            )
            # A run known to fill fewer chunks than there are CPUs gets fewer workers.
            known = len(head) < max(SIZE_SAMPLE, (lookahead + 1) * size)
            workers, threads = job.parallelism(-(-len(head) // size) if known else None)
            run = Run(job, source, target, recorder, stop, workers, threads, size)
            chunks = _chunks(itertools.chain(head, jobs), size, lookahead)
            (runner or run_local)(run, chunks)
        except KeyboardInterrupt:  # a second signal, or Ctrl-C outside the stop checks
            stop.signal = stop.signal or "SIGINT"
        finally:
            getattr(target, "close", lambda: None)()
    report.seconds = time.perf_counter() - start
    report.unfinished = max(
        0, report.found - report.written - report.failed - report.skipped_existing
    )
    if stop.signal is not None:
        report.interrupted, report.signal = True, stop.signal
        raise Interrupted(report, stop.signal)
    return report


def run_local(run: Run, chunks: Iterator[list[FileJob]]) -> None:
    """This process, plus `workers - 1` helper processes when there are several chunks.

    Helpers fork before this process builds its own session where the transform says that is
    safe (`forks_early`: nothing of the session exists yet to be copied), so they build theirs
    meanwhile; otherwise they start once this process's session has loaded (see start_method).
    """
    # The one provider decision of the run, before any helper exists: they inherit it.
    placed = getattr(run.job.transform, "placed", None)  # a spec without a model has none
    if placed is not None:
        run = replace(run, job=run.job.with_(transform=placed()))
    pool: HelperPool | None = None
    try:
        if run.workers > 1 and sys.platform == "linux" and not run.stop() and _forks_early(run.job):
            pool = HelperPool(run, run.workers - 1, "fork")
            pool.start()
        transform = _build(run)  # a bad model: refused before any file
        if transform is None:  # stopped while the model loaded
            return
        getattr(run.target, "open", lambda: None)()  # OUT, now that there is work for it
        run.recorder.started(transform.describe(), run.workers, run.threads)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    worker = ChunkWorker(transform, run.job, run.source, run.target, run.stop)

    def work_here(files: list[FileJob]) -> None:
        try:
            worker.run(files)
        finally:  # on Ctrl-C too: count what was written
            for outcome in worker.outcomes:
                run.recorder.outcome(outcome)

    if run.workers == 1:
        for chunk in chunks:
            if run.stop():
                return
            work_here(chunk)
        return
    pool = pool or HelperPool(run, run.workers - 1, start_method(transform))
    pool.method = start_method(transform)  # replacements start as the parent is now
    pool.run_chunks(chunks, work_here)


def _build(run: Run) -> Transform | None:
    """The transform, built under the model watchdog: loading runs the model once (a check),
    and a model that never returns must neither hold the run nor ignore a signal."""
    try:
        return call_watched(
            lambda: run.job.transform.build(run.threads), run.job.model_timeout, run.stop
        )
    except ModelTimeout:
        raise ModelError(
            f"the model did not finish its load check within {run.job.model_timeout:g} s "
            "(the model timeout)"
        ) from None
    except Stopped:
        return None


def _forks_early(job: Job) -> bool:
    return bool(getattr(job.transform, "forks_early", lambda: False)())


def start_method(transform: Transform) -> str:
    """How helper processes start. A spawned helper must import numpy and onnxruntime afresh
    before its first file (measured: 208 ms to its first result, against 37 ms forked), which
    on a run of a few seconds is work lost. Fork is used only where it is safe: on Linux, with
    a transform that says so (CPU sessions: each helper builds its own session and never
    touches the parent's; a CUDA context, by contrast, cannot cross a fork)."""
    if sys.platform == "linux" and getattr(transform, "fork_safe", False):
        return "fork"
    return "spawn"


#: Signals that stop a run cleanly, with a report: Ctrl-C, a process manager, a closed terminal.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class StopRequest:
    """Set by the first SIGINT or SIGTERM; runners check it between files and chunks (and
    streamed images between rows of tiles), so the outcome of every file in flight is still
    recorded (a KeyboardInterrupt raised at an arbitrary point could drop a finished chunk's
    outcomes between two statements)."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def __call__(self) -> bool:
        return self.signal is not None

    def on_signal(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt  # a second signal: stop now
        self.signal = signal.Signals(signum).name

    def install(self) -> None:
        """(Re)install the handlers: libraries that install their own (ray.init replaces
        SIGTERM's with sys.exit) are started first, then this is called again."""
        for s in STOP_SIGNALS:
            signal.signal(s, self.on_signal)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM ask the run to stop cleanly; a second one interrupts at once."""
    stop = StopRequest()
    try:
        previous = {s: signal.signal(s, stop.on_signal) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: leave signals to whoever owns them
        yield stop
        return
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


#: Input bytes per chunk, and how many of a run's first files are sized to apply it.
CHUNK_BYTES = 1 << 20
SIZE_SAMPLE = 32


def choose_chunk_files(
    sample: list[FileJob], limit: int, size: Callable[[str], int] | None = None
) -> int:
    """Files per chunk: `limit` for small images, fewer for large ones, from the mean size of
    a run's first files (`size(src)` in bytes: the source tree's; None, as for storage URIs,
    keeps `limit`). Chunks of `limit` files sent 200 640x640 pages (one chunk) to a single
    worker: a chunk is now about CHUNK_BYTES of input, however many files that is."""
    if size is None:
        return limit
    sizes = []
    for file in sample:
        with contextlib.suppress(OSError):  # vanished or unreadable: reported when read
            sizes.append(size(file.src))
    if not sizes:
        return limit
    return max(1, min(limit, CHUNK_BYTES * len(sizes) // max(1, sum(sizes))))


def _chunks(jobs: Iterator[FileJob], size: int, lookahead: int = 4) -> Iterator[list[FileJob]]:
    """Chunks of `size` files, except at the end of a run of more than one chunk: the last
    `lookahead` chunks' worth of files come as chunks a quarter the size.

    Workers are kept two chunks ahead, so whole chunks at the end left one process idle while
    another finished its queue (measured: the parent waited 0.3 s of a 3.9 s run of 10,000
    digits on 2 cores). Planning runs `lookahead` chunks ahead of the work to see the end coming.
    """
    buffer: deque[FileJob] = deque()
    whole = (lookahead + 1) * size
    for file in jobs:
        buffer.append(file)
        if len(buffer) >= whole:
            yield [buffer.popleft() for _ in range(size)]
    piece = size if len(buffer) <= size else max(1, size // 4)
    while buffer:
        yield [buffer.popleft() for _ in range(min(piece, len(buffer)))]


def denoise_tree(
    in_dir: str | Path, out_dir: str | Path, job: Job | None = None, **denoise: Any
) -> RunReport:
    """Python API: denoise every image under `in_dir` into `out_dir`.

    `job` describes the run (denoise_cli.run.job.Job); keyword arguments, if any, set the
    Denoise transform's fields (model, device, invert, batch_size, tile) on the default job.
    """
    job = job or Job()
    if denoise:
        job = job.with_(transform=Denoise(**denoise))
    return run_job(job, in_dir, out_dir)
