"""Cost bounds for hostile-input tests: peak memory against the input's size, CPU time against
a benign peer's.

A test measures the hostile input and a benign input of about the same size in the same run
(:func:`measure_cost`), then checks both bounds at once (:func:`assert_cost_bounded`).  The
CPU bound is a *ratio* against the peer, never a number of seconds: a busy or slow machine
slows both alike, and the best of several runs drops the noise.  Re-exported from
:mod:`virtcore.testing`.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Cost", "assert_cost_bounded", "measure_cost"]


@dataclass(frozen=True)
class Cost:
    """What :func:`measure_cost` found."""

    peak: int
    """Peak bytes traced (tracemalloc) while the first run ran."""
    cpu: float
    """CPU seconds of the fastest run (untraced)."""
    outcome: object
    """What the work returned, or the exception it raised."""


def measure_cost(work: Callable[[], object], runs: int = 3) -> Cost:
    """Run ``work`` once under tracemalloc, then ``runs`` times untraced.

    Returns the peak memory of the traced run, the least CPU time (``time.process_time``) of
    the untraced runs, and the outcome of the traced run: its return value, or the exception
    it raised (any :class:`Exception` is caught; the caller checks it was a documented one).
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs}")
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


def assert_cost_bounded(name: str, hostile: Cost, peer: Cost, size: int, *,
                        memory_ratio: float, time_ratio: float) -> None:
    """Assert ``hostile`` (the cost of an input of ``size`` bytes, or items) stays within
    ``memory_ratio`` traced bytes per input byte, and within ``time_ratio`` times the CPU
    time of ``peer`` (a benign input of about the same size, measured in the same run; a peer
    faster than a millisecond counts as one).  The message names ``name`` and gives the
    figures."""
    if size <= 0:
        raise ValueError(f"{name}: the input size must be positive, not {size}")
    assert hostile.peak <= memory_ratio * size, (
        f"{name}: peak {hostile.peak} bytes for {size} input bytes "
        f"({hostile.peak / size:.1f}x, bound {memory_ratio}x)")
    allowed = time_ratio * max(peer.cpu, 1e-3)
    assert hostile.cpu <= allowed, (
        f"{name}: {hostile.cpu * 1e3:.1f} ms CPU, the benign peer took {peer.cpu * 1e3:.1f} ms "
        f"(bound {time_ratio}x)")
