"""Typed, immutable records produced by the log parser (see `pdtui.telemetry.logparse`).

Every event carries where it came from (`timestamp` as printed, `process` prefix such as
`EngineCore pid=1917`, `level`) as keyword-only fields, so the positional fields of each
class are only the numbers that matter for that event. `event_to_dict` turns any of them
into a JSON-ready dict with a `type` key (used by `pdtui logscan --json`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True, slots=True, kw_only=True)
class _Origin:
    """Where a line came from; every event has these as keyword-only fields."""

    timestamp: str | None = None  # as printed: "2025-06-02 17:52:55,117" or "11-29 10:53:18"
    process: str | None = None  # vLLM child prefix without parentheses, e.g. "EngineCore pid=1917"
    level: str | None = None  # INFO / WARNING / ERROR / DEBUG / CRITICAL, when the line has one


@dataclass(frozen=True, slots=True)
class StoreBeginEvent(_Origin):
    """Prefiller: `Storing KV cache for N out of M tokens (skip_leading_tokens=K) for request R`."""

    request_id: str
    tokens: int
    total_tokens: int
    skip_leading_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class StoreEvent(_Origin):
    """Prefiller store summary (one per request): the KV-transfer numbers.

    `fmt` is "old" (`Store N tokens takes: ...`, June 2025) or "current"
    (`Stored N out of total M tokens. size: ...`). `size_gib` is printed by the current
    format and derived as throughput × time in the old one. In PD `put_ms` is the write
    to the decoder (NIXL), the best proxy for transfer time.
    """

    tokens: int
    duration_ms: float
    throughput_gbps: float
    size_gib: float
    fmt: str
    total_tokens: int | None = None
    offload_ms: float | None = None
    put_ms: float | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class LookupHitEvent(_Origin):
    """`Reqid: R, Total tokens T, [Inference Engine computed tokens: C, ]LMCache hit tokens: H, need to load: L`.

    On a decoder, `hit_tokens == 0` means the transfer from the prefiller was missed.
    """

    request_id: str
    total_tokens: int
    hit_tokens: int
    need_to_load: int
    computed_tokens: int | None = None

    @property
    def is_miss(self) -> bool:
        return self.hit_tokens == 0 and self.total_tokens > 0


@dataclass(frozen=True, slots=True)
class RetrieveEvent(_Origin):
    """Decoder retrieve summary: `Retrieved N out of M required tokens (from T total tokens). size: ...`."""

    tokens: int
    required_tokens: int
    total_tokens: int
    size_gib: float | None = None
    duration_ms: float | None = None
    throughput_gbps: float | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class HandshakeEvent(_Origin):
    """A step of the P↔D (NIXL) connection set-up. `step` is one of HANDSHAKE_STEPS."""

    step: str
    peer: str | None = None  # sender id / agent name / port, when the line names one
    message: str = ""


HANDSHAKE_STEPS = (
    "ucx_backend_instantiated",
    "nixl_agent_initialized",
    "pipe_initializing",
    "descriptors_sent",
    "descriptors_received",
    "pipe_initialized",
    "sender_connected",
    "init_loop_started",
    "init_request_received",
    "init_response_sent",
    "mem_register_response_sent",
    "alloc_server_listening",
    "proxy_notif_sent",
)


@dataclass(frozen=True, slots=True)
class EngineStatsEvent(_Origin):
    """vLLM's periodic `Engine 000: Avg prompt throughput: ... tokens/s, ...` line.

    Fields are matched by name, not position; any field this release adds that is not
    one of the named attributes is kept in `extra` as (name, value) pairs. A field the
    release does not print is None.
    """

    engine: int
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage_pct: float | None = None
    prefix_cache_hit_rate_pct: float | None = None
    external_prefix_cache_hit_rate_pct: float | None = None
    extra: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class NixlTransferStatsEvent(_Origin):
    """vLLM's NixlConnector summary of one stats interval (the receiving side, the decoder,
    logs it about every 10 s when there was a transfer):
    `KV Transfer metrics: Num successful transfers=8, Avg xfer time (ms)=6.004, ...,
    Avg MB per transfer=2.051, Throughput (MB/s)=341.583, Avg number of descriptors=67.8`.

    Each line covers only its own interval, so the counts of successive lines add up.
    vLLM's MB is 2**20 bytes (8 x 2.051 MB matched 17,203,200 bytes of
    `vllm:nixl_bytes_transferred` on the H200). Fields are matched by name, not position;
    a field this release does not print is None, one pdtui does not know goes to `extra`.
    """

    transfers: int  # "Num successful transfers" (0 when the line does not print it)
    avg_xfer_ms: float | None = None
    p90_xfer_ms: float | None = None
    avg_post_ms: float | None = None
    p90_post_ms: float | None = None
    avg_mb_per_transfer: float | None = None
    throughput_mbps: float | None = None  # MB/s, MB = 2**20 bytes
    avg_descriptors: float | None = None
    failed_transfers: int | None = None
    failed_notifications: int | None = None
    extra: tuple[tuple[str, float], ...] = ()

    @property
    def transferred_mb(self) -> float | None:
        """MB moved in this interval (transfers x average size), when the size is printed."""
        if self.avg_mb_per_transfer is None:
            return None
        return self.transfers * self.avg_mb_per_transfer

    @property
    def xfer_seconds(self) -> float | None:
        """Time spent transferring in this interval (transfers x average time)."""
        if self.avg_xfer_ms is None:
            return None
        return self.transfers * self.avg_xfer_ms / 1000.0


@dataclass(frozen=True, slots=True)
class MilestoneEvent(_Origin):
    """A start-up step. `kind` is one of MILESTONE_KINDS; `detail` is the interesting part
    (path, URL, "0.01 seconds", "18,168,816 tokens"); `value` a number when there is one."""

    kind: str
    detail: str = ""
    value: float | None = None


MILESTONE_KINDS = (
    "loading_weights",  # "Loading model from scratch..." / "Starting to load model M..."
    "weights_loaded",  # "Loading weights took 3.35 seconds"
    "model_loaded",  # "Model loading took 14.99 GiB and 4.99 seconds"
    "kv_cache_allocated",  # "GPU KV cache size: 406,768 tokens"
    "lmcache_config_loaded",  # "Loading LMCache config file /path.yaml"
    "lmcache_initialized",  # "LMCache initialized for role ..."
    "engine_initialized",  # "init engine (profile, create kv cache, warmup model) took 6.13 s"
    "api_server_starting",  # "Starting vLLM API server on http://0.0.0.0:8100"
    "app_startup_complete",  # uvicorn "Application startup complete."
    "uvicorn_running",  # uvicorn "Uvicorn running on http://localhost:9100"
    "zmq_proxy_started",  # LMCache proxy "ZMQ proxy server started on localhost:7500"
)


@dataclass(frozen=True, slots=True)
class Alert(_Origin):
    """A red flag. `kind` is one of ALERT_KINDS; `message` is the cleaned line."""

    kind: str
    message: str


ALERT_KINDS = (
    "decoder_zero_hit",  # LMCache hit tokens: 0 on a decoder: the transfer was missed
    "alloc_retry",  # Failed to allocate memory object, retrying... (decoder buffer full)
    "retrieve_short",  # fewer tokens retrieved than expected
    "ucx_transport_missing",  # UCX WARN transports 'cuda_ipc','cuda_copy' are not available
    "ucx_error",  # UCX ERROR ... (endpoint timeout, ...)
    "nixl_error",  # NIXL_ERR_* / nixlBackendError
    "cuda_oom",  # CUDA out of memory
    "exception",  # the final `SomeError: message` line of a traceback (not WARNING-level)
    "lmcache_error",  # any other LMCache ERROR/CRITICAL line
)


LogEvent = Union[
    StoreBeginEvent,
    StoreEvent,
    LookupHitEvent,
    RetrieveEvent,
    HandshakeEvent,
    EngineStatsEvent,
    NixlTransferStatsEvent,
    MilestoneEvent,
    Alert,
]


def event_to_dict(event: LogEvent) -> dict[str, Any]:
    """A JSON-ready dict: {"type": "StoreEvent", ...fields}; `extra` pairs become a dict."""
    # A plain `type` for the cache key: mypy cannot see that a union of class objects
    # is hashable (the unhashable dataclass instances confuse it).
    cls: type = type(event)
    out: dict[str, Any] = {"type": cls.__name__}
    for name in _field_names(cls):
        value = getattr(event, name)
        if name == "extra":
            value = dict(value)
        out[name] = value
    return out


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() per event was a third of `pdtui logscan --json`'s time.
    return tuple(f.name for f in dataclasses.fields(cls))
