"""PairStats on the proxy /events stream recorded in a real GPU run (exact numbers), on
hand-written failure events shaped like the proxy's, and joined with the log numbers."""

from __future__ import annotations

import json

import pytest

from pdtui.telemetry.pairs import PairStats
from pdtui.telemetry.logparse import LogScanner
from pdtui.telemetry.kvstats import KvRow, KvTransferStats, pair_view_rows, url_namer
from tests.conftest import REPO_ROOT

RUN = REPO_ROOT / "tests/fixtures/real-run/lmcache-pd"
LAST_TS = 1795953340.4724092  # the recorded stream's last event
P, D = "http://localhost:7100", "http://localhost:7200"


def recorded(clock_offset_s: float = 1.0) -> PairStats:
    stats = PairStats(window_s=30, clock=lambda: LAST_TS + clock_offset_s)
    with open(RUN / "proxy_events.jsonl", "rb") as fh:
        for line in fh:
            stats.feed_line(line)
    return stats


def test_recorded_real_run_exact_numbers():
    stats = recorded()
    [row] = stats.pairs()
    assert (row.prefiller, row.decoder, row.requests, row.window_requests) == (P, D, 8, 8)
    assert row.requests_per_s == pytest.approx(8 / 30)
    # prefill end - start per request, sorted: 12.928 13.339 14.164 16.873 17.58 18.645 22.529 86.676
    assert row.prefill_p50_ms == pytest.approx((16.873 + 17.58) / 2)
    # kv_wait: 0.027 0.024 0.030 0.025 0.017 0.017 0.017 0.018 (ms)
    assert row.kv_wait_p50_ms == pytest.approx(0.021)
    assert row.kv_wait_p99_ms == pytest.approx(0.027 + 0.93 * 0.003)
    assert (row.errors, row.timeouts, row.last_error) == (0, 0, None)
    slow = stats.slowest()
    assert [s.req_id[:8] for s in slow] == ["cbf986a0", "9b001ff5", "0864a8fb", "d7f2bd00", "7617f30d"]
    assert slow[0].kv_wait_ms == pytest.approx(0.030) and slow[0].ok
    assert stats.alarms() == [] and stats.open_requests() == 0 and stats.bad_lines == 0


def test_window_and_replay_do_not_double_count():
    stats = recorded(clock_offset_s=60.0)  # all of it older than the 30 s window
    with open(RUN / "proxy_events.jsonl", "rb") as fh:  # a reconnect replays the history
        for line in fh:
            stats.feed_line(line)
    [row] = stats.pairs()
    assert (row.requests, row.window_requests, row.requests_per_s) == (8, 0, 0.0)


def _ev(req, stage, state, elapsed, backend=None, **detail):
    e = {"type": "stage", "req_id": req, "route": "completions", "stage": stage, "state": state,
         "backend": backend, "ts": LAST_TS, "elapsed_ms": elapsed}
    if detail:
        e["detail"] = detail
    return e


def test_kv_wait_timeout_error_unpaired_and_junk_are_alarms():
    stats = PairStats(clock=lambda: LAST_TS)
    p2 = "http://127.0.0.1:7101"
    for e in [
        _ev("a", "request", "start", 0.0),
        _ev("a", "route", "end", 0.1, prefiller=p2, decoder=D),
        _ev("a", "prefill", "start", 1.0, p2),
        _ev("a", "prefill", "end", 11.0, p2),
        _ev("a", "kv_wait", "start", 11.0, p2, decoder=D, expected=1),
        _ev("a", "kv_wait", "error", 20011.0, p2, decoder=D, received=0, expected=1),
        _ev("a", "request", "error", 20012.0, outcome="timeout"),
        _ev("b", "request", "start", 0.0),
        _ev("b", "request", "error", 1.0, outcome="no_backend"),
    ]:
        stats.feed(e)
    for junk in (b"not json", b'{"type": "stage", "req_id": 5}', b"", b'{"type": "heartbeat"}'):
        stats.feed_line(junk)
    stats.feed_line(b'{"type": "dropped", "count": 3}')
    [row] = stats.pairs()
    assert (row.prefiller, row.errors, row.timeouts) == (p2, 1, 1)
    assert row.kv_wait_p99_ms == pytest.approx(20000.0) and row.prefill_p50_ms == pytest.approx(10.0)
    assert row.last_error == "kv_wait: failed"
    assert stats.slowest()[0].req_id == "a" and not stats.slowest()[0].ok
    assert stats.bad_lines == 2 and stats.dropped == 3
    name = url_namer({7101: "prefiller1", 7200: "decoder0"})
    assert stats.alarms(name) == [
        "prefiller1 → decoder0: 1 request timed out (last: kv_wait: failed)",
        "1 request failed before a prefiller/decoder pair was chosen",
        "the proxy dropped 3 events for this reader (numbers are partial)",
    ]


def test_open_requests_are_bounded():
    stats = PairStats(max_open=10, clock=lambda: LAST_TS)
    for k in range(100):
        stats.feed(_ev(f"r{k}", "request", "start", 0.0))
    assert stats.open_requests() == 10


def test_pairs_joined_with_the_same_runs_logs():
    """The pair row of the real run next to its prefiller's and decoder's log numbers."""
    kv = KvTransferStats(clock=lambda: 0.0)
    for name, role in (("prefiller1", "prefiller"), ("decoder1", "decoder")):
        scanner = LogScanner(role)
        events = []
        with open(RUN / f"{name}.log", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                events.extend(scanner.feed(line))
        kv.feed(name, role, events)
    logs = {r.instance: r for r in kv.rows()}
    assert logs["prefiller1"].gbps is not None and logs["decoder1"].hit_rate is not None
    name = url_namer({7100: "prefiller1", 7200: "decoder1"})
    [row] = pair_view_rows(kv.rows(), recorded().pairs(), name)
    assert (row.prefiller, row.decoder, row.requests) == ("prefiller1", "decoder1", 8)
    # One pair: it carries all of the prefiller's store rate.
    assert row.est_gbps == pytest.approx(logs["prefiller1"].gbps)
    assert row.decoder_hit_rate == logs["decoder1"].hit_rate
    assert name("http://[::1") == "http://[::1" and name("http://h/") == "http://h/"


def test_store_rate_is_split_by_request_share():
    stats = PairStats(clock=lambda: LAST_TS)
    for k, d in enumerate([D, D, D, "http://localhost:7201"]):
        stats.feed(_ev(f"r{k}", "route", "end", 0.1, prefiller=P, decoder=d))
        stats.feed(_ev(f"r{k}", "request", "end", 5.0, outcome="ok"))
    name = url_namer({7100: "p", 7200: "d0", 7201: "d1"})
    p_row = KvRow("p", "prefiller", 0.4, 2.0, 4000, 0, 0, None, 0, 0)
    d_row = KvRow("d0", "decoder", 0.3, 1.5, 0, 300, 400, 0.75, 0, 0)
    view = pair_view_rows([p_row, d_row], stats.pairs(), name)
    assert [(r.prefiller, r.decoder, r.requests, r.est_gbps, r.decoder_hit_rate) for r in view] == [
        ("p", "d0", 3, pytest.approx(1.5), 0.75), ("p", "d1", 1, pytest.approx(0.5), None)]
    json.dumps([r.__dict__ for r in view])  # plain data
