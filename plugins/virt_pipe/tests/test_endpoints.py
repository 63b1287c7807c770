"""Endpoints against real file descriptors and failing peers."""

from __future__ import annotations

import io
import os
import sys
import threading
import time

import pytest

from virt_pipe import PipeModel


def read_all(model: PipeModel, timeout: float = 5.0) -> bytes:
    got = bytearray()
    buf = memoryview(bytearray(4096))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = model.read(buf)
        if n == 0:
            return bytes(got)
        if n:
            got += buf[:n]
        else:
            time.sleep(0.005)
    raise AssertionError(f"no end of data after {len(got)} bytes")


@pytest.mark.skipif(os.name == "nt", reason="select() on pipes is POSIX only")
def test_stdin_from_a_real_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = os.pipe()
    stdin = io.TextIOWrapper(open(r, "rb"))
    monkeypatch.setattr(sys, "stdin", stdin)
    model = PipeModel(input="-", capacity=1000)
    model.start()
    payload = os.urandom(50_000)

    def produce() -> None:
        with open(w, "wb") as out:
            out.write(payload)

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    try:
        assert read_all(model) == payload
    finally:
        writer.join(5)
        model.close()
        stdin.close()


@pytest.mark.skipif(os.name == "nt", reason="select() on pipes is POSIX only")
def test_close_stops_a_thread_waiting_on_a_silent_stdin(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    r, w = os.pipe()
    stdin = io.TextIOWrapper(open(r, "rb"))
    monkeypatch.setattr(sys, "stdin", stdin)
    model = PipeModel(input="-")
    model.start()
    threads = [t for t in threading.enumerate() if t.name.startswith("virt_pipe")]
    assert [t.name for t in threads] == ["virt_pipe stdin"]
    time.sleep(0.05)  # let the thread block on the silent pipe
    assert threads[0].is_alive()
    model.close()
    # close() joined the thread itself (it did not give up on it and leave it running):
    # nothing was written to the pipe, so only the stop flag can have ended it
    assert not threads[0].is_alive()
    assert "did not stop" not in caplog.text
    os.close(w)
    stdin.close()


def test_a_failing_sink_keeps_the_bytes(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    broken = io.BytesIO()
    broken.close()
    monkeypatch.setattr(sys, "stdout", type("Out", (), {"buffer": broken})())
    model = PipeModel(output="-")
    model.start()
    assert model.write(memoryview(b"keep me")) == 7
    deadline = time.monotonic() + 5
    while "writing stdout failed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    model.close()
    assert "writing stdout failed" in caplog.text
    assert model.host_read() == b"keep me"


def test_output_file_gets_pending_bytes_at_close(tmp_path) -> None:
    model = PipeModel(output=str(tmp_path / "out"))  # never started: no thread drained it
    model.write(memoryview(b"flushed at close"))
    model.close()
    assert (tmp_path / "out").read_bytes() == b"flushed at close"
