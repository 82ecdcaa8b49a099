"""Byte sizes as people write them: `1GiB`, `512 MiB`, `2GB`, `1073741824`."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
VALID_SIZE_HINT = "a byte count or a size such as 512MiB, 1GiB, 2GB (KiB/MiB/GiB/TiB are powers of 1024)"


def parse_size(value: object) -> int:
    """Return a size in bytes; raise ValueError with a message naming what is valid."""
    if isinstance(value, bool):
        raise ValueError(f"expected {VALID_SIZE_HINT}, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, float):
        if value < 0 or value != int(value):
            raise ValueError(f"expected a whole number of bytes, got {value}")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"expected {VALID_SIZE_HINT}")
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"cannot read {value!r} as a size; expected {VALID_SIZE_HINT}")
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown unit {unit!r} in {value!r}; expected {VALID_SIZE_HINT}")
    size = float(number) * factor
    if size != int(size):
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(size)


def format_size(num_bytes: int) -> str:
    """The shortest exact binary spelling, e.g. 1073741824 -> '1GiB', 1000 -> '1000B'."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if num_bytes >= factor and num_bytes % factor == 0:
            return f"{num_bytes // factor}{unit}"
    return f"{num_bytes}B"
