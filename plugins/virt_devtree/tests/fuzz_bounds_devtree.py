"""Cost bounds for the fuzz tests: peak memory (tracemalloc) within a fixed multiple of the
input's size, and CPU time within a fixed multiple of a benign peer's of the same size,
measured in the same run (best of three each, so a busy machine slows both alike).

A copy of the core's tests/fuzz_bounds.py, named uniquely so that several test folders
can run in one pytest session.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    peak: int
    """Peak bytes traced while the work ran."""
    cpu: float
    """CPU seconds (best of the runs)."""
    outcome: object
    """What the work returned, or the exception it raised."""


def measure(work: Callable[[], object], runs: int = 3) -> Cost:
    """Run ``work`` ``runs`` times: the peak memory of the first run (traced), the least CPU
    time of all runs (untraced), and the outcome (a returned value or a raised exception)."""
    tracemalloc.start()
    try:
        try:
            outcome: object = work()
        except Exception as exc:  # the caller checks which exceptions are documented
            outcome = exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        try:
            work()
        except Exception:  # noqa: S110 - the outcome was recorded above
            pass
        best = min(best, time.process_time() - start)
    return Cost(peak, best, outcome)


def check_cost(name: str, hostile: Cost, peer: Cost, size: int, *, memory_ratio: float,
               time_ratio: float) -> None:
    """Assert ``hostile`` (an input of ``size`` bytes) stays within ``memory_ratio`` bytes
    per input byte and ``time_ratio`` times the CPU time of ``peer`` (a benign input of about
    the same size); the message gives the figures."""
    assert hostile.peak <= memory_ratio * size, (
        f"{name}: peak {hostile.peak} bytes for {size} input bytes "
        f"({hostile.peak / size:.1f}x, bound {memory_ratio}x)")
    allowed = time_ratio * max(peer.cpu, 1e-3)
    assert hostile.cpu <= allowed, (
        f"{name}: {hostile.cpu * 1e3:.1f} ms CPU, the benign peer took {peer.cpu * 1e3:.1f} ms "
        f"(bound {time_ratio}x)")
