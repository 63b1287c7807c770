"""Listening on a Unix socket for one front-end, and the ``virtcore vhost-user`` command."""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import stat
import sys
import textwrap
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from virtcore import Machine, VirtcoreError

from .._model import VirtioDeviceModel
from ._backend import SessionEnd, SessionResult, VhostUserBackend
from ._errors import VhostUserError

log = logging.getLogger("virt_virtio.vhost_user")

MODEL_ALIASES: Mapping[str, str] = {"virtio-rng": "virtio-entropy"}
"""Other names the command accepts for a model (QEMU calls the entropy device ``rng``)."""

_SUN_PATH_MAX = 107


class VhostUserServer:
    """A listening Unix socket at ``path`` that serves one front-end connection.

    The socket is bound under a temporary name in the same folder and renamed into place once
    it listens, so a front-end that sees ``path`` can connect at once.  A stale socket left at
    ``path`` by a dead server is replaced; anything else there is refused.

    With ``fd`` instead (vhost-user.rst's ``--fd=FDNUM``), the server adopts a Unix stream
    socket its parent passed: a listening one is accepted on once, a connected one is served
    as it is.  Nothing is unlinked at the end.
    """

    def __init__(self, path: str | Path | None = None, *, fd: int | None = None) -> None:
        if (path is None) == (fd is None):
            raise ValueError("give exactly one of path and fd")
        adopted: socket.socket | None = None
        self.path = Path(path) if path is not None else None
        self.label = str(path) if path is not None else f"fd {fd}"
        self._connected: socket.socket | None = None
        if fd is not None:
            adopted = self._adopt(fd)  # before the pipe: a bad fd leaks nothing
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._backend: VhostUserBackend | None = None
        self._stopped = threading.Event()
        self.listener: socket.socket | None
        if self.path is not None:
            self.listener = self._listen(self.path)
        elif adopted is not None and adopted.getsockopt(socket.SOL_SOCKET,
                                                        socket.SO_ACCEPTCONN):
            self.listener = adopted
        else:
            self.listener, self._connected = None, adopted

    @staticmethod
    def _adopt(fd: int) -> socket.socket:
        """The Unix stream socket open as ``fd``; :class:`VhostUserError` for anything else
        (the fd is left open then: it is not ours)."""
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            raise VhostUserError(f"--fd {fd}: {exc.strerror or exc}") from None
        if not stat.S_ISSOCK(mode):
            raise VhostUserError(f"--fd {fd}: not a socket")
        sock = socket.socket(fileno=fd)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise VhostUserError(f"--fd {fd}: not a Unix stream socket (vhost-user runs over "
                                 "AF_UNIX, SOCK_STREAM)")
        return sock

    def _listen(self, path: Path) -> socket.socket:
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            raise VhostUserError(f"socket path {str(path)!r} is longer than {_SUN_PATH_MAX} "
                                 "bytes (the AF_UNIX limit)")
        self._clear_stale(path)
        temp = path.parent / f".{path.name[:40]}.{os.getpid()}.tmp"
        if len(os.fsencode(temp)) > _SUN_PATH_MAX:
            temp = path.parent / f".vhu{os.getpid()}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if temp.exists() or temp.is_symlink():
                temp.unlink()
            sock.bind(str(temp))
            sock.listen(1)
            os.rename(temp, path)
        except OSError as exc:
            sock.close()
            try:
                temp.unlink()
            except OSError:
                pass
            raise VhostUserError(f"cannot listen on {str(path)!r}: "
                                 f"{exc.strerror or exc}") from None
        return sock

    @staticmethod
    def _clear_stale(path: Path) -> None:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise VhostUserError(f"{str(path)!r}: {exc.strerror}") from None
        if not stat.S_ISSOCK(mode):
            raise VhostUserError(f"{str(path)!r} exists and is not a socket; refusing to "
                                 "replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise VhostUserError(f"{str(path)!r}: {exc.strerror}") from None
            path.unlink(missing_ok=True)  # nobody listens: a stale socket
            return
        finally:
            probe.close()
        raise VhostUserError(f"{str(path)!r} is in use: another server listens there")

    def accept(self) -> socket.socket | None:
        """Wait for the front-end; ``None`` if :meth:`stop` came first."""
        if self._connected is not None:  # --fd of a connected socket: the front-end is here
            conn, self._connected = self._connected, None
            return conn
        listener = self.listener
        if listener is None:
            return None
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ, "accept")
            sel.register(self._wake_r, selectors.EVENT_READ, "stop")
            while True:
                for key, _ in sel.select():
                    if key.data == "stop":
                        return None
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    listener.close()  # one front-end per server
                    return conn

    def serve(self, model: VirtioDeviceModel, *, stall_timeout: float = 5.0) -> SessionResult:
        """Accept one front-end and serve ``model`` to it until the session ends."""
        try:
            conn = self.accept()
            if conn is None or self._stopped.is_set():
                if conn is not None:
                    conn.close()
                return SessionResult(SessionEnd.STOPPED, "stopped before a front-end connected")
            conn.setblocking(True)
            self._backend = VhostUserBackend(model, conn, label=self.label,
                                             stall_timeout=stall_timeout)
            if self._stopped.is_set():  # stop() ran between accept and here
                self._backend.stop()
            return self._backend.serve()
        finally:
            self.close()

    def stop(self) -> None:
        """End :meth:`serve` soon (safe from signal handlers and other threads)."""
        self._stopped.set()
        backend = self._backend
        if backend is not None:
            backend.stop()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def close(self) -> None:
        """Stop listening and remove the socket file (one it created); idempotent."""
        for sock in (self.listener, self._connected):
            if sock is not None and sock.fileno() >= 0:
                sock.close()
        self._connected = None
        try:
            if self.path is not None and stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()
        except OSError:
            pass
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1


