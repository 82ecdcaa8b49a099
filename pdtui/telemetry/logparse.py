"""Fast classifier for vLLM / LMCache / uvicorn / NIXL log lines.

Public API (everything else here is private):

- `parse_line(raw) -> LogEvent | None`
    Classify one raw line (ANSI codes, `(EngineCore pid=N) ` prefix, trailing CR/LF
    allowed). Returns one of the typed events of `pdtui.telemetry.events`
    (StoreBeginEvent, StoreEvent, LookupHitEvent, RetrieveEvent, HandshakeEvent,
    EngineStatsEvent, NixlTransferStatsEvent, MilestoneEvent, Alert) or None for a line that is none of them
    (the caller keeps showing the line untouched). Stateless and cheap: a line that
    matches nothing costs a handful of substring checks, no regex.
- `LogScanner(role=None).feed(raw) -> tuple[LogEvent, ...]`
    Stateful wrapper for one log stream: learns the instance's role from the
    `kv_role='kv_consumer'` start-up line (or takes it from the caller) and adds the
    `decoder_zero_hit` Alert to a decoder's `LMCache hit tokens: 0` lookup.
- `parse_header(raw) -> LogLine`
    The line-format recognition: source ("vllm", "lmcache", "uvicorn", "nixl",
    "plain"), level, timestamp, file:line, LMCache logger name, process prefix and the
    bare message. For colouring and filtering log panes.
- `clean_line(raw) -> (text, process)`
    ANSI codes and the process prefix removed, the prefix returned separately.
- `is_milestone(event)`, `milestones(lines)`: start-up progress for the supervisor.
- `find_root_cause(lines) -> RootCause | None` (from `pdtui.telemetry.rootcause`,
    re-exported here): the first real error of a failed start, not the last line.

Formats recognised (see shared/reference/lmcache-pd.md §5.4):
  vLLM     `INFO 06-02 17:49:42 [file.py:243] message`
  LMCache  `[2025-06-02 17:50:11,239] LMCache INFO: message (file.py:64:logger.name)`
           (raw files wrap it in ANSI SGR codes)
  uvicorn  `INFO:     message`
  NIXL     `2026-11-29 10:53:48 NIXL INFO    _api.py:405 message`
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Iterable, Iterator
from typing import Any

from pdtui.telemetry.events import (
    Alert,
    EngineStatsEvent,
    HandshakeEvent,
    LogEvent,
    LookupHitEvent,
    MilestoneEvent,
    NixlTransferStatsEvent,
    RetrieveEvent,
    StoreBeginEvent,
    StoreEvent,
)

__all__ = [
    "LogLine",
    "LogScanner",
    "clean_line",
    "is_milestone",
    "milestones",
    "parse_header",
    "parse_line",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PROCESS_PREFIX = re.compile(r"\(([^()]*pid=\d+)\) ?")

_NUM = r"(?:-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|inf|nan)"

_VLLM_HEAD = re.compile(
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<ts>\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) "
    r"\[(?P<file>[^\]:\s]+):(?P<lineno>\d+)\] ?(?P<msg>.*)",
    re.DOTALL,
)
_LMCACHE_HEAD = re.compile(
    r"\[(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d+)?)\] LMCache (?P<level>[A-Z]+): ?(?P<msg>.*)",
    re.DOTALL,
)
# The ` (file:lineno:logger)` LMCache ends its lines with. Matched from the message's last
# " (" rather than with a lazy message in one pattern: the same result at a fraction of
# the cost (logscan parses millions of these).
_LMCACHE_TAIL = re.compile(r" \((?P<file>[^():\s]+):(?P<lineno>\d+):(?P<logger>[^()\s]+)\)\s*")
_UVICORN_HEAD = re.compile(r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+(?P<msg>.*)", re.DOTALL)
_NIXL_HEAD = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) NIXL (?P<level>[A-Z]+)\s+"
    r"(?P<file>[^\s:]+):(?P<lineno>\d+) (?P<msg>.*)",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line split into its parts. `message` is the text after the header."""

    source: str  # "vllm" | "lmcache" | "uvicorn" | "nixl" | "plain"
    message: str
    level: str | None = None
    timestamp: str | None = None
    file: str | None = None
    lineno: int | None = None
    logger: str | None = None
    process: str | None = None


