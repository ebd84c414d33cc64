"""The same job on a Ray cluster, through Ray Data (offline batch inference).

A `Runner` for runners.run_job: the driver plans exactly as a local run does (same planner, same
recorder); Ray Data then feeds chunks of files to a pool of actors, each building its transform
(one onnxruntime session) from the same Job and running the same chunk.ChunkWorker with the same
trees: decode, check, encode, atomic write. IN and OUT are local paths that every worker sees (a
shared file system) or URIs that pyarrow opens (s3://bucket/prefix, gs://..., file://...), read
and written by the workers themselves.

Ray is optional: `pip install 'denoise-batch[ray]'`. Nothing here imports it at module level.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from denoise_cli.chunk import ChunkWorker
from denoise_cli.core.errors import MissingDependency
from denoise_cli.errors import first_line
from denoise_cli.job import Job
from denoise_cli.plan import SourceTree, TargetTree
from denoise_cli.report import Outcome
from denoise_cli.runners import Run
from denoise_cli.walk import FileJob

#: Restarts of an actor, and retries of a chunk whose actor died (node lost, process killed).
MAX_RETRIES = 3
#: Passes over the files a pass could not finish (the first one included).
MAX_ROUNDS = 3
LOST_ON_RAY = "the Ray cluster could not finish this file's chunk; rerun to retry"


class ChunkActor:
    """A Ray Data actor: one transform (one onnxruntime session) for its whole life."""

    def __init__(self, job: Job, threads: int, source: SourceTree, target: TargetTree) -> None:
        self.worker = ChunkWorker(job.transform.build(threads), job, source, target)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        files = [
            FileJob(str(src), str(rel), str(dst))
            for src, rel, dst in zip(batch["src"], batch["rel"], batch["dst"], strict=True)
        ]
        outcomes = self.worker.run(files)
        return {
            "rel": [o.rel for o in outcomes],
            "output": [o.output for o in outcomes],
            "error": [o.error or "" for o in outcomes],  # every failure has a reason
        }


class RayRunner:
    """Runs the chunks on `workers` Ray actors (Job.workers), each reserving `cpus_per_worker`
    CPUs and `gpus_per_worker` GPUs. `address`: an existing cluster ("auto",
    "ray://host:10001"); None starts or joins a local Ray instance."""

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
            import ray.data
        except ImportError:
            raise MissingDependency(
                "the Ray runner needs ray, which is not installed: pip install 'denoise-batch[ray]'"
            ) from None
        # Built here too, so a bad model or device is refused before any actor starts.
        job, recorder = run.job, run.recorder
        description = job.transform.build(run.threads).describe()
        recorder.started({**description, "runner": "ray"}, run.workers, run.threads)
        rows = [{"src": f.src, "rel": f.rel, "dst": f.dst} for chunk in chunks for f in chunk]
        if not rows:
            return
        getattr(run.target, "open", lambda: None)()  # OUT, now that there is work for it
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
            with contextlib.suppress(AttributeError, ValueError):  # not the main thread
                run.stop.install()  # ray.init replaced SIGTERM's handler with sys.exit
        self._rounds(ray, rows, run)

    def _rounds(self, ray: Any, rows: list[dict[str, str]], run: Run) -> None:
        """Pass the files through the actors; when the cluster gives up on a pass because a
        node was lost with its actors (Ray Data does not always replace them, and its retries
        can end in ActorUnavailableError), the files no actor finished go round again on a new
        pool of the actors the cluster can still place, up to MAX_ROUNDS passes in all. What
        could not be finished fails with the reason (a pass that failed with every node still
        there: a chunk that kills its actor each time); a rerun retries it."""
        recorded: set[str] = set()
        pending, reason = rows, ""
        for round_ in range(MAX_ROUNDS):
            nodes = _alive_nodes(ray)
            failure = self._pass(ray, pending, run, recorded, elastic=round_ > 0)
            if failure is None or run.stop():
                return
            reason = f"{LOST_ON_RAY} ({first_line(failure)})"
            pending = self._unfinished(pending, recorded, run)
            if not pending or _alive_nodes(ray) >= nodes:
                break  # all done, or no node was lost: the chunk itself kills its actors
        for row in pending:
            run.recorder.outcome(Outcome(row["rel"], row["dst"], reason))

    def _unfinished(
        self, rows: list[dict[str, str]], recorded: set[str], run: Run
    ) -> list[dict[str, str]]:
        """Rows of a failed pass that no outcome came back for and that are not on disk (an
        actor that died may have written files whose outcomes were lost with it: writes are
        atomic renames, so an output that exists is whole, and is counted written once)."""
        lost = [row for row in rows if row["rel"] not in recorded]
        done = set() if run.job.overwrite else _on_disk(run.target, [r["dst"] for r in lost])
        for row in lost:
            if row["dst"] in done:
                recorded.add(row["rel"])
                run.recorder.outcome(Outcome(row["rel"], row["dst"]))
        return [row for row in lost if row["rel"] not in recorded]

    def _pass(
        self, ray: Any, rows: list[dict[str, str]], run: Run, recorded: set[str], elastic: bool
    ) -> Exception | None:
        """One pass of `rows` through a pool of actors; the exception that ended it early."""
        with warnings.catch_warnings():
            # Ray 2.60 deprecates passing max_restarts/max_task_retries this way in favour of
            # named parameters it does not have yet (pyproject pins ray below 2.64).
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = self._dataset(ray, rows, run, elastic)
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                if run.stop():  # chunks in flight finish on the actors; unrecorded ones rerun
                    return None
                for rel, output, error in zip(batch["rel"], batch["output"], batch["error"],
                                              strict=True):  # fmt: skip
                    if str(rel) not in recorded:  # a retried chunk's files count once
                        recorded.add(str(rel))
                        run.recorder.outcome(Outcome(str(rel), str(output), str(error) or None))
        except Exception as exc:  # the cluster gave up (a node lost past its retries...)
            return exc
        return None

    def _dataset(self, ray: Any, rows: list[dict[str, str]], run: Run, elastic: bool) -> Any:
        """The files as a Ray dataset, chunked, mapped through a pool of ChunkActors (after a
        lost node, `elastic`: as many as the cluster can still place, at least one)."""
        # A block per chunk of the size run_job chose (and sized the actor pool by): all busy.
        blocks = max(1, -(-len(rows) // run.files_per_chunk))
        return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            ChunkActor,
            fn_constructor_args=(run.job, run.threads, run.source, run.target),
            batch_size=run.files_per_chunk,
            batch_format="numpy",
            compute=(
                ray.data.ActorPoolStrategy(min_size=1, max_size=run.workers)
                if elastic
                else ray.data.ActorPoolStrategy(size=run.workers)
            ),
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            # Ray Data's default is to restart actors and retry their tasks forever: right for
            # a lost node, a hang for a chunk that kills its actor every time (a crashing
            # decoder). Bounded, the run ends and names the files it could not finish.
            max_restarts=MAX_RETRIES,
            max_task_retries=MAX_RETRIES,
        )


def _alive_nodes(ray: Any) -> int:
    try:
        return sum(1 for node in ray.nodes() if node.get("Alive"))
    except Exception:  # cannot tell: count as unchanged (no further pass)
        return 0


def _on_disk(target: TargetTree, outputs: list[str]) -> set[str]:
    """Which of `outputs` (none existed when the run was planned) an actor wrote before the
    cluster gave up: writes are atomic renames, so an output that exists is whole."""
    base, folders = target.path(""), {}
    for dst in outputs:
        folder, _, name = dst[len(base) :].rpartition("/")
        folders.setdefault(f"{folder}/" if folder else "", []).append((dst, name))
    return {
        dst
        for prefix, entries in folders.items()
        for names in [target.existing(prefix)]
        for dst, name in entries
        if name in names
    }
