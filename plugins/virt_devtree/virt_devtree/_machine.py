"""The ``[devtree]`` section of a machine description.

Exactly one source of the tree::

    [devtree]
    dtb = "board.dtb"             # a blob, or
    dts = "board.dts"             # a source compiled by dtc (optional include-dirs = [...]), or
    [[devtree.nodes]] ...         # nodes declared inline, built with the writer

For ``dtb``/``dts``, ``[[devtree.models]]`` entries (``path``, ``model``, ``args``) put device
models behind nodes; inline nodes carry ``model``/``args`` themselves.  Inline trees have
``#address-cells = <1>``/``#size-cells = <1>`` at the root, and parents created on the way
to a declared node get the same plus an empty ``ranges`` (identity).  When a node declares
``interrupts`` and the root has no ``interrupt-parent``, a controller
``/virtcore-intc`` (``#interrupt-cells = <1>``, no ``compatible``) is added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from virtcore import DeviceModel, MachineContext

from ._dtb import DEFAULT_MAX_DEPTH, unreadable_reason
from ._dts import load_tree
from ._errors import DtbError, DtsError, TreeError
from ._transport import DEV_ID_PROPERTY, OUT_OF_MEMORY, VIRT_DEV_COMPATIBLE
from ._tree import PATH_MAX, DeviceTree, Node

if TYPE_CHECKING:
    from ._transport import DevtreeTransport

SECTION_KEYS: Final = ("dtb", "dts", "include-dirs", "nodes", "models")
NODE_KEYS: Final = ("path", "compatible", "dev-id", "interrupts", "status", "props", "model",
                    "args")
MODEL_KEYS: Final = ("path", "model", "args")
INTC_NAME: Final = "virtcore-intc"


def transport_from_section(
    cls: type[DevtreeTransport], section: Mapping[str, Any], context: MachineContext,
) -> DevtreeTransport:
    context.check_keys(section, SECTION_KEYS)
    sources = [key for key in ("dtb", "dts", "nodes") if key in section]
    if len(sources) != 1:
        context.fail("give exactly one of 'dtb', 'dts' or '[[devtree.nodes]]'"
                     + (f" (found {', '.join(sources)})" if sources else ""),
                     sources[1] if len(sources) > 1 else None)
    models: dict[str, DeviceModel] = {}
    # node path (and property) -> the key that declared it, to name the culprit in errors
    keys: dict[str, str] = {}
    prop_keys: dict[tuple[str, str], str] = {}
    try:
        try:
            if "nodes" in section:
                if "models" in section:
                    context.fail("inline nodes name their model themselves; 'models' is for "
                                 "dtb and dts", "models")
                tree = _inline_tree(section["nodes"], context, models, keys, prop_keys)
            else:
                tree = _load(section, sources[0], context)
                _model_list(section.get("models", []), context, models, keys)
            return cls(tree, models)
        except TreeError as exc:  # a node's contents, found while building: name its key
            if exc.prop is not None and (exc.node, exc.prop) in prop_keys:
                context.fail(exc.reason, prop_keys[exc.node, exc.prop])
            if exc.node in keys:
                context.fail(f"{exc.prop}: {exc.reason}" if exc.prop else exc.reason,
                             keys[exc.node])
            context.fail(str(exc), sources[0])
        except MemoryError:
            context.fail(OUT_OF_MEMORY, sources[0])
    except BaseException:
        for model in models.values():
            model.close()
        raise


def _load(section: Mapping[str, Any], key: str, context: MachineContext) -> DeviceTree:
    value = section[key]
    if not isinstance(value, str) or not value:
        context.fail("expected a file name", key)
    include = section.get("include-dirs", [])
    if key != "dts" and "include-dirs" in section:
        context.fail("include-dirs applies only to 'dts'", "include-dirs")
    if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
        context.fail("expected a list of folder names", "include-dirs")
    path = context.resolve(value)
    try:
        return load_tree(path, include_dirs=[context.resolve(i) for i in include])
    except (DtbError, DtsError) as exc:
        context.fail(str(exc), key)
    except OSError as exc:
        context.fail(f"{path}: {unreadable_reason(exc)}", key)


def _model_list(
    entries: object, context: MachineContext, models: dict[str, DeviceModel],
    keys: dict[str, str],
) -> None:
    if not isinstance(entries, list):
        context.fail("expected an array of tables ([[devtree.models]])", "models")
    for index, entry in enumerate(entries):
        key = f"models[{index}]"
        entry = context.check_keys(entry, MODEL_KEYS, key, required=("path", "model"))
        path = entry["path"]
        if not isinstance(path, str) or not path.startswith("/"):
            context.fail("expected an absolute node path", f"{key}.path")
        if path in models:
            context.fail(f"node {path} already has a model ({keys[path]})", f"{key}.path")
        keys[path] = f"{key}.path"
        models[path] = context.model(entry["model"], entry.get("args"), f"{key}.model")


def _inline_tree(
    entries: object, context: MachineContext, models: dict[str, DeviceModel],
    keys: dict[str, str], prop_keys: dict[tuple[str, str], str],
) -> DeviceTree:
    if not isinstance(entries, list) or not entries:
        context.fail("expected a non-empty array of tables ([[devtree.nodes]])", "nodes")
    tree = DeviceTree()
    tree.root.set("#address-cells", 1)
    tree.root.set("#size-cells", 1)
    needs_intc = False
    phandles: dict[int, str] = {}  # -> the key of the node that has it
    for index, entry in enumerate(entries):
        key = f"nodes[{index}]"
        entry = context.check_keys(entry, NODE_KEYS, key, required=("path",))
        path = entry["path"]
        if not isinstance(path, str) or not path.startswith("/"):
            context.fail("expected an absolute node path such as '/soc/dev@1000'", f"{key}.path")
        _check_path(path, context, f"{key}.path")
        normal = "/" + path.strip("/")
        if normal in keys:
            context.fail(f"node {normal} is declared twice (first as {keys[normal]})",
                         f"{key}.path")
        node = _make_path(tree, path, context, f"{key}.path")
        keys[normal] = key
        _node_props(node, entry, context, key)
        for name in node._props:
            prop_keys[normal, name] = _prop_key(key, name, entry)
        for name in ("phandle", "linux,phandle"):
            if name in node:
                value = node[name].as_u32()
                if value in phandles:
                    context.fail(f"phandle {value:#x} is also given to {phandles[value]}",
                                 prop_keys[normal, name])
                phandles[value] = key
        needs_intc = needs_intc or "interrupts" in node
        if "model" in entry:
            models[node.path] = context.model(entry["model"], entry.get("args"), f"{key}.model")
        elif "args" in entry:
            context.fail("'args' without 'model'", f"{key}.args")
    if needs_intc and "interrupt-parent" not in tree.root:
        used = {n.phandle for n in tree.walk()}
        phandle = next(i for i in range(1, len(used) + 2) if i not in used)
        if tree.root.child(INTC_NAME) is not None:
            context.fail(f"node /{INTC_NAME} exists: give the root an interrupt-parent", "nodes")
        intc = tree.root.add_child(INTC_NAME)
        intc.set("interrupt-controller", True)
        intc.set("#interrupt-cells", 1)
        intc.set("#address-cells", 0)
        intc.set("phandle", phandle)
        tree.root.set("interrupt-parent", phandle)
    _check_interrupt_props(tree, context, prop_keys)
    _check_cell_counts(tree, context, prop_keys)
    return tree


ONE_CELL_PROPS: Final = ("#interrupt-cells", "#address-cells", "#size-cells",
                         "interrupt-parent")
"""Properties of an inline node that must be exactly one cell."""


def _check_interrupt_props(
    tree: DeviceTree, context: MachineContext, prop_keys: dict[tuple[str, str], str],
) -> None:
    """What the kernel needs of the interrupt plumbing a machine file wrote: one cell
    for each of :data:`ONE_CELL_PROPS`, and an ``interrupt-parent`` naming a node of the
    tree that is an interrupt controller.  (Only the nodes with a driver would otherwise
    be checked, when their IRQ is looked up; the others would silently have none.)"""
    nodes = list(tree.walk())
    controllers = {n.phandle: n for n in nodes if n.phandle is not None}
    for node in nodes:
        for name in ONE_CELL_PROPS:
            if name not in node:
                continue
            key = prop_keys.get((node.path, name), "nodes")
            cells = node[name].value
            if len(cells) != 4:
                context.fail(f"{name} must be one cell, not {len(cells)} bytes", key)
        if "interrupt-parent" in node:
            key = prop_keys.get((node.path, "interrupt-parent"), "nodes")
            handle = node["interrupt-parent"].as_u32()
            target = controllers.get(handle)
            if target is None:
                context.fail(f"interrupt-parent {handle:#x}: no node has this phandle", key)
            if "interrupt-controller" not in target and "interrupt-map" not in target:
                context.fail(f"interrupt-parent {handle:#x} is {target.path}, which is not an "
                             "interrupt controller (no interrupt-controller property)", key)


CELL_RECORD_PROPS: Final = ("reg", "ranges", "interrupts", "interrupts-extended")
"""Properties of an inline node made of records whose size another node governs: ``reg``
(the parent's ``#address-cells`` + ``#size-cells``), ``ranges`` (the node's own and the
parent's), ``interrupts`` (the interrupt parent's ``#interrupt-cells``) and
``interrupts-extended`` (each controller's)."""


def _check_cell_counts(
    tree: DeviceTree, context: MachineContext, prop_keys: dict[tuple[str, str], str],
) -> None:
    """Decode every property of :data:`CELL_RECORD_PROPS` as the kernel will, so a count of
    cells that does not divide into whole records (``interrupts = [5, 6, 7]`` under
    ``#interrupt-cells = <2>``, a 3-cell ``reg`` under 1 + 1 cells) is refused while the file
    is loaded, naming the key that wrote it -- not later, at probe time, or never (a node
    without a driver, or whose driver reads no IRQ, would silently have none)."""
    for node in tree.walk():
        present = [name for name in CELL_RECORD_PROPS if name in node]
        if not present:
            continue
        path = node.path
        for name in present:
            try:
                if name == "reg":
                    node.reg  # noqa: B018 - decoding is the check
                elif name == "ranges":
                    node.ranges  # noqa: B018 - decoding is the check
                else:
                    node.interrupts()
            except TreeError as exc:
                key = prop_keys.get((path, name), "nodes")
                where = "" if exc.node == path and exc.prop == name else (
                    f" ({exc.node}:{exc.prop})" if exc.prop else f" ({exc.node})")
                context.fail(f"{exc.reason}{where}", key)


def _check_path(path: str, context: MachineContext, key: str) -> None:
    """Bound a node path before building anything: as deep and as long as the DTB reader
    accepts, so building is linear in the path's length."""
    if len(path) > PATH_MAX:
        context.fail(f"node path of {len(path)} characters is longer than {PATH_MAX}", key)
    depth = path.strip("/").count("/") + 1
    if depth >= DEFAULT_MAX_DEPTH:
        context.fail(f"node path is {depth} levels deep; at most {DEFAULT_MAX_DEPTH - 1} "
                     "below the root", key)


def _prop_key(key: str, name: str, entry: Mapping[str, Any]) -> str:
    """The key of an inline node's entry that set property ``name``."""
    own = {"compatible": "compatible", DEV_ID_PROPERTY: "dev-id", "interrupts": "interrupts",
           "status": "status"}
    if name in own and own[name] in entry:
        return f"{key}.{own[name]}"
    if isinstance(entry.get("props"), Mapping) and name in entry["props"]:
        return f"{key}.props.{name}"
    return f"{key}.path"  # set on a node created for the path


def _make_path(tree: DeviceTree, path: str, context: MachineContext, key: str) -> Node:
    node = tree.root
    for part in path.strip("/").split("/") if path.strip("/") else ():
        child = node._children.get(part)
        if child is None:
            try:
                child = node.add_child(part)
            except ValueError as exc:
                context.fail(str(exc), key)
            child.set("#address-cells", 1)
            child.set("#size-cells", 1)
            child.set("ranges", True)
        node = child
    return node


def _node_props(node: Node, entry: Mapping[str, Any], context: MachineContext, key: str) -> None:
    compatible = entry.get("compatible")
    dev_id = entry.get("dev-id")
    if compatible is None and dev_id is not None:
        compatible = [VIRT_DEV_COMPATIBLE[0]]
    if compatible is not None:
        if isinstance(compatible, str):
            compatible = [compatible]
        if (not isinstance(compatible, list) or not compatible
                or not all(isinstance(c, str) and c for c in compatible)):
            context.fail("expected a string or a non-empty list of strings", f"{key}.compatible")
        _put(node, "compatible", compatible, context, f"{key}.compatible")
    if dev_id is not None:
        if (not isinstance(dev_id, list) or len(dev_id) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF
                           for v in dev_id)):
            context.fail("expected [vendor, device], each from 0 to 0xffff", f"{key}.dev-id")
        if not any(c.lower() in VIRT_DEV_COMPATIBLE for c in compatible or ()):
            context.fail(f"dev-id needs compatible {VIRT_DEV_COMPATIBLE[0]!r}", f"{key}.dev-id")
        node.set(DEV_ID_PROPERTY, dev_id)
    if "interrupts" in entry:
        _set(node, "interrupts", entry["interrupts"], context, f"{key}.interrupts", cells=True)
    if "status" in entry:
        if not isinstance(entry["status"], str):
            context.fail("expected a string such as 'okay' or 'disabled'", f"{key}.status")
        _put(node, "status", entry["status"], context, f"{key}.status")
    props = entry.get("props", {})
    if not isinstance(props, Mapping):
        context.fail("expected a table of property = value", f"{key}.props")
    for name, value in props.items():
        if name in ("compatible", "interrupts", "status", DEV_ID_PROPERTY) and name in node:
            context.fail(f"{name!r} is already given by the node's own key", f"{key}.props.{name}")
        _set(node, name, value, context, f"{key}.props.{name}")
        if name in ("phandle", "linux,phandle"):
            cells = node[name].value
            if len(cells) != 4 or cells in (bytes(4), b"\xff" * 4):
                context.fail("a phandle is one cell from 1 to 0xfffffffe", f"{key}.props.{name}")


def _set(node: Node, name: str, value: object, context: MachineContext, key: str,
         *, cells: bool = False) -> None:
    ok_types = (int,) if cells else (int, str, bool)
    if isinstance(value, list):
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in value) or (
            not cells and all(isinstance(v, str) for v in value))
    else:
        ok = isinstance(value, ok_types) and not (cells and isinstance(value, bool))
    if not ok:
        context.fail("expected a cell, a list of cells" + ("" if cells else
                     ", a string, a list of strings or true"), key)
    _put(node, name, value, context, key)


def _put(node: Node, name: str, value: object, context: MachineContext, key: str) -> None:
    """``node.set`` with its ValueError (a NUL in a string, a cell over 32 bits, a bad
    property name) reported against ``key``."""
    try:
        node.set(name, value)  # type: ignore[arg-type]
    except ValueError as exc:
        context.fail(str(exc), key)