def clean_line(raw: str) -> tuple[str, str | None]:
    """`raw` without line ending, ANSI codes and leading `(Proc pid=N) ` prefix; plus that prefix."""
    line = raw.rstrip("\r\n")
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    process = None
    if line.startswith("("):
        match = _PROCESS_PREFIX.match(line)
        if match:
            process = match.group(1)
            line = line[match.end() :]
    # tqdm progress bars start with a carriage return after the prefix.
    if line.startswith("\r"):
        line = line.lstrip("\r")
    return line, process


def parse_header(raw: str) -> LogLine:
    """Recognise the line format; a line in no known format is source "plain"."""
    text, process = clean_line(raw)
    first = text[:1]
    if first == "[":
        m = _LMCACHE_HEAD.match(text)
        if m:
            msg = m["msg"]
            cut = msg.rfind(" (")
            tail = _LMCACHE_TAIL.fullmatch(msg, cut) if cut >= 0 else None
            if tail:
                return LogLine("lmcache", msg[:cut], m["level"], m["ts"], tail["file"], int(tail["lineno"]),
                               tail["logger"], process)
            return LogLine("lmcache", msg.rstrip(), m["level"], m["ts"], None, None, None, process)
    elif first.isdigit():
        m = _NIXL_HEAD.fullmatch(text)
        if m:
            return LogLine("nixl", m["msg"], m["level"], m["ts"], m["file"], int(m["lineno"]), None, process)
    elif first.isupper():
        m = _VLLM_HEAD.fullmatch(text)
        if m:
            return LogLine("vllm", m["msg"], m["level"], m["ts"], m["file"], int(m["lineno"]), None, process)
        m = _UVICORN_HEAD.fullmatch(text)
        if m:
            return LogLine("uvicorn", m["msg"], m["level"], None, None, None, None, process)
    return LogLine("plain", text, process=process)


# --- LMCache KV-transfer lines ------------------------------------------------------

_REQ_TAG = r"(?:\[req_id=(?P<req>[^\s\]]+)(?: [^\]]*)?\] )?"
_STORE_CURRENT = re.compile(
    _REQ_TAG + rf"Stored (?P<tok>\d+) out of total (?P<total>\d+) tokens\. size: (?P<gb>{_NUM}) [gG][bB], "
    rf"cost (?P<ms>{_NUM}) ms, throughput: (?P<gbps>{_NUM}) GB/s"
    rf"(?:; offload_time: (?P<off>{_NUM}) ms, put_time: (?P<put>{_NUM}) ms)?"
)
_STORE_OLD = re.compile(
    rf"Store (?P<tok>\d+) tokens takes: (?P<ms>{_NUM}) ms, throughput: (?P<gbps>{_NUM}) GB/s"
    rf"(?:; offload_time: (?P<off>{_NUM}) ms, put_time: (?P<put>{_NUM}) ms)?"
)
_STORE_BEGIN = re.compile(
    r"Storing KV cache for (?P<tok>\d+) out of (?P<total>\d+) tokens"
    r"(?: \(skip_leading_tokens=(?P<skip>\d+)\))? for request (?P<req>\S+)"
)
_LOOKUP = re.compile(
    r"Reqid: (?P<req>[^,\s]+), Total tokens (?P<total>\d+), "
    r"(?:Inference Engine computed tokens: (?P<computed>\d+), )?"
    r"LMCache hit tokens: (?P<hit>\d+), need to load: (?P<load>-?\d+)"
)
_RETRIEVE_CURRENT = re.compile(
    _REQ_TAG + r"Retrieved (?P<tok>\d+) out of (?P<need>\d+) required tokens "
    r"\(from (?P<total>\d+) total tokens\)"
    rf"(?:\. size: (?P<gb>{_NUM}) [gG][bB], cost (?P<ms>{_NUM}) ms, throughput: (?P<gbps>{_NUM}) GB/s)?"
)
_RETRIEVE_OLD = re.compile(
    _REQ_TAG + r"Retrieved (?P<tok>\d+) out of (?P<need>\d+) out of total (?P<total>\d+) tokens"
)
_SENDER_ID = re.compile(r"sender-[0-9a-fA-F]+")
_PORT = re.compile(r"port (\d+)")
_CONFIG_FILE = re.compile(r"Loading LMCache config file (?P<path>\S+)")
_ZMQ_PROXY = re.compile(r"ZMQ proxy server started on (?P<addr>\S+)")
_LMCACHE_ROLE = re.compile(r"LMCache initialized for role (?P<role>\S+)")

