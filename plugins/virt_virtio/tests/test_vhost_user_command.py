"""``virtcore vhost-user``: the command virt_virtio contributes through its manifest."""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "virtcore", "vhost-user", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no socket"
        time.sleep(0.05)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "virtcore", "vhost-user", *args],
                          capture_output=True, text=True, timeout=120)


def test_serves_one_front_end_and_exits_0_on_clean_disconnect(tmp_path: Path) -> None:
    sock_path = tmp_path / "rng.sock"
    proc = _start("--socket", str(sock_path), "--model", "virtio-rng", "--arg", "seed=3")
    _wait_for(sock_path, proc)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock_path))
        s.sendall(struct.pack("=III", 1, 1, 0))  # GET_FEATURES
        request, flags, size = struct.unpack("=III", s.recv(12))
        assert (request, flags, size) == (1, 0x5, 8)
        assert struct.unpack("=Q", s.recv(8))[0] >> 32 & 1  # VERSION_1
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"serving virtio-entropy on {sock_path}" in err
    assert err.rstrip().endswith("virtcore vhost-user: front-end disconnected")
    assert not sock_path.exists()


def test_sigterm_while_waiting_exits_0_and_removes_socket(tmp_path: Path) -> None:
    sock_path = tmp_path / "blk.sock"
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(4096))
    proc = _start("--socket", str(sock_path), "--model", "virtio-blk", "--arg", f"image={image}")
    _wait_for(sock_path, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "stopped before a front-end connected" in err
    assert not sock_path.exists()


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    sock_path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens
    proc = _start("--socket", str(sock_path), "--model", "virtio-rng")
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock_path))
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


@pytest.mark.parametrize(("args", "words"), [
    (["--model", "nope"], "model 'nope': no device model named 'nope'"),
    (["--model", "virtio-rng", "--arg", "colour=red"], "unknown argument(s) colour"),
    (["--model", "virtio-blk", "--arg", "image=/nonexistent/disk.img"],
     "model 'virtio-blk': image: cannot open '/nonexistent/disk.img': No such file or "
     "directory\n"),
    (["--model", "virtio-rng", "--arg", "source=/nonexistent/entropy"],
     "model 'virtio-rng': source: cannot open '/nonexistent/entropy': No such file or "
     "directory\n"),
    (["--model", "virt_pipe"], "is not a virtio device model"),
])
def test_bad_model_or_args_are_one_line_errors(tmp_path: Path, args: list[str],
                                               words: str) -> None:
    proc = _run("--socket", str(tmp_path / "x.sock"), *args)
    assert proc.returncode == 1
    assert proc.stderr.startswith("virtcore vhost-user: error: ")
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert "Errno" not in proc.stderr
    assert not (tmp_path / "x.sock").exists()


@pytest.mark.parametrize(("args", "words"), [
    (["--arg", "bogus"], "argument --arg: 'bogus': expected KEY=VALUE"),
    (["--arg", "=red"], "argument --arg: '=red': expected KEY=VALUE"),
    (["--arg", "seed=1", "--arg", "seed=2"], "argument --arg: 'seed' given twice"),
    (["--stall-timeout", "0"], "argument --stall-timeout: '0': must be positive"),
    (["--stall-timeout", "soon"], "argument --stall-timeout: 'soon': expected a number"),
])
def test_malformed_arguments_are_usage_errors_exit_2(tmp_path: Path, args: list[str],
                                                     words: str) -> None:
    """README exit statuses: wrong command-line use is 2, with argparse's usage line and
    one error line; nothing is served."""
    proc = _run("--socket", str(tmp_path / "x.sock"), "--model", "virtio-rng", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("usage: virtcore vhost-user")
    assert lines[-1].startswith("virtcore vhost-user: error: ") and words in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.sock").exists()


@pytest.mark.parametrize(("header", "words"), [
    ((1, 0x7, 0), "header flags 0x7: protocol version 3"),  # GET_FEATURES, version 3
    ((99, 0x1, 0), "request 99: not supported by this back-end"),  # no REPLY_ACK: ends
])
def test_a_failed_session_is_said_in_one_line(tmp_path: Path, header: tuple[int, int, int],
                                             words: str) -> None:
    """vhost-user.md: each failure is one line on stderr (it used to be logged and then
    printed again), and the exit status is 1."""
    sock_path = tmp_path / "rng.sock"
    proc = _start("--socket", str(sock_path), "--model", "virtio-rng", "--arg", "seed=3")
    _wait_for(sock_path, proc)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock_path))
        s.sendall(struct.pack("=III", *header))
        assert s.recv(1) == b""  # the back-end ends the session
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = err.splitlines()
    assert lines[0] == f"virtcore vhost-user: serving virtio-entropy on {sock_path}"
    (failure,) = lines[1:]
    assert failure.startswith("virtcore vhost-user: error: ") and words in failure


def test_refuses_to_replace_a_file(tmp_path: Path) -> None:
    target = tmp_path / "notasocket"
    target.write_text("keep me")
    proc = _run("--socket", str(target), "--model", "virtio-rng")
    assert proc.returncode == 1
    assert "exists and is not a socket" in proc.stderr
    assert target.read_text() == "keep me"


