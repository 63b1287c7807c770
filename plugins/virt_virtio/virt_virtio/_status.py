"""Device status bits (virtio 1.2 section 2.1)."""

from __future__ import annotations

from typing import Final

ACKNOWLEDGE: Final = 1
"""The guest found the device."""
DRIVER: Final = 2
"""The guest knows how to drive it."""
DRIVER_OK: Final = 4
"""The driver is ready: the device is live."""
FEATURES_OK: Final = 8
"""Feature negotiation is complete (the device may refuse to keep it set)."""
DEVICE_NEEDS_RESET: Final = 64
"""The device hit an unrecoverable error."""
FAILED: Final = 128
"""The driver gave up on the device."""

NAMES: Final = {
    ACKNOWLEDGE: "ACKNOWLEDGE", DRIVER: "DRIVER", DRIVER_OK: "DRIVER_OK",
    FEATURES_OK: "FEATURES_OK", DEVICE_NEEDS_RESET: "DEVICE_NEEDS_RESET", FAILED: "FAILED",
}


def describe(status: int) -> str:
    """``"ACKNOWLEDGE|DRIVER"`` style text for a status byte (``"0"`` for reset)."""
    names = [name for bit, name in sorted(NAMES.items()) if status & bit]
    rest = status & ~sum(NAMES)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"
