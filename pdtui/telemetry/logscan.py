"""Scan whole log files (streamed, never loaded whole) and summarise the KV transfers.

`scan_file(path, on_event=None) -> FileScan` reads the file in binary, line by line with
a bounded line length (an over-long line is cut and the rest skipped), decodes UTF-8 with
replacement, and feeds a LogScanner. The role comes from the log itself
(`kv_role='kv_consumer'`) or else from the file name (LMCache's example scripts write
`prefiller.log` / `decoder.log`). `summarize(scans)` builds the totals printed by
`pdtui logscan`: KV transfers are LMCache's stores (lmcache-pd mode) plus the successful
transfers of vLLM's NixlConnector `KV Transfer metrics` lines (nixl mode). Problems with a file (missing, a directory, unreadable, binary) are
reported in `FileScan.problem`, not raised.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pdtui.telemetry.events import (
    Alert,
    HandshakeEvent,
    LogEvent,
    LookupHitEvent,
    MilestoneEvent,
    NixlTransferStatsEvent,
    RetrieveEvent,
    StoreEvent,
)
from pdtui.telemetry.logparse import LogScanner

__all__ = ["FileScan", "MAX_LINE_BYTES", "role_from_filename", "scan_file", "summarize"]

MAX_LINE_BYTES = 1 << 20  # a longer "line" is cut here; real log lines are far shorter
_SNIFF_BYTES = 8192


@dataclass
class FileScan:
    path: str
    role: str | None = None
    lines: int = 0
    problem: str | None = None  # why the file could not be scanned (then nothing else is set)
    undecodable_lines: int = 0
    truncated_lines: int = 0
    stores: list[StoreEvent] = field(default_factory=list)
    lookups: list[LookupHitEvent] = field(default_factory=list)
    retrieves: list[RetrieveEvent] = field(default_factory=list)
    nixl_stats: list[NixlTransferStatsEvent] = field(default_factory=list)
    handshakes: int = 0
    milestones: int = 0
    alerts: Counter = field(default_factory=Counter)


def role_from_filename(path: str | Path) -> str | None:
    name = Path(path).name.lower()
    if "decode" in name:
        return "decoder"
    if "prefill" in name:
        return "prefiller"
    return None


def _problem_with(path: Path) -> str | None:
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a directory, not a log file"
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if b"\x00" in head:
        return "looks like a binary file (NUL bytes in its first 8 KiB), not a text log"
    return None


def scan_file(path: str | Path, on_event: Callable[[LogEvent], None] | None = None) -> FileScan:
    p = Path(path)
    scan = FileScan(str(path))
    scan.problem = _problem_with(p)
    if scan.problem:
        return scan
    scanner = LogScanner(role_from_filename(p))
    try:
        with p.open("rb") as handle:
            while True:
                chunk = handle.readline(MAX_LINE_BYTES)
                if not chunk:
                    break
                if not chunk.endswith(b"\n") and len(chunk) == MAX_LINE_BYTES:
                    scan.truncated_lines += 1
                    # Skip the rest of the over-long line without holding it in memory.
                    while True:
                        rest = handle.readline(MAX_LINE_BYTES)
                        if not rest or rest.endswith(b"\n"):
                            break
                scan.lines += 1
                try:
                    line = chunk.decode("utf-8")
                except UnicodeDecodeError:
                    scan.undecodable_lines += 1
                    line = chunk.decode("utf-8", errors="replace")
                for event in scanner.feed(line):
                    _count(scan, event)
                    if on_event is not None:
                        on_event(event)
    except BrokenPipeError:
        raise  # the reader of our output went away (| head): not a problem with the file
    except OSError as exc:
        scan.problem = f"read failed after {scan.lines} lines: {exc.strerror or exc}"
    scan.role = scanner.role
    return scan


def _count(scan: FileScan, event: LogEvent) -> None:
    if isinstance(event, StoreEvent):
        scan.stores.append(event)
    elif isinstance(event, LookupHitEvent):
        scan.lookups.append(event)
    elif isinstance(event, RetrieveEvent):
        scan.retrieves.append(event)
    elif isinstance(event, NixlTransferStatsEvent):
        scan.nixl_stats.append(event)
    elif isinstance(event, HandshakeEvent):
        scan.handshakes += 1
    elif isinstance(event, MilestoneEvent):
        scan.milestones += 1
    elif isinstance(event, Alert):
        scan.alerts[event.kind] += 1


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


# vLLM's MB is 2**20 bytes and LMCache's GB 2**30 (StoreEvent.size_gib): MB / 1024 = GB,
# so NIXL and LMCache throughputs are printed in the same GB/s.
_MB_PER_GB = 1024.0


def _nixl_totals(stats: list[NixlTransferStatsEvent]) -> dict:
    """NixlConnector's interval lines added up (each covers only its own interval)."""
    sized = [e.transferred_mb for e in stats if e.transferred_mb is not None]
    failed = [e.failed_transfers for e in stats if e.failed_transfers is not None]
    failed_notifs = [e.failed_notifications for e in stats if e.failed_notifications is not None]
    return {
        "nixl_stats_lines": len(stats),
        "nixl_transfers": sum(e.transfers for e in stats),
        "nixl_gib": sum(sized) / _MB_PER_GB if sized else None,
        "nixl_gbps": _spread([e.throughput_mbps / _MB_PER_GB for e in stats
                              if e.throughput_mbps is not None and e.transfers > 0]),
        "nixl_xfer_ms": _spread([e.avg_xfer_ms for e in stats
                                 if e.avg_xfer_ms is not None and e.transfers > 0]),
        "nixl_failed_transfers": sum(failed) if failed else None,
        "nixl_failed_notifications": sum(failed_notifs) if failed_notifs else None,
    }


