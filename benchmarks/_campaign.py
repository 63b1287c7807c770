"""Shared parts of the fuzz campaigns (``fuzz_dtb.py``, ``fuzz_toml.py``, ``fuzz_pci.py``).

A campaign has two phases:

1. **mutation**: many random inputs; any exception outside the documented ones stops the
   run with the seed and iteration to reproduce it.  Peak memory is traced for a sample of
   iterations; the worst peak per input byte and the slowest input are reported;
2. **families**: each hostile family at growing sizes, with a benign peer of the same size
   measured in the same run.  Reported: peak bytes per input byte, CPU time against the peer
   (best of three, interleaved), and how time grows when the size grows 4x (about 4 when
   linear, 16 when quadratic).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

FLOOR = 4096
T = TypeVar("T")


@dataclass
class MutationStats:
    iterations: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    worst_ratio: float = 0.0
    worst_ratio_size: int = 0
    slowest: float = 0.0
    slowest_size: int = 0
    elapsed: float = 0.0

    def record(self, outcome: str, size: int, seconds: float, peak: int | None) -> None:
        self.iterations += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if seconds > self.slowest:
            self.slowest, self.slowest_size = seconds, size
        # small inputs count as FLOOR bytes: their peak is the fixed cost of any call
        if peak is not None and peak / max(size, FLOOR) > self.worst_ratio:
            self.worst_ratio, self.worst_ratio_size = peak / max(size, FLOOR), size

    def report(self, what: str, seed: int) -> str:
        rate = self.iterations / self.elapsed if self.elapsed else 0.0
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
        return (f"{what}: {self.iterations} inputs in {self.elapsed:.1f}s ({rate:.0f}/s), "
                f"seed {seed}: {outcomes}; slowest {self.slowest * 1e3:.1f} ms "
                f"({self.slowest_size} bytes); worst traced peak "
                f"{self.worst_ratio:.0f} bytes per input byte ({self.worst_ratio_size} bytes; "
                f"inputs under {FLOOR} bytes count as {FLOOR})")


def run_one(work: Callable[[], object], documented: tuple[type[BaseException], ...],
            trace: bool) -> tuple[str, float, int | None]:
    """Run ``work`` once: (outcome name, seconds, traced peak or None).  An exception that is
    not documented propagates."""
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        try:
            work()
            outcome = "ok"
        except documented as exc:
            outcome = type(exc).__name__
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if trace else None
    finally:
        if trace:
            tracemalloc.stop()
    return outcome, seconds, peak


def _cpu(work: Callable[[], object]) -> float:
    start = time.process_time()
    try:
        work()
    except Exception:  # noqa: S110 - the families report costs, not outcomes
        pass
    return time.process_time() - start


def _peak(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        try:
            work()
        except Exception:  # noqa: S110
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def family_table(
    families: dict[str, Callable[[int], Callable[[], object]]],
    peer: Callable[[int], Callable[[], object]],
    sizes: list[int], rounds: int = 3,
) -> list[str]:
    """Markdown rows: family, size, peak/byte, CPU vs peer, growth of CPU over the sizes.

    ``families[name](size)`` and ``peer(size)`` return the work for an input of about
    ``size`` bytes.
    """
    rows = ["| family | size | peak bytes per input byte | CPU vs benign peer | CPU growth "
            "for 4x size |", "|---|---|---|---|---|"]
    for name, make in families.items():
        previous: float | None = None
        for size in sizes:
            work, peer_work = make(size), peer(size)
            hostile_cpu, peer_cpu = [], []
            for _ in range(rounds):  # interleaved: a busy machine slows both alike
                hostile_cpu.append(_cpu(work))
                peer_cpu.append(_cpu(peer_work))
            best, best_peer = min(hostile_cpu), max(min(peer_cpu), 1e-6)
            growth = f"{best / previous:.1f}x" if previous else "—"
            rows.append(f"| {name} | {size // 1000} KB | {_peak(work) / size:.0f} | "
                        f"{best / best_peer:.2f}x ({best * 1e3:.1f} ms) | {growth} |")
            previous = max(best, 1e-6)
    return rows


def parse_families(
    parse: Callable[[T], object], families: dict[str, Callable[[int], T]],
    peer: Callable[[int], T], sizes: list[int],
) -> list[str]:
    """:func:`family_table` of a parser: ``families[name](size)`` and ``peer(size)`` make an
    input of about ``size`` bytes (once, before it is measured); the work is
    ``parse(input)``."""
    def parse_of(make: Callable[[int], T]) -> Callable[[int], Callable[[], object]]:
        def build(size: int) -> Callable[[], object]:
            data = make(size)
            return lambda: parse(data)
        return build

    return family_table({name: parse_of(make) for name, make in families.items()},
                        parse_of(peer), sizes)
