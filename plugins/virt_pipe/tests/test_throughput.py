"""Reads are one slice copy: 64 MiB in 64 KiB reads at >= 0.5x a plain buffer copy."""

from __future__ import annotations

import os
import time

from virt_pipe import PipeModel

SIZE = 64 << 20
CHUNK = 64 << 10


def _best(run, repeat: int = 5) -> float:
    return min(run() for _ in range(repeat))


def test_read_throughput() -> None:
    source = os.urandom(SIZE)
    target = memoryview(bytearray(CHUNK))

    def plain() -> float:
        view = memoryview(source)
        started = time.perf_counter()
        for offset in range(0, SIZE, CHUNK):
            target[:] = view[offset:offset + CHUNK]
        return time.perf_counter() - started

    def model_reads() -> float:
        model = PipeModel(data=source)
        started = time.perf_counter()
        while model.read(target):
            pass
        elapsed = time.perf_counter() - started
        model.close()
        return elapsed

    def host_fed_reads() -> float:
        chunks = [source[o:o + CHUNK] for o in range(0, SIZE, CHUNK)]
        model = PipeModel()
        started = time.perf_counter()
        for chunk in chunks:
            model.host_write(chunk)
            model.read(target)
        elapsed = time.perf_counter() - started
        model.close()
        return elapsed

    baseline = _best(plain)
    ours = _best(model_reads)
    fed = _best(host_fed_reads)
    assert baseline / ours >= 0.5, f"reads at {baseline / ours:.2f}x a plain copy"
    assert baseline / fed >= 0.4, f"host_write + read at {baseline / fed:.2f}x a plain copy"
