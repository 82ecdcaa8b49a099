"""The log classifier on the real recorded logs and on the red-flag lines."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdtui.telemetry.events import (
    Alert,
    EngineStatsEvent,
    HandshakeEvent,
    LookupHitEvent,
    MilestoneEvent,
    RetrieveEvent,
    StoreBeginEvent,
    StoreEvent,
    event_to_dict,
)
from pdtui.telemetry.logparse import LogScanner, clean_line, milestones, parse_header, parse_line

# SOURCES.md: how LMCache colours its lines in the raw files.
_LMCACHE_LINE = re.compile(r"^(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] LMCache (INFO|WARNING):)(.*?)( \([^()]*\))$")
_COLOURS = {"INFO": "\x1b[32;20m", "WARNING": "\x1b[33;20m"}


def _rewrap_ansi(line: str) -> str:
    m = _LMCACHE_LINE.match(line.rstrip("\n"))
    if not m:
        return line
    head, level, msg, src = m.groups()
    return f"{_COLOURS[level]}{head}\x1b[0m{msg} \x1b[3m{src.strip()}\x1b[0m\n"


def _scan(path: Path, transform=lambda s: s) -> tuple[LogScanner, list]:
    scanner = LogScanner()
    events = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            events.extend(scanner.feed(transform(line)))
    return scanner, events


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


@pytest.mark.parametrize("raw_ansi", [False, True], ids=["stripped", "ansi-rewrapped"])
def test_june_prefiller_every_store_found_with_exact_values(shared_fixtures: Path, raw_ansi: bool) -> None:
    transform = _rewrap_ansi if raw_ansi else (lambda s: s)
    scanner, events = _scan(shared_fixtures / "lmcache-logs/1p1d/prefiller.log", transform)
    stores = _of(events, StoreEvent)
    begins = _of(events, StoreBeginEvent)
    assert len(stores) == 201 and len(begins) == 201
    assert scanner.role == "prefiller"
    first = stores[0]
    assert (first.tokens, first.duration_ms, first.throughput_gbps) == (7500, 808.8254, 1.1319)
    assert (first.offload_ms, first.put_ms, first.fmt) == (1.5844, 805.7613, "old")
    assert first.timestamp == "2025-06-02 17:52:55,926" and first.level == "INFO"
    # SOURCES.md: time x throughput ~ 0.9155 GiB in every store.
    assert all(abs(s.size_gib - 0.9155) < 0.002 for s in stores)
    assert begins[0].request_id == "cmpl-6173c59d6c064e31bd8165ed53c91a50-0"
    assert (begins[0].tokens, begins[0].total_tokens, begins[0].skip_leading_tokens) == (7500, 7500, 0)
    assert len(_of(events, EngineStatsEvent)) == 6
    assert not _of(events, Alert)  # 197 attn_metadata warnings are noise, not alerts


def test_june_decoder_lookups_and_handshake(shared_fixtures: Path) -> None:
    scanner, events = _scan(shared_fixtures / "lmcache-logs/1p1d/decoder.log", _rewrap_ansi)
    lookups = _of(events, LookupHitEvent)
    assert len(lookups) == 201
    assert scanner.role == "decoder"
    assert lookups[0].request_id == "cmpl-8ac5edb186234c3a9c75a3d096fa56a3-0"
    assert (lookups[0].total_tokens, lookups[0].hit_tokens, lookups[0].need_to_load) == (7500, 7499, 7499)
    assert lookups[0].computed_tokens is None
    assert [lk.request_id for lk in lookups if lk.need_to_load == 11] == ["cmpl-49592ab46d9c474ca9418a49234d748b-0"]
    steps = [e.step for e in _of(events, HandshakeEvent)]
    assert steps == [
        "pipe_initializing",
        "descriptors_sent",
        "pipe_initialized",
        "sender_connected",
        "ucx_backend_instantiated",
        "nixl_agent_initialized",
    ]
    sender = [e for e in _of(events, HandshakeEvent) if e.step == "sender_connected"][0]
    assert sender.peer == "sender-8aa5f5b6d9044801993c205e1c782494"
    stats = _of(events, EngineStatsEvent)
    assert len(stats) == 7
    assert (stats[0].prompt_tokens_per_s, stats[0].generation_tokens_per_s) == (10499.5, 158.3)
    assert (stats[0].running, stats[0].waiting, stats[0].kv_cache_usage_pct) == (8, 0, 15.0)
    assert stats[0].prefix_cache_hit_rate_pct == 7.1 and stats[0].external_prefix_cache_hit_rate_pct is None
    assert not _of(events, Alert)


def test_real_vllm_026_prefiller_raw_with_ansi_and_prefixes(shared_fixtures: Path) -> None:
    scanner, events = _scan(shared_fixtures / "real-vllm/lmcache-pd/prefiller.log")
    assert scanner.role == "prefiller"
    stores = _of(events, StoreEvent)
    assert len(stores) == 4
    s = stores[0]
    assert s.fmt == "current" and s.request_id == "cmpl-a3998428cfc5ad62-0-823babe3"
    assert (s.tokens, s.total_tokens, s.size_gib, s.duration_ms) == (1019, 1019, 0.0020, 31.9385)
    assert (s.throughput_gbps, s.offload_ms, s.put_ms) == (0.0612, 5.8899, 25.9954)
    assert s.process == "EngineCore pid=1917" and s.timestamp == "2026-11-29 10:54:00,262"
    assert [st.tokens for st in stores] == [1019, 1031, 1019, 1007]
    # The prefiller's own lookups miss by design: no alert on a prefiller.
    assert len(_of(events, LookupHitEvent)) == 4
    assert not _of(events, Alert)
    stats = _of(events, EngineStatsEvent)
    assert len(stats) == 1 and stats[0].external_prefix_cache_hit_rate_pct == 0.0
    assert stats[0].process == "APIServer pid=1841"


def test_real_vllm_026_decoder(shared_fixtures: Path) -> None:
    scanner, events = _scan(shared_fixtures / "real-vllm/lmcache-pd/decoder.log")
    assert scanner.role == "decoder"
    lookups = _of(events, LookupHitEvent)
    assert [(lk.total_tokens, lk.computed_tokens, lk.hit_tokens, lk.need_to_load) for lk in lookups] == [
        (1020, 0, 1019, 1019),
        (1032, 0, 1031, 1031),
        (1020, 0, 1019, 1019),
        (1008, 0, 1007, 1007),
    ]
    retrieves = _of(events, RetrieveEvent)
    assert len(retrieves) == 4
    r = retrieves[0]
    assert r.request_id == "cmpl-8a60adec5550d780-0-b4edfde3"
    assert (r.tokens, r.required_tokens, r.total_tokens) == (1019, 1019, 1019)
    assert (r.size_gib, r.duration_ms, r.throughput_gbps) == (0.0020, 5.5786, 0.3501)
    steps = Counter(e.step for e in _of(events, HandshakeEvent))
    assert steps == {
        "ucx_backend_instantiated": 1,
        "nixl_agent_initialized": 1,
        "init_loop_started": 1,
        "alloc_server_listening": 1,
        "init_request_received": 2,
        "init_response_sent": 1,
        "mem_register_response_sent": 1,
    }
    listening = [e for e in _of(events, HandshakeEvent) if e.step == "alloc_server_listening"][0]
    assert listening.peer == "7400"
    assert not _of(events, Alert)


def test_milestones_of_a_real_start(shared_fixtures: Path) -> None:
    with (shared_fixtures / "real-vllm/lmcache-pd/decoder.log").open(encoding="utf-8") as handle:
        found = list(milestones(handle))
    kinds = [m.kind for m in found]
    assert kinds == [
        "loading_weights",
        "weights_loaded",
        "model_loaded",
        "kv_cache_allocated",
        "lmcache_config_loaded",
        "lmcache_initialized",
        "engine_initialized",
        "lmcache_initialized",
        "api_server_starting",
        "app_startup_complete",
    ]
    by_kind = {m.kind: m for m in found}
    assert by_kind["kv_cache_allocated"].value == 18168816
    assert by_kind["lmcache_config_loaded"].detail == "/root/pdwork/lmcache-decoder.yaml"
    assert by_kind["api_server_starting"].detail == "http://0.0.0.0:7200"
    assert by_kind["engine_initialized"].value == 20.37


def test_proxy_milestones_and_its_shutdown_crash(shared_fixtures: Path) -> None:
    _, events = _scan(shared_fixtures / "real-vllm/lmcache-pd/proxy.log")
    kinds = [e.kind for e in _of(events, MilestoneEvent)]
    assert kinds == ["zmq_proxy_started", "app_startup_complete", "uvicorn_running"]
    assert _of(events, MilestoneEvent)[0].detail == "localhost:7500"
    assert _of(events, MilestoneEvent)[2].detail == "http://localhost:9100"
    alerts = _of(events, Alert)
    assert [(a.kind, a.message) for a in alerts] == [
        ("exception", "AttributeError: 'ClientInfo' object has no attribute 'aclose'")
    ]


def test_decoder_zero_hit_is_an_alert_only_on_a_decoder() -> None:
    line = (
        "(EngineCore_DP0 pid=18188) \x1b[32;20m[2026-01-05 10:00:00,001] LMCache INFO:\x1b[0m "
        "Reqid: cmpl-x-0, Total tokens 32000, LMCache hit tokens: 0, need to load: 0 "
        "\x1b[3m(vllm_v1_adapter.py:745:lmcache.integration.vllm.vllm_v1_adapter)\x1b[0m\n"
    )
    decoder = LogScanner(role="decoder").feed(line)
    assert [type(e).__name__ for e in decoder] == ["LookupHitEvent", "Alert"]
    assert decoder[1].kind == "decoder_zero_hit" and "cmpl-x-0" in decoder[1].message
    assert decoder[0].process == "EngineCore_DP0 pid=18188"
    assert [type(e).__name__ for e in LogScanner(role="prefiller").feed(line)] == ["LookupHitEvent"]
    # The role printed in the log wins over a guess.
    scanner = LogScanner(role="prefiller")
    scanner.feed("INFO 06-02 17:49:49 [cli_args.py:300] non-default args: {'kv_transfer_config': "
                 "KVTransferConfig(kv_connector='LMCacheConnectorV1', kv_role='kv_consumer')}")
    assert scanner.role == "decoder"
    assert len(scanner.feed(line)) == 2


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("[2025-09-01 10:00:00,000] LMCache WARNING: Failed to allocate memory object, retrying... "
         "(pd_backend.py:300:lmcache.v1.storage_backend.pd_backend)", "alloc_retry"),
        ("[1756000000.123456] [host:1234:0]     ucp_context.c:1234 UCX  WARN  transports 'cuda_ipc','cuda_copy' "
         "are not available, please use one or more of: posix, sysv, tcp", "ucx_transport_missing"),
        ("[1756000000.123456] [host:1234:0]     ucp_ep.c:1500 UCX  ERROR Endpoint timeout", "ucx_error"),
        ("nixl._bindings.nixlBackendError: NIXL_ERR_BACKEND", "nixl_error"),
        ("(VllmWorker rank=0 pid=82488) ERROR 09-01 10:00:00 [core.py:1] torch.OutOfMemoryError: CUDA out of "
         "memory. Tried to allocate 2.00 GiB.", "cuda_oom"),
        ("[2025-09-01 10:00:00,000] LMCache ERROR: The number of retrieved tokens is less than the expected "
         "number of tokens! This should not happen! (cache_engine.py:1:lmcache.v1.cache_engine)", "retrieve_short"),
        ("\x1b[31;20m[2025-09-01 10:00:00,000] LMCache ERROR:\x1b[0m Remote allocation failed for request r1 "
         "\x1b[3m(pd_backend.py:1:lmcache.v1.storage_backend.pd_backend)\x1b[0m", "lmcache_error"),
        ("ValueError: No available memory for the cache blocks.", "exception"),
    ],
)
def test_red_flags(line: str, kind: str) -> None:
    event = parse_line(line)
    assert isinstance(event, Alert) and event.kind == kind


def test_warning_level_tracebacks_are_not_alerts() -> None:
    # vLLM 0.26 prints these while probing optional imports; the engine starts fine.
    line = ("(EngineCore pid=1917) WARNING 11-29 10:53:40 [import_utils.py:408] "
            "ModuleNotFoundError: No module named 'nixl_ep_cu13'\r\n")
    assert parse_line(line) is None


@pytest.mark.parametrize(
    "line",
    [
        # issue #1251 sample: current format without a request tag
        "[2025-08-06 09:42:18,821] LMCache INFO: Stored 35 out of total 35 tokens. size: 0.0004 gb, cost 30.4122 ms, "
        "throughput: 0.0132 GB/s; offload_time: 0.7334 ms, put_time: 29.6788 ms "
        "(cache_engine.py:252:lmcache.v1.cache_engine)",
        # newer: request and kv group tag
        "[2026-03-01 09:42:18,821] LMCache INFO: [req_id=r-35 kv_group=0] Stored 35 out of total 35 tokens. "
        "size: 0.0004 GB, cost 30.4122 ms, throughput: 0.0132 GB/s; offload_time: 0.7334 ms, put_time: 29.6788 ms "
        "(cache_engine.py:600:lmcache.v1.cache_engine)",
    ],
)
def test_current_store_variants(line: str) -> None:
    event = parse_line(line)
    assert isinstance(event, StoreEvent)
    assert (event.tokens, event.total_tokens, event.size_gib, event.duration_ms) == (35, 35, 0.0004, 30.4122)
    assert (event.throughput_gbps, event.put_ms) == (0.0132, 29.6788)


def test_old_retrieve_format() -> None:
    event = parse_line("[2025-07-01 10:00:00,000] LMCache DEBUG: [req_id=abc] Retrieved 256 out of 512 out of "
                       "total 600 tokens (cache_engine.py:1:lmcache.v1.cache_engine)")
    assert isinstance(event, RetrieveEvent)
    assert (event.tokens, event.required_tokens, event.total_tokens, event.request_id) == (256, 512, 600, "abc")
    assert event.throughput_gbps is None


def test_engine_stats_fields_by_name_not_position() -> None:
    line = ("INFO 11-29 10:54:02 [loggers.py:310] Engine 001: Running: 3 reqs, Avg generation throughput: 50.5 "
            "tokens/s, Waiting: 2 reqs, Avg prompt throughput: 1,234.5 tokens/s, GPU KV cache usage: 42.0%, "
            "Preempted: 7 reqs")
    event = parse_line(line)
    assert isinstance(event, EngineStatsEvent)
    assert event.engine == 1
    assert (event.running, event.waiting, event.generation_tokens_per_s) == (3, 2, 50.5)
    assert (event.prompt_tokens_per_s, event.kv_cache_usage_pct) == (1234.5, 42.0)
    assert event.prefix_cache_hit_rate_pct is None
    assert dict(event.extra) == {"preempted": 7.0}
    assert event_to_dict(event)["extra"] == {"preempted": 7.0}


def test_line_format_recognition() -> None:
    raw = ("(EngineCore pid=1917) \x1b[33;20m[2026-11-29 10:53:49,743] LMCache WARNING:\x1b[0m Could not load "
           "'builtin' from vLLM. \x1b[3m(token_database.py:162:lmcache.v1.token_database)\x1b[0m\r\n")
    head = parse_header(raw)
    assert (head.source, head.level, head.timestamp) == ("lmcache", "WARNING", "2026-11-29 10:53:49,743")
    assert (head.file, head.lineno, head.logger) == ("token_database.py", 162, "lmcache.v1.token_database")
    assert head.process == "EngineCore pid=1917" and head.message == "Could not load 'builtin' from vLLM."
    head = parse_header("(APIServer pid=1841) INFO 11-29 10:53:51 [api_server.py:677] Starting vLLM server")
    assert (head.source, head.level, head.timestamp, head.file, head.lineno) == (
        "vllm", "INFO", "11-29 10:53:51", "api_server.py", 677)
    head = parse_header('INFO:     127.0.0.1:58366 - "POST /v1/completions HTTP/1.1" 200 OK')
    assert (head.source, head.level) == ("uvicorn", "INFO")
    head = parse_header("(EngineCore pid=1) 2026-11-29 10:53:48 NIXL INFO    _api.py:405 Backend UCX was instantiated")
    assert (head.source, head.file, head.lineno, head.message) == ("nixl", "_api.py", 405, "Backend UCX was instantiated")
    assert parse_header("  File \"x.py\", line 1").source == "plain"
    assert clean_line("(VllmWorker rank=0 pid=82488) hello\n") == ("hello", "VllmWorker rank=0 pid=82488")


def test_unknown_lines_pass_through() -> None:
    for line in [
        'INFO:     127.0.0.1:45414 - "POST /v1/completions HTTP/1.1" 200 OK',
        "[2025-06-02 17:53:50,141] LMCache WARNING: In connector.start_load_kv, but the attn_metadata is None "
        "(vllm_v1_adapter.py:455:lmcache.integration.vllm.vllm_v1_adapter)",
        "",
        "\x1b[0m",
        "Engine 000: garbage",
        "Store 12 tokens takes: x ms",
    ]:
        assert parse_line(line) is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_parse_line_never_raises(text: str) -> None:
    for candidate in (text, "[2025-06-02 17:52:55,117] LMCache INFO: " + text, "Engine 000: " + text):
        parse_line(candidate)
        LogScanner("decoder").feed(candidate)
