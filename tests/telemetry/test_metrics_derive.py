"""Metrics parsing (fast path = prometheus_client), aliases, derived rates and quantiles."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pdtui.telemetry.derive import (
    Deriver,
    InstanceDeriver,
    counter_increase,
    counter_rate,
    histogram_delta,
    histogram_quantile,
)
from pdtui.telemetry.metrics import (
    Histogram,
    MetricsParseError,
    _fast_parse,
    _reference_parse,
    parse_metrics,
)
from pdtui.telemetry.series import SeriesStore

REAL = "real-vllm/lmcache-pd"


def _normalised(families):
    return {
        name: (fam.type, sorted((s.name, tuple(sorted(s.labels)), s.value) for s in fam.samples))
        for name, fam in families.items()
    }


@pytest.mark.parametrize(
    "name", ["metrics_decoder.txt", "metrics_decoder_before.txt", "metrics_prefiller.txt", "metrics_prefiller_before.txt"]
)
def test_fast_parser_agrees_with_prometheus_client(shared_fixtures: Path, name: str) -> None:
    text = (shared_fixtures / REAL / name).read_text(encoding="utf-8")
    fast = _fast_parse(text, None)
    assert fast is not None, "the real vLLM body should take the fast path"
    assert _normalised(fast) == _normalised(_reference_parse(text, None))


def test_real_decoder_scrape_values(shared_fixtures: Path) -> None:
    snap = parse_metrics((shared_fixtures / REAL / "metrics_decoder.txt").read_text(encoding="utf-8"), taken_at=100.0)
    assert "vllm:kv_cache_usage_perc" in snap.names("vllm:")
    assert snap.names("lmcache:") == []  # README: no PROMETHEUS_MULTIPROC_DIR, no lmcache families
    assert snap.value("external_prefix_cache_hits") == 4076
    assert snap.value("external_prefix_cache_queries") == 4080
    assert snap.value("prompt_tokens") == 4080
    assert snap.value("request_success") == 4
    assert snap.value("request_success", finished_reason="length") == 4
    assert snap.value("kv_cache_usage") == 0.0
    ttft = snap.histogram("ttft")
    assert ttft is not None and ttft.count == 4 and ttft.buckets[-1] == (math.inf, 4.0)
    assert snap.resolve("itl") == "vllm:inter_token_latency_seconds"
    assert snap.value("no_such_metric") is None and snap.histogram("kv_cache_usage") is None


def test_old_names_resolve_through_aliases() -> None:
    text = (
        "# TYPE vllm:gpu_cache_usage_perc gauge\n"
        'vllm:gpu_cache_usage_perc{model_name="m"} 0.25\n'
        "# TYPE vllm:time_per_output_token_seconds histogram\n"
        'vllm:time_per_output_token_seconds_bucket{le="0.01",model_name="m"} 1.0\n'
        'vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="m"} 2.0\n'
        'vllm:time_per_output_token_seconds_count{model_name="m"} 2.0\n'
        'vllm:time_per_output_token_seconds_sum{model_name="m"} 0.5\n'
        "# TYPE lmcache:num_hit_tokens counter\n"
        'lmcache:num_hit_tokens_total{model_name="m",worker_id="0"} 7.0\n'
    )
    snap = parse_metrics(text)
    assert snap.value("kv_cache_usage") == 0.25
    assert snap.resolve("itl") == "vllm:time_per_output_token_seconds"
    assert snap.histogram("itl").count == 2
    assert snap.value("lmcache_hit_tokens") == 7.0
    assert snap.names("lmcache:") == ["lmcache:num_hit_tokens"]


def test_escaped_label_values_fall_back_to_prometheus_client() -> None:
    text = '# TYPE x_total counter\nx_total{path="a\\"b",z="1"} 3\n'
    assert _fast_parse(text, None) is None
    snap = parse_metrics(text)
    sample = snap.families["x"].samples[0]
    assert sample.label("path") == 'a"b' and sample.value == 3


def test_junk_body_raises_a_clear_error() -> None:
    with pytest.raises(MetricsParseError, match="line 2"):
        parse_metrics("# HELP ok fine\n<html>not metrics</html>\n")


def test_counter_rate_handles_resets() -> None:
    assert counter_increase([(0, 10), (1, 20), (2, 5), (3, 8)]) == 10 + 5 + 3
    assert counter_rate([(0, 10), (2, 20)]) == 5.0
    assert counter_rate([(0, 10)]) is None
    assert counter_rate([(0, math.nan), (1, 3), (3, 7)]) == 2.0


def test_histogram_quantiles_and_deltas() -> None:
    hist = Histogram(((0.1, 10.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)), 100.0, 30.0)
    assert histogram_quantile(0.5, hist) == pytest.approx(0.1 + 0.4 * (50 - 10) / 80)
    assert histogram_quantile(0.99, hist) == pytest.approx(0.5 + 0.5 * (99 - 90) / 10)
    assert histogram_quantile(0.5, Histogram(((1.0, 0.0), (math.inf, 0.0)), 0, 0)) is None
    overflow = Histogram(((1.0, 1.0), (math.inf, 10.0)), 10, 50)
    assert histogram_quantile(0.99, overflow) == 1.0  # above the last finite bound
    old = Histogram(((0.1, 5.0), (0.5, 5.0), (1.0, 5.0), (math.inf, 5.0)), 5.0, 0.2)
    delta = histogram_delta(old, hist)
    assert delta.buckets[0] == (0.1, 5.0) and delta.count == 95.0
    assert histogram_delta(hist, old) is old  # counts went down: a restart


def test_deriver_on_real_before_after_scrapes(shared_fixtures: Path) -> None:
    before = parse_metrics((shared_fixtures / REAL / "metrics_decoder_before.txt").read_text(), taken_at=1000.0)
    after = parse_metrics((shared_fixtures / REAL / "metrics_decoder.txt").read_text(), taken_at=1008.0)
    store = SeriesStore(capacity=10)
    deriver = InstanceDeriver("decode-0", store, rate_window_s=10.0)
    first = deriver.ingest(before)
    assert first["prompt_tokens_per_s"] is None  # one point: no rate yet
    out = deriver.ingest(after)
    assert out["prompt_tokens_per_s"] == pytest.approx(4080 / 8)
    assert out["request_rate"] == pytest.approx(4 / 8)
    assert out["decoder_hit_rate"] == pytest.approx(4076 / 4080)
    assert out["kv_cache_usage"] == 0.0 and out["running"] == 0.0
    assert 0.01 <= out["ttft_p50"] <= 0.02 and 0.1 <= out["ttft_p99"] <= 0.25
    assert "lmcache_stored_tokens_per_s" not in out  # not exported: N/A, not zero
    series = store.get("decode-0/decoder_hit_rate")
    assert series is not None and series.last() == (1008.0, pytest.approx(4076 / 4080))
    assert store.get("decode-0/lmcache_hit_tokens_per_s") is None


def _lmcache_body(stored: float) -> str:
    return (
        "# TYPE lmcache:num_stored_tokens counter\n"
        f'lmcache:num_stored_tokens_total{{model_name="m",worker_id="0"}} {stored}\n'
    )


def test_lmcache_rate_needs_a_window_longer_than_its_flush() -> None:
    with pytest.raises(ValueError, match="flush"):
        InstanceDeriver("p", SeriesStore(), lmcache_window_s=10.0)
    deriver = InstanceDeriver("p", SeriesStore(), lmcache_window_s=30.0)
    # Scrapes every 2 s; LMCache's counter only moves every 10 s (1000 tokens each time).
    out = {}
    for i in range(16):
        t = 1000.0 + 2 * i
        out = deriver.ingest(parse_metrics(_lmcache_body(1000 * (i // 5)), taken_at=t))
    # 1000 tokens per 10 s flush = 100 tokens/s, although most 2 s steps see no change.
    assert out["lmcache_stored_tokens_per_s"] == pytest.approx(100.0, rel=0.35)


def test_deriver_records_down_targets() -> None:
    from pdtui.telemetry.scrape import ScrapeResult, ScrapeTarget

    store = SeriesStore()
    deriver = Deriver(store)
    target = ScrapeTarget("d0", "http://127.0.0.1:1/metrics")
    assert deriver.ingest(ScrapeResult(target, 5.0, 0.1, None, "cannot connect")) == {}
    assert store.get("d0/up").last() == (5.0, 0.0)