def test_help_comes_from_the_plugin() -> None:
    proc = subprocess.run([sys.executable, "-m", "virtcore", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert "vhost-user" in proc.stdout
    proc = _run("--help")
    assert proc.returncode == 0 and "--socket PATH" in proc.stdout


def test_help_lists_every_model_and_each_of_its_argument_keys() -> None:
    """``--help`` names every installed virtio model it can serve (the console too, and
    the rng alias) and, for each, every key its ``from_args`` accepts, no more."""
    from virt_virtio import VirtioDeviceModel
    from virt_virtio._vhost_user._server import served_models

    proc = _run("--help")
    assert proc.returncode == 0
    text = proc.stdout.split("models (--model NAME)", 1)[1]
    served = dict(served_models())
    assert {"virtio-blk", "virtio-console", "virtio-entropy"} <= set(served)
    assert "virtio-entropy (also: virtio-rng)" in text
    assert "serial=TEXT" in text and "image=FILE" in text and "readonly=true|false" in text
    for name, cls in served.items():
        assert issubclass(cls, VirtioDeviceModel)
        assert f"\n  {name}" in text
        documented = {form.split("=", 1)[0] for form, _ in cls.argument_help}
        for form, _ in cls.argument_help:
            assert form in text
        with pytest.raises(ValueError, match=r"allowed: ([a-z, ]+)\)") as info:
            cls.from_args({"no-such-key": "1"})
        allowed = set(re.search(r"allowed: ([a-z, ]+)\)", str(info.value))[1].split(", "))
        assert documented == allowed, name


def test_server_stop_ends_a_running_session(tmp_path: Path) -> None:
    """VhostUserServer.stop() (what SIGTERM calls) ends a session in progress cleanly."""
    import threading

    from virt_virtio import SessionEnd, VhostUserServer, VirtioEntropy

    server = VhostUserServer(tmp_path / "s.sock")
    results = []
    model = VirtioEntropy(seed=1)
    thread = threading.Thread(target=lambda: results.append(server.serve(model)))
    thread.start()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(tmp_path / "s.sock"))
        s.sendall(struct.pack("=III", 17, 1, 0))  # GET_QUEUE_NUM: the session is running
        assert struct.unpack("=IIIQ", s.recv(20))[3] == 1
        server.stop()
        thread.join(30)
        assert not thread.is_alive()
        assert s.recv(1) == b""  # the back-end closed its end
    (result,) = results
    assert result.end is SessionEnd.STOPPED and result.exit_status == 0
    assert not (tmp_path / "s.sock").exists()
    model.close()


def _start_with_fd(fd: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "virtcore", "vhost-user", "--fd", str(fd),
                             *args], pass_fds=(fd,), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _get_features(s: socket.socket) -> int:
    s.sendall(struct.pack("=III", 1, 1, 0))  # GET_FEATURES
    request, flags, size = struct.unpack("=III", s.recv(12))
    assert (request, flags, size) == (1, 0x5, 8)
    features: int = struct.unpack("=Q", s.recv(8))[0]
    return features


def test_fd_of_a_connected_socket_from_the_parent_is_served() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        proc = _start_with_fd(theirs.fileno(), "--model", "virtio-rng", "--arg", "seed=3")
        theirs.close()  # the child holds its own copy
        assert _get_features(ours) >> 32 & 1  # VERSION_1
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"serving virtio-entropy on fd {theirs.fileno() if False else ''}" in err
    assert re.search(r"serving virtio-entropy on fd \d+\n", err), err
    assert err.rstrip().endswith("virtcore vhost-user: front-end disconnected")


def test_fd_of_a_listening_socket_is_accepted_once_and_left_in_place(tmp_path: Path) -> None:
    path = tmp_path / "l.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    proc = _start_with_fd(listener.fileno(), "--model", "virtio-blk", "--arg",
                          f"image={_image(tmp_path)}")
    listener.close()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        assert _get_features(s) >> 32 & 1
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err.rstrip().endswith("virtcore vhost-user: front-end disconnected")
    assert path.is_socket()  # the parent's socket file: not ours to remove


def _image(tmp_path: Path) -> Path:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(4096))
    return image


def test_fd_that_is_not_a_unix_stream_socket_is_one_line(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w") as f:
        proc = _start_with_fd(f.fileno(), "--model", "virtio-rng")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert re.fullmatch(r"virtcore vhost-user: error: --fd \d+: not a socket\n", err), err
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        proc = _start_with_fd(udp.fileno(), "--model", "virtio-rng")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "not a Unix stream socket" in err, err
    proc = _start_with_fd(2, "--model", "virtio-rng", "--socket", str(tmp_path / "s"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "not allowed with argument --fd" in err, err
    done = _run("--model", "virtio-rng")
    assert done.returncode == 2 and "one of the arguments --socket --fd is required" in done.stderr


@pytest.mark.parametrize(("model", "document"), [
    ("virtio-rng", {"type": "rng"}),
    ("virtio-entropy", {"type": "rng"}),
    ("virtio-blk", {"type": "block", "features": []}),
    ("virtio-console", {"type": "console"}),
])
def test_print_capabilities_is_the_json_document_of_the_model(model: str, document: dict) -> None:
    import json

    # other options are ignored: no socket is needed, blk's image is not opened
    done = _run("--model", model, "--print-capabilities", "--arg", "image=/nonexistent")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == document
    assert done.stderr == ""


def test_print_capabilities_of_an_unknown_model_is_one_line() -> None:
    done = _run("--model", "nope", "--print-capabilities")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("virtcore vhost-user: error: model 'nope': no virtio device ")
    assert done.stderr.count("\n") == 1