def create_model(name: str, args: Mapping[str, Any],
                 base_dir: Path | None = None) -> VirtioDeviceModel:
    """Build installed model ``name`` (or an alias) from its manifest declaration.

    :raises VhostUserError: unknown name, a model that is not a virtio model, or bad args.
    """
    wanted = MODEL_ALIASES.get(name, name)
    machine = Machine("vhost-user")
    try:
        try:
            model = machine.create_model(wanted, args, base_dir=base_dir)
        except LookupError as exc:
            message = str(exc.args[0]) if exc.args else str(exc)
            raise VhostUserError(f"model {name!r}: {message}") from None
        except (TypeError, ValueError, OSError) as exc:
            raise VhostUserError(f"model {name!r}: {exc}") from None
        if not isinstance(model, VirtioDeviceModel):
            model.close()
            virtio = [n for n in machine.model_names() if n.startswith("virtio")]
            raise VhostUserError(f"model {name!r} is not a virtio device model (virtio models: "
                                 f"{', '.join(virtio) or 'none'})")
        machine.models.remove(model)
        return model
    finally:
        machine.close()


BACKEND_TYPES: Mapping[int, str] = {
    1: "net", 2: "block", 3: "console", 4: "rng", 5: "balloon", 7: "rpmsg", 8: "scsi",
    9: "9p", 11: "rproc-serial", 12: "caif", 16: "gpu", 18: "input", 19: "vsock",
    20: "crypto", 26: "fs",
}
"""The ``type`` of ``--print-capabilities`` by virtio device ID: QEMU's
``docs/interop/vhost-user.json`` ``VHostUserBackendType`` (``block``, not ``blk``; ``rng``)."""

FEATURE_TYPES = frozenset({"block", "gpu", "input"})
"""Types whose capabilities document carries a (required) ``features`` list in
``vhost-user.json``.  Their features name command-line options (``--read-only``,
``--blk-file``...) that this command does not have, so the list is empty."""


def capabilities(name: str) -> dict[str, Any]:
    """The ``--print-capabilities`` document of installed model ``name`` (or an alias),
    without building it.

    :raises VhostUserError: unknown model, or one whose device type QEMU has no vhost-user
        back-end type for.
    """
    wanted = MODEL_ALIASES.get(name, name)
    models = dict(served_models())
    cls = models.get(wanted)
    if cls is None:
        raise VhostUserError(f"model {name!r}: no virtio device model of that name "
                             f"(installed: {', '.join(sorted(models)) or 'none'})")
    kind = BACKEND_TYPES.get(cls.device_id)
    if kind is None:
        raise VhostUserError(f"model {name!r}: virtio device ID {cls.device_id} has no "
                             "vhost-user back-end type (QEMU's vhost-user.json)")
    document: dict[str, Any] = {"type": kind}
    if kind in FEATURE_TYPES:
        document["features"] = []
    return document


def _fd_type(text: str) -> int:
    """argparse type of ``--fd``: a file descriptor number."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a file descriptor number") \
            from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def _arg_type(item: str) -> tuple[str, str]:
    """argparse type of ``--arg``: a malformed one is a usage error (exit status 2)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{item!r}: expected KEY=VALUE")
    return key.strip(), value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be positive")
    return value