# (substring, handshake step) for LMCache's P<->D connection lines, June 2025 and current.
_LMCACHE_HANDSHAKES = (
    ("Initializing NixlPipe for sender", "pipe_initializing"),
    ("Sent local transfer descriptors", "descriptors_sent"),
    ("Received remote transfer descriptors", "descriptors_received"),
    ("NixlPipe initialized successfully", "pipe_initialized"),
    ("New sender connected", "sender_connected"),
    ("Starting async initialization loop", "init_loop_started"),
    ("Received initialization request", "init_request_received"),
    ("Replying initialization response", "init_response_sent"),
    ("Replying mem register response", "mem_register_response_sent"),
    ("mem alloc server listening", "alloc_server_listening"),
    ("SENDING ProxyNotif", "proxy_notif_sent"),
)


def _f(value: str | None) -> float | None:
    return None if value is None else float(value)


def _origin(head: LogLine) -> dict:
    return {"timestamp": head.timestamp, "process": head.process, "level": head.level}


def _parse_lmcache(raw: str) -> LogEvent | None:
    if "Stor" in raw:  # Store / Stored / Storing
        if "Stored " in raw:
            head = parse_header(raw)
            m = _STORE_CURRENT.search(head.message)
            if m:
                return StoreEvent(
                    int(m["tok"]),
                    float(m["ms"]),
                    float(m["gbps"]),
                    float(m["gb"]),
                    "current",
                    total_tokens=int(m["total"]),
                    offload_ms=_f(m["off"]),
                    put_ms=_f(m["put"]),
                    request_id=m["req"],
                    **_origin(head),
                )
        elif "takes:" in raw:
            head = parse_header(raw)
            m = _STORE_OLD.search(head.message)
            if m:
                ms, gbps = float(m["ms"]), float(m["gbps"])
                # The old format prints no size: GiB = GB/s x s.
                return StoreEvent(
                    int(m["tok"]),
                    ms,
                    gbps,
                    gbps * ms / 1000.0,
                    "old",
                    offload_ms=_f(m["off"]),
                    put_ms=_f(m["put"]),
                    **_origin(head),
                )
        elif "Storing KV cache for" in raw:
            head = parse_header(raw)
            m = _STORE_BEGIN.search(head.message)
            if m:
                skip = m["skip"]
                return StoreBeginEvent(
                    m["req"],
                    int(m["tok"]),
                    int(m["total"]),
                    int(skip) if skip is not None else None,
                    **_origin(head),
                )
    if "Reqid:" in raw:
        head = parse_header(raw)
        m = _LOOKUP.search(head.message)
        if m:
            computed = m["computed"]
            return LookupHitEvent(
                m["req"],
                int(m["total"]),
                int(m["hit"]),
                int(m["load"]),
                int(computed) if computed is not None else None,
                **_origin(head),
            )
    if "Retrieved" in raw:
        head = parse_header(raw)
        m = _RETRIEVE_CURRENT.search(head.message)
        if m:
            return RetrieveEvent(
                int(m["tok"]),
                int(m["need"]),
                int(m["total"]),
                _f(m["gb"]),
                _f(m["ms"]),
                _f(m["gbps"]),
                m["req"],
                **_origin(head),
            )
        m = _RETRIEVE_OLD.search(head.message)
        if m:
            return RetrieveEvent(int(m["tok"]), int(m["need"]), int(m["total"]), request_id=m["req"], **_origin(head))
    if "Failed to allocate memory object" in raw:
        head = parse_header(raw)
        return Alert("alloc_retry", head.message, **_origin(head))
    if "retrieved tokens is less than" in raw:
        head = parse_header(raw)
        return Alert("retrieve_short", head.message, **_origin(head))
    for needle, step in _LMCACHE_HANDSHAKES:
        if needle in raw:
            head = parse_header(raw)
            peer_match = _SENDER_ID.search(head.message) or _PORT.search(head.message)
            peer = None
            if peer_match:
                peer = peer_match.group(1) if peer_match.groups() else peer_match.group(0)
            return HandshakeEvent(step, peer, head.message, **_origin(head))
    if "Loading LMCache config file" in raw:
        head = parse_header(raw)
        m = _CONFIG_FILE.search(head.message)
        return MilestoneEvent("lmcache_config_loaded", m["path"] if m else head.message, **_origin(head))
    if "LMCache initialized for role" in raw:
        head = parse_header(raw)
        m = _LMCACHE_ROLE.search(head.message)
        return MilestoneEvent("lmcache_initialized", m["role"] if m else head.message, **_origin(head))
    if "ZMQ proxy server started" in raw:
        head = parse_header(raw)
        m = _ZMQ_PROXY.search(head.message)
        return MilestoneEvent("zmq_proxy_started", m["addr"] if m else head.message, **_origin(head))
    if "LMCache ERROR" in raw or "LMCache CRITICAL" in raw:
        head = parse_header(raw)
        if head.source == "lmcache":
            return _exception_alert(head) or Alert("lmcache_error", head.message, **_origin(head))
    return None


