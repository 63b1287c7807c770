"""The virtcore pytest plugin, tested with pytester as a plugin author would use it."""

from __future__ import annotations

import pytest


def test_fixtures_give_an_isolated_machine_with_autoload_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        from virtcore import DeviceIds, Machine
        from virtcore.testing import assert_bound, assert_unbound

        MANIFEST = '''
        schema-version = 1
        name = "inline"
        api-version = 1
        [[drivers]]
        name = "inline_drv"
        python-name = "inline_mod:Drv"
        [[drivers.ids]]
        vendor = 0x1234
        device = 0x0001
        data = 7
        '''

        def test_autoload_off(virtcore_machine):
            assert isinstance(virtcore_machine, Machine)
            # no installed plugin; the core's own declarations stay (loopback, queue)
            assert [p.name for p in virtcore_machine.plugins()] == ["virtcore"]
            assert virtcore_machine.drivers() == []
            assert virtcore_machine.transport_for_section("loopback").name == "loopback"
            assert virtcore_machine.model_names() == ["queue"]

        def test_register_from_manifest_and_module(virtcore_plugin, virtcore_device):
            from virtcore import Driver
            import sys

            class Drv(Driver):
                name = "inline_drv"
                def probe(self, device, match):
                    device.driver_data = match.data

            virtcore_plugin(MANIFEST, modules={"inline_mod": {"Drv": Drv}})
            assert "inline_mod" in sys.modules
            dev = virtcore_device("d0", ids=DeviceIds(0x1234, 1))
            assert_bound(dev, "inline_drv", kind="id", data=7)
            assert dev.driver_data == 7
            assert_unbound(virtcore_device("d1", ids=(0x1234, 2)))

        def test_module_is_gone_afterwards():
            import sys
            assert "inline_mod" not in sys.modules

        def test_assert_bound_explains(virtcore_device):
            dev = virtcore_device("lonely", compatible=["a,b"])
            try:
                assert_bound(dev, "nobody")
            except AssertionError as exc:
                assert "no driver's ID table matches" in str(exc)
            else:
                raise AssertionError("assert_bound passed on an unbound device")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_failing_conformance_case_is_reported_as_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        from virtcore import LoopbackTransport, Op, QueueModel
        from virtcore.testing import TransportConformance

        class Lossy(LoopbackTransport):
            def transfer(self, device, buffer, op):
                if op is Op.WRITE:
                    return len(buffer)  # claims to accept but drops the bytes
                return super().transfer(device, buffer, op)

        class TestLossy(TransportConformance):
            @pytest.fixture
            def conformance_transport(self):
                t = Lossy()
                t.add("d0", ids=(1, 2), irq=5, model=QueueModel())
                return t

        class TestGood(TransportConformance):
            @pytest.fixture
            def conformance_transport(self):
                t = LoopbackTransport()
                t.add("d0", ids=(1, 2), irq=5, model=QueueModel())
                return t
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1
    result.stdout.fnmatch_lines(["*TestLossy::test_write_round_trip*"])
    assert outcomes.get("passed") == 15  # 8 standard tests per class


