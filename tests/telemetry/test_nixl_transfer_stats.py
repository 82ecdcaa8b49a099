"""vLLM NixlConnector's `KV Transfer metrics` line: parsed, added up, reported by logscan.

The real line is from the H200 run (tests/fixtures/real-run/nixl/decoder1.log); the
simulator's comes from pdtui.sim.logfmt, as the simulated decoder writes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pdtui.sim import logfmt
from pdtui.telemetry.events import NixlTransferStatsEvent, event_to_dict
from pdtui.telemetry.logparse import LogScanner, parse_line
from pdtui.telemetry.logscan import scan_file, summarize
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

NIXL_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "real-run" / "nixl"
REAL_LINE = (
    "(APIServer pid=1413) INFO 11-29 11:57:53 [metrics.py:103] KV Transfer metrics: "
    "Num successful transfers=8, Avg xfer time (ms)=6.004, P90 xfer time (ms)=7.008, "
    "Avg post time (ms)=2.242, P90 post time (ms)=5.148, Avg MB per transfer=2.051, "
    "Throughput (MB/s)=341.583, Avg number of descriptors=67.8\n"
)


def _sim_line(*args, **kwargs) -> str:
    message = logfmt.kv_transfer_metrics_message(*args, **kwargs)
    return (logfmt.process_prefix("APIServer", 4242)
            + logfmt.vllm_line("INFO", logfmt.SRC_KV_TRANSFER_METRICS, message, when=1795953473.0)
            + "\n")


def test_the_fixture_holds_the_line_tested_here():
    assert REAL_LINE in (NIXL_RUN / "decoder1.log").read_text()


def test_real_vllm_line_every_field():
    event = parse_line(REAL_LINE)
    assert event == NixlTransferStatsEvent(
        8, avg_xfer_ms=6.004, p90_xfer_ms=7.008, avg_post_ms=2.242, p90_post_ms=5.148,
        avg_mb_per_transfer=2.051, throughput_mbps=341.583, avg_descriptors=67.8,
        timestamp="11-29 11:57:53", process="APIServer pid=1413", level="INFO",
    )
    assert isinstance(event.transfers, int)
    assert event.transferred_mb == pytest.approx(16.408)
    assert event.xfer_seconds == pytest.approx(0.048032)


def test_simulator_line_every_field_including_failures():
    event = parse_line(_sim_line(4, 4.668, 5.0, 0.3, 0.4, 0.377, 322.976, 4.0,
                                 failed_transfers=1, failed_notifications=2))
    assert isinstance(event, NixlTransferStatsEvent)
    assert (event.transfers, event.avg_xfer_ms, event.p90_xfer_ms, event.avg_post_ms,
            event.p90_post_ms, event.avg_mb_per_transfer, event.throughput_mbps,
            event.avg_descriptors, event.failed_transfers, event.failed_notifications) == (
        4, 4.668, 5.0, 0.3, 0.4, 0.377, 322.976, 4.0, 1, 2)
    assert event.process == "APIServer pid=4242" and event.level == "INFO"
    assert event.extra == ()


def test_fields_are_taken_by_name_not_position():
    shuffled = ("INFO 11-29 11:57:53 [metrics.py:103] KV Transfer metrics: Throughput (MB/s)=100.5, "
                "Avg number of descriptors=3.0, Brand new field (us)=12.25, Num successful transfers=3")
    event = parse_line(shuffled)
    assert (event.transfers, event.throughput_mbps, event.avg_descriptors) == (3, 100.5, 3.0)
    assert event.avg_xfer_ms is None and event.avg_mb_per_transfer is None
    assert event.extra == (("brand_new_field_us", 12.25),)
    assert event.transferred_mb is None and event.xfer_seconds is None


def test_a_dict_shaped_line_is_read_too():
    line = ("INFO 11-29 11:57:53 [metrics.py:103] KV Transfer metrics: "
            "{'Num successful transfers': 2, 'Avg MB per transfer': 1.5, 'Throughput (MB/s)': 20.0}")
    event = parse_line(line)
    assert (event.transfers, event.avg_mb_per_transfer, event.throughput_mbps) == (2, 1.5, 20.0)


def test_a_line_without_fields_is_not_an_event():
    assert parse_line("INFO 11-29 11:57:53 [metrics.py:103] KV Transfer metrics: ") is None
    assert parse_line("INFO 11-29 11:57:53 [metrics.py:103] KV Transfer metrics: nothing yet") is None


def test_json_form_of_the_event():
    record = event_to_dict(parse_line(REAL_LINE))
    assert record["type"] == "NixlTransferStatsEvent"
    assert record["transfers"] == 8 and record["throughput_mbps"] == 341.583
    assert record["extra"] == {} and json.loads(json.dumps(record)) == record


def test_scanner_passes_it_on():
    assert LogScanner().feed(REAL_LINE) == (parse_line(REAL_LINE),)


def test_summary_of_the_real_nixl_run():
    out = summarize([scan_file(NIXL_RUN / "decoder1.log"), scan_file(NIXL_RUN / "prefiller1.log")])
    assert out["transfers"] == 8 and out["nixl_transfers"] == 8 and out["stores"] == 0
    assert out["nixl_stats_lines"] == 1
    assert out["nixl_gib"] == pytest.approx(8 * 2.051 / 1024)
    # GB/s like the LMCache figures: vLLM's MB/s / 1024
    assert out["nixl_gbps"] == {"min": 341.583 / 1024, "median": 341.583 / 1024, "max": 341.583 / 1024}
    assert out["nixl_xfer_ms"] == {"min": 6.004, "median": 6.004, "max": 6.004}
    assert out["nixl_failed_transfers"] is None and out["nixl_failed_notifications"] is None


def test_intervals_add_up(tmp_path: Path):
    log = tmp_path / "decoder.log"
    log.write_text(
        _sim_line(4, 4.0, 5.0, 0.3, 0.4, 0.5, 500.0, 4.0, failed_transfers=1)
        + "(APIServer pid=4242) INFO:     127.0.0.1:1 - \"GET /health HTTP/1.1\" 200 OK\n"
        + _sim_line(6, 2.0, 3.0, 0.3, 0.4, 1.0, 300.0, 4.0, failed_notifications=2)
        # an interval with no transfer (only failures) adds no throughput to the spread
        + _sim_line(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, failed_transfers=3)
    )
    scan = scan_file(log)
    assert [e.transfers for e in scan.nixl_stats] == [4, 6, 0]
    out = summarize([scan])
    assert out["transfers"] == out["nixl_transfers"] == 10
    assert out["nixl_gib"] == pytest.approx((4 * 0.5 + 6 * 1.0) / 1024)
    assert out["nixl_gbps"] == {"min": 300.0 / 1024, "median": 400.0 / 1024, "max": 500.0 / 1024}
    assert out["nixl_failed_transfers"] == 4 and out["nixl_failed_notifications"] == 2


def test_lmcache_logs_have_no_nixl_stats(shared_fixtures: Path):
    logs = shared_fixtures / "real-vllm/lmcache-pd"
    out = summarize([scan_file(logs / "prefiller.log"), scan_file(logs / "decoder.log")])
    assert out["nixl_stats_lines"] == 0 and out["nixl_transfers"] == 0
    assert out["transfers"] == out["stores"] == 4
    assert out["nixl_gib"] is None and out["nixl_gbps"] is None


def _logscan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pdtui", "logscan", *args], capture_output=True,
                          text=True, timeout=50, cwd=REPO_ROOT)


def test_logscan_json_on_the_real_nixl_logs():
    proc = _logscan("--json", str(NIXL_RUN / "prefiller1.log"), str(NIXL_RUN / "decoder1.log"))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    (stats,) = [r for r in records if r["type"] == "NixlTransferStatsEvent"]
    assert stats["file"].endswith("decoder1.log")
    assert (stats["transfers"], stats["avg_xfer_ms"], stats["avg_mb_per_transfer"],
            stats["throughput_mbps"], stats["avg_descriptors"]) == (8, 6.004, 2.051, 341.583, 67.8)
    summary = records[-1]
    assert summary["type"] == "summary" and summary["transfers"] == 8
    assert summary["nixl_transfers"] == 8


def test_logscan_text_on_the_real_nixl_logs():
    proc = _logscan(str(NIXL_RUN / "decoder1.log"))
    assert proc.returncode == 0, proc.stderr
    assert "[11-29 11:57:53] nixl      8 transfers  avg 6.004 ms  p90 7.008 ms  2.051 MB each  0.334 GB/s" \
        in proc.stdout
    assert "NIXL transfers (vLLM KV Transfer metrics): 8 in 1 interval, 0.0160 GiB" in proc.stdout
    assert "NIXL throughput:  min 0.33 / median 0.33 / max 0.33 GB/s" in proc.stdout
