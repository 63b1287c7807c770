"""Guest memory (virtcore._guestmem): regions, checked access, the DMA allocator, and a
machine's memory from its ``[memory]`` section."""

from __future__ import annotations

import mmap
import threading

import pytest

from virtcore import GuestMemory, GuestMemoryError, Machine, MachineFileError, MemoryRegion
from virtcore._guestmem import DEFAULT_BASE, DEFAULT_SIZE, parse_size

BASE = 0x1000_0000


@pytest.fixture
def mem() -> GuestMemory:
    return GuestMemory(0x10000, base=BASE)


def test_one_region_from_size(mem: GuestMemory) -> None:
    assert mem.regions == (MemoryRegion(BASE, 0x10000, "ram"),)
    assert mem.size == 0x10000
    assert GuestMemory().regions == ()


def test_read_write_little_endian(mem: GuestMemory) -> None:
    mem.write_u64(BASE + 8, 0x1122334455667788)
    assert mem.read(BASE + 8, 8) == bytes.fromhex("8877665544332211")
    assert mem.read_u32(BASE + 8) == 0x55667788
    assert mem.read_u16(BASE + 12) == 0x3344
    mem.write_u16(BASE, 0x1_ABCD)  # truncated to 16 bits
    assert mem.read(BASE, 2) == b"\xcd\xab"
    mem.write_u32(BASE + 4, 0xDEADBEEF)
    assert mem.read_u32(BASE + 4) == 0xDEADBEEF


def test_view_is_writable_and_shared(mem: GuestMemory) -> None:
    view = mem.view(BASE + 0x100, 4)
    view[:] = b"abcd"
    assert mem.read(BASE + 0x100, 4) == b"abcd"
    assert mem.view(BASE + 0x10000 - 4, 4).nbytes == 4


@pytest.mark.parametrize("gpa, length", [
    (BASE - 1, 1), (BASE + 0x10000, 1), (BASE + 0xFFFF, 2), (0, 4), (BASE, 0x10001),
    (BASE, -1), (-1, 1), ((1 << 64) - 1, 2), (1 << 64, 1), (BASE, 1 << 64),
])
def test_outside_guest_ram_is_refused(mem: GuestMemory, gpa: int, length: int) -> None:
    for access in (lambda: mem.view(gpa, length), lambda: mem.read(gpa, length),
                   lambda: mem.views(gpa, length)):
        with pytest.raises(GuestMemoryError) as info:
            access()
        assert info.value.address == gpa and info.value.length == length
        assert f"{gpa:#x}" in str(info.value)
    if 0 < length <= 0x10001:
        with pytest.raises(GuestMemoryError):
            mem.write(gpa, bytes(length))


def test_zero_length_access_is_allowed(mem: GuestMemory) -> None:
    assert mem.view(0, 0).nbytes == 0
    assert mem.read(BASE + 0x10000, 0) == b""
    assert mem.views(5, 0) == []


def test_regions_refuse_overlap_and_read_only(mem: GuestMemory) -> None:
    with pytest.raises(GuestMemoryError, match="overlaps region 'ram'"):
        mem.add_region(BASE + 0xFFFF, bytearray(16), name="late")
    with pytest.raises(GuestMemoryError, match="read-only"):
        mem.add_region(0, b"immutable")
    with pytest.raises(GuestMemoryError, match="invalid range"):
        mem.add_region(0, bytearray())
    with pytest.raises(GuestMemoryError, match="invalid range"):
        mem.add_region((1 << 64) - 4, bytearray(8))
    assert len(mem.regions) == 1


