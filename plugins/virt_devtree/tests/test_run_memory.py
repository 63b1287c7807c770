"""``virtcore run X.dtb`` end to end: peak memory a small multiple of the blob (issue 11,
item 2), measured with tracemalloc around the whole command -- discovery, the reader, the
transport, the machine, and for ``--json`` the document and its one write.

A device is named by its node's full path (up to PATH_MAX bytes) while a leaf node takes some
40 bytes of blob, so many small leaves under one long path used to make each device cost a
hundred times its node (a 7.9 MB blob died of MemoryError under a 2 GiB address-space
limit).  The transport now bounds the bytes of path its devices may take by
PATH_BYTES_RATIO per byte of the tree: that shape is refused, in one line naming the file,
and the largest legal long-path tree costs about what a tree of the same size with short
paths costs.
"""

from __future__ import annotations

import contextlib
import io
import tracemalloc
from pathlib import Path

import pytest
from hostile_blobs import deep_long_names
from virtcore._cli import main

from virt_devtree import PATH_BYTES_RATIO, DevtreeTransport, TreeError, parse_dtb
from virt_devtree._transport import tree_size

LEAVES = 3_000
RUN_RATIO = 100
"""Peak bytes per blob byte that ``virtcore run --json`` may take.  Its benign peer (3,000
devices of 40-byte leaves with short paths) takes about 55 (39 without ``--json``): a
Device costs some 1.5 KB, and the JSON document is held as one string per device, then
joined, about 0.5 KB twice, whatever the path; the paths of the largest legal long-path tree
add about 22 (77 in all)."""
LONG_PATHS_RATIO = 1.5
"""How much more, per blob byte, the largest legal long-path tree may cost than short paths:
its paths add a fixed amount per device (about 22 bytes per blob byte), some 40% of the
short-path tree's 55."""

SHAPES = {
    # name: (leaves, levels above them, bytes per level name)
    "benign: short paths": (LEAVES, 1, 8),
    "largest legal: long paths within the bound": (LEAVES, 2, 150),
    "hostile: leaves under 15 names of 255 bytes": (LEAVES, 15, 255),
}


class Recorder(io.StringIO):
    """Standard output that counts its write calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _run(path: Path, *options: str) -> tuple[int, int, Recorder, str]:
    """``virtcore run path options``: (status, peak traced bytes, stdout, stderr)."""
    out, err = Recorder(), io.StringIO()
    tracemalloc.start()
    try:
        with contextlib.redirect_stderr(err):
            status = main(["run", str(path), *options], out=out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return status, peak, out, err.getvalue()


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("blobs")
    warm = folder / "warm.dtb"  # imports and discovery are paid once, before measuring
    warm.write_bytes(deep_long_names(10, 1, 8))
    assert _run(warm, "--json")[0] == 0
    paths = {}
    for name, shape in SHAPES.items():
        paths[name] = folder / (name.partition(":")[0] + ".dtb")
        paths[name].write_bytes(deep_long_names(*shape))
    return paths


def _path_bytes_per_tree_byte(shape: tuple[int, int, int]) -> float:
    leaves, levels, length = shape
    tree = parse_dtb(deep_long_names(leaves, levels, length))
    path = levels * (length + 1) + len("/bb8")
    return leaves * path / tree_size(tree)


def test_the_shapes_sit_where_they_claim() -> None:
    """The legal long-path shape is close to the bound, the hostile one far past it."""
    legal = _path_bytes_per_tree_byte(SHAPES["largest legal: long paths within the bound"])
    hostile = _path_bytes_per_tree_byte(SHAPES["hostile: leaves under 15 names of 255 bytes"])
    assert 0.8 * PATH_BYTES_RATIO < legal <= PATH_BYTES_RATIO
    assert hostile > 10 * PATH_BYTES_RATIO


@pytest.mark.parametrize("options", [("--json",), ()], ids=["json", "text"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_run_peak_memory_is_a_small_multiple_of_the_blob(
    blobs: dict[str, Path], shape: str, options: tuple[str, ...],
) -> None:
    path = blobs[shape]
    size = path.stat().st_size
    status, peak, out, err = _run(path, *options)
    if shape.startswith("hostile"):
        assert status == 1 and out.getvalue() == ""
        assert err.startswith(f"virtcore run: error: {path} ") and err.count("\n") == 1, err
        assert "too many devices under long node paths" in err
    else:
        assert status == 0, err
        if options:
            assert out.writes == 1, "the JSON document is written in one call"
            assert out.getvalue().count('"path"') == SHAPES[shape][0]
    assert peak <= RUN_RATIO * size, f"{shape}: peak {peak} bytes, {peak / size:.0f}x the blob"


def test_long_paths_cost_about_what_short_paths_cost(blobs: dict[str, Path]) -> None:
    """Per blob byte, the largest legal long-path tree costs at most half as much again as
    the tree of short paths with as many devices."""
    short = blobs["benign: short paths"]
    long = blobs["largest legal: long paths within the bound"]
    short_peak = _run(short, "--json")[1] / short.stat().st_size
    long_peak = _run(long, "--json")[1] / long.stat().st_size
    assert long_peak <= LONG_PATHS_RATIO * short_peak, (long_peak, short_peak)


def test_the_path_bound_is_a_tree_error_naming_the_root() -> None:
    """Without a machine file (a tree handed to the transport), the bound is a TreeError."""
    tree = parse_dtb(deep_long_names(LEAVES, 15, 255))
    with pytest.raises(TreeError, match=r"^/: the paths naming its devices take more than "):
        DevtreeTransport(tree)
    small = parse_dtb(deep_long_names(10, 15, 255))  # within the floor: a small tree may
    assert len(DevtreeTransport(small).devices) == 10  # have long paths


def test_the_path_bound_in_a_machine_file_names_its_dtb_key(tmp_path: Path) -> None:
    blob = tmp_path / "board.dtb"
    blob.write_bytes(deep_long_names(LEAVES, 15, 255))
    machine = tmp_path / "m.toml"
    machine.write_text('name = "m"\n[devtree]\ndtb = "board.dtb"\n')
    status, _, out, err = _run(machine)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"virtcore run: error: {machine} [devtree] key 'dtb': "), err


@pytest.mark.parametrize("where", ["blob", "machine file"])
def test_running_out_of_memory_is_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:
    """Where hostile input could still exhaust memory while the tree and its devices are
    built, the user gets one line naming the file, not a MemoryError traceback."""
    import virt_devtree._transport as transport

    def exhausted(self: DevtreeTransport) -> None:
        raise MemoryError

    monkeypatch.setattr(transport.DevtreeTransport, "_build", exhausted)
    blob = tmp_path / "board.dtb"
    blob.write_bytes(deep_long_names(3, 1, 8))
    target = blob
    if where == "machine file":
        target = tmp_path / "m.toml"
        target.write_text('name = "m"\n[devtree]\ndtb = "board.dtb"\n')
    status, _, _, err = _run(target, "--json")
    assert status == 1 and err.count("\n") == 1, err
    assert err.startswith(f"virtcore run: error: {target} "), err
    assert "not enough memory to load this device tree" in err
    assert "MemoryError" not in err
