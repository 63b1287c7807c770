"""The end-to-end pipe suite (virt_pipe.testing) over every transport in conftest."""

from __future__ import annotations

from virt_pipe.testing import PipeSuite


class TestPipe(PipeSuite):
    pass
