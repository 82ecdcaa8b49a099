"""Reduce the log of a failed engine start to its root cause.

vLLM's API server ends a failed start with
`RuntimeError: Engine core initialization failed. See root cause above.` — the real reason
is the first fatal error of the EngineCore, often a hundred lines earlier, and the log also
holds harmless tracebacks that vLLM prints at WARNING while probing optional imports.

`find_root_cause(lines)` walks the lines (the tail of the log is enough) and returns the
first exception line (`SomeError: message`) or CUDA out-of-memory line that is not logged
at a quiet level (DEBUG/INFO/WARNING) and is not one of the "see above" wrappers, with the
traceback that led to it. Without any such line it falls back to the first ERROR/CRITICAL
line; None when there is nothing of the kind.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from collections.abc import Iterable

from pdtui.telemetry.logparse import parse_header

_EXCEPTION = re.compile(r"(?P<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Failure))(?::\s*(?P<msg>.*))?")
# Messages that point elsewhere for the cause (vLLM's API server, multiprocessing wrappers).
_WRAPPER = re.compile(
    r"root cause|see stack trace|see above|Engine core initialization failed|"
    r"Engine process failed to start|EngineCore failed to start",
    re.IGNORECASE,
)
_QUIET_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "WARN"})
_CONTEXT_LINES = 40


@dataclass(frozen=True, slots=True)
class RootCause:
    """`summary` is what to show ("ModuleNotFoundError: No module named 'flashinfer'")."""

    summary: str
    kind: str  # "exception" | "cuda_oom" | "error_line"
    exception_type: str | None
    line_number: int  # 1-based, counted in the lines given
    process: str | None  # e.g. "EngineCore pid=827"
    context: tuple[str, ...]  # the cleaned traceback (or lines) leading to it


def find_root_cause(lines: Iterable[str]) -> RootCause | None:
    """The first real error in `lines` (raw log lines, ANSI and prefixes allowed)."""
    # Recent cleaned messages per process, so the context is this process's traceback
    # and not interleaved output of its siblings.
    recent: dict[str | None, deque[str]] = {}
    first_error_line: RootCause | None = None
    for number, raw in enumerate(lines, start=1):
        head = parse_header(raw)
        message = head.message.rstrip()
        history = recent.setdefault(head.process, deque(maxlen=_CONTEXT_LINES))
        if message.strip() == "Traceback (most recent call last):":
            history.clear()
        history.append(message)
        if head.level in _QUIET_LEVELS:
            continue
        stripped = message.strip()
        if "out of memory" in stripped and ("CUDA" in stripped or "OutOfMemory" in stripped):
            m = _EXCEPTION.match(stripped)
            return RootCause(stripped, "cuda_oom", m["type"] if m else None, number, head.process, tuple(history))
        m = _EXCEPTION.fullmatch(stripped)
        if m and not _WRAPPER.search(stripped):
            return RootCause(stripped, "exception", m["type"], number, head.process, tuple(history))
        if (
            first_error_line is None
            and head.level in ("ERROR", "CRITICAL")
            and stripped
            and not message[:1].isspace()  # traceback frames and code are indented
            and not stripped.startswith("Traceback")
            and not _WRAPPER.search(stripped)
        ):
            first_error_line = RootCause(stripped, "error_line", None, number, head.process, tuple(history))
    return first_error_line
