"""``.dts`` input through dtc, and the error when dtc is missing."""

from __future__ import annotations

import pytest

from virt_devtree import DtsError, compile_dts, load_tree, parse_dtb

SOURCE = """/dts-v1/;
/memreserve/ 0x10000 0x4000;
/ {
    #address-cells = <1>;
    #size-cells = <1>;
    interrupt-parent = <&pic>;
    pic: pic@f000 {
        reg = <0xf000 0x100>;
        interrupt-controller;
        #interrupt-cells = <1>;
    };
    pipe: pipe@1000 {
        compatible = "virtcore,virt-dev";
        reg = <0x1000 0x100>;
        virtcore,dev-id = <0x1af4 0x0002>;
        interrupts = <9>;
    };
};
"""


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "board.dts"
    path.write_text(SOURCE)
    return path


def test_compile_and_load(dtc, source) -> None:
    tree = load_tree(source)
    assert tree.reservations == [(0x10000, 0x4000)]
    pipe = tree["/pipe@1000"]
    assert pipe.irq() == 9
    assert tree.by_label("pipe") is pipe  # -@ keeps labels in __symbols__
    assert pipe.interrupt_parent() is tree.by_label("pic")
    assert parse_dtb(compile_dts(source, symbols=False)).labels == {}


def test_dtc_failure_is_reported(dtc, tmp_path) -> None:
    bad = tmp_path / "bad.dts"
    bad.write_text("/dts-v1/;\n/ { oops = <1 ; };\n")
    with pytest.raises(DtsError, match="dtc failed") as info:
        load_tree(bad)
    assert info.value.path == str(bad) and info.value.stderr
    assert "\n" in info.value.stderr  # dtc's own message spans lines; the error does not
    assert "\n" not in str(info.value)
    assert str(info.value).endswith("syntax error; FATAL ERROR: Unable to parse input tree")


def test_dtc_failure_is_one_line_from_virtcore_run(dtc, tmp_path, capsys) -> None:
    from virtcore._cli import main

    bad = tmp_path / "bad.dts"
    bad.write_text("/dts-v1/;\n/ { oops = <1 ; };\n")
    (tmp_path / "m.toml").write_text('name = "m"\n[devtree]\ndts = "bad.dts"\n')
    for target in (bad, tmp_path / "m.toml"):
        assert main(["run", str(target)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "dtc failed: Error: " in err, err


def test_legacy_property_name_compiles(dtc, tmp_path) -> None:
    legacy = tmp_path / "legacy.dts"
    legacy.write_text('/dts-v1/;\n/ { dev { compatible = "virt-dev"; virt_dev_id = <1>; }; };\n')
    tree = load_tree(legacy)
    assert tree["/dev"]["virt_dev_id"].as_u32() == 1


def test_missing_dtc_says_how_to_install(source, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("VIRTCORE_DTC", raising=False)
    with pytest.raises(DtsError) as info:
        load_tree(source)
    message = str(info.value)
    assert "'dtc' was not found" in message
    assert "apt-get install device-tree-compiler" in message
    assert ".dtb" in message and str(source) in message


def test_missing_source(dtc, tmp_path) -> None:
    with pytest.raises(DtsError, match="no such file"):
        compile_dts(tmp_path / "none.dts")
