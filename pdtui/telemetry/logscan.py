"""Scan whole log files (streamed, in constant memory) and summarise the KV transfers.

`scan_file(path, on_event=None, keep_events=True) -> FileScan` reads the file in binary
blocks of 1 MiB, splits them into lines with a bounded line length (an over-long line
is cut and the rest skipped), and feeds a LogScanner only the lines that hold one of the
words the parser looks for (most lines hold none and are only counted). Lines are decoded
as UTF-8 with replacement. The role comes from the log itself (`kv_role='kv_consumer'`)
or else from the file name (LMCache's example scripts write `prefiller.log` /
`decoder.log`). Totals (`FileScan.totals`) are kept as counts, sums and bounded samples, so
memory stays flat whatever the file size; `keep_events=False` (what `pdtui logscan` uses)
also drops the per-event lists. `summarize(scans)` builds the totals printed by
`pdtui logscan`: KV transfers are LMCache's stores (lmcache-pd mode) plus the successful
transfers of vLLM's NixlConnector `KV Transfer metrics` lines (nixl mode). Problems with a
file (missing, a directory, unreadable, binary) are reported in `FileScan.problem`, not raised.
"""

from __future__ import annotations

import random
import re
import statistics
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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

__all__ = ["MAX_LINE_BYTES", "FileScan", "Spread", "role_from_filename", "scan_file", "summarize"]

MAX_LINE_BYTES = 1 << 20  # a longer "line" is cut here; real log lines are far shorter
_BLOCK_BYTES = 1 << 20
_SNIFF_BYTES = 8192
# Every word LogScanner.feed / logparse.parse_line tests before it parses a line: a line
# with none of them yields no event. tests/telemetry/test_logscan_stream.py holds this to
# every recorded real log line and the simulator's output.
SCAN_TRIGGERS = (
    "LMCache", "Engine 0", "KV Transfer metrics:", "rror", "xception", "out of memory", "UCX", "NIXL",
    "oad", "KV cache size", "init engine", "Starting vLLM", "startup complete", "Uvicorn running", "kv_role",
)
_TRIGGER = re.compile("|".join(re.escape(w) for w in SCAN_TRIGGERS).encode())


class Spread:
    """min / median / max of a stream in bounded memory.

    Up to SAMPLE values are kept (8 bytes each) and the median is exact; past that a
    uniform reservoir sample of SAMPLE values stands for all of them (`estimated`).
    min and max are always exact.
    """

    SAMPLE = 100_000

    def __init__(self) -> None:
        self.count = 0
        self.min = float("inf")
        self.max = float("-inf")
        self._values = array("d")
        self._rng = random.Random(0)  # same input, same figures

    def add(self, value: float) -> None:
        self.count += 1
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if len(self._values) < self.SAMPLE:
            self._values.append(value)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self.SAMPLE:
                self._values[slot] = value

    def extend(self, other: Spread) -> None:
        for value in other._values:
            self.add(value)
        if other.count:
            self.count += other.count - len(other._values)
            self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    @property
    def estimated(self) -> bool:
        return self.count > len(self._values)

    def result(self) -> dict[str, float] | None:
        if not self.count:
            return None
        out = {"min": self.min, "median": statistics.median(self._values), "max": self.max}
        return out | ({"median_estimated_from": len(self._values)} if self.estimated else {})


@dataclass
class ScanTotals:
    """What summarize needs of one file, as counts, sums and Spreads."""

    stores: int = 0
    stored_tokens: int = 0
    stored_gib: float = 0.0
    store_gbps: Spread = field(default_factory=Spread)
    store_put_ms: Spread = field(default_factory=Spread)
    retrieves: int = 0
    retrieved_tokens: int = 0
    retrieve_gbps: Spread = field(default_factory=Spread)
    lookups: int = 0
    lookup_total_tokens: int = 0
    lookup_hit_tokens: int = 0
    lookups_hit: int = 0
    nixl_lines: int = 0
    nixl_transfers: int = 0
    nixl_mb: float | None = None
    nixl_gbps: Spread = field(default_factory=Spread)
    nixl_xfer_ms: Spread = field(default_factory=Spread)
    nixl_failed_transfers: int | None = None
    nixl_failed_notifications: int | None = None


@dataclass
class FileScan:
    path: str
    role: str | None = None
    lines: int = 0
    problem: str | None = None  # why the file could not be scanned (then nothing else is set)
    undecodable_lines: int = 0
    truncated_lines: int = 0
    totals: ScanTotals = field(default_factory=ScanTotals)
    # The events themselves, only with keep_events=True (small files, tests, tools).
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


