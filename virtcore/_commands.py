"""Plugin-contributed ``virtcore`` subcommands (manifest ``[[commands]]``).

A plugin declares a command by name and ``python-name``; the command line lists it from the
manifest alone and imports the plugin's code only when that command is run.  The callable
receives the command's own arguments (everything after its name, unparsed) and returns the
exit status, so each command parses its options itself (``prog="virtcore NAME"``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from ._contain import describe_exception
from ._discovery import PluginStatus, discover
from ._errors import PluginError, PluginLoadError, VirtcoreError
from ._loader import import_python_name
from ._log import get_logger
from ._manifest import CommandDecl, Manifest

log = get_logger("virtcore.commands")

CommandMain = Callable[[Sequence[str]], int]
"""What a command's ``python-name`` names: ``main(argv) -> exit status``."""


def plugin_commands() -> list[CommandDecl]:
    """Commands declared by usable installed plugins (no plugin code is imported)."""
    try:
        catalog = discover()
    except (VirtcoreError, OSError) as exc:  # the built-in commands must keep working
        log.warning("cannot list plugin commands: %s", exc)
        return []
    decls: list[CommandDecl] = []
    for record in catalog.plugins.values():
        if record.status is not PluginStatus.OK:
            continue
        flat = record.flat_manifest()  # read from the discovery cache: no objects built
        if flat is not None:
            decls += [CommandDecl(n, p, record.name, d) for n, p, d in flat[9]]
        elif record.manifest is not None:
            decls += record.manifest.commands
    return decls


def load_command(decl: CommandDecl) -> CommandMain:
    """Import a command's callable; :class:`PluginLoadError` if it is missing or not one."""
    obj = import_python_name(decl.python_name, plugin=decl.plugin)
    if not callable(obj) or isinstance(obj, type):
        raise PluginLoadError(f"command {decl.name!r}: expected a function main(argv) -> int, "
                              f"got {obj!r}", plugin=decl.plugin, python_name=decl.python_name)
    main: CommandMain = obj
    return main


def add_plugin_commands(sub: Any) -> None:
    """Add a subparser per plugin command to ``sub`` (an argparse subparsers action).

    A command named like a built-in one (or already added) is skipped with a warning.
    """
    for decl in plugin_commands():
        if decl.name in sub.choices:
            log.warning("plugin %r: command %r is already taken; ignored", decl.plugin,
                        decl.name)
            continue
        help_text = decl.description or f"(from plugin {decl.plugin})"
        # no option of our own: every argument goes to the command's own parser
        p = sub.add_parser(decl.name, help=help_text, add_help=False, prefix_chars="\0")
        p.add_argument("command_argv", nargs=argparse.REMAINDER)
        p.set_defaults(func=_runner(decl))


def _runner(decl: CommandDecl) -> Callable[[argparse.Namespace, TextIO], int]:
    def run(args: argparse.Namespace, out: TextIO) -> int:
        main = load_command(decl)
        try:
            status = main(list(args.command_argv))
        except (VirtcoreError, BrokenPipeError):
            raise  # the command line says these in one line
        except Exception as exc:  # a bug in the plugin: one line naming it, exit status 1
            raise PluginError(f"command {decl.name!r} ({decl.python_name}) raised "
                              f"{describe_exception(exc)}", plugin=decl.plugin) from None
        if status is not None and not isinstance(status, int):
            raise PluginError(f"command {decl.name!r} ({decl.python_name}) returned "
                              f"{type(status).__name__}, not an exit status",
                              plugin=decl.plugin)
        return int(status or 0)

    return run


def check_commands(manifest: Manifest) -> Iterator[str]:
    """For ``virtcore check``: one message per command whose python-name does not load."""
    for i, decl in enumerate(manifest.commands):
        try:
            load_command(decl)
        except PluginLoadError as exc:
            yield f"{manifest.path}: key 'commands[{i}].python-name': {exc.reason}"