def test_overriding_a_conformance_test_needs_a_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        from virtcore.testing import ModelConformance, override

        class TestSilent(ModelConformance):
            def test_close_is_idempotent(self, conformance_model):
                pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*overrides a virtcore conformance test without a reason*"])

    pytester.makepyfile(test_reasoned="""
        import pytest
        from virtcore import QueueModel
        from virtcore.testing import ModelConformance, override

        class TestReasoned(ModelConformance):
            @pytest.fixture
            def conformance_model(self):
                return QueueModel()

            @override("QueueModel keeps no host resources to close")
            def test_close_is_idempotent(self, conformance_model):
                pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_reasoned.py")
    result.assert_outcomes(passed=6)


def test_driver_conformance_catches_residue(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        from virtcore import Driver, FileOperations, IdEntry
        from virtcore.testing import DriverConformance

        class Sticky(Driver):
            name = "sticky"
            id_table = [IdEntry(compatible="t,sticky")]
            count = 0

            def probe(self, device, match):
                # registers one more misc device on every probe: residue across reprobe
                Sticky.count += 1
                for _ in range(Sticky.count):
                    device.machine.register_misc(device, "sticky", FileOperations())

        class TestSticky(DriverConformance):
            @pytest.fixture
            def conformance_driver(self):
                Sticky.count = 0
                return Sticky

            @pytest.fixture
            def conformance_device_spec(self):
                return {"compatible": ["t,sticky"]}
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1
    assert "test_probe_remove_probe_leaves_no_residue" in result.stdout.str()


PLUGIN_MANIFEST = """\
schema-version = 1
name = "acme_thing"
api-version = 1
[[drivers]]
name = "acme_thing"
python-name = "acme_thing_mod:ThingDriver"
[[drivers.ids]]
compatible = "acme,thing"
"""

PLUGIN_MODULE = """\
from virtcore import Driver, FileOperations

class ThingDriver(Driver):
    name = "acme_thing"          # no id_table: the manifest holds the only one

    def probe(self, device, match):
        device.machine.register_misc(device, "thing", FileOperations())
"""

OTHER_MANIFEST = (
    'schema-version = 1\nname = "other"\napi-version = 1\n[[drivers]]\nname = "other"\n'
    'python-name = "x:Y"\n[[drivers.ids]]\ncompatible = "acme,thing"\n')


def _thing_plugin(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", virtcore=PLUGIN_MANIFEST)
    pytester.makepyfile(acme_thing_mod=PLUGIN_MODULE)
    pytester.syspathinsert()


@pytest.mark.parametrize("driver", ["ThingDriver", '"acme_thing"', "ThingDriver()"])
def test_driver_conformance_binds_through_the_manifest_table(
        pytester: pytest.Pytester, driver: str) -> None:
    """The natural guess (returning the class whose table lives only in the manifest) works:
    the suite binds through the manifest's ID table."""
    _thing_plugin(pytester)
    pytester.makepyfile(test_thing=f"""
        from pathlib import Path
        import pytest
        from virtcore.testing import DriverConformance
        from acme_thing_mod import ThingDriver

        class TestThing(DriverConformance):
            @pytest.fixture
            def conformance_driver(self):
                return {driver}

            @pytest.fixture
            def conformance_manifest(self):
                return Path(__file__).with_name("virtcore.toml")

            @pytest.fixture
            def conformance_device_spec(self):
                return {{"compatible": ["acme,thing"]}}
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, skipped=1)


def test_driver_conformance_says_what_to_provide(pytester: pytest.Pytester) -> None:
    _thing_plugin(pytester)
    pytester.makepyfile(test_thing=f"""
        import pytest
        from virtcore.testing import DriverConformance
        from acme_thing_mod import ThingDriver

        class TestNoTable(DriverConformance):
            @pytest.fixture
            def conformance_driver(self):
                return ThingDriver

            @pytest.fixture
            def conformance_device_spec(self):
                return {{"compatible": ["acme,thing"]}}

        class TestWrongName(TestNoTable):
            @pytest.fixture
            def conformance_manifest(self):
                return {OTHER_MANIFEST!r}
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=10)
    out = result.stdout.str()
    assert ("driver 'acme_thing' has no id_table and no installed plugin declares it: return "
            "the plugin's manifest (a Path to its virtcore.toml) from the conformance_manifest "
            "fixture") in out
    assert "declares no driver 'acme_thing' (it declares: other)" in out


MISSING_FIXTURES = """
    import pytest
    from virtcore.testing import DriverConformance, ModelConformance, TransportConformance

    MANIFEST = {manifest!r}

    class TestNoDriver(DriverConformance):
        @pytest.fixture
        def conformance_device_spec(self):
            return {{"compatible": ["acme,thing"]}}

    class TestNoDeviceSpec(DriverConformance):
        @pytest.fixture
        def conformance_driver(self):
            return "acme_thing"

        @pytest.fixture
        def conformance_manifest(self):
            return MANIFEST

    class TestNoTransport(TransportConformance):
        pass

    class TestNoModel(ModelConformance):
        pass
"""


def test_a_missing_required_fixture_says_in_one_line_what_to_provide(
        pytester: pytest.Pytester) -> None:
    """Each required fixture a suite's test needs, when the class does not define it, errors
    with one line naming the fixture, its type and the guide's section, not pytest's
    "fixture not found" with the list of every fixture."""
    _thing_plugin(pytester)
    pytester.makepyfile(test_missing=MISSING_FIXTURES.format(manifest=PLUGIN_MANIFEST))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # the driver suite's declined test skips when its driver is there (it needs no spec)
    result.assert_outcomes(errors=5 + 4 + 8 + 6, skipped=1)
    out = result.stdout.str()
    assert "not found" not in out and "available fixtures" not in out, out
    guide = "see docs/writing-plugins.md, section 'Conformance suites'"
    expected = {
        "TestNoDriver": "conformance_driver",
        "TestNoDeviceSpec": "conformance_device_spec",
        "TestNoTransport": "conformance_transport",
        "TestNoModel": "conformance_model",
    }
    lines = result.outlines
    for cls, fixture in expected.items():
        headers = [i for i, line in enumerate(lines) if f" ERROR at setup of {cls}." in line]
        assert headers, out
        for i in headers:  # the whole report of each error: one line, then the next report
            assert lines[i + 1].startswith(
                f"{cls} does not define the fixture '{fixture}' that "), lines[i + 1]
            assert lines[i + 1].endswith(f"({guide})"), lines[i + 1]
            assert lines[i + 2].startswith(("_", "=")), lines[i:i + 3]
    types = {
        "conformance_driver": "the driver's name as its manifest declares it (str)",
        "conformance_device_spec": "a dict of virtcore_device arguments",
        "conformance_transport": "a fresh, unattached Transport",
        "conformance_model": "a fresh DeviceModel",
    }
    for fixture, what in types.items():
        assert f"'{fixture}' that " in out and what in out, (fixture, out)


def test_a_required_fixture_from_the_module_or_conftest_still_counts(
        pytester: pytest.Pytester) -> None:
    """The suites' defaults for required fixtures rank below a fixture defined beside the
    class (module, conftest): a shared transport fixture keeps working."""
    pytester.makeconftest("""
        import pytest
        from virtcore import LoopbackTransport, QueueModel

        @pytest.fixture
        def conformance_transport():
            bus = LoopbackTransport()
            bus.add("d0", compatible=["acme,thing"], irq=5, model=QueueModel())
            return bus
    """)
    pytester.makepyfile(test_shared="""
        import pytest
        from virtcore import QueueModel
        from virtcore.testing import ModelConformance, TransportConformance

        @pytest.fixture
        def conformance_model():
            return QueueModel()

        class TestShared(TransportConformance):
            pass

        class TestModel(ModelConformance):
            pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=8 + 6)