def test_view_stays_in_one_region_views_span_adjacent_ones() -> None:
    mem = GuestMemory()
    mem.add_region(0x1000, bytearray(b"A" * 0x1000), name="low")
    mem.add_region(0x2000, bytearray(b"B" * 0x1000), name="high")
    assert [r.name for r in mem.regions] == ["low", "high"]
    with pytest.raises(GuestMemoryError):
        mem.view(0x1FFE, 4)
    parts = mem.views(0x1FFE, 4)
    assert [bytes(p) for p in parts] == [b"AA", b"BB"]
    mem.add_region(0x4000, bytearray(16), name="far")
    with pytest.raises(GuestMemoryError, match="byte at 0x3000"):
        mem.views(0x2FFF, 0x1002)
    mem.remove_region(0x2000)
    with pytest.raises(GuestMemoryError):
        mem.read(0x2000, 1)
    with pytest.raises(GuestMemoryError, match="no region starts"):
        mem.remove_region(0x2000)


def test_removed_or_closed_largest_region_is_unreachable_by_every_access() -> None:
    mem = GuestMemory()
    mem.add_region(0x1000, bytearray(16), name="small")
    mem.add_region(0x10000, bytearray(b"L" * 0x4000), name="large")  # the fast path's region
    assert mem.read(0x13FFE, 2) == b"LL" and bytes(mem.view(0x10000, 1)) == b"L"
    mem.write(0x10000, b"x")
    assert mem.read(0x10000, 1) == b"x"
    with pytest.raises(GuestMemoryError):
        mem.view(0x13FFF, 2)  # one byte past the region's end
    with pytest.raises(GuestMemoryError):
        mem.view(0x10000, -1)
    mem.remove_region(0x10000)
    for access in (lambda: mem.view(0x10000, 1), lambda: mem.read(0x10000, 1),
                   lambda: mem.write(0x10000, b"y")):
        with pytest.raises(GuestMemoryError, match="outside guest RAM"):
            access()
    mem.write(0x1000, b"s")
    assert mem.read(0x1000, 1) == b"s"
    mem.close()
    with pytest.raises(GuestMemoryError):
        mem.view(0x1000, 1)


def test_mmap_region_is_shared_with_its_file(tmp_path) -> None:
    path = tmp_path / "ram"
    path.write_bytes(bytes(4096))
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 4096) as mapped:
        mem = GuestMemory()
        mem.add_region(0x8000, mapped, name="memfd")
        mem.write(0x8010, b"shared")
        mem.close()
        mem.close()  # idempotent
        mapped.flush()
    assert path.read_bytes()[0x10:0x16] == b"shared"


def test_alloc_is_aligned_zeroed_and_reused(mem: GuestMemory) -> None:
    mem.write(BASE, b"\xff" * 0x100)
    a = mem.alloc(10)
    b = mem.alloc(100, align=64)
    assert a % 16 == 0 and b % 64 == 0 and b >= a + 10
    assert mem.read(a, 10) == bytes(10)
    mem.write(a, b"x" * 10)
    mem.free(a)
    assert mem.alloc(10) == a
    assert mem.read(a, 10) == bytes(10)
    assert mem.allocated == 110


def test_alloc_exhaustion_and_bad_free(mem: GuestMemory) -> None:
    blocks = [mem.alloc(0x1000) for _ in range(16)]
    with pytest.raises(GuestMemoryError, match="out of DMA memory"):
        mem.alloc(1)
    for gpa in blocks:
        mem.free(gpa)
    assert mem.alloc(0x10000) == BASE  # freed blocks merged back into one
    with pytest.raises(GuestMemoryError, match="not an allocated block"):
        mem.free(BASE + 16)
    with pytest.raises(GuestMemoryError, match="invalid allocation"):
        mem.alloc(0)
    with pytest.raises(GuestMemoryError, match="invalid allocation"):
        mem.alloc(8, align=3)


def test_region_with_allocations_cannot_be_removed(mem: GuestMemory) -> None:
    gpa = mem.alloc(8)
    with pytest.raises(GuestMemoryError, match="allocated DMA block"):
        mem.remove_region(BASE)
    mem.free(gpa)
    mem.remove_region(BASE)
    with pytest.raises(GuestMemoryError, match="out of DMA memory"):
        mem.alloc(8)


