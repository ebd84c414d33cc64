"""The same job on a Ray cluster: chunks of files handed to Ray actors by the driver.

A `Runner` for runners.run_job: the driver plans exactly as a local run does (same planner, same
recorder), then hands chunks of files to a pool of actors, each building its transform
(one onnxruntime session) from the same Job and running the same chunk.ChunkWorker with the same
trees: decode, check, encode, atomic write. IN and OUT are local paths (or file:/// URIs) that
every worker sees (a shared file system) or store URIs that pyarrow opens (s3://bucket/prefix,
gs://...), read and written by the workers themselves.

Ray is optional: `pip install 'denoise-batch[ray]'`. Nothing here imports it at module level.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from denoise_cli.core.atomic import host_tag, process_gone
from denoise_cli.core.errors import MissingDependency, first_line
from denoise_cli.core.report import Outcome
from denoise_cli.run.chunk import ChunkWorker
from denoise_cli.run.job import Job
from denoise_cli.run.runners import Run
from denoise_cli.trees.plan import SourceTree, TargetTree, on_disk
from denoise_cli.trees.walk import FileJob

#: Tries of one chunk before its files fail: actors that died holding it (a chunk that kills
#: its actor), or calls that raised.
MAX_TRIES = 2
LOST_ON_RAY = "the Ray cluster could not finish this file's chunk; rerun to retry"
#: Seconds between looks at the run (a stop request) while chunks are out.
POLL_S = 0.5
#: After a stop, how long actors have to finish the file in hand (as pool helpers do).
STOP_GRACE_S = 5.0
#: After killing an actor, how long to wait for it to be gone.
KILL_WAIT_S = 10.0

Row = tuple[str, str, str]  # (src, rel, dst): a FileJob as plain strings


class ChunkActor:
    """A Ray actor: one transform (one onnxruntime session) for its whole life. Threaded (two
    calls at once), so that `stop` reaches it while `run` works: the chunk then ends after the
    file in hand, and returns what it finished."""

    def __init__(self, job: Job, threads: int, source: SourceTree, target: TargetTree) -> None:
        self.stopping = threading.Event()
        transform = job.transform.build(threads)
        self.worker = ChunkWorker(transform, job, source, target, self.stopping.is_set)

    def ready(self) -> tuple[str, int]:
        """Where it runs (host tag, pid): the driver waits for a killed actor on its own host
        to be gone before judging the temporary file it was writing."""
        return host_tag(), os.getpid()

    def stop(self) -> None:
        self.stopping.set()

    def run(self, rows: list[Row]) -> list[tuple[str, str, str | None]]:
        outcomes = self.worker.run([FileJob(*row) for row in rows])
        return [(o.rel, o.output, o.error) for o in outcomes]


class RayRunner:
    """Runs the chunks on `workers` Ray actors (Job.workers), each reserving `cpus_per_worker`
    CPUs and `gpus_per_worker` GPUs. `address`: an existing cluster ("auto",
    "ray://host:10001"); None starts or joins a local Ray instance.

    The driver hands chunks to the actors itself, one at a time each. An actor that dies (its
    process, or its node with it) costs nothing but time: its chunk goes to another actor
    (files it wrote before dying are on disk, whole, and count written once), and a new
    actor is started wherever the cluster can place one. A chunk tried twice (actors died
    holding it, or its call raised) fails with the reason (a crashing decoder would kill every
    actor it met). A stop (SIGINT, SIGTERM) is the local runner's: see `_Dispatch`. Ray's own actor
    restarts and Ray Data's pool were tried first: on a real two-node cluster a lost node's
    chunks ended in ActorUnavailableError, or the run waited for good on an actor that could
    not be placed again."""

    def __init__(
        self,
        address: str | None = None,
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
    ) -> None:
        self.address = address
        self.cpus_per_worker, self.gpus_per_worker = cpus_per_worker, gpus_per_worker

    def __call__(self, run: Run, chunks: Iterator[list[FileJob]]) -> None:
        try:
            import ray
        except ImportError:
            raise MissingDependency(
                "the Ray runner needs ray, which is not installed: pip install 'denoise-batch[ray]'"
            ) from None
        # The model's metadata is read here, so a bad model is refused before any actor
        # starts; the device is each actor's to place (the driver may have none of it).
        spec = run.job.transform
        describe = getattr(spec, "describe_model", lambda: spec.build(run.threads).describe())
        description = describe()
        run.recorder.started({**description, "runner": "ray"}, run.workers, run.threads)
        work = [[tuple(f) for f in chunk] for chunk in chunks]
        if not work:
            return
        getattr(run.target, "open", lambda: None)()  # OUT, now that there is work for it
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
            with contextlib.suppress(AttributeError, ValueError):  # not the main thread
                run.stop.install()  # ray.init replaced SIGTERM's handler with sys.exit
        _Dispatch(ray, run, self._actor_class(ray)).dispatch(work)

    def _actor_class(self, ray: Any) -> Any:
        return ray.remote(
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            max_restarts=0,  # the driver replaces a dead actor, wherever there is room
            max_task_retries=0,  # and sends its chunk to another
            max_concurrency=2,  # `stop` while `run` works
        )(ChunkActor)


class _Dispatch:
    """One run's actors and chunks: starting actors, idle ones, chunks out, chunks waiting."""

    def __init__(self, ray: Any, run: Run, actor_class: Any) -> None:
        self.ray, self.run, self.actor_class = ray, run, actor_class
        self.starting: dict[Any, Any] = {}  # ready() future -> actor
        self.idle: list[Any] = []
        self.out: dict[Any, tuple[Any, list[Row], int]] = {}  # future -> (actor, rows, tries)
        self.pids: dict[Any, int] = {}  # actor -> pid, for the actors on the driver's host
        self.waiting: deque[tuple[list[Row], int]] = deque()
        self.replacements = 2 * run.workers + 2
        self.reason = LOST_ON_RAY

    def dispatch(self, work: list[list[Row]]) -> None:
        self.waiting.extend((rows, 0) for rows in work)
        for _ in range(self.run.workers):
            self._start_actor()
        try:
            while (self.waiting or self.out) and not self.run.stop():
                self._hand_out()
                if not self.out and not self.starting:  # no actor left, none coming
                    break
                self._collect()
            if not self.run.stop():  # what no actor could take fails with the last reason
                for rows, _ in self.waiting:
                    self._fail(rows, self.reason)
            else:
                self._grace()
        finally:  # also after a second signal, or an error here: nothing out goes unreported
            self._kill_out()
            for actor in [*self.idle, *self.starting.values()]:
                with contextlib.suppress(Exception):
                    self.ray.kill(actor)

    def _grace(self) -> None:
        """A stop: actors stop at their next file or model call and report what they
        finished; STOP_GRACE_S at most (a slow upload cannot be interrupted)."""
        for actor, _, _ in self.out.values():
            with contextlib.suppress(Exception):
                actor.stop.remote()
        deadline = time.monotonic() + STOP_GRACE_S
        while self.out and time.monotonic() < deadline:
            self._collect(timeout=min(POLL_S, max(0.01, deadline - time.monotonic())))

    def _kill_out(self) -> None:
        """Actors still holding a chunk are killed; once they are gone the files they wrote
        count as written (without --overwrite: with it, a file there may be the old one) and
        the temporary file each was writing is removed (on this host: another host's waits
        for the next run there). The rest is not done, not failed."""
        if not self.out:
            return
        out, self.out = self.out, {}
        for actor, _, _ in out.values():
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        deadline = time.monotonic() + KILL_WAIT_S
        with contextlib.suppress(Exception):  # their calls end in RayActorError once dead
            self.ray.wait(list(out), num_returns=len(out), timeout=KILL_WAIT_S)
        # Ray reports an actor dead before its process has exited (or been reaped).
        pids = [self.pids[a] for a, _, _ in out.values() if a in self.pids]
        while not all(process_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(Exception):  # best effort: the next run sweeps too
            self._count_written([row for _, chunk, _ in out.values() for row in chunk])

    def _count_written(self, rows: list[Row]) -> list[Row]:
        """Rows whose output a lost or stopped actor left on disk (whole: atomic renames) are
        recorded written; the others come back. Listing also sweeps stale temporary files.
        With --overwrite a file there may be the old one: nothing counts."""
        done = on_disk(self.run.target, [row[2] for row in rows])
        if self.run.job.overwrite:
            return rows
        for _, rel, dst in rows:
            if dst in done:
                self.run.recorder.outcome(Outcome(rel, dst))
        return [row for row in rows if row[2] not in done]

    def _start_actor(self) -> None:
        run = self.run
        actor = self.actor_class.remote(run.job, run.threads, run.source, run.target)
        self.starting[actor.ready.remote()] = actor

    def _hand_out(self) -> None:
        while self.idle and self.waiting:
            rows, tries = self.waiting.popleft()
            actor = self.idle.pop()
            self.out[actor.run.remote(rows)] = (actor, rows, tries)

    def _collect(self, timeout: float = POLL_S) -> None:
        pending = [*self.out, *self.starting]
        done, _ = self.ray.wait(pending, num_returns=1, timeout=timeout)
        for future in done:
            if future in self.starting:
                actor = self.starting.pop(future)
                try:
                    host, pid = self.ray.get(future)
                    if host == host_tag() and os.name != "nt":
                        self.pids[actor] = pid
                    self.idle.append(actor)
                except Exception as exc:  # it could not start (its node went, a bad build)
                    self._lost(actor, exc)
                continue
            actor, rows, tries = self.out.pop(future)
            try:
                outcomes = self.ray.get(future)
            except self.ray.exceptions.RayTaskError as exc:  # the call raised, the actor
                # lives: what the chunk wrote counts, the rest goes again (MAX_TRIES in all)
                self.idle.append(actor)
                cause = getattr(exc, "cause", None) or exc
                self.reason = f"{LOST_ON_RAY} ({type(cause).__name__}: {first_line(cause)})"
                self._retry(rows, tries + 1)
                continue
            except Exception as exc:  # the actor, its worker or its node died (or may have)
                self._lost(actor, exc)
                self._retry(rows, tries + 1)
                continue
            self.idle.append(actor)
            for rel, output, error in outcomes:
                self.run.recorder.outcome(Outcome(rel, output, error))
            self._retry_unreported(rows, outcomes, tries)

    def _lost(self, actor: Any, exc: Exception) -> None:
        self.reason = f"{LOST_ON_RAY} ({first_line(exc)})"
        with contextlib.suppress(Exception):
            self.ray.kill(actor)
        if self.replacements > 0 and not self.run.stop():
            self.replacements -= 1
            self._start_actor()

    def _retry_unreported(self, rows: list[Row], outcomes: list, tries: int) -> None:
        if self.run.stop():
            return
        reported = {rel for rel, _, _ in outcomes}
        rest = [row for row in rows if row[1] not in reported]
        if rest:  # an actor stopped early (cannot happen without a stop): not dropped
            self._retry(rest, tries + 1)

    def _retry(self, rows: list[Row], tries: int) -> None:
        """Rows an actor did not report: those on disk are written (whole: atomic renames),
        the rest go to another actor, or fail after MAX_TRIES."""
        rest = self._count_written(rows)
        if not rest or self.run.stop():  # stopped: the rest is not done, not failed
            return
        if tries >= MAX_TRIES:
            self._fail(rest, self.reason)
        else:
            self.waiting.appendleft((rest, tries))

    def _fail(self, rows: list[Row], reason: str) -> None:
        for _, rel, dst in rows:
            self.run.recorder.outcome(Outcome(rel, dst, reason))