def scan_file(
    path: str | Path, on_event: Callable[[LogEvent], None] | None = None, keep_events: bool = True
) -> FileScan:
    p = Path(path)
    scan = FileScan(str(path))
    scan.problem = _problem_with(p)
    if scan.problem:
        return scan
    scanner = LogScanner(role_from_filename(p))

    def line(raw: bytes, strict: bool, newline: bool) -> None:
        scan.lines += 1
        if len(raw) > MAX_LINE_BYTES:
            scan.truncated_lines += 1
            raw, newline = raw[:MAX_LINE_BYTES], False
        if strict:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                scan.undecodable_lines += 1
        if search(raw) is not None:
            feed(raw.decode("utf-8", errors="replace") + ("\n" if newline else ""))

    def feed(text: str) -> None:
        for event in scanner.feed(text):
            _count(scan, event, keep_events)
            if on_event is not None:
                on_event(event)

    search = _TRIGGER.search
    scanner_feed = scanner.feed

    try:
        with p.open("rb") as handle:
            carry = b""
            skipping = False  # inside the rest of an over-long line
            while True:
                data = handle.read(_BLOCK_BYTES)
                if not data:
                    break
                if skipping:
                    nl = data.find(b"\n")
                    if nl < 0:
                        continue
                    data, skipping = data[nl + 1 :], False
                block = carry + data if carry else data
                lines = block.split(b"\n")
                carry = lines.pop()
                check = not block.isascii()
                if check:
                    try:
                        block.decode("utf-8")
                        check = False  # all of it decodes: no need to look line by line
                    except UnicodeDecodeError:
                        pass
                if check or len(block) > MAX_LINE_BYTES and max(map(len, lines), default=0) > MAX_LINE_BYTES:
                    for raw in lines:  # the rare block with bad UTF-8 or an over-long line
                        line(raw, check, True)
                else:
                    scan.lines += len(lines)
                    for raw in lines:  # the hot loop: most lines stop at the search
                        if search(raw) is not None:
                            for event in scanner_feed(raw.decode("utf-8", errors="replace") + "\n"):
                                _count(scan, event, keep_events)
                                if on_event is not None:
                                    on_event(event)
                if len(carry) > MAX_LINE_BYTES:
                    line(carry, True, False)  # counted and cut; the rest of it is skipped
                    carry, skipping = b"", True
            if carry:
                line(carry, True, False)
    except BrokenPipeError:
        raise  # the reader of our output went away (| head): not a problem with the file
    except OSError as exc:
        scan.problem = f"read failed after {scan.lines} lines: {exc.strerror or exc}"
    scan.role = scanner.role
    return scan


def _count(scan: FileScan, event: LogEvent, keep_events: bool = True) -> None:
    t = scan.totals
    if isinstance(event, StoreEvent):
        t.stores += 1
        t.stored_tokens += event.tokens
        t.stored_gib += event.size_gib
        t.store_gbps.add(event.throughput_gbps)
        if event.put_ms is not None:
            t.store_put_ms.add(event.put_ms)
        if keep_events:
            scan.stores.append(event)
    elif isinstance(event, LookupHitEvent):
        t.lookups += 1
        t.lookup_total_tokens += event.total_tokens
        t.lookup_hit_tokens += event.hit_tokens
        t.lookups_hit += event.hit_tokens > 0
        if keep_events:
            scan.lookups.append(event)
    elif isinstance(event, RetrieveEvent):
        t.retrieves += 1
        t.retrieved_tokens += event.tokens
        if event.throughput_gbps is not None:
            t.retrieve_gbps.add(event.throughput_gbps)
        if keep_events:
            scan.retrieves.append(event)
    elif isinstance(event, NixlTransferStatsEvent):
        _count_nixl(t, event)
        if keep_events:
            scan.nixl_stats.append(event)
    elif isinstance(event, HandshakeEvent):
        scan.handshakes += 1
    elif isinstance(event, MilestoneEvent):
        scan.milestones += 1
    elif isinstance(event, Alert):
        scan.alerts[event.kind] += 1


# vLLM's MB is 2**20 bytes and LMCache's GB 2**30 (StoreEvent.size_gib): MB / 1024 = GB,
# so NIXL and LMCache throughputs are printed in the same GB/s.
_MB_PER_GB = 1024.0


