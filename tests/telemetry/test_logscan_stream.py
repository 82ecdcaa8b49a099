"""logscan streams (issue 15, item 5): only trigger lines are parsed, memory does not grow.

1. Every recorded log line (shared fixtures and the repository's own) that yields an event
   holds one of SCAN_TRIGGERS: skipping the other lines changes nothing.
2. scan_file gives the same totals as feeding every line to a LogScanner one by one.
3. Scanning 4x more of an event-dense log allocates no more memory (tracemalloc peak), with
   keep_events=False, while the events themselves would take megabytes.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from pdtui.telemetry.logparse import LogScanner
from pdtui.telemetry.logscan import _TRIGGER, SCAN_TRIGGERS, Spread, role_from_filename, scan_file, summarize
from tests.conftest import REPO_ROOT, SHARED_FIXTURES


def _lines(path: Path) -> list[bytes]:
    """Lines as logs end them (on \\n only: tqdm's \\r stays inside a line), ends kept."""
    with path.open("rb") as handle:
        return list(handle)


def _all_logs() -> list[Path]:
    logs = sorted(SHARED_FIXTURES.rglob("*.log")) + sorted((REPO_ROOT / "tests" / "fixtures").rglob("*.log"))
    assert logs, "no recorded logs found"
    return logs


def test_every_line_that_yields_an_event_holds_a_trigger_word():
    checked = 0
    for path in _all_logs():
        scanner = LogScanner(role_from_filename(path))
        for raw in _lines(path):
            events = scanner.feed(raw.decode("utf-8", errors="replace"))
            if events:
                checked += 1
                assert _TRIGGER.search(raw) is not None, (path.name, raw[:200], [type(e).__name__ for e in events])
    assert checked > 500  # the fixtures are full of events: the check saw them
    assert all(word.isascii() for word in SCAN_TRIGGERS)


def _line_by_line(path: Path) -> dict:
    """The old way: every line through the scanner, every event kept."""
    from pdtui.telemetry.logscan import FileScan, _count

    scan = FileScan(str(path))
    scanner = LogScanner(role_from_filename(path))
    for raw in _lines(path):
        scan.lines += 1
        for event in scanner.feed(raw.decode("utf-8", errors="replace")):
            _count(scan, event)
    scan.role = scanner.role
    return summarize([scan])


def test_streamed_totals_equal_line_by_line_totals():
    for path in _all_logs():
        assert summarize([scan_file(path, keep_events=False)]) == _line_by_line(path), path.name


def _event_dense_log(path: Path, copies: int) -> Path:
    block = b"".join((SHARED_FIXTURES / "lmcache-logs" / "1p1d" / n).read_bytes() for n in ("prefiller.log", "decoder.log"))
    path.write_bytes(block * copies)
    return path


def _peak_bytes(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        scan = scan_file(path, keep_events=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scan.problem is None and not scan.stores and not scan.lookups
    return peak, scan.totals.stores


def test_memory_does_not_grow_with_the_file(tmp_path):
    small, stores_small = _peak_bytes(_event_dense_log(tmp_path / "small.log", 16))  # 3.4 MB: several blocks
    big, stores_big = _peak_bytes(_event_dense_log(tmp_path / "big.log", 64))  # 13.7 MB
    assert stores_big == 4 * stores_small > 10_000
    # Keeping the big file's ~19,000 more events would take several MB more (an event object
    # is a few hundred bytes); the stream's peak stays put: one block of 1 MiB at a time and
    # bounded samples (8 bytes per value, at most Spread.SAMPLE).
    assert big - small < 1_000_000, (small, big)
    assert big < 10_000_000


def test_spread_is_exact_up_to_its_sample_then_estimated():
    spread = Spread()
    for v in range(1, 8):
        spread.add(float(v))
    assert spread.result() == {"min": 1.0, "median": 4.0, "max": 7.0}
    big = Spread()
    for v in range(Spread.SAMPLE * 3):
        big.add(float(v))
    result = big.result()
    assert result["min"] == 0 and result["max"] == Spread.SAMPLE * 3 - 1
    assert result["median_estimated_from"] == Spread.SAMPLE
    assert abs(result["median"] - Spread.SAMPLE * 1.5) < Spread.SAMPLE * 0.05
    assert len(big._values) == Spread.SAMPLE


def test_over_long_lines_across_blocks(tmp_path):
    from pdtui.telemetry.logscan import _BLOCK_BYTES, MAX_LINE_BYTES

    lookup = (b"[2025-06-02 17:52:56,002] LMCache INFO: Reqid: r1, Total tokens 100, LMCache hit tokens: 0, "
              b"need to load: 0 (vllm_v1_adapter.py:745:x)\n")
    log = tmp_path / "decoder.log"
    log.write_bytes(b"y" * (5 * _BLOCK_BYTES + 3) + b"\n" + lookup + b"z" * (MAX_LINE_BYTES - 1) + b"\n" + lookup
                    + b"w" * (2 * MAX_LINE_BYTES))  # the last one has no newline at all
    scan = scan_file(log, keep_events=False)
    assert scan.problem is None
    assert (scan.lines, scan.truncated_lines) == (5, 2)
    assert scan.totals.lookups == 2 and scan.alerts == {"decoder_zero_hit": 2}
    only = tmp_path / "one.log"
    only.write_bytes(b"q" * (3 * _BLOCK_BYTES))
    assert (scan_file(only).lines, scan_file(only).truncated_lines) == (1, 1)
