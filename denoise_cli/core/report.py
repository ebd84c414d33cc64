"""What a run did: one recorder of outcomes for every runner, and the report it builds.

Every runner (in-process, process pool, Ray) hands each file's outcome to the same Recorder, so
counts, events and reports mean the same whichever ran the chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from denoise_cli.core import __version__

Event = dict[str, Any]

#: Skipped files listed in the report (all are counted, and each is an event).
MAX_LISTED_SKIPS = 100
#: Events held until `start` (~340 bytes each): beyond this, memory would grow with the tree
#: (a rerun of a finished tree finds every file before the model loads), so they flow as found.
MAX_HELD_EVENTS = 50_000


@dataclass(frozen=True)
class Outcome:
    """One finished file: written (error None) or failed with a one-line reason."""

    rel: str
    output: str
    error: str | None = None


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
    skipped: list[dict[str, str]] = field(default_factory=list)  # the first MAX_LISTED_SKIPS
    seconds: float = 0.0
    workers: int = 1
    threads: int = 1
    interrupted: bool = False
    signal: str | None = None  # what interrupted the run: SIGINT, SIGTERM or SIGHUP
    unfinished: int = 0  # planned files neither written, failed nor found done (a stop)
    warnings: list[str] = field(default_factory=list)  # things the run survived
    run: dict[str, Any] = field(default_factory=dict)  # the transform's own description

    @property
    def images_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        run = d.pop("run")
        d["images_per_s"] = round(self.images_per_s, 1)
        d["denoise_batch_version"] = __version__
        return {**d, **run}


class Recorder:
    """Counts what happens to each file into a RunReport and passes it on as an event.

    Planning runs ahead of the model's loading, so skips and finished outputs can be found
    before the run starts: their events are held and passed on right after `start`, which is
    then a run's first event (unless more than MAX_HELD_EVENTS come first: those flow as found).
    """

    def __init__(self, report: RunReport, on_event: Callable[[Event], None] | None = None) -> None:
        self.report = report
        self._on_event = on_event or (lambda event: None)
        self._held: list[Event] | None = []  # None once the run has started
        self.listening = on_event is not None

    def emit(self, event: Event) -> None:
        if self._held is None:
            self._on_event(event)
        elif self.listening:
            self._held.append(event)
            if len(self._held) > MAX_HELD_EVENTS:
                for held in self._held:
                    self._on_event(held)
                self._held.clear()

    def started(self, description: dict[str, Any], workers: int, threads: int) -> None:
        self.report.run.update(description)
        self.report.workers, self.report.threads = workers, threads
        held, self._held = self._held or [], None
        self.emit({"event": "start", **description, "workers": workers, "threads": threads})
        for event in held:
            self.emit(event)

    def found(self) -> None:
        self.report.found += 1

    def skipped(self, path: str, reason: str) -> None:
        self.report.skipped_other += 1
        if len(self.report.skipped) < MAX_LISTED_SKIPS:
            self.report.skipped.append({"file": path, "reason": reason})
        self.emit({"event": "skipped", "file": path, "reason": reason})

    def exists(self, job: Any) -> None:
        self.report.skipped_existing += 1
        self.emit({"event": "exists", "file": job.rel, "output": job.dst})

    def failed(self, rel: str, error: str) -> None:
        self.report.failed += 1
        self.report.failures.append(Failure(rel, error))
        self.emit({"event": "failed", "file": rel, "error": error})

    def warn(self, message: str) -> None:
        if message not in self.report.warnings:
            self.report.warnings.append(message)
            self.emit({"event": "warning", "message": message})

    def outcome(self, outcome: Outcome) -> None:
        if outcome.error is None:
            self.report.written += 1
            if self.listening:  # the common case builds no event dict per file
                self.emit({"event": "written", "file": outcome.rel, "output": outcome.output})
        else:
            self.failed(outcome.rel, outcome.error)
