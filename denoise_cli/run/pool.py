"""The helper processes of a local run: each builds its own transform and takes whole chunks.

Chunks go to each helper over a pipe of its own, at most CHUNKS_AHEAD at a time, and each
chunk's outcomes come back whole. Every chunk sent is accounted for: a helper that dies (any
signal, the OOM killer, a crashing decoder) or stops early (SIGTERM sent to it alone) costs no
file: what it did not report is sent again to a live helper, once (MAX_ATTEMPTS), then failed
with the reason; chunks only queued behind it go elsewhere unchanged. A dead helper is
replaced, a bounded number of times (a pool of processes that all broke at the first death,
failing every chunk in flight, was what this replaced). The parent never runs a chunk that
killed a helper: it would die the same way, and take the run with it.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from denoise_cli.core.atomic import remove_in_flight
from denoise_cli.core.errors import first_line
from denoise_cli.core.report import Outcome
from denoise_cli.run.chunk import ChunkWorker
from denoise_cli.trees.plan import on_disk
from denoise_cli.trees.walk import FileJob

#: Chunks queued per helper (one in hand, one waiting), so a helper never idles between two.
CHUNKS_AHEAD = 2
#: Tries of a chunk whose helper died while it was in hand.
MAX_ATTEMPTS = 2
#: The message that asks a helper to stop after the file in hand.
STOP = "stop"
#: How long helpers get to hand back their work once the run stops, before they are killed.
STOP_GRACE_S = 5.0


@dataclass
class Assignment:
    """A chunk sent (or to be sent) to a helper, and how many helpers died holding it."""

    files: list[FileJob]
    attempts: int = 0
    ident: int = field(default_factory=itertools.count().__next__)


def death_reason(exitcode: int | None) -> str:
    """One line on how a helper ended, for the files it could not finish."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        how = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        how = f"exit status {exitcode}"
    return f"a worker process died ({how}) with this file's chunk, twice; rerun to retry"


class Helper:
    """One helper process: its pipe, its process, and the chunks sent to it, in order."""

    def __init__(self, ctx: Any, args: tuple) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=helper_main, args=(child, *args), daemon=True)
        self.process.start()
        child.close()
        self.queue: deque[Assignment] = deque()
        self.broken: str | None = None  # why it could not build its transform

    def send(self, assignment: Assignment, target_id: Any) -> bool:
        try:
            self.conn.send((assignment.ident, assignment.files, target_id))
        except OSError:  # it died since: the caller's next poll finds out
            return False
        self.queue.append(assignment)
        return True

    def close(self, stop: bool) -> None:
        """Tell the helper to end: at once (`stop`: after the file in hand, reporting what it
        did), or once its queue is done."""
        with contextlib.suppress(OSError):
            self.conn.send(STOP if stop else None)


