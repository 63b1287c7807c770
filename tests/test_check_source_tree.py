"""``check_path`` on source trees: each tree is checked with its own modules, and checking
leaves nothing of the tree importable in the process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from conftest import build_plugin

from virtcore._check import check_path

MANIFEST = """\
schema-version = 1
name = "twin"
api-version = 1
[[drivers]]
name = "twin"
python-name = "twin_pkg.drv:{cls}"
[[drivers.ids]]
compatible = "acme,twin"
"""

MODULE = """\
from virtcore import Driver

class {cls}(Driver):
    name = "twin"

    def probe(self, device, match):
        pass
"""


def _tree(root: Path, cls: str) -> Path:
    return build_plugin(root, "twin-dist", "twin", "twin_pkg", MANIFEST.format(cls=cls),
                        files={"drv.py": MODULE.format(cls=cls)})


def test_two_trees_with_the_same_package_are_each_checked_with_their_own_code(
        tmp_path: Path) -> None:
    first = _tree(tmp_path / "a", "FirstDriver")
    second = _tree(tmp_path / "b", "SecondDriver")
    try:
        assert check_path(first).problems == []
        assert check_path(second).problems == []  # not the first tree's twin_pkg.drv
        broken = _tree(tmp_path / "c", "ThirdDriver")
        (broken / "twin_pkg" / "drv.py").write_text(MODULE.format(cls="Other"))
        [problem] = check_path(broken).problems
        assert "has no attribute 'ThirdDriver'" in problem
    finally:
        for name in ("twin_pkg", "twin_pkg.drv"):
            sys.modules.pop(name, None)


def test_checking_a_tree_leaves_its_package_not_importable(tmp_path: Path) -> None:
    tree = _tree(tmp_path, "FirstDriver")
    try:
        assert check_path(tree).problems == []
        assert "twin_pkg" not in sys.modules and "twin_pkg.drv" not in sys.modules
        assert importlib.util.find_spec("twin_pkg") is None
    finally:
        for name in ("twin_pkg", "twin_pkg.drv"):
            sys.modules.pop(name, None)
