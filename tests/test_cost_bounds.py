"""virtcore.testing's cost helpers, shared by every fuzz suite: what they measure and that
they fail when a bound is broken."""

from __future__ import annotations

import pytest

import virtcore.testing
from virtcore.testing import Cost, assert_cost_bounded, measure_cost


def test_the_testing_module_exports_the_cost_helpers() -> None:
    assert virtcore.testing.__all__ == sorted(virtcore.testing.__all__)
    assert {"Cost", "assert_cost_bounded", "measure_cost"} <= set(virtcore.testing.__all__)


def test_measure_cost_traces_the_peak_and_keeps_the_outcome() -> None:
    calls: list[int] = []

    def work() -> int:
        calls.append(1)
        block = bytearray(2_000_000)
        return len(block)

    cost = measure_cost(work, runs=2)
    assert cost.outcome == 2_000_000
    assert cost.peak >= 2_000_000  # the traced run saw the block
    assert cost.cpu >= 0.0
    assert len(calls) == 3  # one traced run and two timed ones


def test_measure_cost_records_a_raised_exception_as_the_outcome() -> None:
    def work() -> None:
        raise KeyError("hostile")

    cost = measure_cost(work, runs=1)
    assert isinstance(cost.outcome, KeyError)


def test_measure_cost_needs_a_run() -> None:
    with pytest.raises(ValueError, match="runs must be at least 1"):
        measure_cost(lambda: None, runs=0)


def test_within_both_bounds_passes() -> None:
    assert_cost_bounded("fine", Cost(peak=4000, cpu=0.02, outcome=None),
                        Cost(peak=1, cpu=0.01, outcome=None), 100,
                        memory_ratio=40, time_ratio=2)


def test_too_much_memory_fails_with_the_figures() -> None:
    with pytest.raises(AssertionError, match=r"greedy: peak 4001 bytes for 100 input bytes "
                                             r"\(40.0x, bound 40x\)"):
        assert_cost_bounded("greedy", Cost(peak=4001, cpu=0.0, outcome=None),
                            Cost(peak=1, cpu=0.01, outcome=None), 100,
                            memory_ratio=40, time_ratio=10)


def test_too_much_cpu_against_the_peer_fails_with_the_figures() -> None:
    with pytest.raises(AssertionError, match=r"slow: 21.0 ms CPU, the benign peer took "
                                             r"10.0 ms \(bound 2x\)"):
        assert_cost_bounded("slow", Cost(peak=0, cpu=0.021, outcome=None),
                            Cost(peak=0, cpu=0.010, outcome=None), 100,
                            memory_ratio=40, time_ratio=2)


def test_a_peer_faster_than_a_millisecond_counts_as_one() -> None:
    peer = Cost(peak=0, cpu=0.0, outcome=None)
    assert_cost_bounded("floor", Cost(peak=0, cpu=0.0019, outcome=None), peer, 1,
                        memory_ratio=1, time_ratio=2)
    with pytest.raises(AssertionError, match="bound 2x"):
        assert_cost_bounded("floor", Cost(peak=0, cpu=0.0021, outcome=None), peer, 1,
                            memory_ratio=1, time_ratio=2)
