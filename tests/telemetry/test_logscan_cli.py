"""`pdtui logscan` as a user runs it: a real subprocess on the recorded logs and bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pdtui.telemetry.logscan import MAX_LINE_BYTES, scan_file, summarize
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(60)


def _logscan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pdtui", "logscan", *args],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=REPO_ROOT,
    )


def test_text_summary_of_the_june_example_logs(shared_fixtures: Path) -> None:
    logs = shared_fixtures / "lmcache-logs/1p1d"
    proc = _logscan(str(logs / "prefiller.log"), str(logs / "decoder.log"), str(logs / "proxy.log"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("] store ") == 201 and out.count("] lookup ") == 201
    assert "transfers (prefiller stores): 201, 1507500 tokens" in out
    assert "store throughput: min 1.13 /" in out and "max 167.08 GB/s" in out
    assert "decoder hit rate: 99.99% of tokens (1507299/1507500), 201/201 requests hit" in out
    assert "alerts: none" in out


def test_json_lines_of_the_real_026_logs(shared_fixtures: Path) -> None:
    logs = shared_fixtures / "real-vllm/lmcache-pd"
    proc = _logscan("--json", str(logs / "prefiller.log"), str(logs / "decoder.log"), str(logs / "proxy.log"))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = records[-1]
    assert summary["type"] == "summary"
    assert summary["transfers"] == 4 and summary["stored_tokens"] == 4076
    assert summary["retrieves"] == 4 and summary["retrieved_tokens"] == 4076
    assert summary["decoder_hit_rate"]["hit_tokens"] == 4076 and summary["decoder_hit_rate"]["total_tokens"] == 4080
    assert summary["store_gbps"] == {"min": 0.0612, "median": (2.0385 + 2.3821) / 2, "max": 2.9188}
    assert summary["alerts"] == {"exception": 1}
    stores = [r for r in records if r["type"] == "StoreEvent"]
    assert stores[0]["put_ms"] == 25.9954 and stores[0]["file"].endswith("prefiller.log")
    assert {r["type"] for r in records[:-1]} == {"StoreEvent", "LookupHitEvent", "RetrieveEvent", "HandshakeEvent", "Alert"}


def test_missing_and_directory_arguments_are_path_errors(tmp_path: Path) -> None:
    proc = _logscan(str(tmp_path / "nope.log"), str(tmp_path), str(tmp_path / "nope.log" / "x.log"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"pdtui logscan: {tmp_path / 'nope.log'}: no such file",
        f"pdtui logscan: {tmp_path}: is a directory, not a file",
        f"pdtui logscan: {tmp_path / 'nope.log' / 'x.log'}: no such file",
    ]
    assert proc.stdout == ""


def test_binary_argument_is_reported_and_the_others_scanned(tmp_path: Path) -> None:
    binary = tmp_path / "core.bin"
    binary.write_bytes(b"\x7fELF\x00\x00\x01" * 100)
    text = tmp_path / "decoder.log"
    text.write_text("hello\n")
    proc = _logscan(str(binary), str(text))
    assert proc.returncode == 1
    assert "looks like a binary file" in proc.stderr
    assert f"{text}: 1 lines" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_invalid_utf8_and_overlong_lines_are_streamed(tmp_path: Path) -> None:
    log = tmp_path / "decoder.log"
    with log.open("wb") as handle:
        handle.write(b"caf\xe9 not utf-8\n")
        handle.write(b"x" * (3 * MAX_LINE_BYTES + 17) + b"\n")  # one 3 MiB "line"
        handle.write(
            b"[2025-06-02 17:52:56,002] LMCache INFO: Reqid: r1, Total tokens 100, LMCache hit tokens: 0, "
            b"need to load: 0 (vllm_v1_adapter.py:745:x)\n"
        )
    scan = scan_file(log)
    assert scan.problem is None
    assert (scan.lines, scan.undecodable_lines, scan.truncated_lines) == (3, 1, 1)
    assert scan.role == "decoder"  # from the file name
    assert scan.alerts == {"decoder_zero_hit": 1}
    assert summarize([scan])["decoder_hit_rate"]["requests_hit"] == 0
