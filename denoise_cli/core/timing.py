"""Throughput timing shared by the export tables, `denoise-export compare` and the benchmarks.

Standard library only, so the benchmark suite can use it where only the runtime is installed.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_rate(fn: Callable[[], object], seconds: float, windows: int = 5) -> float:
    """Calls per second of `fn()`: the best of `windows` windows sharing about `seconds`
    (each at least one call).

    The best window is what the machine can do; one long mean takes in whatever else ran
    meanwhile (one `compare` run here gave two models of identical architecture 1,827 and
    2,678 images/s by the mean).
    """
    best = 0.0
    for _ in range(windows):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            if (elapsed := time.perf_counter() - start) >= seconds / windows:
                break
        best = max(best, calls / elapsed)
    return best
