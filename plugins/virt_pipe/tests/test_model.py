"""PipeModel alone: buffers, end of data, status bits, IRQs, reset, arguments."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from virtcore import MODEL_EOF, MODEL_READABLE, MODEL_WRITABLE

from virt_pipe import DEFAULT_CAPACITY, PipeModel


def read(model: PipeModel, size: int = 1024) -> bytes | int | None:
    buf = bytearray(size)
    n = model.read(memoryview(buf))
    return bytes(buf[:n]) if n else n


@pytest.fixture
def model():
    m = PipeModel(capacity=16)
    irqs: list[int] = []
    m.connect_irq(lambda: irqs.append(1))
    m.irq_log = irqs  # type: ignore[attr-defined]
    yield m
    m.close()


def test_defaults() -> None:
    m = PipeModel()
    assert m.capacity == DEFAULT_CAPACITY and m.name == "virt_pipe"
    assert m.address is None and m.url is None and m.endpoints == []
    assert read(m) is None
    assert m.status() == MODEL_WRITABLE


def test_fifo_order_across_chunks_and_partial_reads(model: PipeModel) -> None:
    assert model.host_write(b"abc") == 3
    assert model.host_write(bytearray(b"defg")) == 4
    assert model.host_write(memoryview(b"hij")) == 3
    assert read(model, 2) == b"ab"
    assert read(model, 5) == b"cdefg"
    assert read(model, 100) == b"hij"
    assert read(model) is None


@pytest.mark.parametrize("sizes", [(1, 2, 3, 5, 8), (7,), (16, 1), (3, 13, 2)])
def test_every_mix_of_chunks_and_read_sizes_reads_the_stream_in_order(sizes) -> None:
    """Whole ``bytes``, slices of ``bytes``, mutable buffers and short writes, read back
    with reads that end inside a chunk, at its end, and across chunks."""
    stream = bytes(range(256)) * 3
    model = PipeModel(capacity=100)
    written = bytearray()
    pieces = [stream[:40], memoryview(stream)[40:90], bytearray(stream[90:150]),
              memoryview(stream)[150:400], stream[400:]]
    got = bytearray()
    turn = 0
    while pieces or len(got) < len(written):
        if pieces:  # a short write leaves the rest for the next turn, as host_write_all does
            n = model.host_write(pieces[0])
            written += bytes(memoryview(pieces[0])[:n])
            pieces[0] = memoryview(pieces[0])[n:]
            if not len(pieces[0]):
                pieces.pop(0)
        size = sizes[turn % len(sizes)]
        turn += 1
        chunk = read(model, size)
        if isinstance(chunk, bytes):
            got += chunk
        unread = len(written) - len(got)  # what the status bits and the room must reflect
        assert bool(model.status() & MODEL_READABLE) == (unread > 0), (turn, unread)
    assert bytes(written) == stream and bytes(got) == stream
    assert read(model) is None


def test_a_chunk_read_to_its_exact_end_frees_its_room_at_once(model: PipeModel) -> None:
    assert model.host_write(b"x" * 16) == 16
    assert model.host_write(b"y") == 0  # full
    assert read(model, 10) == b"x" * 10
    assert model.host_write(b"a" * 12) == 10  # 10 bytes of room, not more
    assert model.host_write(b"y") == 0
    assert read(model, 6) == b"x" * 6  # the first chunk, to its exact end
    assert model.host_write(b"b" * 20) == 6  # its last 6 bytes are free again
    assert read(model, 100) == b"a" * 10 + b"b" * 6
    assert model.status() == MODEL_WRITABLE and read(model) is None
    model.reset()
    assert model.host_write(b"c" * 20) == 16 and read(model, 16) == b"c" * 16


def test_host_write_copies_mutable_buffers(model: PipeModel) -> None:
    data = bytearray(b"1234")
    model.host_write(data)
    data[:] = b"xxxx"
    assert read(model) == b"1234"


def test_capacity_bounds_both_directions(model: PipeModel) -> None:
    assert model.host_write(b"x" * 20) == 16
    assert model.host_write(b"y") == 0
    assert model.write(memoryview(b"z" * 20)) == 16
    assert model.write(memoryview(b"z")) == 0
    assert model.status() == MODEL_READABLE
    assert model.host_read(6) == b"z" * 6
    assert model.status() == MODEL_READABLE | MODEL_WRITABLE


def test_end_of_data_after_the_bytes_and_sticky(model: PipeModel) -> None:
    model.host_write(b"last")
    model.host_close()
    model.host_close()  # idempotent
    assert model.status() == MODEL_READABLE | MODEL_WRITABLE
    assert read(model) == b"last"
    assert model.status() == MODEL_EOF | MODEL_WRITABLE
    assert read(model) == 0
    assert read(model) == 0
    model.host_write(b"new writer")
    assert model.status() == MODEL_READABLE | MODEL_WRITABLE
    assert read(model) == b"new writer"
    assert read(model) is None


def test_a_new_writer_supersedes_an_unread_end_of_data(model: PipeModel) -> None:
    model.host_write(b"one")
    model.host_close()
    model.host_write(b"two")  # like a second writer opening a FIFO
    assert read(model) == b"onetwo"
    assert read(model) is None
    model.host_close()
    assert read(model) == 0
    model.host_reopen()
    assert read(model) is None
    assert model.status() == MODEL_WRITABLE


def test_irq_on_data_on_eof_and_on_space(model: PipeModel) -> None:
    log = model.irq_log  # type: ignore[attr-defined]
    model.host_write(b"a")
    assert len(log) == 1
    model.host_close()
    assert len(log) == 2
    model.write(memoryview(b"b"))
    assert len(log) == 2  # the guest's own write raises nothing
    model.host_read()
    assert len(log) == 3
    assert model.host_write(b"") == 0 and model.host_read() == b"" and len(log) == 3
    assert model.irqs_raised == 3


def test_host_unread_puts_bytes_back_in_front(model: PipeModel) -> None:
    model.write(memoryview(b"0123456789"))
    taken = model.host_read(6)
    assert model.host_read(2) == b"67"
    model.host_unread(taken[2:])
    assert model.host_read() == b"234589"


def test_host_write_all_waits_for_room(model: PipeModel) -> None:
    payload = bytes(range(100))
    done = threading.Event()

    def feed() -> None:
        assert model.host_write_all(payload, timeout=10)
        done.set()

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    got = bytearray()
    while len(got) < len(payload):
        n = read(model, 7)
        if isinstance(n, bytes):
            got += n
    thread.join(5)
    assert done.is_set() and bytes(got) == payload
    assert model.host_write_all(b"x" * 17, timeout=0.05) is False  # full, timed out
    stop = threading.Event()
    stop.set()
    assert model.host_write_all(b"y", stop=stop) is False


def test_reset_requeues_the_data_endpoint() -> None:
    m = PipeModel(data=b"power-on")
    assert read(m) == b"power-on"
    assert read(m) == 0
    m.write(memoryview(b"junk"))
    m.reset()
    assert m.host_read() == b""
    assert read(m) == b"power-on"
    m.close()


def test_data_larger_than_capacity_is_kept_whole() -> None:
    m = PipeModel(capacity=4, data="0123456789")
    assert m.host_write(b"x") == 0  # the power-on data fills the buffer
    assert read(m, 100) == b"0123456789"
    assert read(m) == 0


def test_close_is_idempotent_and_start_after_close_does_nothing() -> None:
    m = PipeModel(socket="tcp:127.0.0.1:0")
    m.close()
    m.close()
    m.start()
    assert m.closed


# -- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "error", "words"), [
    ({"colour": 1}, TypeError, ["'colour'", "allowed", "capacity"]),
    ({"capacity": "big"}, TypeError, ["'capacity'"]),
    ({"capacity": True}, TypeError, ["'capacity'"]),
    ({"capacity": 0}, ValueError, ["'capacity'"]),
    ({"data": 5}, TypeError, ["'data'"]),
    ({"data": "zz", "encoding": "hex"}, ValueError, ["'data'", "hex"]),
    ({"data": "!!!", "encoding": "base64"}, ValueError, ["'data'", "base64"]),
    ({"data": "x", "encoding": "rot13"}, ValueError, ["'encoding'"]),
    ({"encoding": "hex"}, ValueError, ["'encoding'", "'data'"]),
    ({"data": "x", "input": "-"}, ValueError, ["'data'", "'input'"]),
    ({"socket": "tcp:127.0.0.1:0", "output": "-"}, ValueError, ["'socket'", "'output'"]),
    ({"socket": "tcp:0.0.0.0:0"}, ValueError, ["'socket'", "127.0.0.1"]),
    ({"socket": "tcp:127.0.0.1:99999"}, ValueError, ["'socket'", "port"]),
    ({"socket": "udp:1"}, ValueError, ["'socket'", "unix:PATH"]),
    ({"socket": 5}, TypeError, ["'socket'"]),
    ({"socket": "unix:/" + "x" * 120}, ValueError, ["'socket'", "too long"]),
    ({"input": ""}, ValueError, ["'input'"]),
    ({"output": 3}, TypeError, ["'output'"]),
    ({"input": "/nonexistent/virt_pipe/in.bin"}, ValueError, ["'input'", "cannot open"]),
    ({"output": "/nonexistent/virt_pipe/out.bin"}, ValueError, ["'output'", "cannot open"]),
    ({"_base_dir": "/tmp"}, TypeError, ["'_base_dir'", "unknown"]),
])
def test_bad_arguments_name_the_argument(args, error, words) -> None:
    with pytest.raises(error) as info:
        PipeModel.from_args(args)
    for word in words:
        assert word in str(info.value)


def test_arguments_are_decoded() -> None:
    for args, expected in [
        ({"data": "héllo"}, "héllo".encode()),
        ({"data": "68 69", "encoding": "hex"}, b"hi"),
        ({"data": "aGk=", "encoding": "BASE64"}, b"hi"),
        ({"data": ""}, b""),
    ]:
        m = PipeModel.from_args(args)
        got = bytearray(100)
        n = m.read(memoryview(got))
        assert (bytes(got[:n]) if n else b"") == expected
        m.close()


def test_base_dir_resolves_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes(b"relative")
    m = PipeModel.from_args({"input": "in.txt", "output": "out.txt"}, base_dir=tmp_path)
    assert m.endpoints == [str(tmp_path / "in.txt"), str(tmp_path / "out.txt")]
    m.close()
    assert (tmp_path / "out.txt").exists()
    m = PipeModel.from_args({"input": "-", "output": str(tmp_path / "abs.txt")},
                            base_dir=Path("/elsewhere"))
    assert m.endpoints == ["stdin", str(tmp_path / "abs.txt")]
    m.close()


@pytest.mark.virtcore_plugins("virt_pipe")
def test_machine_file_errors_name_the_key(virtcore_machine, tmp_path: Path) -> None:
    from virtcore import MachineContext, MachineFileError

    (tmp_path / "in.bin").write_bytes(b"from a file next to the machine file")
    context = MachineContext(tmp_path / "lab.toml", "loopback", virtcore_machine.create_model)
    model = context.model("virt_pipe", {"input": "in.bin"}, "devices[0].model")
    assert model.endpoints == [str(tmp_path / "in.bin")]  # type: ignore[attr-defined]
    model.close()
    with pytest.raises(MachineFileError) as info:
        context.model("virt_pipe", {"capacity": 0}, "devices[1].model")
    assert info.value.key == "devices[1].model" and "'capacity'" in str(info.value)


def test_unix_socket_in_use_and_stale(tmp_path: Path) -> None:
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no unix sockets")
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="vpipe-"))
    path = folder / "s"
    try:
        first = PipeModel(socket=f"unix:{path}")
        with pytest.raises(ValueError, match="in use"):
            PipeModel(socket=f"unix:{path}")
        first.close()
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))
        stale.close()  # leaves the socket file behind
        second = PipeModel(socket=f"unix:{path}")
        second.close()
        path.write_text("not a socket")
        with pytest.raises(ValueError, match="not a socket"):
            PipeModel(socket=f"unix:{path}")
    finally:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


def test_tcp_port_in_use() -> None:
    first = PipeModel(socket="tcp:127.0.0.1:0")
    try:
        assert isinstance(first.address, tuple)
        with pytest.raises(ValueError, match="cannot listen"):
            PipeModel(socket=f"tcp:localhost:{first.address[1]}")
    finally:
        first.close()
