"""virtio-entropy (virtio 1.2 section 5.4, device ID 4): one request queue, no config.

Each device-writable chain gets as many bytes as it holds (5.4.6.2: at least one).  The bytes
come, in order, from:

- ``source``: a file, served in order; at its end the device stops serving and leaves the
  buffers pending (the driver waits, as with a drained hardware RNG);
- ``seed``: a deterministic stream: BLAKE2b-512 of ``seed || counter`` (64-bit little-endian
  counter from 0), block after block -- the same on every run and Python version;
- neither: ``os.urandom``.

A guest reset does not rewind the stream: served bytes are never served again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from ._device_queue import DeviceQueue
from ._errors import VirtqueueError, cannot_open
from ._model import VirtioDeviceModel

MAX_PER_REQUEST = 1 << 16
"""Bytes served per chain at most (a driver asking for more gets a short length)."""


class VirtioEntropy(VirtioDeviceModel):
    """A virtio entropy source.

    :param source: a file whose bytes are served in order.
    :param seed: an integer or string selecting a deterministic stream.
    """

    name = "virtio-entropy"
    argument_help = (
        ("source=FILE", "serve the file's bytes in order (at its end the device stops "
         "serving)"),
        ("seed=N", "a deterministic stream from N (an integer or a string); with neither "
         "argument, random bytes"),
    )
    device_id = 4
    queue_max_sizes = (256,)

    def __init__(
        self, *, source: str | Path | None = None, seed: int | str | None = None
    ) -> None:
        super().__init__()
        if source is not None and seed is not None:
            raise ValueError("give either source or seed, not both")
        self._file: BinaryIO | None = open(source, "rb") if source is not None else None
        self.source = str(source) if source is not None else None
        self.seed = seed
        if isinstance(seed, bool):
            raise ValueError(f"seed: expected an integer or a string, got {seed!r}")
        self._seed_key = str(seed).encode() if seed is not None else b""
        self._counter = 0
        self._pending = bytearray()
        self._eof = False
        self.served = 0
        """Bytes handed to the guest so far."""

    @classmethod
    def from_args(
        cls, args: Mapping[str, Any], *, base_dir: Path | None = None
    ) -> VirtioEntropy:
        unknown = set(args) - {"source", "seed"}
        if unknown:
            raise ValueError(f"unknown argument(s) {', '.join(sorted(unknown))} "
                             "(allowed: seed, source)")
        source = args.get("source")
        if source is not None:
            if not isinstance(source, str | Path) or not str(source):
                raise ValueError(f"source: expected a file path, got {source!r}")
            path = Path(source).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            source = path
        seed = args.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | str)):
            raise ValueError(f"seed: expected an integer or a string, got {seed!r}")
        try:
            return cls(source=source, seed=seed)
        except OSError as exc:
            raise cannot_open("source", source, exc) from None

    def config_bytes(self) -> bytes:
        return b""

    def _fill(self, size: int) -> None:
        """Make ``size`` bytes ready in ``_pending`` if the source has them."""
        while len(self._pending) < size and not self._eof:
            if self._file is not None:
                chunk = self._file.read(max(size - len(self._pending), 4096))
                if not chunk:
                    self._eof = True
                self._pending += chunk
            elif self.seed is not None:
                self._pending += hashlib.blake2b(
                    self._seed_key + self._counter.to_bytes(8, "little")).digest()
                self._counter += 1
            else:
                self._pending += os.urandom(size - len(self._pending))

    def process(self, index: int, queue: DeviceQueue) -> bool:
        pushed = False
        while True:
            self._fill(1)
            if not self._pending:
                break  # source exhausted: leave the buffers pending
            chain = queue.pop()
            if chain is None:
                break
            if chain.readable_len:
                raise VirtqueueError(index, f"chain {chain.head}: device-readable buffer in "
                                     "the entropy requestq (5.4.6.1)")
            want = min(chain.writable_len, MAX_PER_REQUEST)
            self._fill(want)
            with memoryview(self._pending) as pending:  # no copy of the bytes served
                n = chain.write(pending[:want])
            del self._pending[:n]
            self.served += n
            queue.push(chain, n)
            pushed = True
        return pushed

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
                self._eof = True
