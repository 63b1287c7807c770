"""``virtcore check DIR`` applies the API-version test discovery applies once the plugin is
installed, and the manifest schema refuses an ``api-version`` below 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import build_plugin

from virtcore import ManifestError, parse_manifest
from virtcore._cli import main

MANIFEST = """\
schema-version = 1
name = "apiv"
api-version = {api}
"""


@pytest.mark.parametrize("api", [99, 2])
def test_check_reports_an_api_version_this_core_does_not_support(
        api: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_plugin(tmp_path, "apiv-dist", "apiv", "apiv", MANIFEST.format(api=api))
    assert main(["check", str(tree)]) == 1
    out = capsys.readouterr().out
    manifest = tree / "apiv" / "virtcore.toml"
    assert out.splitlines()[0] == (
        f"virtcore check: error: {manifest}: key 'api-version': written for core API "
        f"version {api}; this virtcore supports 1 (incompatible)")


@pytest.mark.parametrize("api", [0, -1])
def test_check_and_the_schema_refuse_an_api_version_below_1(
        api: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_plugin(tmp_path, "apiv-dist", "apiv", "apiv", MANIFEST.format(api=api))
    assert main(["check", str(tree)]) == 1
    out = capsys.readouterr().out
    assert f"key 'api-version': api-version must be 1 or more, not {api}" in out
    with pytest.raises(ManifestError, match="api-version must be 1 or more") as info:
        parse_manifest(MANIFEST.format(api=api), "x.toml")
    assert info.value.key == "api-version"


def test_check_passes_the_supported_api_version(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_plugin(tmp_path, "apiv-dist", "apiv", "apiv", MANIFEST.format(api=1))
    assert main(["check", str(tree)]) == 0
    assert capsys.readouterr().out == "checked apiv: 0 problem(s)\n"