def summarize(scans: list[FileScan]) -> dict:
    """Totals over the scanned files (JSON-ready).

    `transfers` counts every KV transfer found: LMCache stores plus NIXL's successful
    transfers (`nixl_transfers`); throughputs (`store_gbps`, `retrieve_gbps`, `nixl_gbps`)
    are all GB/s.
    """
    stores = [e for s in scans for e in s.stores]
    nixl = _nixl_totals([e for s in scans for e in s.nixl_stats])
    retrieves = [e for s in scans for e in s.retrieves]
    decoder_lookups = [e for s in scans if s.role == "decoder" for e in s.lookups]
    other_lookups = sum(len(s.lookups) for s in scans if s.role != "decoder")
    alerts: Counter = Counter()
    for s in scans:
        alerts.update(s.alerts)
    total = sum(e.total_tokens for e in decoder_lookups)
    hit = sum(e.hit_tokens for e in decoder_lookups)
    hit_rate = None
    if decoder_lookups:
        hit_rate = {
            "tokens": hit / total if total else None,
            "hit_tokens": hit,
            "total_tokens": total,
            "requests_hit": sum(1 for e in decoder_lookups if e.hit_tokens > 0),
            "requests": len(decoder_lookups),
        }
    return {
        "files": [
            {"path": s.path, "role": s.role, "lines": s.lines, "problem": s.problem}
            | ({"undecodable_lines": s.undecodable_lines} if s.undecodable_lines else {})
            | ({"truncated_lines": s.truncated_lines} if s.truncated_lines else {})
            for s in scans
        ],
        "transfers": len(stores) + nixl["nixl_transfers"],
        "stores": len(stores),
        "stored_tokens": sum(e.tokens for e in stores),
        "stored_gib": sum(e.size_gib for e in stores),
        "store_gbps": _spread([e.throughput_gbps for e in stores]),
        "store_put_ms": _spread([e.put_ms for e in stores if e.put_ms is not None]),
        "retrieves": len(retrieves),
        "retrieved_tokens": sum(e.tokens for e in retrieves),
        "retrieve_gbps": _spread([e.throughput_gbps for e in retrieves if e.throughput_gbps is not None]),
        **nixl,
        "decoder_lookups": len(decoder_lookups),
        "lookups_not_on_a_decoder": other_lookups,
        "decoder_hit_rate": hit_rate,
        "handshake_lines": sum(s.handshakes for s in scans),
        "milestones": sum(s.milestones for s in scans),
        "alerts": dict(sorted(alerts.items())),
    }
