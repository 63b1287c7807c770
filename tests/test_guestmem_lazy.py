"""Guest memory is reserved lazily (issue 11): ``[memory] size = "1G"`` in a 60-byte machine
file used to take 1 GiB of RSS at once (a zero-filled ``bytearray``), and ``size =
0x10000000000`` (1 TiB, inside the documented range) died of a MemoryError traceback.  Now the
RAM is an anonymous private ``mmap`` whose pages the host commits when first touched, a
reservation the host refuses is one line naming ``[memory]`` key ``size``, and
``Machine.close`` gives the memory back."""

from __future__ import annotations

import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from virtcore import GuestMemory, GuestMemoryError, Machine, MachineFileError
from virtcore._guestmem import memory_from_section

GIB = 1 << 30


def _peak(work: object) -> int:
    tracemalloc.start()
    try:
        work()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _machine_file(tmp_path: Path, size: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(f'name = "m"\n[memory]\nsize = {size}\n[loopback]\n')
    return path


def test_a_gib_of_guest_memory_costs_nothing_until_touched() -> None:
    memories: list[GuestMemory] = []
    peak = _peak(lambda: memories.append(GuestMemory(GIB, base=0x4000_0000)))
    memory = memories[0]
    try:
        assert peak < 1 << 20, f"{peak} bytes allocated for an untouched GiB"
        assert memory.size == GIB and memory.read(0x4000_0000 + GIB - 8, 8) == bytes(8)
        memory.write(0x4000_0000 + GIB // 2, b"touched")  # the pages work as RAM
        assert memory.read(0x4000_0000 + GIB // 2, 7) == b"touched"
        gpa = memory.alloc(4096)
        assert memory.view(gpa, 4096) == bytes(4096)
    finally:
        memory.close()


def test_a_machine_file_declaring_a_gib_loads_in_a_few_pages(tmp_path: Path) -> None:
    path = _machine_file(tmp_path, '"1G"')
    with Machine("m") as machine:
        peak = _peak(lambda: machine.load(path))
        assert machine.memory.size == GIB
        assert peak < 16 << 20, f"{peak} bytes to load a 60-byte file"


def test_memory_the_host_cannot_reserve_names_the_key(tmp_path: Path) -> None:
    """Under a 2 GiB address-space limit no host can reserve 1 TiB: one line naming the file,
    ``[memory]`` and ``size``, in a child process so the limit stays there."""
    path = _machine_file(tmp_path, "0x10000000000")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * GIB, 2 * GIB))

    result = subprocess.run(
        [sys.executable, "-m", "virtcore", "run", str(path)], capture_output=True, text=True,
        preexec_fn=limit, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"virtcore run: error: {path} [memory] key 'size': cannot reserve 1099511627776 bytes "
        "(1 TiB) of guest memory: Cannot allocate memory\n")


def test_a_refused_reservation_is_a_guest_memory_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import virtcore._guestmem as guestmem

    class Refusing:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(guestmem.mmap, "mmap", Refusing)
    with pytest.raises(GuestMemoryError, match=r"^cannot reserve 4096 bytes \(4 KiB\) of guest "
                       r"memory: Cannot allocate memory$") as info:
        GuestMemory(4096, base=0x1000)
    assert (info.value.address, info.value.length) == (0x1000, 4096)
    with pytest.raises(MachineFileError) as error:
        memory_from_section({"size": 4096}, "m.toml")
    assert str(error.value).startswith("m.toml [memory] key 'size': cannot reserve 4096 bytes")


def test_machine_close_closes_its_memory() -> None:
    machine = Machine("m")
    memory = machine.memory
    gpa = memory.alloc(64)
    machine.close()
    assert memory.regions == ()
    with pytest.raises(GuestMemoryError, match="outside guest RAM"):
        memory.read(gpa, 1)
    with pytest.raises(GuestMemoryError, match="closed"):
        memory.alloc(16)


def test_views_handed_out_outlive_close_safely() -> None:
    """A view still held when the memory closes keeps its pages mapped (no crash); the RAM
    goes back to the host when the last such view goes."""
    memory = GuestMemory(1 << 20, base=0)
    view = memory.view(0, 16)
    memory.close()
    view[:5] = b"still"
    assert bytes(view[:5]) == b"still"
    view.release()


def test_memory_a_caller_passes_in_stays_the_callers() -> None:
    buffer = bytearray(4096)
    memory = GuestMemory()
    memory.add_region(0, buffer, name="mine")
    memory.close()
    buffer[0] = 1  # released by the memory, not closed or resized: still the caller's
    assert buffer[0] == 1
