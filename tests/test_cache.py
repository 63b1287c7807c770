"""The discovery cache: shared, incremental, and never stale."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Venv

from virtcore import PluginStatus, _scan, discover
from virtcore import _cache as cache

HOUR_NS = 3600 * 1_000_000_000


def _dist(root: Path, name: str, body: str = "") -> Path:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text(f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n")
    (root / name).mkdir()
    manifest = root / name / "virtcore.toml"
    manifest.write_text(f'schema-version = 1\nname = "{name}"\napi-version = 1\n{body}')
    return manifest


PAST_NS = time.time_ns() - HOUR_NS
_changes = iter(range(1, 1 << 30))


def _age(root: Path) -> None:
    """Date everything under ``root`` an hour back, as an install made earlier would be
    (timestamps of the last seconds are not trusted by the cache); ``root`` itself gets a
    new date each time, as installing or removing a distribution gives it."""
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            os.utime(os.path.join(folder, name), ns=(PAST_NS, PAST_NS))
    folder_ns = PAST_NS + next(_changes) * 1_000_000
    os.utime(root, ns=(folder_ns, folder_ns))


class Reads:
    """Counts entry_points.txt and manifest reads done by discovery."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dists: list[str] = []
        self.manifests: list[str] = []
        real_dist, real_manifest = _scan._read_dist, _scan._read_manifest_file

        def read_dist(folder: str, dirname: str, group: str) -> object:
            self.dists.append(dirname)
            return real_dist(folder, dirname, group)

        def read_manifest(ep: _scan.EntryPointInfo) -> object:
            result = real_manifest(ep)
            self.manifests.append(os.path.basename(os.path.dirname(result[0])))
            return result

        monkeypatch.setattr(_scan, "_read_dist", read_dist)
        monkeypatch.setattr(_scan, "_read_manifest_file", read_manifest)

    def reset(self) -> None:
        self.dists.clear()
        self.manifests.clear()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("VIRTCORE_CACHE_DIR", str(folder))
    monkeypatch.delenv("VIRTCORE_NO_CACHE", raising=False)
    return folder


