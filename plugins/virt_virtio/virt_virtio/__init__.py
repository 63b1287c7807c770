"""virt_virtio: spec-exact virtio 1.2 for virtcore.

Split virtqueues (device and driver side), the console, entropy and block device models, the
virtio-pci and virtio-mmio transports with their drivers, and the ``virtio`` bus.
"""

from __future__ import annotations

__all__: list[str] = []
