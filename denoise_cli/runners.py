"""Running a Job over a tree: plan, share the chunks out, record every file's outcome.

A chunk of files is processed start to finish by one worker: decode every file, run same-sized
images through the transform together, check and encode each result, write it atomically.
`run_job` plans (plan.plan), sizes the run (Job.parallelism), and hands the chunks to a runner;
runners differ only in where chunks execute: this process, a pool of helper processes (each
with its own onnxruntime session, so decoding in one overlaps inference in another with no GIL
contention), or Ray actors (ray_runner). Only a bounded number of chunks is in flight, so memory
stays flat however many files there are. Per-file failures are recorded and the batch goes on.

Signals: SIGINT and SIGTERM both stop the run cleanly: helpers finish the file they are writing
(a large image streamed a band at a time is dropped unwritten instead, at its next row of tiles),
what was done is reported, and `Interrupted` carries the report up (exit 130 or 143). Helpers
also stop when the main process dies, even by kill -9 (Linux: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from denoise_cli.errors import NOT_FINITE, DenoiseError, ImageError, Interrupted, first_line
from denoise_cli.images import (
    HeldImage,
    SourceInfo,
    decode_bytes,
    encode,
    output_depth,
    quantize,
    stores_float,
)
from denoise_cli.job import Job
from denoise_cli.plan import SourceTree, TargetTree, open_trees, plan
from denoise_cli.report import Event, Outcome, Recorder, RunReport
from denoise_cli.streamed import (
    HeldBands,
    PngBands,
    Stopped,
    denoised_held,
    denoised_png,
    streamable,
)
from denoise_cli.transforms import Denoise, StreamingTransform, Transform
from denoise_cli.walk import FileJob

MAX_POOL_RESTARTS = 3
LOST_TO_CRASH = "a worker process died while this file's chunk was in flight; rerun to retry"


# --- one chunk, start to finish (in any worker) ---------------------------------------------


def check_results(results: np.ndarray, count: int, shape: tuple[int, int]) -> list[str | None]:
    """Why each of a group's `count` outputs cannot be right (None: it can). Such outputs are
    failures, never files: a model returning NaN would write black images, one returning
    another size a wrong-sized image. One vectorized pass per group: per image, the two
    checks cost ~10 us, a few percent of a 28x28 digit's whole trip."""
    results = np.asarray(results)
    if results.ndim != 3 or len(results) != count or results.shape[1:] != shape:
        got = results.shape[1:][::-1] if results.ndim == 3 else results.shape
        size = "x".join(str(v) for v in got)
        return [
            f"model returned a {size} image for a {shape[1]}x{shape[0]} input; nothing written"
        ] * count
    finite = np.isfinite(results.reshape(count, -1)).all(axis=1)
    return [None if ok else NOT_FINITE for ok in finite.tolist()]


def process_streamed(
    source: PngBands | HeldBands,
    file: FileJob,
    transform: StreamingTransform,
    job: Job,
    target: TargetTree,
    should_stop: Callable[[], bool],
) -> Outcome | None:
    """One large image denoised a band at a time (see streamed); None when the run stopped
    mid-file (nothing written: the rerun does it). A SIGINT/SIGTERM is acted on between rows
    of tiles, not only between files: one large file can take a minute."""

    def denoise_rows(
        samples: np.ndarray, rows: Callable[[int, int], np.ndarray]
    ) -> Iterator[np.ndarray]:
        try:
            yield from transform.denoise_rows(source.height, source.width, samples, rows)
        except (ImageError, Stopped):  # rows that cannot be decoded, a stop: as they are
            raise
        except Exception as exc:  # onnxruntime failing on this tile size, say
            raise ImageError(f"model failed: {exc}") from None

    needed = transform.samples_needed()
    try:
        if isinstance(source, PngBands):
            data: bytes | Iterator[bytes] = denoised_png(source, denoise_rows, needed, should_stop)
        else:
            data = denoised_held(
                source, denoise_rows, job.output_format, job.jpeg_quality, needed, should_stop
            )
        target.write(file.dst, data)
    except Stopped:
        return None
    except ImageError as exc:
        return Outcome(file.rel, file.dst, str(exc))
    except Exception as exc:  # an encoder bug must cost one file, not the batch
        return Outcome(file.rel, file.dst, f"{type(exc).__name__}: {exc}")
    return Outcome(file.rel, file.dst)


