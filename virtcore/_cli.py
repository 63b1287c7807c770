"""The ``virtcore`` command line (also ``python -m virtcore``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._errors import VirtcoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from ._ids import DeviceIds
    from ._machine import Machine

# Each command imports what it needs when it runs, so ``virtcore --help`` or ``virtcore
# plugins`` never pays for the machine, pluggy or the checker.

BUILTIN_COMMANDS = ("plugins", "drivers", "match", "check", "run", "new-plugin")


def _dump(data: Any, out: TextIO) -> None:
    """Write ``data`` as one JSON document in a single ``write`` call (``json.dump`` writes
    token by token: with ``PYTHONUNBUFFERED=1`` that is one system call per token).

    These documents grow with the plugins installed, not with an input file, so they are
    encoded in one go (the fastest way); ``virtcore run --json``, whose size follows the
    machine file or blob, lays its devices out one at a time (:mod:`virtcore._json_text`)."""
    import json

    out.write(json.dumps(data, indent=2) + "\n")


def cmd_plugins(args: argparse.Namespace, out: TextIO) -> int:
    from ._discovery import discover, not_loaded, not_loaded_note

    catalog = discover(autoload=None if not args.all else True)
    records = list(catalog.plugins.values())
    if args.json:
        _dump([r.to_dict() for r in records], out)
        return 0
    hidden = [] if args.all else not_loaded(catalog)
    if not records and not hidden:
        out.write("no plugins installed (entry-point group 'virtcore.manifest')\n")
        return 0
    for r in records:
        out.write(f"{r.name} {r.version or '?'} ({r.distribution or '?'}): {r.status.value}\n")
        if r.reason:
            out.write(f"    reason: {r.reason}\n")
        if r.manifest is not None:
            for kind, names in r.manifest.provides().items():
                if names:
                    out.write(f"    {kind}: {', '.join(names)}\n")
    if hidden:
        out.write(not_loaded_note(hidden, ", or use --all") + "\n")
    return 0


def cmd_drivers(args: argparse.Namespace, out: TextIO) -> int:
    from ._discovery import not_loaded, not_loaded_note
    from ._machine import Machine

    machine = Machine("drivers")
    slots = machine.drivers()
    warn_unusable(machine, "drivers")
    if args.json:
        _dump([s.to_dict() for s in slots], out)
        return 0
    if not slots:
        hidden = not_loaded_note(not_loaded(machine.catalog))
        out.write(f"no drivers loaded: {hidden}\n" if hidden else "no drivers installed\n")
    for s in slots:
        prio = f", priority {s.priority}" if s.priority else ""
        out.write(f"{s.name} (plugin {s.plugin}, {s.python_name}{prio})\n")
        for e in s.ids:
            data = f"  data={e.data!r}" if e.data is not None else ""
            out.write(f"    {e.describe()}{data}\n")
    return 0


def _parse_class(text: str) -> int:
    """Hex digits, optionally after ``0x``: as strict as ``--id`` (no blanks, signs
    or ``_``, which ``int()`` would take)."""
    from ._echo import echo
    from ._ids import CLASS_MAX

    digits = text[2:] if text[:2] in ("0x", "0X") else text
    if not digits or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"--class {echo(text)} is not a 24-bit class code in hex "
                         "(e.g. 0x010601 or 010601)")
    value = int(digits, 16)
    if value > CLASS_MAX:
        raise ValueError(f"--class {echo(text)} is not a 24-bit class code in hex "
                         "(0 to 0xffffff)")
    return value


def _parse_match_target(args: argparse.Namespace) -> tuple[DeviceIds | None, list[str]]:
    """The device ``virtcore match`` asks about; ``ValueError`` with a one-line reason."""
    from ._ids import DeviceIds, check_compatible, parse_id_pair
    from ._modalias import parse_modalias

    if args.modalias is not None:
        if args.id or args.subsystem or args.class_ or args.compatible:
            raise ValueError("--modalias describes the whole device: give it alone, without "
                             "--id, --subsystem, --class or --compatible")
        target = parse_modalias(args.modalias)
        return target.ids, list(target.compatible)
    ids = None
    if args.id:
        vendor, device = parse_id_pair(args.id, "--id")
        subvendor = subdevice = None
        if args.subsystem:
            subvendor, subdevice = parse_id_pair(args.subsystem, "--subsystem",
                                                 ("subvendor", "subdevice"))
        class_ = _parse_class(args.class_) if args.class_ else None
        ids = DeviceIds(vendor, device, subvendor, subdevice, class_)
    elif args.subsystem or args.class_:
        raise ValueError("--subsystem and --class need --id VENDOR:DEVICE")
    compatible = []
    for text in args.compatible or []:
        try:
            compatible.append(check_compatible(text))
        except ValueError as exc:
            raise ValueError(f"--compatible: {exc}") from None
    if ids is None and not compatible:
        raise ValueError("give --id VENDOR:DEVICE and/or --compatible STRING, or --modalias")
    return ids, compatible


def unusable_summary(machine: Machine) -> list[dict[str, Any]]:
    """Broken and incompatible plugins, as ``--json`` lists them."""
    return [{"name": r.name, "status": r.status.value, "reason": r.reason}
            for r in machine.unusable_plugins()]


def warn_unusable(machine: Machine, command: str) -> None:
    """One stderr line when plugins are broken or incompatible (their drivers cannot bind),
    saying where to learn why: ``virtcore plugins`` for those found so at discovery; for
    those that broke while the machine ran (a driver or hooks module that did not import),
    the lines ``virtcore run`` prints after this one, one per failure
    (:meth:`Machine.plugin_failures`), which ``virtcore plugins`` cannot know of."""
    records = machine.unusable_plugins()
    if not records:
        return
    at_run = {f.plugin for f in machine.plugin_failures() if f.stage == "load"}
    found = [r for r in records if r.name not in at_run]
    ran = [r for r in records if r.name in at_run]
    parts = []
    if found:
        parts.append(", ".join(f"{r.name} ({r.status.value})" for r in found)
                     + " (virtcore plugins says why)")
    if ran:
        parts.append(", ".join(f"{r.name} ({r.status.value})" for r in ran)
                     + " (broke while the machine ran: the lines below say why)")
    sys.stderr.write(f"virtcore {command}: warning: {len(records)} plugin(s) broken or "
                     f"incompatible, their drivers cannot bind: {'; '.join(parts)}\n")


def cmd_match(args: argparse.Namespace, out: TextIO) -> int:
    from ._echo import bound_words
    from ._machine import Machine

    try:
        ids, compatible = _parse_match_target(args)
    except ValueError as exc:  # the parsers of IDs and modaliases quote the argument whole
        sys.stderr.write(f"virtcore match: error: {bound_words(str(exc))}\n")
        return 2
    machine = Machine("match")
    report = machine.explain(ids=ids, compatible=compatible, override=args.override)
    warn_unusable(machine, "match")
    if args.json:
        data = report.to_dict()
        data["device"] = {"ids": str(ids) if ids else None, "compatible": compatible}
        data["unusable_plugins"] = unusable_summary(machine)
        _dump(data, out)
        return 0
    target = ", ".join(filter(None, [str(ids) if ids else "", *compatible]))
    winner = report.winner
    out.write(f"device: {target}\n")
    out.write(f"winner: {winner.driver if winner else '(none)'}\n")
    for i, m in enumerate(report.candidates, 1):
        verdict = "wins" if i == 1 else f"loses to {report.candidates[0].driver}"
        out.write(f"  {i}. {m.driver} (plugin {m.plugin}) {verdict}: {m.reason}\n")
    for note in report.notes:
        out.write(f"  note: {note}\n")
    if winner is None:
        from ._discovery import not_loaded, not_loaded_note

        hidden = not_loaded_note(not_loaded(machine.catalog))
        if hidden:
            out.write(f"  note: {hidden}\n")
    return 0


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from ._check import check_installed, check_path

    result = check_path(args.path) if args.path else check_installed()
    if args.json:
        _dump({"checked": result.checked, "problems": result.problems, "ok": result.ok}, out)
    else:
        for problem in result.problems:
            out.write(f"virtcore check: error: {problem}\n")
        names = ", ".join(result.checked) or "no plugins"
        out.write(f"checked {names}: {len(result.problems)} problem(s)\n")
    return 0 if result.ok else 1


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from ._run import run

    return run(args, out)


def cmd_new_plugin(args: argparse.Namespace, out: TextIO) -> int:
    from ._template import create_plugin, install_command

    path = create_plugin(args.name, args.dest, force=args.force)
    out.write(f"created plugin {args.name!r} in {path}\n"
              f"next: {install_command(path)} && pytest {path}\n")
    return 0


def build_parser(*, plugin_commands: bool = True) -> argparse.ArgumentParser:
    """The command line's parser; ``plugin_commands=False`` leaves out the commands of
    installed plugins (listing them needs discovery)."""
    parser = argparse.ArgumentParser(
        prog="virtcore", description="Bind bus-independent drivers to virtual devices.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log warnings (-v), binding decisions (-vv), everything (-vvv)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins with their status")
    p.add_argument("--json", action="store_true", help="print data instead of text")
    p.add_argument("--all", action="store_true", help="ignore the autoload environment")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("drivers", help="list drivers with their plugin and ID table")
    p.add_argument("--json", action="store_true", help="print data instead of text")
    p.set_defaults(func=cmd_drivers)

    p = sub.add_parser("match", help="explain which driver would bind given IDs/compatibles")
    p.add_argument("--id", metavar="VENDOR:DEVICE", help="numeric IDs in hex, e.g. 1af4:1041")
    p.add_argument("--subsystem", metavar="SUBVENDOR:SUBDEVICE", help="subsystem IDs in hex")
    p.add_argument("--class", dest="class_", metavar="CLASS",
                   help="24-bit class in hex, e.g. 0x010601")
    p.add_argument("--compatible", action="append", metavar="STRING",
                   help="a compatible string; repeat, most specific first")
    p.add_argument("--modalias", metavar="STRING",
                   help="a device's modalias as Linux writes it (pci:v...d..., of:N...T...C...), "
                        "e.g. \"$(cat /sys/bus/pci/devices/0000:00:03.0/modalias)\"")
    p.add_argument("--override", metavar="DRIVER", help="simulate a driver override")
    p.add_argument("--json", action="store_true", help="print data instead of text")
    p.set_defaults(func=cmd_match)

    p = sub.add_parser("check", help="validate manifests and that every python-name imports")
    p.add_argument("path", nargs="?", help="a plugin source tree or manifest (default: "
                   "installed plugins)")
    p.add_argument("--json", action="store_true", help="print data instead of text")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="boot a machine (default: the embedded demo)")
    p.add_argument("machine", nargs="?", help="a machine description (.toml, .dtb, .dts)")
    p.add_argument("--json", action="store_true", help="print data instead of text")
    p.add_argument("--host", action="store_true", help="show the host's PCI devices "
                   "(read-only) and which driver would bind")
    p.add_argument("--cat", metavar="MISC", help="copy misc device MISC to standard output")
    p.add_argument("--write", metavar="MISC", help="copy standard input (or --input) to MISC")
    p.add_argument("--input", metavar="FILE", help="with --write: read this file")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds --cat waits for data before giving up (default 5)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("new-plugin", help="create a new plugin distribution from a template")
    p.add_argument("name", help="plugin (and package) name, e.g. my_driver")
    p.add_argument("--dest", default=".", help="folder to create it in (default: .)")
    p.add_argument("--force", action="store_true", help="write into an existing folder")
    p.set_defaults(func=cmd_new_plugin)

    if plugin_commands:
        from ._commands import add_plugin_commands

        add_plugin_commands(sub)  # [[commands]] of installed plugins, imported only when run
    return parser


_LOGGING_CONFIGURED = False


def _configure_logging(verbose: int) -> None:
    """Log warnings (-v), binding decisions (-vv), everything (-vvv); errors only by default.
    An application's (or pytest's) own logging set-up is left alone."""
    global _LOGGING_CONFIGURED
    import logging

    levels = [logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG]
    level = levels[min(verbose, 3)]
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="virtcore: %(levelname)s: %(message)s")
        _LOGGING_CONFIGURED = True
    elif _LOGGING_CONFIGURED:
        root.setLevel(level)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # a built-in command needs no discovery to be parsed: plugin commands are listed only
    # when the command is not a built-in one (or for --help)
    word = next((a for a in argv if not a.startswith("-")), None)
    plugin_commands = word not in BUILTIN_COMMANDS
    if plugin_commands:  # discovery logs while parsing: quiet until -v is known, so a
        _configure_logging(0)  # broken plugin is not reported there and again by the command
    parser = build_parser(plugin_commands=plugin_commands)
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    stream = out if out is not None else sys.stdout
    exhausted = False
    try:
        status: int = args.func(args, stream)
    except VirtcoreError as exc:
        sys.stderr.write(f"virtcore {args.command}: error: {exc}\n")
        return 1
    except BrokenPipeError:
        return 1
    except MemoryError:  # said once the handler is left: its traceback holds what was built
        exhausted = True
    if exhausted:
        sys.stderr.write(f"virtcore {args.command}: error: {_out_of_memory(args)}\n")
        return 1
    stream.flush()
    return status


def _out_of_memory(args: argparse.Namespace) -> str:
    """What ran out of memory, naming the input file when the command has one."""
    source = getattr(args, "machine", None) or getattr(args, "path", None)
    if args.command == "run" and source is None and not getattr(args, "host", False):
        from ._run import demo_path

        source = str(demo_path())
    where = f"{source}: " if isinstance(source, str) else ""
    return (f"{where}not enough memory to finish (the input is too large for the memory "
            "this process may use)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