def _count_nixl(t: ScanTotals, e: NixlTransferStatsEvent) -> None:
    """NixlConnector's interval lines added up (each covers only its own interval)."""
    t.nixl_lines += 1
    t.nixl_transfers += e.transfers
    if e.transferred_mb is not None:
        t.nixl_mb = (t.nixl_mb or 0.0) + e.transferred_mb
    if e.failed_transfers is not None:
        t.nixl_failed_transfers = (t.nixl_failed_transfers or 0) + e.failed_transfers
    if e.failed_notifications is not None:
        t.nixl_failed_notifications = (t.nixl_failed_notifications or 0) + e.failed_notifications
    if e.transfers > 0:
        if e.throughput_mbps is not None:
            t.nixl_gbps.add(e.throughput_mbps / _MB_PER_GB)
        if e.avg_xfer_ms is not None:
            t.nixl_xfer_ms.add(e.avg_xfer_ms)


def _merged(spreads: list[Spread]) -> dict[str, float] | None:
    total = Spread()
    for spread in spreads:
        total.extend(spread)
    return total.result()


def summarize(scans: list[FileScan]) -> dict:
    """Totals over the scanned files (JSON-ready).

    `transfers` counts every KV transfer found: LMCache stores plus NIXL's successful
    transfers (`nixl_transfers`); throughputs (`store_gbps`, `retrieve_gbps`, `nixl_gbps`)
    are all GB/s. A spread over more values than Spread.SAMPLE has its median estimated
    from a uniform sample (`median_estimated_from`).
    """
    totals = [s.totals for s in scans]
    decoders = [s.totals for s in scans if s.role == "decoder"]
    alerts: Counter = Counter()
    for s in scans:
        alerts.update(s.alerts)
    lookups = sum(t.lookups for t in decoders)
    total = sum(t.lookup_total_tokens for t in decoders)
    hit = sum(t.lookup_hit_tokens for t in decoders)
    hit_rate = None
    if lookups:
        hit_rate = {
            "tokens": hit / total if total else None,
            "hit_tokens": hit,
            "total_tokens": total,
            "requests_hit": sum(t.lookups_hit for t in decoders),
            "requests": lookups,
        }
    nixl_mb = [t.nixl_mb for t in totals if t.nixl_mb is not None]
    failed = [t.nixl_failed_transfers for t in totals if t.nixl_failed_transfers is not None]
    failed_notifs = [t.nixl_failed_notifications for t in totals if t.nixl_failed_notifications is not None]
    nixl_transfers = sum(t.nixl_transfers for t in totals)
    stores = sum(t.stores for t in totals)
    return {
        "files": [
            {"path": s.path, "role": s.role, "lines": s.lines, "problem": s.problem}
            | ({"undecodable_lines": s.undecodable_lines} if s.undecodable_lines else {})
            | ({"truncated_lines": s.truncated_lines} if s.truncated_lines else {})
            for s in scans
        ],
        "transfers": stores + nixl_transfers,
        "stores": stores,
        "stored_tokens": sum(t.stored_tokens for t in totals),
        "stored_gib": sum(t.stored_gib for t in totals),
        "store_gbps": _merged([t.store_gbps for t in totals]),
        "store_put_ms": _merged([t.store_put_ms for t in totals]),
        "retrieves": sum(t.retrieves for t in totals),
        "retrieved_tokens": sum(t.retrieved_tokens for t in totals),
        "retrieve_gbps": _merged([t.retrieve_gbps for t in totals]),
        "nixl_stats_lines": sum(t.nixl_lines for t in totals),
        "nixl_transfers": nixl_transfers,
        "nixl_gib": sum(nixl_mb) / _MB_PER_GB if nixl_mb else None,
        "nixl_gbps": _merged([t.nixl_gbps for t in totals]),
        "nixl_xfer_ms": _merged([t.nixl_xfer_ms for t in totals]),
        "nixl_failed_transfers": sum(failed) if failed else None,
        "nixl_failed_notifications": sum(failed_notifs) if failed_notifs else None,
        "decoder_lookups": lookups,
        "lookups_not_on_a_decoder": sum(s.totals.lookups for s in scans if s.role != "decoder"),
        "decoder_hit_rate": hit_rate,
        "handshake_lines": sum(s.handshakes for s in scans),
        "milestones": sum(s.milestones for s in scans),
        "alerts": dict(sorted(alerts.items())),
    }
