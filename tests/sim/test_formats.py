"""The log-line builders against the recorded real lines and the reference's regexes."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from pdtui.sim import logfmt
from tests.conftest import SHARED_FIXTURES
from tests.sim.test_lmcache_pd import LOOKUP_RE, RETRIEVED_RE, STORED_RE

REAL = SHARED_FIXTURES / "real-vllm" / "lmcache-pd"


def _real_lines(name: str, needle: str) -> list[str]:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"fixture {path} not found")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if needle in line]


def _at(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_lookup_line_is_byte_identical_to_the_recorded_one():
    real = _real_lines("decoder.log", "LMCache hit tokens: 1019")[0]
    ours = logfmt.process_prefix("EngineCore", 1547) + logfmt.lmcache_line(
        "INFO",
        logfmt.lookup_message("cmpl-8a60adec5550d780-0-b4edfde3", 1020, 0, 1019, 1019),
        logfmt.SRC_LOOKUP,
        when=_at("2026-11-29 10:54:00,292"),
    )
    assert ours == real


def test_engine_stats_line_is_byte_identical_to_the_recorded_one():
    real = _real_lines("prefiller.log", "Engine 000:")[0]
    ours = logfmt.process_prefix("APIServer", 1841) + logfmt.vllm_line(
        "INFO", logfmt.SRC_ENGINE_STATS, logfmt.engine_stats_message(372.7, 0.4, 0, 0, 0.0, 0.0, 0.0),
        when=dt.datetime(2026, 11, 29, 10, 54, 2).timestamp(),
    )
    assert ours == real


def test_stored_and_retrieved_lines_have_the_recorded_shape():
    shape = re.compile(r"\d+(\.\d+)?")
    real_stored = _real_lines("prefiller.log", "Stored 1031")[0]
    ours = logfmt.process_prefix("EngineCore", 1841) + logfmt.lmcache_line(
        "INFO", logfmt.stored_message("cmpl-ae26ce558151c145-0-81748836", 1031, 1031, 0.0024, 1.0249, 0.9071, 0.0828),
        logfmt.SRC_STORED, when=_at("2026-11-29 10:54:00,468"),
    )
    assert shape.sub("N", ours) == shape.sub("N", real_stored.replace("pid=1917", "pid=1841"))
    real_retrieved = _real_lines("decoder.log", "Retrieved 1031")[0]
    ours = logfmt.process_prefix("EngineCore", 1547) + logfmt.lmcache_line(
        "INFO", logfmt.retrieved_message("cmpl-b399678b4f671247-0-8de570e8", 1031, 1031, 1031, 0.0024, 1.2844),
        logfmt.SRC_RETRIEVED, when=_at("2026-11-29 10:54:00,482"),
    )
    assert shape.sub("N", ours) == shape.sub("N", real_retrieved)


@pytest.mark.parametrize(
    ("level", "colour"),
    [("INFO", "\x1b[32;20m"), ("WARNING", "\x1b[33;20m"), ("ERROR", "\x1b[31;20m"), ("DEBUG", "\x1b[1m")],
)
def test_lmcache_colours_per_level(level, colour):
    line = logfmt.lmcache_line(level, "msg", "x.py:1:lmcache.x")
    assert line.startswith(colour + "[")
    assert line.endswith(" \x1b[3m(x.py:1:lmcache.x)\x1b[0m")
    assert f"LMCache {level}:\x1b[0m msg " in line


def test_messages_match_the_reference_regexes():
    lookup = LOOKUP_RE.search(logfmt.lookup_message("cmpl-1-0-abc", 1020, 0, 1019, 1019))
    assert lookup and lookup.group("hit", "load", "total") == ("1019", "1019", "1020")
    stored = STORED_RE.search(logfmt.stored_message("r", 35, 35, 0.0004, 30.4122, 0.7334, 29.6788))
    assert stored and stored["tok"] == "35" and float(stored["gbps"]) == pytest.approx(0.0132, abs=1e-4)
    retrieved = RETRIEVED_RE.search(logfmt.retrieved_message("r", 7, 7, 7, 0.001, 1.0))
    assert retrieved and retrieved["got"] == "7"


def test_kv_transfer_metrics_message_fields_by_name():
    text = logfmt.kv_transfer_metrics_message(4, 4.668, 5.0, 0.3, 0.4, 0.377, 322.976, 4.0)
    fields = dict(part.split("=") for part in text.removeprefix("KV Transfer metrics: ").split(", "))
    assert fields["Num successful transfers"] == "4"
    assert fields["Avg xfer time (ms)"] == "4.668"
    assert fields["Throughput (MB/s)"] == "322.976"