def process_chunk(
    jobs: list[FileJob],
    transform: Transform,
    job: Job,
    source: SourceTree,
    target: TargetTree,
    outcomes: list[Outcome],
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Decode, transform and write `jobs`, appending one Outcome per finished file."""
    groups: dict[tuple[int, int], list[tuple[FileJob, np.ndarray, SourceInfo]]] = {}
    held = 0

    def run_group(shape: tuple[int, int]) -> None:
        nonlocal held
        items = groups.pop(shape)
        held -= len(items) * shape[0] * shape[1]
        try:
            results = transform(np.stack([img for _, img, _ in items]), [f for f, _, _ in items])
        except Exception as exc:  # e.g. onnxruntime failing on this size: these files fail
            for file, _, _ in items:
                outcomes.append(Outcome(file.rel, file.dst, f"model failed: {exc}"))
            return
        problems = check_results(results, len(items), shape)
        quantized: dict[str, np.ndarray] = {}
        if any(p is None for p in problems):
            # Clipped and rounded once for the group, not per image in encode (~13 us a digit).
            results = np.clip(results, 0.0, 1.0)
            fmt = job.output_format
            depths = {output_depth(i) for _, _, i in items if not stores_float(i, fmt)}
            with np.errstate(invalid="ignore"):  # a NaN image among them fails, unwritten
                quantized = {depth: quantize(results, depth) for depth in depths}
        for i, ((file, _, info), problem) in enumerate(zip(items, problems, strict=True)):
            if should_stop():
                return
            if problem is not None:
                outcomes.append(Outcome(file.rel, file.dst, problem))
                continue
            try:
                group_pixels = quantized.get(output_depth(info))
                pixels = None if group_pixels is None else group_pixels[i]
                data = encode(results[i], info, job.output_format, job.jpeg_quality, True, pixels)
                target.write(file.dst, data)
            except ImageError as exc:
                outcomes.append(Outcome(file.rel, file.dst, str(exc)))
            except Exception as exc:  # an encoder bug must cost one file, not the batch
                outcomes.append(Outcome(file.rel, file.dst, f"{type(exc).__name__}: {exc}"))
            else:
                outcomes.append(Outcome(file.rel, file.dst))

    for file in jobs:
        if should_stop():
            return
        try:
            data = source.read(file.src)
            suffix = os.path.splitext(file.src)[1]
            decoded = streamable(data, suffix, job.max_pixels, transform.streams)
            if decoded is None:
                decoded = decode_bytes(data, suffix, job.max_pixels, transform.streams)
            if isinstance(decoded, PngBands | HeldImage):
                band_source = decoded if isinstance(decoded, PngBands) else HeldBands(decoded)
                del data, decoded  # a PNG's bytes live on in band_source; a held image's not
                streaming = cast(StreamingTransform, transform)  # streams() said it is one
                outcome = process_streamed(band_source, file, streaming, job, target, should_stop)
                del band_source  # not held while the next file decodes
                if outcome is not None:
                    outcomes.append(outcome)
                continue
            gray, info = decoded
        except FileNotFoundError:
            outcomes.append(Outcome(file.rel, file.dst, "cannot read: file vanished"))
            continue
        except OSError as exc:
            outcomes.append(Outcome(file.rel, file.dst, f"cannot read: {exc.strerror or exc}"))
            continue
        except ImageError as exc:
            outcomes.append(Outcome(file.rel, file.dst, str(exc)))
            continue
        group = groups.setdefault(gray.shape, [])
        group.append((file, gray, info))
        held += gray.size
        if len(group) >= transform.batch_limit(*gray.shape):
            run_group(gray.shape)
        elif held > job.chunk_pixels:  # many sizes or large images: bound the memory
            run_group(max(groups, key=lambda s: len(groups[s]) * s[0] * s[1]))
    for shape in list(groups):
        if should_stop():
            return
        run_group(shape)


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
    early: Helpers | None = None
    try:
        if run.workers > 1 and sys.platform == "linux" and not run.stop() and _forks_early(run.job):
            early = Helpers(run, "fork")
            early.start()
        transform = run.job.transform.build(run.threads)  # a bad model: refused before any file
        run.recorder.started(transform.describe(), run.workers, run.threads)
    except BaseException:
        if early is not None:
            early.close()
        raise
    if run.workers == 1:
        for chunk in chunks:
            if run.stop():
                return
            _run_here(run, chunk, transform)
        return
    _run_pool(run, chunks, transform, early or Helpers(run, start_method(transform)))


def _forks_early(job: Job) -> bool:
    return bool(getattr(job.transform, "forks_early", lambda: False)())


def _run_here(run: Run, chunk: list[FileJob], transform: Transform) -> None:
    outcomes: list[Outcome] = []
    try:
        process_chunk(chunk, transform, run.job, run.source, run.target, outcomes, run.stop)
    finally:  # on Ctrl-C too: count what was written
        for outcome in outcomes:
            run.recorder.outcome(outcome)


# --- helper processes -------------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _init_worker(job: Job, threads: int, source, target, stop, parent: int) -> None:
    """A helper's set-up. Its transform is built with its first chunk, not here: a helper may
    fork before the parent has loaded the model, and only a chunk says the parent did (a bad
    model is then the parent's one-line error, not one onnxruntime error per process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles signals and tells us
    signal.signal(signal.SIGTERM, _on_term_in_helper)
    _worker.update(stop=stop, busy=False, parent=parent, transform=None, threads=threads)
    _die_with_parent(parent)
    _worker.update(job=job, source=source, target=target)


class HelperFailed(Exception):
    """A helper could not build its transform; args[0] is the one-line reason."""


def _helper_transform() -> Transform:
    w = _worker
    if w["transform"] is None:
        try:
            w["transform"] = w["job"].transform.build(w["threads"])
        except Exception as exc:  # the parent built the same: memory, a file changed...
            raise HelperFailed(first_line(exc)) from None
    return w["transform"]


def _ready() -> None:
    """A no-op task: submitting it makes the pool start its processes now."""


def _on_term_in_helper(signum: int, frame: object) -> None:
    """Finish the file being written, then stop; the parent collects what was done. An idle
    helper whose parent died leaves at once (it would otherwise wait for work forever)."""
    if not _worker.get("busy") and os.getppid() != _worker.get("parent"):
        os._exit(0)
    _worker["stop"].set()


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies (kill -9 included): the handler above
    then stops after the current file instead of writing on for tens of seconds."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _run_chunk_in_worker(jobs: list[FileJob]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    w = _worker
    transform = _helper_transform()
    w["busy"] = True
    try:
        process_chunk(
            jobs, transform, w["job"], w["source"], w["target"], outcomes, w["stop"].is_set
        )
    finally:
        w["busy"] = False
    if os.getppid() != w["parent"]:  # orphaned: nobody will read these outcomes
        os._exit(0)
    return outcomes


class Helpers:
    """The `workers - 1` helper processes of a Run: how they start, the event that stops them,
    and a fresh pool after a crash."""

    def __init__(self, run: Run, method: str) -> None:
        self.run = run
        self.pool = self._pool(method)

    def _pool(self, method: str) -> ProcessPoolExecutor:
        run = self.run
        ctx = multiprocessing.get_context(method)
        self.stop = ctx.Event()  # set: helpers finish the file in hand, then return
        return ProcessPoolExecutor(
            run.workers - 1,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(run.job, run.threads, run.source, run.target, self.stop, os.getpid()),
        )

    def start(self) -> None:
        """Start the processes now (a pool starts them at its first task otherwise)."""
        self.pool.submit(_ready)

    def restart(self, transform: Transform) -> None:
        """A new pool after a crash, started the way start_method says for the parent as it
        is now: its session exists, and an OpenVINO or GPU one must not be forked."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._pool(start_method(transform))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _run_pool(
    run: Run, chunks: Iterator[list[FileJob]], transform: Transform, helpers: Helpers
) -> None:
    """This process and `workers - 1` helpers, each taking whole chunks.

    The parent works too: it keeps every helper two chunks ahead and processes the next chunk
    itself meanwhile, which saves one process start-up and its share of the traffic.
    """
    n_helpers = run.workers - 1
    recorder, stop = run.recorder, run.stop
    restarts = 0
    inflight: deque[tuple[list[FileJob], Future]] = deque()

    def crashed(lost: list[list[FileJob]], reason: str) -> None:
        """A helper died (a crashing decoder, the OOM killer...) or could not load the model:
        its pool and every chunk in flight are lost. Those files fail with `reason` (a rerun
        retries them); the run goes on with a new pool, a few times at most."""
        nonlocal restarts
        lost = lost + [c for c, _ in inflight]
        inflight.clear()
        for file in itertools.chain.from_iterable(lost):
            recorder.outcome(Outcome(file.rel, file.dst, reason))
        restarts += 1
        if restarts > MAX_POOL_RESTARTS:
            raise DenoiseError(
                f"worker processes failed {restarts} times ({reason}); stopping (run with one "
                "worker to see the error in this process)"
            )
        helpers.restart(transform)

    def submit(chunk: list[FileJob]) -> None:
        try:
            inflight.append((chunk, helpers.pool.submit(_run_chunk_in_worker, chunk)))
        except BrokenProcessPool:  # a helper died before this chunk was sent (while starting)
            crashed([], LOST_TO_CRASH)
            _run_here(run, chunk, transform)

    def collect(chunk: list[FileJob], fut: Future) -> None:
        try:
            outcomes = fut.result()
        except HelperFailed as exc:
            crashed([chunk], f"a worker process could not load the model: {exc.args[0]}")
            return
        except BrokenProcessPool:
            if stop():  # helpers stopped by the same signal: unfinished work, not failures
                inflight.clear()
                return
            crashed([chunk], LOST_TO_CRASH)
            return
        for outcome in outcomes:
            recorder.outcome(outcome)

    def wind_down() -> None:
        helpers.stop.set()  # helpers finish (or drop) the file in hand, then return what they did
        while inflight:
            _, fut = inflight.popleft()
            if fut.cancel():
                continue
            try:
                for outcome in fut.result(timeout=60):
                    recorder.outcome(outcome)
            except Exception:  # a helper lost during shutdown has nothing to report
                pass

    try:
        for chunk in chunks:
            if stop():
                break
            if len(inflight) < 2 * n_helpers:
                submit(chunk)
            else:
                _run_here(run, chunk, transform)
            while inflight and inflight[0][1].done():
                collect(*inflight.popleft())
        while inflight and not stop():
            # Poll, so a signal is acted on at once rather than after the chunk at the head.
            if wait([inflight[0][1]], timeout=0.2).done:
                collect(*inflight.popleft())
        if stop():
            wind_down()
    except KeyboardInterrupt:
        wind_down()
        raise
    except DenoiseError:  # too many crashes: what the helpers still finish is recorded
        wind_down()
        raise
    finally:
        helpers.close()


def start_method(transform: Transform) -> str:
    """How helper processes start. A spawned helper must import numpy and onnxruntime afresh
    before its first file (measured: 208 ms to its first result, against 37 ms forked), which
    on a run of a few seconds is work lost. Fork is used only where it is safe: on Linux, with
    a transform that says so (CPU sessions: each helper builds its own session and never
    touches the parent's; a CUDA context, by contrast, cannot cross a fork)."""
    if sys.platform == "linux" and getattr(transform, "fork_safe", False):
        return "fork"
    return "spawn"


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
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self.on_signal)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM ask the run to stop cleanly; a second one interrupts at once."""
    stop = StopRequest()
    try:
        previous = {s: signal.signal(s, stop.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
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

    `job` describes the run (denoise_cli.job.Job); keyword arguments, if any, set the
    Denoise transform's fields (model, device, invert, batch_size, tile) on the default job.
    """
    job = job or Job()
    if denoise:
        job = job.with_(transform=Denoise(**denoise))
    return run_job(job, in_dir, out_dir)