# --- vLLM engine stats ------------------------------------------------------------

_ENGINE_STATS = re.compile(r"Engine (?P<engine>\d+): (?P<fields>.*)")
_STATS_FIELD = re.compile(r"(?P<name>[A-Za-z][A-Za-z ()/_-]*?):\s*(?P<value>-?\d[\d,]*(?:\.\d+)?)")
_STATS_NAMES = {
    "avg prompt throughput": "prompt_tokens_per_s",
    "avg generation throughput": "generation_tokens_per_s",
    "running": "running",
    "waiting": "waiting",
    "gpu kv cache usage": "kv_cache_usage_pct",
    "kv cache usage": "kv_cache_usage_pct",
    "prefix cache hit rate": "prefix_cache_hit_rate_pct",
    "external prefix cache hit rate": "external_prefix_cache_hit_rate_pct",
}


def _parse_engine_stats(raw: str) -> EngineStatsEvent | None:
    head = parse_header(raw)
    m = _ENGINE_STATS.match(head.message)
    if not m:
        return None
    # Keyword arguments for the fields _STATS_NAMES names (all float | None).
    named: dict[str, Any] = {}
    extra: list[tuple[str, float]] = []
    for field in _STATS_FIELD.finditer(m["fields"]):
        name = field["name"].strip().lower()
        value = float(field["value"].replace(",", ""))
        attr = _STATS_NAMES.get(name)
        if attr is not None:
            named.setdefault(attr, value)
        else:
            extra.append((re.sub(r"[^a-z0-9]+", "_", name).strip("_"), value))
    if not named and not extra:
        return None
    return EngineStatsEvent(int(m["engine"]), **named, extra=tuple(extra), **_origin(head))


# --- vLLM NixlConnector transfer stats -------------------------------------------

