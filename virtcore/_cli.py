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

# Each command imports what it needs when it runs, so ``virtcore --help`` or ``virtcore
# plugins`` never pays for the machine, pluggy or the checker.


def _dump(data: Any, out: TextIO) -> None:
    """Write ``data`` as one JSON document in a single ``write`` call (``json.dump`` writes
    token by token: with ``PYTHONUNBUFFERED=1`` that is one system call per token)."""
    import json

    out.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def cmd_plugins(args: argparse.Namespace, out: TextIO) -> int:
    from ._discovery import discover

    catalog = discover(autoload=None if not args.all else True)
    records = list(catalog.plugins.values())
    if args.json:
        _dump([r.to_dict() for r in records], out)
        return 0
    if not records:
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
    return 0


def cmd_drivers(args: argparse.Namespace, out: TextIO) -> int:
    from ._machine import Machine

    machine = Machine("drivers")
    slots = machine.drivers()
    if args.json:
        _dump([s.to_dict() for s in slots], out)
        return 0
    if not slots:
        out.write("no drivers installed\n")
    for s in slots:
        prio = f", priority {s.priority}" if s.priority else ""
        out.write(f"{s.name} (plugin {s.plugin}, {s.python_name}{prio})\n")
        for e in s.ids:
            data = f"  data={e.data!r}" if e.data is not None else ""
            out.write(f"    {e.describe()}{data}\n")
    return 0


def _parse_match_target(args: argparse.Namespace) -> tuple[DeviceIds | None, list[str]]:
    from ._ids import DeviceIds, check_class, parse_id_pair

    ids = None
    if args.id:
        vendor, device = parse_id_pair(args.id)
        subvendor = subdevice = None
        if args.subsystem:
            subvendor, subdevice = parse_id_pair(args.subsystem)
        class_ = check_class(int(args.class_, 0)) if args.class_ else None
        ids = DeviceIds(vendor, device, subvendor, subdevice, class_)
    elif args.subsystem or args.class_:
        raise ValueError("--subsystem and --class need --id VENDOR:DEVICE")
    if ids is None and not args.compatible:
        raise ValueError("give --id VENDOR:DEVICE and/or --compatible STRING")
    return ids, list(args.compatible or [])


def cmd_match(args: argparse.Namespace, out: TextIO) -> int:
    from ._machine import Machine

    try:
        ids, compatible = _parse_match_target(args)
    except ValueError as exc:
        sys.stderr.write(f"virtcore match: {exc}\n")
        return 2
    machine = Machine("match")
    report = machine.explain(ids=ids, compatible=compatible, override=args.override)
    if args.json:
        data = report.to_dict()
        data["device"] = {"ids": str(ids) if ids else None, "compatible": compatible}
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
    return 0


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from ._check import check_installed, check_path

    result = check_path(args.path) if args.path else check_installed()
    if args.json:
        _dump({"checked": result.checked, "problems": result.problems, "ok": result.ok}, out)
    else:
        for problem in result.problems:
            out.write(f"error: {problem}\n")
        names = ", ".join(result.checked) or "no plugins"
        out.write(f"checked {names}: {len(result.problems)} problem(s)\n")
    return 0 if result.ok else 1


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from ._run import run

    return run(args, out)


def cmd_new_plugin(args: argparse.Namespace, out: TextIO) -> int:
    from ._template import create_plugin

    path = create_plugin(args.name, args.dest, force=args.force)
    out.write(f"created plugin {args.name!r} in {path}\n"
              f"next: pip install -e {path} && pytest {path}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--class", dest="class_", metavar="CLASS", help="24-bit class, e.g. 0x010601")
    p.add_argument("--compatible", action="append", metavar="STRING",
                   help="a compatible string; repeat, most specific first")
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
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    import logging

    levels = [logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG]
    logging.basicConfig(level=levels[min(args.verbose, 3)],
                        format="virtcore: %(levelname)s: %(message)s")
    stream = out if out is not None else sys.stdout
    try:
        status: int = args.func(args, stream)
    except VirtcoreError as exc:
        sys.stderr.write(f"virtcore {args.command}: error: {exc}\n")
        return 1
    except BrokenPipeError:
        return 1
    stream.flush()
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