class HelperPool:
    """`count` helper processes for a run (runners.Run): `start`, then `run` the chunks (the
    parent takes some itself), which returns when every chunk is accounted for or the run
    stopped."""

    def __init__(self, run: Any, count: int, method: str) -> None:
        self.run, self.count, self.method = run, count, method
        self.helpers: list[Helper] = []
        self.retries: deque[Assignment] = deque()
        self.respawns_left = max(3, count)

    def start(self) -> None:
        run = self.run
        args = (run.job, run.threads, run.source, run.target, os.getpid())
        while len(self.helpers) < self.count:
            self.helpers.append(Helper(multiprocessing.get_context(self.method), args))

    def run_chunks(self, chunks: Iterator[list[FileJob]], work_here: Callable) -> None:
        """Share `chunks` out; `work_here(files)` runs one in this process meanwhile."""
        if not self.helpers:
            self.start()
        stop = self.run.stop
        try:
            for files in chunks:
                if stop():
                    break
                self._poll(0)
                self._send_retries()
                helper = self._free_helper()
                if helper is not None and helper.send(Assignment(files), self._target_id()):
                    continue
                work_here(files)
            while not stop() and (self.retries or any(h.queue for h in self.helpers)):
                self._poll(0.2)
                self._send_retries()
                if not any(h.process.is_alive() for h in self.helpers):
                    self._give_up_retries(work_here)
        finally:
            self.close()

    def _target_id(self) -> Any:
        return getattr(self.run.target, "root_id", None)

    def _free_helper(self) -> Helper | None:
        live = [h for h in self.helpers if h.broken is None and h.process.is_alive()]
        free = [h for h in live if len(h.queue) < CHUNKS_AHEAD]
        return min(free, key=lambda h: len(h.queue)) if free else None

    def _send_retries(self) -> None:
        while self.retries and (helper := self._free_helper()) is not None:
            if not helper.send(self.retries[0], self._target_id()):
                return
            self.retries.popleft()

    def _give_up_retries(self, work_here: Callable) -> None:
        """No helper left to retry on: chunks never started run here; those that killed a
        helper fail."""
        while self.retries:
            assignment = self.retries.popleft()
            if assignment.attempts == 0:
                work_here(assignment.files)
            else:
                self._fail(assignment.files, death_reason(None))

    def _poll(self, timeout: float) -> None:
        """Take the messages that came, and account for the helpers that ended."""
        waiting = [h.conn for h in self.helpers] + [h.process.sentinel for h in self.helpers]
        if not waiting:
            return
        ready = set(wait(waiting, timeout))
        for helper in list(self.helpers):
            if helper.conn in ready or helper.process.sentinel in ready:
                self._drain(helper)
            if not helper.process.is_alive() and helper in self.helpers:
                self._drain(helper)
                self._lost(helper)

    def _drain(self, helper: Helper) -> None:
        with contextlib.suppress(EOFError, OSError):
            while helper.conn.poll():
                message = helper.conn.recv()
                if message[0] == "broken":
                    helper.broken = message[1]
                    continue
                _, ident, outcomes = message
                self._finished(helper, ident, outcomes)

    def _finished(self, helper: Helper, ident: int, outcomes: list[Outcome]) -> None:
        while helper.queue and helper.queue[0].ident != ident:  # cannot happen: in order
            self.retries.append(helper.queue.popleft())
        if not helper.queue:
            return
        assignment = helper.queue.popleft()
        for outcome in outcomes:
            self.run.recorder.outcome(outcome)
        done = {o.rel for o in outcomes}
        rest = [f for f in assignment.files if f.rel not in done]
        if rest and not self.run.stop():  # stopped alone (SIGTERM to it): the rest elsewhere
            self.retries.append(Assignment(rest, assignment.attempts))

    def _lost(self, helper: Helper) -> None:
        """A helper ended: its chunk in hand is retried (or failed, the second time it killed
        a helper; a helper that left cleanly, after a SIGTERM of its own, costs no try), the
        chunks behind it go elsewhere, and a new helper takes its place."""
        self.helpers.remove(helper)
        helper.conn.close()
        self._salvage(helper)
        stopping = self.run.stop()
        reason = death_reason(helper.process.exitcode)
        if helper.broken is not None:
            self.run.recorder.warn(f"a worker process could not load the model: {helper.broken}")
        for i, assignment in enumerate(helper.queue):
            if stopping or not assignment.files:
                continue  # not done, not failed: the rerun does it (or all on disk)
            if i == 0 and helper.broken is None and helper.process.exitcode != 0:
                assignment.attempts += 1
                if assignment.attempts >= MAX_ATTEMPTS:
                    self._fail(assignment.files, reason)
                    continue
            self.retries.append(assignment)
        if not stopping and self.respawns_left > 0:
            self.respawns_left -= 1
            run = self.run
            args = (run.job, run.threads, run.source, run.target, os.getpid())
            self.helpers.append(Helper(multiprocessing.get_context(self.method), args))

    def _fail(self, files: list[FileJob], reason: str) -> None:
        for file in files:
            self.run.recorder.outcome(Outcome(file.rel, file.dst, reason))

    def close(self) -> None:
        """Stop the helpers: what they finish within STOP_GRACE_S is recorded, then they are
        killed (a model call that never returns must not hold the run)."""
        for helper in self.helpers:
            helper.close(self.run.stop())
        deadline = time.monotonic() + (STOP_GRACE_S if self.run.stop() else 60.0)
        while any(h.process.is_alive() for h in self.helpers) and time.monotonic() < deadline:
            self._poll_quietly(0.1)
        for helper in self.helpers:
            self._drain(helper)
            if helper.process.is_alive():
                helper.process.kill()
            helper.process.join(5)
            helper.conn.close()
            self._salvage(helper)
        self.helpers = []

    def _salvage(self, helper: Helper) -> None:
        """A helper that died mid-chunk (a signal, the OOM killer): the temporary file it was
        writing goes now, not at the next run (SIGKILL cannot be caught), and the files of the
        chunk it had written (whole: atomic renames) count as written, not written again or
        failed with the rest. With --overwrite an output on disk may be the old one: the chunk
        then goes again whole."""
        if not helper.queue or helper.process.exitcode in (0, None):
            return
        chunk = helper.queue[0]
        try:
            present = on_disk(self.run.target, [file.dst for file in chunk.files])
        except Exception:  # best effort: the next run sweeps too
            return
        if self.run.job.overwrite or not present:
            return
        for file in chunk.files:
            if file.dst in present:
                self.run.recorder.outcome(Outcome(file.rel, file.dst))
        chunk.files = [file for file in chunk.files if file.dst not in present]

    def _poll_quietly(self, timeout: float) -> None:
        waiting = [h.process.sentinel for h in self.helpers if h.process.is_alive()]
        wait(waiting + [h.conn for h in self.helpers], timeout)
        for helper in self.helpers:
            self._drain(helper)


