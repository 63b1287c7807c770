"""Shared fixtures for the core's tests.

``plugin_venv`` is a real virtual environment (session-scoped) with the core installed from
this checkout; ``build_plugin`` writes a throwaway plugin distribution that tests pip-install
into it, so discovery is tested against real installed distributions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from virtcore.testing import isolate_hypothesis

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    isolate_hypothesis(config)  # Hypothesis writes nothing into the checkout

pytest_plugins = ["pytester"]


@dataclass
class Venv:
    path: Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    def run(self, *args: str, env: Mapping[str, str] | None = None, check: bool = True,
            stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTCORE_")}
        full_env.pop("PYTHONPATH", None)
        # nothing outside temporary folders: virtcore's discovery cache (under
        # XDG_CACHE_HOME) and pip's wheel cache live beside the environment
        full_env["XDG_CACHE_HOME"] = str(self.path.parent / "cache")
        full_env["PIP_CACHE_DIR"] = str(self.path.parent / "cache" / "pip")
        full_env.update(env or {})
        proc = subprocess.run([self.python, *args], capture_output=True, text=True,
                              env=full_env, input=stdin, timeout=300, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                                 f"stderr:\n{proc.stderr}")
        return proc

    def pip(self, *args: str) -> None:
        self.run("-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args)

    def virtcore(self, *args: str, env: Mapping[str, str] | None = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "virtcore", *args, env=env, check=check)

    def virtcore_json(self, *args: str, env: Mapping[str, str] | None = None) -> object:
        return json.loads(self.virtcore(*args, "--json", env=env).stdout)


def make_venv(path: Path) -> Venv:
    """A fresh virtual environment with hatchling and the core (from this checkout).

    Packages come from the registry configured for pip; the core is built from ROOT.
    """
    venv.EnvBuilder(with_pip=True).create(path)
    env = Venv(path)
    env.pip("hatchling>=1.27", "pluggy>=1.3", "tomli>=2.0")
    env.pip("--no-build-isolation", "--no-deps", str(ROOT))
    return env


@pytest.fixture(scope="session")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A session-wide virtual environment with the core installed."""
    return make_venv(tmp_path_factory.mktemp("venv") / "env")


def build_plugin(root: Path, dist: str, entry_name: str, package: str, manifest: str,
                 files: Mapping[str, str] | None = None) -> Path:
    """Write a throwaway plugin distribution (hatchling) and return its folder."""
    folder = root / dist
    pkg = folder / package
    pkg.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "{dist}"
        version = "1.2.3"
        dependencies = []

        [project.entry-points."virtcore.manifest"]
        {entry_name} = "{package}:virtcore.toml"

        [tool.hatch.build.targets.wheel]
        packages = ["{package}"]
        """))
    (pkg / "__init__.py").write_text("")
    (pkg / "virtcore.toml").write_text(textwrap.dedent(manifest))
    for name, text in (files or {}).items():
        target = pkg / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def python_exe() -> str:
    return sys.executable