def test_concurrent_alloc_free_never_hands_out_a_block_twice(mem: GuestMemory) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            gpa = mem.alloc(32)
            mem.write(gpa, b"\x01" * 32)
            with lock:
                assert gpa not in seen
                seen.append(gpa)
            with lock:
                seen.remove(gpa)
            mem.free(gpa)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mem.allocated == 0


def test_closed_memory_refuses_access(mem: GuestMemory) -> None:
    mem.close()
    with pytest.raises(GuestMemoryError):
        mem.read(BASE, 1)
    with pytest.raises(GuestMemoryError, match="closed"):
        mem.alloc(1)


@pytest.mark.parametrize("text, value", [
    (4096, 4096), ("4096", 4096), ("64M", 64 << 20), ("1G", 1 << 30), ("16 KiB", 16 << 10),
    ("0x1000", 0x1000), ("2m", 2 << 20), ("0xAB", 0xAB), ("0x10 MiB", 16 << 20), ("512B", 512),
    ("1gb", 1 << 30), ("010", 10),
])
def test_parse_size(text: object, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["", "M", "12Q", "1.5G", "-4", "4 MM", True, 1.5, None])
def test_parse_size_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(bad)


def test_machine_memory_is_lazy_with_defaults() -> None:
    with Machine("m", autoload=False) as machine:
        assert machine._memory is None
        memory = machine.memory
        assert memory is machine.memory
        assert memory.regions == (MemoryRegion(DEFAULT_BASE, DEFAULT_SIZE, "ram"),)


def test_machine_memory_can_be_given_once() -> None:
    with Machine("m", autoload=False) as machine:
        mine = GuestMemory(4096)
        machine.memory = mine
        assert machine.memory is mine
        with pytest.raises(GuestMemoryError, match="already has"):
            machine.memory = GuestMemory(4096)


def _description(memory: object) -> dict[str, object]:
    return {"name": "m", "memory": memory, "loopback": {"devices": []}}


def test_memory_section_sets_size_and_base() -> None:
    with Machine("m", plugins=["virtcore"]) as machine:
        machine.load(_description({"size": "1M", "base": 0x8000_0000}))
        assert machine.memory.regions == (MemoryRegion(0x8000_0000, 1 << 20, "ram"),)


@pytest.mark.parametrize("section, key, message", [
    ({"size": "lots"}, "size", "expected a size"),
    ({"size": 0}, "size", "between 1 byte"),
    ({"base": -1}, "base", "outside the 64-bit"),
    ({"sizes": 1}, "sizes", "unknown key"),
    ("64M", None, "expected a table"),
])
def test_memory_section_errors_name_the_key(
    tmp_path, section: object, key: str | None, message: str
) -> None:
    with Machine("m", plugins=["virtcore"]) as machine:
        with pytest.raises(MachineFileError, match=message) as info:
            machine.load(_description(section))
        assert info.value.section == "memory"
        assert info.value.key == key


def test_alloc_without_zeroing_keeps_old_bytes(mem: GuestMemory) -> None:
    gpa = mem.alloc(4)
    mem.write(gpa, b"old!")
    mem.free(gpa)
    assert mem.alloc(4, zero=False) == gpa
    assert mem.read(gpa, 4) == b"old!"


def test_docs_example_runs() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "guest-memory.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/guest-memory.md", "exec"), {})


@pytest.mark.parametrize("rest", [
    {"nosuchbus": {}},  # a section no transport reads
    {},  # no transport section at all
    {"loopback": {"devices": "x"}},  # the transport refuses its section
])
def test_failed_load_takes_back_its_memory_section(rest: dict[str, object]) -> None:
    with Machine("m", plugins=["virtcore"]) as machine:
        with pytest.raises(MachineFileError):
            machine.load({"name": "bad", "memory": {"size": "1M"}, **rest})
        assert machine._memory is None
        # the machine is as before: a corrected file gives it other memory
        machine.load(_description({"size": "2M", "base": 0x8000_0000}))
        assert machine.memory.regions == (MemoryRegion(0x8000_0000, 2 << 20, "ram"),)
