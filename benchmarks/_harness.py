"""Shared benchmark machinery: generated plugin environments, whole-process timing, statistics.

Environments are virtual environments under ``$VIRTCORE_BENCH_DIR`` (default
``<tempdir>/virtcore-bench``), one per plugin count, built once and reused.  Each holds
virtcore (installed from this checkout at the start of every run, so it is the code under
test), pluggy, tomli, stevedore and N generated plugin distributions written the way pip
writes them (``*.dist-info`` with ``METADATA``, ``RECORD``, ``INSTALLER``,
``entry_points.txt``; the package beside it with its bytecode compiled).  Every plugin:

* declares the ``virtcore.manifest`` entry point and a manifest of one driver with five ID
  entries (four vendor:device pairs and a compatible string);
* declares a ``vcbench.plugins`` entry point naming its package, which the peers that import
  plugins (pluggy's eager load, stevedore) load;
* has a package whose import does a little work (a regex, a dataclass, a table).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = 3  # bump when the generated plugins change: environments are rebuilt
PEER_GROUP = "vcbench.plugins"

MANIFEST = """\
schema-version = 1
name = "{name}"
api-version = 1
description = "generated benchmark plugin {index}"

[[drivers]]
name = "{name}_drv"
python-name = "{name}.driver:Driver"
description = "driver of generated plugin {index}"
{ids}
[[drivers.ids]]
compatible = "vcbench,{name}"
"""

ID_ENTRY = """[[drivers.ids]]
vendor = 0x{vendor:04x}
device = 0x{device:04x}
"""

PACKAGE = '''\
"""Generated benchmark plugin {index}: importing it does a little work."""

import re
from dataclasses import dataclass

NAME_RE = re.compile(r"^{name}_[a-z]+$")


@dataclass(frozen=True)
class Settings:
    name: str
    table: tuple[int, ...]


TABLE = {{i: (i * 2654435761 + {index}) & 0xFFFF for i in range(64)}}
SETTINGS = Settings("{name}", tuple(sorted(TABLE.values()))[:8])
'''

DRIVER = '''\
"""Never imported by discovery."""

raise RuntimeError("discovery imported driver code of {name}")
'''


def plugin_name(index: int) -> str:
    return f"vcbench_p{index:05d}"


def plugin_ids(index: int) -> list[tuple[int, int]]:
    """The four vendor:device pairs plugin ``index`` declares (distinct across plugins)."""
    return [(0x2000 + (index >> 4), ((index & 0xF) << 4) | k) for k in range(4)]


def plugin_files(index: int) -> dict[str, str]:
    """Relative path -> text of every file of plugin ``index``, as installed."""
    name = plugin_name(index)
    info = f"{name}-1.0.dist-info"
    ids = "".join(ID_ENTRY.format(vendor=v, device=d) for v, d in plugin_ids(index))
    files = {
        f"{name}/__init__.py": PACKAGE.format(name=name, index=index),
        f"{name}/driver.py": DRIVER.format(name=name),
        f"{name}/virtcore.toml": MANIFEST.format(name=name, index=index, ids=ids),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/entry_points.txt": (f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n\n"
                                     f"[{PEER_GROUP}]\n{name} = {name}\n"),
        f"{info}/top_level.txt": f"{name}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: vcbench\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    return files


def _record(files: Mapping[str, str], info: str) -> str:
    lines = []
    for rel, text in files.items():
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        lines.append(f"{rel},sha256={digest},{len(data)}")
    lines.append(f"{info}/RECORD,,")
    return "\n".join(lines) + "\n"


def bench_dir() -> Path:
    return Path(os.environ.get("VIRTCORE_BENCH_DIR")
                or Path(tempfile.gettempdir()) / "virtcore-bench")


@dataclass
class Env:
    """A benchmark virtual environment with ``plugins`` generated plugins."""

    path: Path
    plugins: int

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def script(self) -> str:
        return str(self.path / "bin" / "virtcore")

    @property
    def site(self) -> Path:
        out = subprocess.run([self.python, "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
        return Path(out)

    def pip(self, *args: str) -> None:
        subprocess.run([self.python, "-m", "pip", "--quiet", "--disable-pip-version-check",
                        *args], check=True, env=clean_env())

    def install_core(self) -> None:
        """(Re)install virtcore from this checkout, not editable: the code under test."""
        self.pip("install", "--no-deps", "--no-build-isolation", "--force-reinstall",
                 str(ROOT))

    def extra_wheel(self) -> Path:
        """A wheel of one more plugin (for the install / uninstall rounds)."""
        target = self.path.parent / f"wheels-{self.plugins}"
        index = 90000
        name = plugin_name(index)
        wheel = target / f"{name}-1.0-py3-none-any.whl"
        if wheel.exists():
            return wheel
        target.mkdir(parents=True, exist_ok=True)
        files = plugin_files(index)
        info = f"{name}-1.0.dist-info"
        with zipfile.ZipFile(wheel, "w") as zf:
            for rel, text in files.items():
                zf.writestr(rel, text)
            zf.writestr(f"{info}/RECORD", _record(files, info))
        return wheel


def build_env(plugins: int, *, log: Callable[[str], None] = print) -> Env:
    """The environment with ``plugins`` generated plugins, built on first use."""
    path = bench_dir() / f"env-{plugins}"
    env = Env(path, plugins)
    stamp = path / ".vcbench-ready"
    if stamp.exists() and stamp.read_text() == str(GENERATOR):
        return env
    if path.exists():
        shutil.rmtree(path)
    log(f"building {path} with {plugins} plugins (once; reused by later runs)")
    started = time.perf_counter()
    venv.EnvBuilder(with_pip=True).create(path)
    env.pip("install", "hatchling>=1.18", "pluggy>=1.3", "tomli>=2", "stevedore")
    site = env.site
    for index in range(plugins):
        name = plugin_name(index)
        info = f"{name}-1.0.dist-info"
        files = plugin_files(index)
        for rel, text in files.items():
            target = site / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        (site / info / "INSTALLER").write_text("pip\n")
        (site / info / "RECORD").write_text(_record(files, info))
    subprocess.run([env.python, "-m", "compileall", "-q", "-j", "0",
                    *(str(site / plugin_name(i)) for i in range(plugins))],
                   check=True, stdout=subprocess.DEVNULL)
    stamp.write_text(str(GENERATOR))
    log(f"  built in {time.perf_counter() - started:.0f} s")
    return env


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: no VIRTCORE_*, PYTHONPATH or venv leakage."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VIRTCORE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(extra or {})
    return env


@dataclass
class Sample:
    wall: float
    cpu: float


def run_process(argv: Sequence[str], env: Mapping[str, str], cwd: str,
                stdout_path: str | None = None) -> Sample:
    """Run one whole process; wall time from spawn to exit, CPU time from its rusage."""
    out_fd = os.open(stdout_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, out_fd, 1)]
        saved = os.getcwd()
        os.chdir(cwd)
        try:
            started = time.perf_counter()
            pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions)
            _, status, usage = os.wait4(pid, 0)
            wall = time.perf_counter() - started
        finally:
            os.chdir(saved)
    finally:
        os.close(out_fd)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {os.waitstatus_to_exitcode(status)})"
                           f" in {cwd}")
    return Sample(wall, usage.ru_utime + usage.ru_stime)


@dataclass
class Series:
    """Samples of one contender and its per-round ratios to the reference."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)

    def wall_ms(self) -> float:
        return statistics.median(s.wall for s in self.samples) * 1e3

    def cpu_ms(self) -> float:
        return statistics.median(s.cpu for s in self.samples) * 1e3


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(lower quartile, median, upper quartile)."""
    if len(values) < 2:
        v = values[0]
        return v, v, v
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]


def spread(values: Sequence[float]) -> str:
    lo, med, hi = quartiles(values)
    return f"{med:.2f} [{lo:.2f}-{hi:.2f}]"


def verdict(label: str, ratios: Sequence[float], target: float, *, higher: bool = False) -> bool:
    """Print whether the median ratio meets ``target``, and how sure that is.

    ``higher``: the ratio must be at least ``target`` (throughput); else at most (time).
    The spread is the interquartile range of the per-round ratios; "holds" means the whole
    range is on the right side of the target, "marginal" that only the median is.
    """
    lo, med, hi = quartiles(ratios)
    if higher:
        ok, sure = med >= target, lo >= target
        sign = ">="
    else:
        ok, sure = med <= target, hi <= target
        sign = "<="
    state = ("holds" if sure else "marginal") if ok else "MISSED"
    print(f"  verdict: {label}: {med:.2f} (interquartile {lo:.2f}-{hi:.2f}) target {sign} "
          f"{target}: {state}")
    return ok


def machine_info() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs ({cpu}), "
            f"load average {load:.2f}")
