"""The arguments of a :class:`~virt_pipe.PipeModel` in a machine description.

::

    args = { capacity = 4096, data = "hello" }                 # in-memory bytes, then EOF
    args = { data = "68656c6c6f", encoding = "hex" }           # or "base64", "utf-8"
    args = { input = "in.bin", output = "out.bin" }            # stream a file, append output
    args = { input = "-", output = "-" }                       # standard input and output
    args = { socket = "unix:/tmp/pipe.sock" }                  # one client at a time
    args = { socket = "tcp:127.0.0.1:0" }                      # port 0: an ephemeral port

Validation raises ``TypeError`` (unknown argument, wrong type) or ``ValueError`` (bad value),
each message naming the argument, so the core can report it against the machine file key.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._ids import DEFAULT_CAPACITY

ARGUMENTS: Final = ("capacity", "data", "encoding", "input", "output", "socket")
"""The argument names a machine description may give."""

ENCODINGS: Final = ("utf-8", "hex", "base64")
MAX_CAPACITY: Final = 1 << 30
STDIO: Final = "-"
LOCALHOST: Final = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class SocketSpec:
    """A parsed ``socket`` argument: ``unix`` with a path, or ``tcp`` on 127.0.0.1."""

    kind: str
    path: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"tcp:{LOCALHOST}:{self.port}"


def check_capacity(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"argument 'capacity' must be an integer (bytes), not {value!r}")
    if not 1 <= value <= MAX_CAPACITY:
        raise ValueError(f"argument 'capacity' must be from 1 to {MAX_CAPACITY}, not {value}")
    return value


def decode_data(value: object, encoding: object = "utf-8") -> bytes:
    """The bytes of a ``data`` argument written as text in ``encoding``."""
    if not isinstance(encoding, str) or encoding.lower() not in ENCODINGS:
        raise ValueError(f"argument 'encoding' must be one of {', '.join(ENCODINGS)}, "
                         f"not {encoding!r}")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str):
        raise TypeError(f"argument 'data' must be a string, not {value!r}")
    encoding = encoding.lower()
    try:
        if encoding == "hex":
            return bytes.fromhex(value)
        if encoding == "base64":
            return base64.b64decode(value.encode("ascii"), validate=True)
        return value.encode("utf-8")
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise ValueError(f"argument 'data' is not valid {encoding}: {exc}") from None


def check_path(name: str, value: object, base_dir: Path | None = None) -> str:
    """A file argument (``input``/``output``): ``"-"`` for stdio, else a path."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"argument {name!r} must be a path (a string), or '-' for standard "
                        f"{'input' if name == 'input' else 'output'}, not {value!r}")
    if not value:
        raise ValueError(f"argument {name!r} must not be empty")
    if value == STDIO:
        return value
    path = Path(value).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return str(path)


def parse_socket(value: object, base_dir: Path | None = None) -> SocketSpec:
    """Parse ``unix:PATH`` or ``tcp:127.0.0.1:PORT`` (``tcp:localhost:PORT``, ``tcp:PORT``)."""
    if not isinstance(value, str):
        raise TypeError(f"argument 'socket' must be a string such as 'unix:/tmp/pipe.sock' "
                        f"or 'tcp:127.0.0.1:0', not {value!r}")
    kind, sep, rest = value.partition(":")
    if kind == "unix" and sep and rest:
        path = Path(rest).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        if len(os.fsencode(str(path))) > 107:
            raise ValueError(f"argument 'socket': unix socket path is too long (over 107 "
                             f"bytes): {str(path)!r}")
        return SocketSpec("unix", path=str(path))
    if kind == "tcp" and sep and rest:
        host, _, port_text = rest.rpartition(":")
        if host not in ("", LOCALHOST, "localhost"):
            raise ValueError(f"argument 'socket': the pipe listens on {LOCALHOST} only, not "
                             f"{host!r}")
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"argument 'socket': port must be 0 (any free port) to 65535, "
                             f"not {port_text!r}")
        return SocketSpec("tcp", port=int(port_text))
    raise ValueError(f"argument 'socket' must be 'unix:PATH' or 'tcp:127.0.0.1:PORT', "
                     f"not {value!r}")


def check_endpoints(*, data: bool, input: bool, output: bool, socket: bool) -> None:
    """Refuse combinations where two endpoints would feed or drain the same direction."""
    if data and input:
        raise ValueError("arguments 'data' and 'input' both feed the guest: give only one")
    if socket and (data or input or output):
        other = [n for n, given in (("data", data), ("input", input), ("output", output))
                 if given]
        raise ValueError(f"argument 'socket' carries both directions: it cannot be combined "
                         f"with {', '.join(repr(o) for o in other)}")


def model_kwargs(args: Mapping[str, Any], base_dir: Path | None = None) -> dict[str, Any]:
    """Validate machine-file ``args`` and turn them into :class:`PipeModel` keyword arguments.

    :param base_dir: the folder relative ``input``, ``output`` and ``unix:`` paths are
        resolved against (the machine file's folder); ``None`` leaves them as given.
    :raises TypeError: for an unknown argument or a value of the wrong type.
    :raises ValueError: for a bad value or a forbidden combination.
    """
    if not isinstance(args, Mapping):
        raise TypeError(f"model arguments must be a table, not {args!r}")
    for key in args:
        if key not in ARGUMENTS:
            raise TypeError(f"unknown argument {key!r} (allowed: {', '.join(ARGUMENTS)})")
    kwargs: dict[str, Any] = {"capacity": check_capacity(args.get("capacity",
                                                                  DEFAULT_CAPACITY))}
    if "encoding" in args and "data" not in args:
        raise ValueError("argument 'encoding' applies to 'data', which is not given")
    if "data" in args:
        kwargs["data"] = decode_data(args["data"], args.get("encoding", "utf-8"))
    for name in ("input", "output"):
        if name in args:
            kwargs[name] = check_path(name, args[name], base_dir)
    if "socket" in args:
        kwargs["socket"] = str(parse_socket(args["socket"], base_dir))
    check_endpoints(data="data" in args, input="input" in args, output="output" in args,
                    socket="socket" in args)
    return kwargs
