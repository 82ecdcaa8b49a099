"""Log lines in the formats real vLLM 0.26 + LMCache 0.5.3 print (see fixtures/real-vllm).

Three formats share one log:
- vLLM: `(APIServer pid=N) INFO 11-29 10:53:18 [api_server.py:677] message` (no year, no colour
  when not on a terminal);
- uvicorn: `(APIServer pid=N) INFO:     message`;
- LMCache, always ANSI-coloured even into a file:
  `\\x1b[32;20m[2026-11-29 10:53:45,890] LMCache INFO:\\x1b[0m message \\x1b[3m(file:line:logger)\\x1b[0m`.
The message builders (`stored_message`, `lookup_message`, ...) are separate from the line
wrappers so tests and other layers can check one against the reference regexes.
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
import time
from typing import IO

LMCACHE_COLOURS = {
    "DEBUG": "\x1b[1m",
    "INFO": "\x1b[32;20m",
    "WARNING": "\x1b[33;20m",
    "ERROR": "\x1b[31;20m",
    "CRITICAL": "\x1b[31;1m",
}
RESET = "\x1b[0m"
ITALIC = "\x1b[3m"


def _local(when: float | None) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(time.time() if when is None else when)


def process_prefix(process: str, pid: int) -> str:
    return f"({process} pid={pid}) "


def vllm_line(level: str, source: str, message: str, when: float | None = None) -> str:
    """`INFO 11-29 10:53:18 [api_server.py:677] message` (vLLM's format, without the prefix)."""
    stamp = _local(when).strftime("%m-%d %H:%M:%S")
    return f"{level} {stamp} [{source}] {message}"


def uvicorn_line(message: str, level: str = "INFO") -> str:
    return f"{level + ':':<10}{message}"


def access_line(client: str, method: str, path: str, status: int, reason: str) -> str:
    return uvicorn_line(f'{client} - "{method} {path} HTTP/1.1" {status} {reason}')


def lmcache_line(
    level: str, message: str, source: str, when: float | None = None
) -> str:
    """`source` is LMCache's `file.py:line:logger.name`."""
    moment = _local(when)
    stamp = moment.strftime("%Y-%m-%d %H:%M:%S") + f",{moment.microsecond // 1000:03d}"
    colour = LMCACHE_COLOURS.get(level, LMCACHE_COLOURS["INFO"])
    return f"{colour}[{stamp}] LMCache {level}:{RESET} {message} {ITALIC}({source}){RESET}"


# --- LMCache messages (reference §5.4, real samples in fixtures/real-vllm/lmcache-pd) -------

SRC_LOOKUP = "vllm_v1_adapter.py:1473:lmcache.integration.vllm.vllm_v1_adapter"
SRC_STORED = "cache_engine.py:577:lmcache.v1.cache_engine"
SRC_RETRIEVED = "cache_engine.py:958:lmcache.v1.cache_engine"


def lookup_message(req_id: str, total: int, computed: int, hit: int, need_to_load: int) -> str:
    return (
        f"Reqid: {req_id}, Total tokens {total}, Inference Engine computed tokens: {computed}, "
        f"LMCache hit tokens: {hit}, need to load: {need_to_load}"
    )


def stored_message(
    req_id: str,
    stored: int,
    total: int,
    size_gb: float,
    cost_ms: float,
    offload_ms: float,
    put_ms: float,
) -> str:
    # LMCache 0.5.3 writes "GB" here (and "gb" in the Retrieved line); both copied as recorded.
    throughput = size_gb / (cost_ms / 1000.0) if cost_ms > 0 else 0.0
    return (
        f"[req_id={req_id}] Stored {stored} out of total {total} tokens. size: {size_gb:.4f} GB, "
        f"cost {cost_ms:.4f} ms, throughput: {throughput:.4f} GB/s; "
        f"offload_time: {offload_ms:.4f} ms, put_time: {put_ms:.4f} ms"
    )


def retrieved_message(
    req_id: str, retrieved: int, required: int, total: int, size_gb: float, cost_ms: float
) -> str:
    throughput = size_gb / (cost_ms / 1000.0) if cost_ms > 0 else 0.0
    return (
        f"[req_id={req_id}] Retrieved {retrieved} out of {required} required tokens "
        f"(from {total} total tokens). size: {size_gb:.4f} gb, cost {cost_ms:.4f} ms, "
        f"throughput: {throughput:.4f} GB/s;"
    )


# --- vLLM messages -----------------------------------------------------------------------

SRC_ENGINE_STATS = "loggers.py:310"
SRC_KV_TRANSFER_METRICS = "metrics.py:127"


def engine_stats_message(
    prompt_tps: float,
    generation_tps: float,
    running: int,
    waiting: int,
    kv_usage_perc: float,
    prefix_hit_perc: float = 0.0,
    external_hit_perc: float = 0.0,
) -> str:
    return (
        f"Engine 000: Avg prompt throughput: {prompt_tps:.1f} tokens/s, "
        f"Avg generation throughput: {generation_tps:.1f} tokens/s, "
        f"Running: {running} reqs, Waiting: {waiting} reqs, "
        f"GPU KV cache usage: {kv_usage_perc:.1f}%, Prefix cache hit rate: {prefix_hit_perc:.1f}%, "
        f"External prefix cache hit rate: {external_hit_perc:.1f}%"
    )


def kv_transfer_metrics_message(
    transfers: int,
    avg_xfer_ms: float,
    p90_xfer_ms: float,
    avg_post_ms: float,
    p90_post_ms: float,
    avg_mb: float,
    throughput_mbps: float,
    avg_descriptors: float,
    failed_transfers: int = 0,
    failed_notifications: int = 0,
) -> str:
    """NixlConnector's periodic transfer summary (vLLM logs it after the Engine 000 line)."""
    return (
        f"KV Transfer metrics: Num successful transfers={transfers}, "
        f"Avg xfer time (ms)={avg_xfer_ms:.3f}, P90 xfer time (ms)={p90_xfer_ms:.3f}, "
        f"Avg post time (ms)={avg_post_ms:.3f}, P90 post time (ms)={p90_post_ms:.3f}, "
        f"Avg MB per transfer={avg_mb:.3f}, Throughput (MB/s)={throughput_mbps:.3f}, "
        f"Avg number of descriptors={avg_descriptors:.1f}, "
        f"Num failed transfers={failed_transfers}, Num failed notifications={failed_notifications}"
    )


class EngineLog:
    """Writes the simulated engine's lines with the right prefix to the right stream.

    vLLM's own logger and uvicorn's access log write to stdout; LMCache's logger, uvicorn's
    server messages and tracebacks go to stderr, as in the real processes.
    """

    def __init__(self, pid: int, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self.pid = pid
        # vLLM's EngineCore lines come from the EngineCore process: its pid once it runs.
        self.core_pid: int | None = None
        self._out = out
        self._err = err
        self._lock = threading.Lock()

    @property
    def out(self) -> IO[str]:
        return self._out or sys.stdout

    @property
    def err(self) -> IO[str]:
        return self._err or sys.stderr

    def _write(self, stream: IO[str], text: str) -> None:
        with self._lock:
            try:
                stream.write(text if text.endswith("\n") else text + "\n")
                stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # nobody reads our output any more; keep serving

    def api(self, level: str, source: str, message: str) -> None:
        self._write(self.out, process_prefix("APIServer", self.pid) + vllm_line(level, source, message))

    def core(self, level: str, source: str, message: str) -> None:
        self._write(self.out, process_prefix("EngineCore", self.core_pid or self.pid) + vllm_line(level, source, message))

    def core_raw(self, text: str, stream: str = "out") -> None:
        target = self.out if stream == "out" else self.err
        for line in text.split("\n"):
            self._write(target, process_prefix("EngineCore", self.core_pid or self.pid) + line)

    def api_raw(self, text: str, stream: str = "err") -> None:
        target = self.out if stream == "out" else self.err
        for line in text.split("\n"):
            self._write(target, process_prefix("APIServer", self.pid) + line)

    def uvicorn(self, message: str, level: str = "INFO") -> None:
        self._write(self.err, process_prefix("APIServer", self.pid) + uvicorn_line(message, level))

    def access(self, client: str, method: str, path: str, status: int, reason: str) -> None:
        self._write(
            self.out,
            process_prefix("APIServer", self.pid) + access_line(client, method, path, status, reason),
        )

    def lmcache(self, level: str, message: str, source: str) -> None:
        self._write(self.err, process_prefix("EngineCore", self.core_pid or self.pid) + lmcache_line(level, message, source))

    def plain(self, text: str, stream: str = "err") -> None:
        self._write(self.out if stream == "out" else self.err, text)