_KV_TRANSFER_METRICS = "KV Transfer metrics:"
# `Name (unit)=value` (vLLM 0.26); `'Name (unit)': value` too, should a release print the dict.
_XFER_FIELD = re.compile(
    rf"""['"]?(?P<name>[A-Za-z][^=:,'"{{}}]*?)['"]?\s*[=:]\s*(?P<value>{_NUM})"""
)
_XFER_NAMES = {
    "num successful transfers": "transfers",
    "avg xfer time (ms)": "avg_xfer_ms",
    "p90 xfer time (ms)": "p90_xfer_ms",
    "avg post time (ms)": "avg_post_ms",
    "p90 post time (ms)": "p90_post_ms",
    "avg mb per transfer": "avg_mb_per_transfer",
    "throughput (mb/s)": "throughput_mbps",
    "avg number of descriptors": "avg_descriptors",
    "num failed transfers": "failed_transfers",
    "num failed notifications": "failed_notifications",
}
_XFER_COUNTS = frozenset({"transfers", "failed_transfers", "failed_notifications"})


def _parse_kv_transfer_metrics(raw: str) -> NixlTransferStatsEvent | None:
    head = parse_header(raw)
    _, found, fields = head.message.partition(_KV_TRANSFER_METRICS)
    if not found:
        return None
    # Keyword arguments for the fields _XFER_NAMES names: counts int, the rest float.
    named: dict[str, Any] = {}
    extra: list[tuple[str, float]] = []
    for field in _XFER_FIELD.finditer(fields):
        name = field["name"].strip().lower()
        value = float(field["value"])
        attr = _XFER_NAMES.get(name)
        if attr is None:
            extra.append((re.sub(r"[^a-z0-9]+", "_", name).strip("_"), value))
        elif attr not in named:
            named[attr] = int(value) if attr in _XFER_COUNTS and value.is_integer() else value
    if not named and not extra:
        return None
    transfers = named.pop("transfers", 0)
    return NixlTransferStatsEvent(int(transfers), **named, extra=tuple(extra), **_origin(head))


# --- everything else: milestones and red flags --------------------------------------

_EXCEPTION = re.compile(
    r"(?P<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Failure))(?::\s*(?P<msg>.*))?"
)
_QUIET_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "WARN"})
_VLLM_MILESTONES = (
    ("Loading weights took", re.compile(rf"Loading weights took (?P<v>{_NUM}) s"), "weights_loaded"),
    ("Model loading took", re.compile(rf"Model loading took (?P<v>{_NUM}) GiB"), "model_loaded"),
    ("Loading model from scratch", None, "loading_weights"),
    ("Starting to load model", None, "loading_weights"),
    ("GPU KV cache size", re.compile(r"GPU KV cache size: (?P<v>[\d,]+) tokens"), "kv_cache_allocated"),
    ("init engine", re.compile(rf"took (?P<v>{_NUM}) s"), "engine_initialized"),
    ("Starting vLLM", re.compile(r"Starting vLLM (?:API )?server on (?P<d>\S+)"), "api_server_starting"),
    ("Application startup complete", None, "app_startup_complete"),
    ("Uvicorn running on", re.compile(r"Uvicorn running on (?P<d>\S+)"), "uvicorn_running"),
)


def _exception_alert(head: LogLine) -> Alert | None:
    """`SomeError: msg` as the whole message, not at a quiet level (vLLM logs harmless
    import-probe tracebacks at WARNING)."""
    if head.level in _QUIET_LEVELS:
        return None
    m = _EXCEPTION.fullmatch(head.message.strip())
    if not m:
        return None
    return Alert("exception", head.message.strip(), **_origin(head))


