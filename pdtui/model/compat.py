"""What changed between vLLM releases that the renderer must know. Keep it all here."""

from __future__ import annotations

from dataclasses import dataclass

# The newest vLLM pdtui has been checked against on real hardware.
TESTED_VLLM_VERSION = (0, 26, 0)


@dataclass(frozen=True)
class FlagChange:
    flag: str
    removed_in: tuple[int, ...] | None = None  # first release without the flag
    added_in: tuple[int, ...] | None = None  # first release with the flag
    note: str = ""


FLAG_CHANGES: tuple[FlagChange, ...] = (
    FlagChange(
        "--disable-log-requests",
        removed_in=(0, 12),
        note="removed by vLLM PR #29402; request logging is off by default since then (--enable-log-requests turns it on)",
    ),
    FlagChange("--enable-log-requests", added_in=(0, 10, 2), note="replaces --disable-log-requests"),
)


def parse_version(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts) or None


def effective_version(version: str | None) -> tuple[int, ...]:
    """Unknown version: assume a current vLLM (the one we tested), never a 2024 one."""
    return parse_version(version) or TESTED_VLLM_VERSION


def flag_problem(flag: str, version: str | None) -> str | None:
    """Why `flag` does not exist in the given vLLM version, or None when it is fine."""
    v = effective_version(version)
    name = flag.split("=", 1)[0]
    for change in FLAG_CHANGES:
        if change.flag != name:
            continue
        if change.removed_in and v >= change.removed_in:
            return f"{name} does not exist in vLLM {_fmt(change.removed_in)} and later: {change.note}"
        if change.added_in and v < change.added_in:
            return f"{name} exists only from vLLM {_fmt(change.added_in)}: {change.note}"
    return None


def request_logging_flags(version: str | None) -> list[str]:
    """Flags that keep per-request logging off (log noise at high request rates)."""
    if effective_version(version) < (0, 12):
        return ["--disable-log-requests"]
    return []  # off by default


def _fmt(v: tuple[int, ...]) -> str:
    return ".".join(str(x) for x in v)