def served_models() -> list[tuple[str, type[VirtioDeviceModel]]]:
    """``(name, class)`` of every installed virtio device model, by name.

    Reads the manifests and imports each declared model's class (models whose plugin is
    unusable or whose import fails are left out: ``virtcore check`` reports those).
    """
    from virtcore import PluginStatus, discover

    found: dict[str, type[VirtioDeviceModel]] = {}
    try:
        catalog = discover()
    except (VirtcoreError, OSError):
        return []
    for record in catalog.plugins.values():
        if record.status is not PluginStatus.OK or record.manifest is None:
            continue
        for decl in record.manifest.models:
            module_name, _, attr = decl.python_name.partition(":")
            try:
                obj: Any = importlib.import_module(module_name)
                for part in attr.split(".") if attr else ():
                    obj = getattr(obj, part)
            except Exception:  # a broken plugin must not break --help
                continue
            if isinstance(obj, type) and issubclass(obj, VirtioDeviceModel):
                found.setdefault(decl.name, obj)
    return sorted(found.items())


def _models_epilog() -> str:
    aliases: dict[str, list[str]] = {}
    for alias, name in MODEL_ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    lines = ["models (--model NAME) and their arguments (--arg KEY=VALUE):"]
    models = served_models()
    if not models:
        lines.append("  (no virtio device model is installed)")
    for name, cls in models:
        also = f" (also: {', '.join(sorted(aliases[name]))})" if name in aliases else ""
        lines.append(f"  {name}{also}")
        if not cls.argument_help:
            lines.append("      no arguments documented")
        width = max((len(form) for form, _ in cls.argument_help), default=0)
        for form, what in cls.argument_help:
            lines.extend(textwrap.wrap(what, 79, initial_indent=f"      {form.ljust(width)}  ",
                                       subsequent_indent=" " * (width + 8)))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="virtcore vhost-user",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Serve a virtio device model to a vhost-user front-end (QEMU) on a Unix socket: "
            "one connection, then exit (0 when the front-end disconnects cleanly, 1 on an "
            "error, 2 for wrong command-line use).", 79),
        epilog=_models_epilog())
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", "--socket-path", dest="socket", metavar="PATH",
                       help="Unix socket to listen on (QEMU: -chardev socket,path=PATH)")
    where.add_argument("--fd", type=_fd_type, metavar="FDNUM",
                       help="serve the Unix socket open as file descriptor FDNUM, passed by "
                            "the parent: a listening one (accepted once) or a connected one")
    p.add_argument("--model", required=True, metavar="NAME",
                   help="the device model to serve (listed below)")
    p.add_argument("--print-capabilities", action="store_true",
                   help="print the model's vhost-user capabilities as JSON ({\"type\": "
                        "\"rng\"}) and exit; other options are ignored")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", type=_arg_type,
                   help="model argument, repeatable (each model's keys are listed below)")
    p.add_argument("--stall-timeout", type=_positive, default=5.0, metavar="SECONDS",
                   help="longest wait for the rest of a message once it started (default 5)")
    return p


def vhost_user_main(argv: Sequence[str]) -> int:
    """``virtcore vhost-user``: the plugin command declared in virt_virtio's manifest.

    Exit status: 0 for a clean end, 1 for an error (one line on stderr), 2 for wrong
    command-line use (argparse's usage message).
    """
    parser = _parser()
    args = parser.parse_args(list(argv))
    err = sys.stderr
    if args.print_capabilities:
        try:
            document = capabilities(args.model)
        except VhostUserError as exc:
            err.write(f"virtcore vhost-user: error: {exc}\n")
            return 1
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        sys.stdout.flush()
        return 0
    if args.socket is None and args.fd is None:
        parser.error("one of the arguments --socket --fd is required")
    model_args: dict[str, str] = {}
    for key, value in args.arg:
        if key in model_args:
            parser.error(f"argument --arg: {key!r} given twice")
        model_args[key] = value
    try:
        model = create_model(args.model, model_args, Path.cwd())
    except VhostUserError as exc:
        err.write(f"virtcore vhost-user: error: {exc}\n")
        return 1
    try:
        try:
            server = (VhostUserServer(args.socket) if args.socket is not None
                      else VhostUserServer(fd=args.fd))
        except VirtcoreError as exc:
            err.write(f"virtcore vhost-user: error: {exc}\n")
            return 1
        previous = _install_signals(server.stop)
        try:
            err.write(f"virtcore vhost-user: serving {model.name} on {server.label}\n")
            err.flush()
            result = server.serve(model, stall_timeout=args.stall_timeout)
        finally:
            _restore_signals(previous)
    finally:
        model.close()
    # the session's end is reported here, once (the back-end logs it only at INFO level)
    prefix = "virtcore vhost-user: " if result.exit_status == 0 else \
        "virtcore vhost-user: error: "
    err.write(f"{prefix}{result.message}\n")
    return result.exit_status


_Handler = Callable[[int, FrameType | None], Any] | int | None


def _install_signals(stop: Callable[[], None]) -> dict[int, _Handler]:
    previous: dict[int, _Handler] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: the caller handles signals
            break
    return previous


def _restore_signals(previous: dict[int, _Handler]) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)