def _parse_other(raw: str) -> LogEvent | None:
    if "out of memory" in raw and ("CUDA" in raw or "OutOfMemory" in raw):
        head = parse_header(raw)
        return Alert("cuda_oom", head.message.strip(), **_origin(head))
    if "UCX" in raw:
        head = parse_header(raw)
        msg = head.message
        if "transports" in msg and "not available" in msg:
            return Alert("ucx_transport_missing", msg.strip(), **_origin(head))
        if "UCX  ERROR" in msg or "UCX ERROR" in msg:
            return Alert("ucx_error", msg.strip(), **_origin(head))
        if "Backend UCX was instantiated" in msg:
            return HandshakeEvent("ucx_backend_instantiated", "UCX", msg, **_origin(head))
    if "NIXL" in raw:
        head = parse_header(raw)
        if "NIXL_ERR" in head.message:
            return Alert("nixl_error", head.message.strip(), **_origin(head))
        if "Initialized NIXL agent" in head.message:
            peer = head.message.split("Initialized NIXL agent:", 1)[-1].strip() or None
            return HandshakeEvent("nixl_agent_initialized", peer, head.message, **_origin(head))
    if "rror" in raw or "xception" in raw:
        head = parse_header(raw)
        alert = _exception_alert(head)
        if alert is not None:
            return alert
    for needle, pattern, kind in _VLLM_MILESTONES:
        if needle in raw:
            head = parse_header(raw)
            if needle not in head.message:
                continue
            detail, value = head.message.strip(), None
            if pattern is not None:
                m = pattern.search(head.message)
                if m:
                    if "v" in m.groupdict():
                        value = float(m["v"].replace(",", ""))
                    else:
                        detail = m["d"]
            return MilestoneEvent(kind, detail, value, **_origin(head))
    return None


def parse_line(raw: str) -> LogEvent | None:
    """Classify one log line; None when it is none of the known events."""
    # Cheap substring pre-filters first: most lines match none of them.
    if "LMCache" in raw:
        event = _parse_lmcache(raw)
        if event is not None:
            return event
    if "Engine 0" in raw:
        event = _parse_engine_stats(raw)
        if event is not None:
            return event
    if _KV_TRANSFER_METRICS in raw:
        event = _parse_kv_transfer_metrics(raw)
        if event is not None:
            return event
    if (
        "rror" in raw
        or "xception" in raw
        or "out of memory" in raw
        or "UCX" in raw
        or "NIXL" in raw
        or "oad" in raw  # Loading weights / Model loading / load model
        or "KV cache size" in raw
        or "init engine" in raw
        or "Starting vLLM" in raw
        or "startup complete" in raw
        or "Uvicorn running" in raw
    ):
        return _parse_other(raw)
    return None


def is_milestone(event: LogEvent | None) -> bool:
    return isinstance(event, MilestoneEvent)


def milestones(lines: Iterable[str]) -> Iterator[MilestoneEvent]:
    """The start-up milestones found in `lines`, in order."""
    for raw in lines:
        event = parse_line(raw)
        if isinstance(event, MilestoneEvent):
            yield event


_ROLE_BY_KV_ROLE = {"kv_consumer": "decoder", "kv_producer": "prefiller", "kv_both": "both"}
_KV_ROLE = re.compile(r"""kv_role['"]?\s*[=:]\s*['"](kv_consumer|kv_producer|kv_both)['"]""")


class LogScanner:
    """Per-stream parser state: the instance role and the role-dependent alerts.

    `role` is "prefiller", "decoder", "both" or None (unknown). A `kv_role=` line in the
    stream (vLLM prints its non-default args at start) overrides the role given.
    """

    def __init__(self, role: str | None = None) -> None:
        self.role = role
        self._role_from_log = False

    def feed(self, raw: str) -> tuple[LogEvent, ...]:
        if not self._role_from_log and "kv_role" in raw:
            m = _KV_ROLE.search(raw)
            if m:
                self.role = _ROLE_BY_KV_ROLE[m.group(1)]
                self._role_from_log = True
        event = parse_line(raw)
        if event is None:
            return ()
        if isinstance(event, LookupHitEvent) and event.is_miss and self.role == "decoder":
            alert = Alert(
                "decoder_zero_hit",
                f"decoder found 0 of {event.total_tokens} tokens in LMCache for {event.request_id}: "
                "the KV transfer was missed and the prompt is recomputed",
                timestamp=event.timestamp,
                process=event.process,
                level=event.level,
            )
            return (event, alert)
        return (event,)


