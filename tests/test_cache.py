"""The discovery cache is reused only while the environment is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from virtcore import PluginStatus, discover
from virtcore import _cache as cache


def _dist(root: Path, name: str, body: str = "") -> Path:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text(f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n")
    (root / name).mkdir()
    manifest = root / name / "virtcore.toml"
    manifest.write_text(f'schema-version = 1\nname = "{name}"\napi-version = 1\n{body}')
    return manifest


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIRTCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VIRTCORE_NO_CACHE", raising=False)
    site = tmp_path / "site"
    site.mkdir()
    return site


def test_hit_then_manifest_edit_is_seen(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _dist(env, "one")
    assert discover(autoload=True, path=[str(env)]).plugins["one"].status is PluginStatus.OK
    assert list((env.parent / "cache").glob("scan-*.pickle"))
    calls: list[str] = []
    real = cache.load

    def spy(version: str, key: cache.PathKey) -> list[cache.ScanItem] | None:
        result = real(version, key)
        calls.append("hit" if result is not None else "miss")
        return result

    monkeypatch.setattr(cache, "load", spy)
    discover(autoload=True, path=[str(env)])
    assert calls == ["hit"]
    manifest.write_text("schema-version = 1\nname = \"one\"\napi-version = 7\n")
    st = manifest.stat()
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    record = discover(autoload=True, path=[str(env)]).plugins["one"]
    assert calls == ["hit", "miss"]
    assert record.status is PluginStatus.INCOMPATIBLE


def test_installing_a_distribution_is_seen(env: Path) -> None:
    _dist(env, "one")
    assert list(discover(autoload=True, path=[str(env)]).plugins) == ["one"]
    _dist(env, "two")
    st = env.stat()
    os.utime(env, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert list(discover(autoload=True, path=[str(env)]).plugins) == ["one", "two"]


def test_corrupt_cache_is_ignored_and_no_cache_bypasses(env: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _dist(env, "one")
    discover(autoload=True, path=[str(env)])
    for f in (env.parent / "cache").glob("scan-*.pickle"):
        f.write_bytes(b"not a pickle")
    assert list(discover(autoload=True, path=[str(env)]).plugins) == ["one"]
    monkeypatch.setenv("VIRTCORE_NO_CACHE", "1")
    assert cache.load("0", cache.path_key([str(env)])) is None
    assert list(discover(autoload=True, path=[str(env)]).plugins) == ["one"]


def test_broken_manifest_errors_come_back_from_the_cache(env: Path) -> None:
    _dist(env, "bad", "[[drivers]]\nname = 'x'\n")
    first = discover(autoload=True, path=[str(env)]).plugins["bad"]
    second = discover(autoload=True, path=[str(env)]).plugins["bad"]
    assert first.status is second.status is PluginStatus.BROKEN
    assert first.reason == second.reason
    assert "drivers[0].python-name" in (second.reason or "")


def test_a_manifest_added_later_is_found_despite_the_cache(env: Path) -> None:
    info = env / "late-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[virtcore.manifest]\nlate = late:virtcore.toml\n")
    (env / "late").mkdir()
    assert discover(autoload=True, path=[str(env)]).plugins["late"].status is PluginStatus.BROKEN
    (env / "late" / "virtcore.toml").write_text(
        'schema-version = 1\nname = "late"\napi-version = 1\n')
    assert discover(autoload=True, path=[str(env)]).plugins["late"].status is PluginStatus.OK


def test_a_cache_others_could_write_is_not_loaded(env: Path) -> None:
    _dist(env, "one")
    discover(autoload=True, path=[str(env)])
    folder = env.parent / "cache"
    from virtcore import __version__

    assert cache.load(__version__, cache.path_key([str(env)])) is not None
    folder.chmod(0o777)
    try:
        assert cache.load(__version__, cache.path_key([str(env)])) is None
    finally:
        folder.chmod(0o700)


def test_test_sessions_keep_the_discovery_cache_in_a_temporary_folder(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    home = tmp_path / "home"
    pytester.makepyfile(test_x="""
        import os, tempfile
        from virtcore import Machine
        from virtcore._cache import cache_dir

        def test_machine():
            Machine("m")
            assert str(cache_dir()).startswith(tempfile.gettempdir())
            assert os.path.isdir(cache_dir())
    """)
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("VIRTCORE_CACHE_DIR", raising=False)
        mp.delenv("VIRTCORE_NO_CACHE", raising=False)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not home.exists() or not any(home.rglob("*")), sorted(home.rglob("*"))
