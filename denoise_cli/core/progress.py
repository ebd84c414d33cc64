"""A dependency-free progress line: rate, ETA and extra fields, redrawn in place on a terminal.

Off a terminal (CI logs, pipes) it prints nothing per step, unless asked for a plain line every
so many seconds (`every`): a long job in a log should still show it is alive.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_seconds(s: float) -> str:
    s = int(max(s, 0))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class Progress:
    """`update(n, **fields)` after each step; `close()` at the end. Redraws at most 10x/s."""

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        unit: str = "img",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        every: float | None = None,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self.fields: dict[str, str] = {}
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self.every = every  # seconds between plain lines off a terminal; None: no lines
        self._last_line = self.start

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1, **fields: object) -> None:
        self.done += n
        self.fields.update(
            {k: (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in fields.items()}
        )
        now = time.perf_counter()
        if self.enabled and now - self._last_draw >= 0.1:
            self._last_draw = now
            self._draw()
        elif not self.enabled and self.every is not None and now - self._last_line >= self.every:
            self._last_line = now
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def _line(self) -> str:
        rate = self.rate
        parts = [self.desc] if self.desc else []
        if self.total:
            pct = 100.0 * self.done / self.total
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            parts.append(f"{pct:5.1f}% {self.done}/{self.total}")
            parts.append(f"{rate:,.0f} {self.unit}/s ETA {_fmt_seconds(eta)}")
        else:
            parts.append(f"{self.done} {self.unit} {rate:,.0f} {self.unit}/s")
        parts += [f"{k}={v}" for k, v in self.fields.items()]
        return "  ".join(parts)

    def _draw(self) -> None:
        self.stream.write("\r" + self._line() + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
