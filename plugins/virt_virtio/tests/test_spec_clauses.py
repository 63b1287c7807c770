"""Issue 9's rule "tests name the spec clause they check", kept true.

Every test function of this suite names the virtio 1.2 clause it checks, in its docstring
(``2.7.5.3``, ``4.1.4.3.1``, ``App. A``) or in its name (``test_2_7_5_3_...``).  Exempt: the
vhost-user tests (``test_vhost_user_*.py``: their authority is QEMU's vhost-user.rst, not the
virtio specification) and this file, which checks the others.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).parent
EXEMPT_PREFIX = "test_vhost_user"
EXEMPT_FILES = {Path(__file__).name}

_DOTTED = re.compile(r"(?<![\w.])(\d+(?:\.\d+)+)(?![\w.]*\d)")
_NOT_A_CLAUSE = re.compile(r"(?:QEMU|Linux|lspci|pciutils|version|v)\s*$", re.IGNORECASE)
_IN_NAME = re.compile(r"(?:^|_)\d+(?:_\d+)+(?:_|$)")


def names_a_clause(name: str, doc: str) -> bool:
    """Whether a test called ``name`` with docstring ``doc`` names a spec clause."""
    if _IN_NAME.search(name) or "App. A" in doc:
        return True
    return any(not _NOT_A_CLAUSE.search(doc[:m.start()]) for m in _DOTTED.finditer(doc))


def offenders_in(source: str) -> list[str]:
    """The test functions in ``source`` that name no clause."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                node.name.startswith("test"):
            if not names_a_clause(node.name, ast.get_docstring(node) or ""):
                found.append(node.name)
    return found


def test_every_test_of_the_suite_names_its_clause():
    checked = 0
    offenders = []
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name.startswith(EXEMPT_PREFIX) or path.name in EXEMPT_FILES:
            continue
        checked += 1
        offenders += [f"{path.name}::{name}" for name in offenders_in(path.read_text())]
    assert checked >= 10, "the test files were not found"
    assert offenders == [], (
        "name the virtio 1.2 clause each test checks in its docstring (e.g. '2.7.8: ...') "
        "or its name (test_2_7_8_...); see /work/shared/reference/virtio-and-vhost-user.md: "
        + ", ".join(offenders))


def test_the_rule_tells_clauses_from_other_numbers():
    source = '''
def test_plain(): pass
def test_2_7_8_used_ring(): pass
def test_doc():
    """2.7.5.3: an indirect table."""
def test_appendix():
    """App. A virtq_need_event."""
def test_chapter_only():
    """6: feature bits (a chapter is not a clause)."""
def test_versions_only():
    """QEMU 7.2 and Linux 6.1 agree; lspci 3.9 too."""
def test_1_mib():
    """One request per 1 MiB."""
async def test_async(): pass
'''
    assert offenders_in(source) == ["test_plain", "test_chapter_only", "test_versions_only",
                                    "test_1_mib", "test_async"]
