"""One line per problem: a broken plugin is not reported twice (the discovery log line, then
the command's summary), and every line a command writes about it starts ``virtcore <cmd>:``.

The commands run in a child process, as a user runs them: the repeated line came from
Python's last-resort logging handler, which only acts where no logging is configured.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BROKEN = 'schema-version = 1\nname = "evil"\napi-version = 1\nbogus = 1\n'


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    info = root / "evil-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "entry_points.txt").write_text("[virtcore.manifest]\nevil = evil:virtcore.toml\n")
    (root / "evil").mkdir()
    (root / "evil" / "virtcore.toml").write_text(BROKEN)
    return root


def virtcore(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTCORE_")}
    env["PYTHONPATH"] = str(site)
    env["VIRTCORE_CACHE_DIR"] = str(site.parent / "cache")
    return subprocess.run([sys.executable, "-m", "virtcore", *args], capture_output=True,
                          text=True, env=env, cwd=site.parent, timeout=120)


@pytest.mark.parametrize("command", [
    ["match", "--compatible", "acme,uart"],
    ["run", "m.toml"],
    ["drivers"],
])
def test_a_broken_plugin_is_one_line_on_stderr(site: Path, command: list[str]) -> None:
    (site.parent / "m.toml").write_text('name = "m"\n[loopback]\n')
    proc = virtcore(site, *command)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"virtcore {command[0]}: warning: 1 plugin(s) broken")
    assert "evil (broken)" in lines[0]


def test_check_reports_a_broken_plugin_once(site: Path) -> None:
    proc = virtcore(site, "check")
    assert proc.returncode == 1
    assert proc.stderr == ""
    mentions = [line for line in proc.stdout.splitlines() if "evil" in line and "bogus" in line]
    assert len(mentions) == 1
    assert mentions[0].startswith("virtcore check: error: ")
    assert mentions[0].endswith("unknown key (allowed: api-version, commands, description, "
                                "drivers, hooks, models, name, schema-version, transports)")


def test_verbose_still_logs_discovery(site: Path) -> None:
    proc = virtcore(site, "-v", "match", "--compatible", "acme,uart")
    assert "virtcore: WARNING: plugin 'evil' (broken)" in proc.stderr


def test_listing_plugin_commands_does_not_report_a_broken_plugin(site: Path) -> None:
    # --help discovers plugins (for their [[commands]]) before -v is known: nothing on stderr
    proc = virtcore(site, "--help")
    assert proc.returncode == 0
    assert proc.stderr == ""
