"""Fixtures: ``pipe_machine_factory`` runs the end-to-end suite over each transport.

To add a transport, add its name to ``TRANSPORTS`` and a branch returning its factory (a
``PipeFactory``: ``factory(**model_args) -> PipeRig``, see ``virt_pipe.testing``).
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("virt_pipe.testing")

from virtcore import Machine  # noqa: E402

from virt_pipe.testing import PipeFactory, loopback_pipe_factory  # noqa: E402

TRANSPORTS = ["loopback"]


@pytest.fixture(params=TRANSPORTS)
def pipe_machine_factory(request: pytest.FixtureRequest,
                         virtcore_machine: Machine) -> PipeFactory:
    if request.param == "loopback":
        return loopback_pipe_factory(virtcore_machine)
    raise AssertionError(f"no pipe factory for transport {request.param!r}")