# --- inside a helper ----------------------------------------------------------------------------


class _Terminated:
    """Set by SIGTERM sent to this helper: it finishes the file in hand, reports, and ends.
    Orphaned (Linux sends SIGTERM when the parent dies), it ends at once, since nobody will read
    what it finishes and it may be stuck in a model call, but first removes the temporary file
    it is writing: SIGKILL to the parent must not leave one in OUT."""

    def __init__(self, parent: int) -> None:
        self.parent, self.flag = parent, False

    def __call__(self, signum: int, frame: object) -> None:
        self.flag = True
        if os.getppid() != self.parent:
            remove_in_flight()
            os._exit(0)


class _Inbox:
    """A helper's side of its pipe: chunks to do, and whether the parent asked it to stop
    (looked at between files: a select on the pipe, about a microsecond)."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.pending, self.stopped = conn, deque(), False

    def stop_requested(self) -> bool:
        try:
            while not self.stopped and self.conn.poll():
                message = self.conn.recv()
                if message == STOP:
                    self.stopped = True
                else:
                    self.pending.append(message)
        except (EOFError, OSError):  # the parent is gone
            self.stopped = True
        return self.stopped

    def next(self) -> Any:
        """The next chunk, or None: end (told so, stopped, or the pipe closed)."""
        try:
            message = self.pending.popleft() if self.pending else self.conn.recv()
        except (EOFError, OSError):
            return None
        return None if message == STOP or self.stopped else message


def helper_main(
    conn: Connection, job: Any, threads: int, source: Any, target: Any, parent: int
) -> None:
    """A helper's life: build the transform with the first chunk (a helper may fork before
    the parent has loaded the model; only a chunk says it did), then run chunks until told to
    end, its pipe closes, a SIGTERM, or a model call that overran (its thread still runs)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells us
    terminated = _Terminated(parent)
    signal.signal(signal.SIGTERM, terminated)
    _die_with_parent(parent)
    inbox, worker = _Inbox(conn), None
    while not terminated.flag and (message := inbox.next()) is not None:
        ident, files, target_id = message
        if worker is None:
            try:
                transform = job.transform.build(threads)
            except Exception as exc:  # the parent built the same: memory, a file changed...
                conn.send(("broken", first_line(exc)))
                return
            worker = ChunkWorker(
                transform, job, source, target,
                lambda: terminated.flag or inbox.stop_requested(),
            )  # fmt: skip
        with contextlib.suppress(AttributeError):
            target.expect(target_id)  # OUT must be the folder the parent opened
        outcomes = worker.run(files)
        if os.getppid() != parent:  # orphaned: nobody will read these outcomes
            os._exit(0)
        conn.send(("done", ident, outcomes))
        if worker.stuck:  # a model call overran and still burns a core: make way
            os._exit(0)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies (kill -9 included): the handler above
    then removes the temporary file in flight and ends the helper at once, instead of letting
    it write on for tens of seconds."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
