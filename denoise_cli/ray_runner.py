"""The same batch job on a Ray cluster, through Ray Data (offline batch inference).

The driver walks the input tree and skips finished outputs exactly as the local tool does;
Ray Data then feeds chunks of file paths to a pool of actors, each holding one onnxruntime
session (built by the same picklable recipe the local worker processes use) and running the
local tool's own `process_chunk`: decode, denoise, atomic write. Per-file outcomes stream back
to the driver, which builds the same RunReport as a local run. IN and OUT are local paths that
every worker sees (a shared file system), or URIs that pyarrow opens (s3://bucket/prefix,
gs://..., file://...), read and written by the workers themselves.

Ray is optional: `pip install 'denoise-batch[ray]'`. Nothing here imports it at module level.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from denoise_cli.errors import UsageError
from denoise_cli.images import is_image_name
from denoise_cli.pipeline import (
    Failure,
    Outcome,
    RunOptions,
    RunReport,
    Transform,
    pending_jobs,
    process_chunk,
)
from denoise_cli.storage import Storage, is_uri
from denoise_cli.walk import Job, check_roots, output_names


class StorageIO:
    """Reads a job's source from one Storage and writes its result to another (FileIO)."""

    def __init__(self, source: Storage, target: Storage) -> None:
        self.source, self.target = source, target

    def read(self, job: Job) -> bytes:
        return self.source.read(job.src)

    def write(self, job: Job, data: bytes) -> None:
        self.target.write(job.dst, data)


class ChunkActor:
    """A Ray Data actor: one transform (one onnxruntime session) for its whole life."""

    def __init__(
        self,
        make_transform: Callable[[], Transform],
        options: RunOptions,
        io: StorageIO | None = None,
    ) -> None:
        self.transform = make_transform()
        self.options = options
        self.io = io

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        jobs = [
            Job(src, rel, dst)
            for src, rel, dst in zip(batch["src"], batch["rel"], batch["dst"], strict=True)
        ]
        outcomes: list[Outcome] = []
        process_chunk(jobs, self.transform, self.options, outcomes, io=self.io)
        return {
            "rel": [o.rel for o in outcomes],
            "output": [o.output for o in outcomes],
            "error": [o.error or "" for o in outcomes],
        }


def _rows(jobs: Iterator[Job]) -> list[dict[str, str]]:
    return [{"src": j.src, "rel": j.rel, "dst": j.dst} for j in jobs]


def plan_storage_jobs(
    source: Storage, target: Storage, options: RunOptions, report: RunReport, emit
) -> tuple[list[dict[str, str]], StorageIO]:
    """The local planner's rules (mirroring, names, skips) over URIs; paths are relative."""
    if source.uri.rstrip("/") == target.uri.rstrip("/"):
        raise UsageError(f"{target.uri}: output is the input; choose another")
    out_prefix = None
    if target.uri.startswith(source.uri.rstrip("/") + "/"):
        out_prefix = target.uri[len(source.uri.rstrip("/")) + 1 :].rstrip("/") + "/"
    existing = set() if options.overwrite else set(target.list_files())
    by_dir: dict[str, list[str]] = {}
    for rel in source.list_files():
        if out_prefix and rel.startswith(out_prefix):
            continue  # the output folder inside the input is not walked
        if not is_image_name(rel):
            report.skipped_other += 1
            emit({"event": "skipped", "file": rel, "reason": "not an image file"})
            continue
        folder, _, name = rel.rpartition("/")
        by_dir.setdefault(folder, []).append(name)
    rows = []
    for folder, names in by_dir.items():
        prefix = f"{folder}/" if folder else ""
        for name, out_name in output_names(names, options.output_format).items():
            report.found += 1
            if prefix + out_name in existing:
                report.skipped_existing += 1
                emit({"event": "exists", "file": prefix + name})
                continue
            rows.append({"src": prefix + name, "rel": prefix + name, "dst": prefix + out_name})
    return rows, StorageIO(source, target)


def process_tree_on_ray(
    in_root: Path | str,
    out_root: Path | str,
    make_transform: Callable[[], Transform],
    options: RunOptions | None = None,
    workers: int = 2,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    address: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> RunReport:
    """Like pipeline.process_tree, with the chunks processed by `workers` Ray actors.

    `address`: an existing cluster ("auto", "ray://host:10001"); None starts or joins a local
    Ray instance.
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError("Ray is not installed: pip install 'denoise-batch[ray]'") from None
    options = options or RunOptions()
    report = RunReport(str(in_root), str(out_root), workers=workers)
    emit = on_event or (lambda event: None)
    start = time.perf_counter()
    io = None
    if is_uri(str(in_root)) or is_uri(str(out_root)):
        source, target = (
            Storage(str(p) if is_uri(str(p)) else Path(p).resolve().as_uri())
            for p in (in_root, out_root)
        )
        rows, io = plan_storage_jobs(source, target, options, report, emit)
    else:
        in_root, out_root = Path(in_root), Path(out_root)
        check_roots(in_root, out_root)
        rows = _rows(pending_jobs(in_root, out_root, options, report, emit))
    if rows:
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        blocks = max(1, -(-len(rows) // options.batch_size))  # one block per chunk: all actors busy
        dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            ChunkActor,
            fn_constructor_args=(make_transform, options, io),
            batch_size=options.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for rel, output, error in zip(batch["rel"], batch["output"], batch["error"],
                                          strict=True):  # fmt: skip
                if error:
                    report.failed += 1
                    report.failures.append(Failure(str(rel), str(error)))
                    emit({"event": "failed", "file": str(rel), "error": str(error)})
                else:
                    report.written += 1
                    emit({"event": "written", "file": str(rel), "output": str(output)})
    report.seconds = time.perf_counter() - start
    return report
