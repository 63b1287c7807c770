"""Discovery as whole processes, against peers, at 100, 1,000 and 3,000 installed plugins.

    python benchmarks/bench_discovery.py [--plugins 100 1000 3000] [--rounds 15]

Every contender is a fresh ``python`` process in the same generated virtual environment (see
``_harness.py``: realistic plugins with five-entry manifests and packages whose import does a
little work).  Rounds are interleaved: each round runs every contender once, in an order
rotated from round to round, and each contender's time is divided by the bare scan's time of
the same round.  The figures are medians over the rounds, with the interquartile range of the
per-round ratios; CPU time (user + system, from the child's rusage) is given beside wall time.

Scenarios:

* **warm**: virtcore's cache is up to date (the usual start);
* **after one install**: before each round one more plugin is installed or uninstalled with
  pip (alternately), so virtcore's first start after it is measured;
* **cold**: no virtcore cache at all (a fresh empty cache folder for every run) and no
  stevedore cache either.

Contenders (the reference is the first):

* ``bare``: ``importlib.metadata.entry_points(group="virtcore.manifest")``, listed;
* ``machine``: ``virtcore.Machine()`` plus one match (``explain``) of a device;
* ``plugins-json``: the ``virtcore plugins --json`` script, ``PYTHONUNBUFFERED=1``;
* ``naive``: entry points plus ``find_spec`` plus ``tomllib`` on every manifest;
* ``pluggy``: ``PluginManager.load_setuptools_entrypoints`` (imports every plugin);
* ``stevedore``: ``ExtensionManager`` (imports every plugin; its own entry-point cache).

**Linearity** ("warm cost grows at most linearly"): needs the warm scenario at three or more
plugin counts in one run (the default ``--plugins 100 1000 3000``; e.g.
``--plugins 100 1000 3000 --scenarios warm`` for this verdict alone).  A whole process has a
fixed cost (the interpreter, ``import virtcore``) that would hide any growth in a cost per
plugin, so the cost per plugin is taken between counts, from the median times: the marginal
cost per plugin of the largest step (``(t(3000) - t(1000)) / 2000``) must be at most
``LINEAR_SLACK`` (1.5) times that of the smallest step (``(t(1000) - t(100)) / 900``), for
``machine`` and ``plugins-json``, wall and CPU time.  Counts run one after another, not
interleaved, so this verdict rests on medians alone (no per-round spread); a count whose
median does not grow above the smaller one gives no verdict (too noisy to tell).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    PEER_GROUP,
    Env,
    Series,
    build_env,
    clean_env,
    machine_info,
    run_process,
    spread,
    verdict,
)

BARE = ("import importlib.metadata as m; "
        "list(m.entry_points(group='virtcore.manifest'))")
MACHINE = ("import virtcore; m = virtcore.Machine(); "
           "r = m.explain(ids=virtcore.DeviceIds(0x2000, 0x10)); "
           "assert r.winner and r.winner.driver == 'vcbench_p00001_drv', r")
NAIVE = """\
import importlib.metadata as m, importlib.util, os, tomllib
for ep in m.entry_points(group='virtcore.manifest'):
    package, _, resource = ep.value.partition(':')
    spec = importlib.util.find_spec(package)
    with open(os.path.join(spec.submodule_search_locations[0], resource), 'rb') as f:
        tomllib.load(f)
