"""PCI bus ids, spelled one way so that NVLink peers can be matched to GPUs."""

from __future__ import annotations

import re

_BUS_ID = re.compile(r"^(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<dev>[0-9a-fA-F]{1,2})\.(?P<fn>[0-7])$")


def normalize_bus_id(raw: str) -> str:
    """``0000:3b:00.0`` and ``00000000:3B:00.0`` both become ``00000000:3B:00.0``
    (NVML's own long form). Anything unrecognised is returned stripped, unchanged."""
    text = raw.strip().rstrip("\x00")
    match = _BUS_ID.match(text)
    if match is None:
        return text
    domain = int(match["domain"] or "0", 16)
    return f"{domain:08X}:{int(match['bus'], 16):02X}:{int(match['dev'], 16):02X}.{match['fn']}"