@pytest.fixture
def env(tmp_path: Path, cache_dir: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    return site


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    return Reads(monkeypatch)


def _names(site: Path, *extra: str) -> list[str]:
    return list(discover(autoload=True, path=[*extra, str(site)]).plugins)


def test_a_warm_start_reads_nothing(env: Path, cache_dir: Path, reads: Reads) -> None:
    for name in ("one", "two", "three"):
        _dist(env, name)
    _age(env)
    assert _names(env) == ["one", "three", "two"]
    assert sorted(reads.manifests) == ["one", "three", "two"]
    reads.reset()
    assert _names(env) == ["one", "three", "two"]
    assert reads.dists == [] and reads.manifests == []
    assert len(list(cache_dir.glob("scan-*"))) == 1


def test_one_install_or_uninstall_reads_only_that_distribution(
        env: Path, reads: Reads) -> None:
    for name in ("one", "two", "three"):
        _dist(env, name)
    _age(env)
    _names(env)
    reads.reset()
    _dist(env, "four")
    _age(env)
    assert _names(env) == ["four", "one", "three", "two"]
    assert reads.dists == ["four-1.0.dist-info"] and reads.manifests == ["four"]
    reads.reset()
    shutil.rmtree(env / "two-1.0.dist-info")
    shutil.rmtree(env / "two")
    _age(env)
    assert _names(env) == ["four", "one", "three"]
    assert reads.dists == [] and reads.manifests == []


def test_a_reinstalled_distribution_of_the_same_name_is_read_again(
        env: Path, reads: Reads) -> None:
    _dist(env, "one")
    _age(env)
    _names(env)
    reads.reset()
    shutil.rmtree(env / "one-1.0.dist-info")  # pip's reinstall: a new dist-info folder
    info = env / "one-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[virtcore.manifest]\nuno = one:virtcore.toml\n")
    _age(env)
    os.utime(info, ns=(PAST_NS + HOUR_NS // 2,) * 2)  # a later install than before
    record = discover(autoload=True, path=[str(env)]).plugins["uno"]
    assert reads.dists == ["one-1.0.dist-info"]
    assert record.status is PluginStatus.BROKEN  # the manifest still says "one"
    assert "differs from the entry point name 'uno'" in (record.reason or "")


def test_an_in_place_manifest_edit_is_seen(env: Path, reads: Reads) -> None:
    manifest = _dist(env, "one")
    _dist(env, "two")
    _age(env)
    assert discover(autoload=True, path=[str(env)]).plugins["one"].status is PluginStatus.OK
    reads.reset()
    manifest.write_text('schema-version = 1\nname = "one"\napi-version = 7\n')
    os.utime(manifest, ns=(PAST_NS + HOUR_NS // 2,) * 2)  # folder mtimes unchanged
    record = discover(autoload=True, path=[str(env)]).plugins["one"]
    assert record.status is PluginStatus.INCOMPATIBLE
    assert reads.manifests == ["one"] and reads.dists == []


def test_an_edit_in_the_same_clock_tick_as_the_scan_is_not_missed(env: Path) -> None:
    """A manifest scanned right after it was written is checked again next time, even if
    an edit keeps its size and its mtime (a coarse clock)."""
    manifest = _dist(env, "one")
    assert discover(autoload=True, path=[str(env)]).plugins["one"].status is PluginStatus.OK
    st = manifest.stat()
    text = manifest.read_text().replace("api-version = 1", "api-version = 9")
    manifest.write_text(text)
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert manifest.stat().st_size == st.st_size
    record = discover(autoload=True, path=[str(env)]).plugins["one"]
    assert record.status is PluginStatus.INCOMPATIBLE


def test_programs_started_from_other_folders_share_one_cache_file(
        env: Path, tmp_path: Path, cache_dir: Path, reads: Reads) -> None:
    _dist(env, "one")
    _age(env)
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    (there / "notes.txt").write_text("a file created where the program starts\n")
    assert _names(env, str(here)) == ["one"]
    reads.reset()
    assert _names(env, str(there)) == ["one"]  # sys.path[0] differs: same key
    assert _names(env, "") == ["one"]  # python -c / python -m: the current folder
    assert reads.dists == [] and reads.manifests == []
    assert len(list(cache_dir.glob("scan-*"))) == 1


def test_several_keys_coexist_and_old_ones_are_pruned(
        tmp_path: Path, cache_dir: Path, reads: Reads) -> None:
    sites = []
    for i in range(cache.KEEP + 3):
        site = tmp_path / f"site{i}"
        site.mkdir()
        _dist(site, f"p{i}")
        _age(site)
        sites.append(site)
        assert _names(site) == [f"p{i}"]
    files = list(cache_dir.glob("scan-*"))
    assert len(files) == cache.KEEP
    reads.reset()
    assert _names(sites[-1]) == [f"p{cache.KEEP + 2}"]  # the newest key is still warm
    assert _names(sites[-2]) == [f"p{cache.KEEP + 1}"]
    assert reads.manifests == []
    assert _names(sites[0]) == ["p0"]  # pruned: scanned again
    assert reads.manifests == ["p0"]


def test_corrupt_cache_is_ignored_and_no_cache_bypasses(
        env: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, reads: Reads) -> None:
    _dist(env, "one")
    _age(env)
    _names(env)
    for f in cache_dir.glob("scan-*"):
        f.write_bytes(b"not a cache file")
    reads.reset()
    assert _names(env) == ["one"]
    assert reads.manifests == ["one"]
    monkeypatch.setenv("VIRTCORE_NO_CACHE", "1")
    reads.reset()
    assert _names(env) == ["one"]
    assert reads.manifests == ["one"]


def test_broken_manifest_errors_come_back_from_the_cache(env: Path, reads: Reads) -> None:
    _dist(env, "bad", "[[drivers]]\nname = 'x'\n")
    _age(env)
    first = discover(autoload=True, path=[str(env)]).plugins["bad"]
    reads.reset()
    second = discover(autoload=True, path=[str(env)]).plugins["bad"]
    assert reads.manifests == []
    assert first.status is second.status is PluginStatus.BROKEN
    assert first.reason == second.reason
    assert "drivers[0].python-name" in (second.reason or "")


def test_a_manifest_added_later_is_found_despite_the_cache(env: Path) -> None:
    info = env / "late-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[virtcore.manifest]\nlate = late:virtcore.toml\n")
    (env / "late").mkdir()
    _age(env)
    assert discover(autoload=True, path=[str(env)]).plugins["late"].status is PluginStatus.BROKEN
    (env / "late" / "virtcore.toml").write_text(
        'schema-version = 1\nname = "late"\napi-version = 1\n')
    assert discover(autoload=True, path=[str(env)]).plugins["late"].status is PluginStatus.OK


def test_the_cache_holds_declarations_not_the_parsed_toml(env: Path, cache_dir: Path) -> None:
    _dist(env, "one", '[[drivers]]\nname = "d"\npython-name = "one:D"\n'
                      '[[drivers.ids]]\nvendor = 0x1234\ndata = {ring = "unused-toml-key"}\n'
                      '[[drivers.ids]]\ncompatible = "acme,one"\n')
    _age(env)
    first = discover(autoload=True, path=[str(env)]).plugins["one"].manifest
    (data,) = [f.read_bytes() for f in cache_dir.glob("scan-*")]
    assert b"schema-version" not in data and b"python-name" not in data
    second = discover(autoload=True, path=[str(env)]).plugins["one"].manifest
    assert first is not None and second is not None and first is not second
    assert second == first
    assert second.drivers[0].ids[0].data == {"ring": "unused-toml-key"}


def test_toml_dates_in_entry_data_are_read_again_rather_than_cached(
        env: Path, reads: Reads) -> None:
    _dist(env, "dated", '[[drivers]]\nname = "d"\npython-name = "dated:D"\n'
                        '[[drivers.ids]]\nvendor = 0x1234\ndata = 2024-01-02\n')
    _dist(env, "plain")
    _age(env)
    _names(env)
    reads.reset()
    record = discover(autoload=True, path=[str(env)]).plugins["dated"]
    assert record.status is PluginStatus.OK
    assert str(record.manifest.drivers[0].ids[0].data) == "2024-01-02"  # type: ignore[union-attr]
    assert reads.manifests == ["dated"]


def test_a_cache_others_could_write_is_not_loaded(
        env: Path, cache_dir: Path, reads: Reads) -> None:
    _dist(env, "one")
    _age(env)
    _names(env)
    reads.reset()
    _names(env)
    assert reads.manifests == []
    cache_dir.chmod(0o777)
    try:
        _names(env)
        assert reads.manifests == ["one"]
    finally:
        cache_dir.chmod(0o700)


def test_the_command_module_and_scripts_in_other_folders_share_one_file(
        core_venv: Venv, tmp_path: Path) -> None:
    cache_folder = tmp_path / "cache"
    env = {"VIRTCORE_CACHE_DIR": str(cache_folder)}
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    (there / "virtcore_notes.py").write_text("# a file in the folder the program starts in\n")
    site = Path(core_venv.run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
                              ).stdout.strip())
    for path in [*site.glob("virtcore*"), *site.glob("virtcore/*.toml"), site]:
        os.utime(path, ns=(PAST_NS, PAST_NS))  # an install made earlier, not this second
    listing = core_venv.run("-m", "virtcore", "plugins", "--json", env=env, cwd=here).stdout
    (written,) = cache_folder.glob("scan-*")
    stamp = written.stat().st_mtime_ns
    script = subprocess.run([str(core_venv.path / "bin" / "virtcore"), "plugins", "--json"],
                            capture_output=True, text=True, cwd=there, check=True,
                            env={**_plain_environ(), **env})
    core_venv.run("-c", "import virtcore; virtcore.Machine()", env=env, cwd=there)
    assert script.stdout == listing
    assert list(cache_folder.glob("scan-*")) == [written]
    assert written.stat().st_mtime_ns == stamp  # used as it was: nothing rescanned

def _plain_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("VIRTCORE_") and k != "PYTHONPATH"}


def test_a_machine_from_the_cache_matches_and_lists_like_one_from_a_fresh_scan(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from virtcore import DeviceIds, Machine

    body = ('[[drivers]]\nname = "{n}_drv"\npython-name = "{n}:D"\npriority = {p}\n'
            '[[drivers.ids]]\nvendor = 0x1234\ndevice = 0x{d:04x}\ndata = "{n}"\n'
            '[[drivers.ids]]\nvendor = 0x1234\nclass = 0x010600\nclass-mask = 0xffff00\n'
            '[[drivers.ids]]\ncompatible = "acme,{n}"\n')
    for i, name in enumerate(("one", "two", "three")):
        _dist(env, name, body.format(n=name, p=i, d=i % 2))
    _age(env)
    monkeypatch.setattr("sys.path", [str(env)])

    def snapshot() -> object:
        machine = Machine("m")
        report = machine.explain(ids=DeviceIds(0x1234, 0x0001, class_=0x010601),
                                 compatible=["acme,three", "acme,one"])
        return ([s.to_dict() for s in machine.drivers()], report.to_dict(),
                [r.to_dict() for r in machine.plugins()],
                [(m.driver, m.data) for m in report.candidates])

    fresh = snapshot()  # scanned, then stored
    from_cache = snapshot()  # rebuilt from the flat cache file
    assert from_cache == fresh
    assert fresh[3] == [("three_drv", None), ("one_drv", None), ("two_drv", "two")]


def test_files_of_the_earlier_pickled_format_are_deleted(env: Path, cache_dir: Path) -> None:
    cache_dir.mkdir(mode=0o700)
    (cache_dir / "scan-292b587e9f6958c67800.pickle").write_bytes(b"old")
    (cache_dir / "notes.txt").write_text("not ours\n")
    _dist(env, "one")
    _age(env)
    _names(env)
    names = sorted(p.name for p in cache_dir.iterdir())
    assert [n for n in names if n.startswith("scan")] == [
        n for n in names if n.startswith("scan-") and n.endswith(".marshal")] != []
    assert [n for n in names if not n.startswith("scan")] == ["folders.marshal", "notes.txt"]


def test_test_sessions_start_warm_from_the_user_cache_and_write_only_their_own(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    home = tmp_path / "home"
    user_cache = home / ".cache" / "virtcore"
    seen = tmp_path / "session-folder.txt"
    pytester.makepyfile(test_x=f"""
        import os, sys, tempfile
        from virtcore import Machine, _scan, discover
        from virtcore._cache import cache_dir

        def test_a_machine_parses_nothing_the_user_cache_holds(monkeypatch):
            parsed = []
            real = _scan._read_manifest_file
            monkeypatch.setattr(_scan, "_read_manifest_file",
                                lambda ep: parsed.append(ep) or real(ep))
            Machine("m")
            assert parsed == []
            assert cache_dir().startswith(tempfile.gettempdir())

        def test_an_install_is_written_into_the_session_folder_only(tmp_path):
            site = tmp_path / "site"
            (site / "one-1.0.dist-info").mkdir(parents=True)
            (site / "one-1.0.dist-info" / "entry_points.txt").write_text(
                "[virtcore.manifest]\\none = one:virtcore.toml\\n")
            (site / "one").mkdir()
            (site / "one" / "virtcore.toml").write_text(
                'schema-version = 1\\nname = "one"\\napi-version = 1\\n')
            assert list(discover(autoload=True, path=[str(site), *sys.path]).plugins)
            assert any(n.startswith("scan-") for n in os.listdir(cache_dir()))
            with open({str(seen)!r}, "w") as out:
                out.write(cache_dir())
    """)
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("VIRTCORE_CACHE_DIR", raising=False)
        mp.delenv("VIRTCORE_NO_CACHE", raising=False)
        # a program of the user's, run as pytest runs (same folders, so the same key)
        warm = pytester.run(sys.executable, "-c", "import virtcore; virtcore.Machine('m')")
        assert warm.ret == 0, warm.stderr.str()
        before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
                  for p in user_cache.iterdir()}
        assert any(name.startswith("scan-") for name in before)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in user_cache.iterdir()}
    assert after == before  # read, never written nor touched
    session = Path(seen.read_text())
    assert not session.is_relative_to(home)
    assert not session.exists()  # removed when the session ended


def test_a_test_session_cut_short_that_wrote_nothing_leaves_no_folder(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    seen = tmp_path / "session-folder.txt"
    pytester.makepyfile(test_x=f"""
        import os
        from virtcore._cache import cache_dir

        def test_killed():
            with open({str(seen)!r}, "w") as out:
                out.write(cache_dir())
            os._exit(3)  # as a session killed by a timeout: no cleanup runs
    """)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        mp.delenv("VIRTCORE_CACHE_DIR", raising=False)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 3
    folder = Path(seen.read_text())
    assert folder.name.startswith("virtcore-test-cache-")
    assert not folder.exists()


def test_the_user_cache_is_read_only_while_the_session_folder_is_in_use(
        env: Path, tmp_path: Path, reads: Reads, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "user"
    session = tmp_path / "session"
    for name in ("one", "two"):
        _dist(env, name)
    _age(env)
    monkeypatch.setenv("VIRTCORE_CACHE_DIR", str(user))
    _names(env)  # the user's cache, warm
    stored = {p.name: p.stat().st_mtime_ns for p in user.iterdir()}
    monkeypatch.setenv("VIRTCORE_CACHE_DIR", str(session))
    monkeypatch.setattr(cache, "_read_through", None)
    cache.read_through(str(session), str(user))
    reads.reset()
    assert _names(env) == ["one", "two"]
    assert reads.manifests == [] and not session.exists()
    _dist(env, "three")
    _age(env)
    assert _names(env) == ["one", "three", "two"]
    assert reads.manifests == ["three"]
    assert {p.name: p.stat().st_mtime_ns for p in user.iterdir()} == stored
    assert any(p.name.startswith("scan-") for p in session.iterdir())
    reads.reset()
    assert _names(env) == ["one", "three", "two"]
    assert reads.manifests == []  # the session's own file, now newer than the user's
    monkeypatch.setenv("VIRTCORE_CACHE_DIR", str(tmp_path / "chosen"))
    reads.reset()
    _names(env)  # a folder a test chose: no fallback, read afresh
    assert sorted(reads.manifests) == ["one", "three", "two"]