"""
PLUGGY = (f"import pluggy; pm = pluggy.PluginManager('vcbench'); "
          f"pm.load_setuptools_entrypoints('{PEER_GROUP}')")
STEVEDORE = (f"from stevedore import ExtensionManager; "
             f"ExtensionManager('{PEER_GROUP}', invoke_on_load=False)")

LINEAR_SLACK = 1.5
"""Warm cost per plugin of the largest step between counts / of the smallest, at most."""
LINEAR_CONTENDERS = ("machine", "plugins-json")

TARGETS = {  # (scenario, contender, plugins) -> the target ratio to the bare scan
    ("warm", "machine", 1000): 0.6, ("warm", "machine", 3000): 0.35,
    ("warm", "plugins-json", 1000): 0.8,
    ("after one install", "machine", 1000): 0.7,
    ("cold", "machine", 1000): 1.5, ("cold", "machine", 3000): 1.5,
}


class Runner:
    """Runs contenders as processes in one environment with per-scenario cache folders."""

    def __init__(self, env: Env, work: Path) -> None:
        self.env = env
        self.work = work
        self.cwds = [work / "cwd-a", work / "cwd-b"]  # programs start in different folders
        for cwd in self.cwds:
            cwd.mkdir(parents=True, exist_ok=True)
        self.cache = work / "cache"
        self.cold_cache = work / "cold-cache"
        self.xdg = work / "xdg"

    def contender(self, name: str, *, cold: bool = False) -> Callable[[int], object]:
        python, script = self.env.python, self.env.script
        argv = {
            "bare": [python, "-c", BARE],
            "machine": [python, "-c", MACHINE],
            "plugins-json": [script, "plugins", "--json"],
            "naive": [python, "-c", NAIVE],
            "pluggy": [python, "-c", PLUGGY],
            "stevedore": [python, "-c", STEVEDORE],
        }[name]

        def run(round_no: int) -> object:
            extra = {"VIRTCORE_CACHE_DIR": str(self.cache), "XDG_CACHE_HOME": str(self.xdg),
                     "PYTHONUNBUFFERED": "1"}
            if cold:
                for folder in (self.cold_cache, self.work / "cold-xdg"):
                    shutil.rmtree(folder, ignore_errors=True)
                    folder.mkdir(mode=0o700)
                extra["VIRTCORE_CACHE_DIR"] = str(self.cold_cache / "virtcore")
                extra["XDG_CACHE_HOME"] = str(self.work / "cold-xdg")
            out = str(self.work / "stdout") if name == "plugins-json" else None
            return run_process(argv, clean_env(extra), str(self.cwds[round_no % 2]), out)
        return run


def interleave(contenders: dict[str, Callable[[int], object]], rounds: int,
               before_round: Callable[[int], None] | None = None) -> dict[str, Series]:
    names = list(contenders)
    series = {name: Series(name) for name in names}
    for r in range(rounds):
        if before_round is not None:
            before_round(r)
        order = names[r % len(names):] + names[:r % len(names)]
        samples = {name: contenders[name](r) for name in order}
        base = samples[names[0]]
        for name in names:
            s = samples[name]
            series[name].samples.append(s)  # type: ignore[arg-type]
            series[name].ratios.append(s.wall / base.wall)  # type: ignore[attr-defined]
            series[name].cpu_ratios.append(s.cpu / base.cpu)  # type: ignore[attr-defined]
    return series


def report(title: str, plugins: int, series: dict[str, Series], results: list[bool]) -> None:
    print(f"\n{title}, {plugins} plugins ({len(next(iter(series.values())).samples)} "
          "interleaved rounds)")
    print(f"  {'contender':14s} {'wall ms':>9s} {'cpu ms':>8s}   {'wall ratio [IQR]':>20s}"
          f"   {'cpu ratio [IQR]':>20s}")
    for s in series.values():
        print(f"  {s.name:14s} {s.wall_ms():9.1f} {s.cpu_ms():8.1f}   {spread(s.ratios):>20s}"
              f"   {spread(s.cpu_ratios):>20s}")
    scenario = title.split(":")[0]
    for (sc, name, n), target in TARGETS.items():
        if sc == scenario and n == plugins and name in series:
            results.append(verdict(f"{scenario} {name} / bare", series[name].ratios, target))
    if scenario == "cold" and "pluggy" in series:  # never slower than pluggy's eager import
        ratios = [a / b for a, b in zip(series["machine"].ratios, series["pluggy"].ratios,
                                        strict=True)]
        results.append(verdict("cold machine / pluggy eager", ratios, 1.0))


def linearity(warm: dict[int, dict[str, Series]], results: list[bool]) -> None:
    """The "warm cost grows at most linearly" verdict (see the module's description)."""
    counts = sorted(warm)
    if len(counts) < 3:
        print(f"\nlinearity: no verdict (the warm scenario ran at {len(counts)} plugin "
              "count(s); it needs three, e.g. --plugins 100 1000 3000)")
        return
    a, b, y, c = counts[0], counts[1], counts[-2], counts[-1]
    print(f"\nlinearity: warm cost per plugin between counts, from the medians "
          f"(step {y}->{c} / step {a}->{b}, target <= {LINEAR_SLACK})")
    for name in LINEAR_CONTENDERS:
        for kind, median in (("wall", Series.wall_ms), ("cpu", Series.cpu_ms)):
            ta, tb, ty, tc = (median(warm[n][name]) for n in (a, b, y, c))
            first, last = (tb - ta) / (b - a), (tc - ty) / (c - y)
            label = (f"warm {name} {kind}: {first * 1e3:.2f} us/plugin ({a}->{b}), "
                     f"{last * 1e3:.2f} us/plugin ({y}->{c})")
            if first <= 0:
                print(f"  verdict: {label}: no verdict (no growth measured from {a} to {b})")
                continue
            ratio = last / first
            ok = ratio <= LINEAR_SLACK
            print(f"  verdict: {label}: ratio {ratio:.2f} target <= {LINEAR_SLACK}: "
                  f"{'holds' if ok else 'MISSED'}")
            results.append(ok)


def bench(plugins: int, rounds: int, results: list[bool], scenarios: list[str]
          ) -> dict[str, Series] | None:
    """Run the scenarios at ``plugins`` plugins; the warm series (if run)."""
    env = build_env(plugins)
    env.install_core()
    with tempfile.TemporaryDirectory(prefix="vcbench-") as tmp:
        runner = Runner(env, Path(tmp))
        warm = None
        # warm every cache (virtcore, stevedore, the OS) and let timestamps age past the
        # cache's two-second "racy" window, then check that every contender works
        time.sleep(2.5)
        for name in ("bare", "machine", "plugins-json", "naive", "pluggy", "stevedore"):
            runner.contender(name)(0)
            runner.contender(name)(1)
        if "warm" in scenarios:
            warm = interleave({n: runner.contender(n) for n in (
                "bare", "machine", "plugins-json", "naive", "pluggy", "stevedore")}, rounds)
            report("warm: cache up to date", plugins, warm, results)
        if "install" in scenarios:
            after_one_install(env, runner, plugins, rounds, results)
        if "cold" in scenarios:
            cold = interleave({"bare": runner.contender("bare"),
                               "machine": runner.contender("machine", cold=True),
                               "pluggy": runner.contender("pluggy"),
                               "stevedore": runner.contender("stevedore", cold=True)}, rounds)
            report("cold: no cache at all", plugins, cold, results)
    return warm


def after_one_install(env: Env, runner: Runner, plugins: int, rounds: int,
                      results: list[bool]) -> None:
    wheel = env.extra_wheel()

    def change(r: int) -> None:
        if r % 2 == 0:
            env.pip("install", "--no-deps", "--no-index", "--no-compile", str(wheel))
        else:
            env.pip("uninstall", "-y", "vcbench_p90000")

    try:
        changed = interleave({"bare": runner.contender("bare"),
                              "machine": runner.contender("machine")}, rounds, change)
    finally:
        if rounds % 2:
            env.pip("uninstall", "-y", "vcbench_p90000")
    report("after one install: one plugin installed or uninstalled before each round",
           plugins, changed, results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugins", type=int, nargs="+", default=[100, 1000, 3000],
                        help="plugin counts (default 100 1000 3000; the linearity verdict "
                             "needs three, with the warm scenario)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--scenarios", nargs="+", default=["warm", "install", "cold"],
                        choices=["warm", "install", "cold"])
    args = parser.parse_args()
    print(machine_info())
    results: list[bool] = []
    warm: dict[int, dict[str, Series]] = {}
    for plugins in args.plugins:
        series = bench(plugins, args.rounds, results, args.scenarios)
        if series is not None:
            warm[plugins] = series
    if "warm" in args.scenarios:
        linearity(warm, results)
    ok = all(results)
    print("\nall discovery targets met" if ok else "\nSOME DISCOVERY TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
