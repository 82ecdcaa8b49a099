"""The simulated engine core: admission, prefill, KV transfer, decode, and their side effects.

Time behaves like a GPU's: prefill takes `PDTUI_SIM_PREFILL_US_PER_TOKEN` per computed prompt
token (tokens that arrived over a KV transfer are not computed), every generated token after
the first takes `PDTUI_SIM_DECODE_MS_PER_TOKEN`, and every request holds KV blocks for
prompt + max_tokens until it finishes, waiting when the pool is full.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import AsyncGenerator

import zmq.asyncio

from pdtui.sim import logfmt, tokenizer
from pdtui.sim.busy import BusyMeter
from pdtui.sim.kvcache import KVCache, ModelShape, model_shape
from pdtui.sim.logfmt import EngineLog
from pdtui.sim.metrics import EngineMetrics
from pdtui.sim.settings import SimSettings
from pdtui.sim.startup import engine_id as new_engine_id
from pdtui.sim.transfer import (
    LMCacheReceiver,
    LMCacheSender,
    NixlConsumer,
    NixlProducer,
    TransferError,
)

# Simulated interconnect: what a KV byte costs to move between two GPUs of one node.
TRANSFER_BYTES_PER_S = 40e9
FIRST_CONTACT_S = 0.2  # LMCache dials NIXL lazily: the first transfer to a peer is slow


MIB = 1024 * 1024

class RequestError(Exception):
    """A request the engine refuses; `status` is the HTTP status vLLM would answer."""

    def __init__(
        self, message: str, status: int = 400, kind: str = "BadRequestError", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.param = param


@dataclass
class Generation:
    """One prompt's run through the engine; filled in while `SimEngine.run` iterates."""

    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    kv_transfer_params: dict[str, Any] | None = None
    output_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    kv_transfer_params_out: dict[str, Any] | None = None
    cached_tokens: int = 0


@dataclass
class _Window:
    """Counts since the last `Engine 000:` line."""

    started: float = field(default_factory=time.monotonic)
    prompt_tokens: int = 0
    generation_tokens: int = 0
    external_queries: int = 0
    external_hits: int = 0
    nixl_transfers: list[tuple[float, int]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.prompt_tokens or self.generation_tokens or self.nixl_transfers)


class SimEngine:
    def __init__(self, settings: SimSettings, log: EngineLog) -> None:
        self.settings = settings
        self.log = log
        self.shape: ModelShape = model_shape(settings.model)
        self.engine_id = new_engine_id()
        self.kv = KVCache(settings.kv_capacity_tokens)
        self.metrics = EngineMetrics(
            model_name=settings.served_model_name,
            max_model_len=settings.max_model_len,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            kv_capacity_tokens=settings.kv_capacity_tokens,
            with_lmcache=settings.prometheus_multiproc_dir is not None and settings.lmcache is not None,
            with_nixl=settings.is_nixl,
        )
        self._slots = asyncio.Semaphore(settings.max_num_seqs)
        self.running = 0
        self.waiting = 0
        self.prefilling = 0
        self.finished_requests = 0
        self.ready = False
        self.hung = False
        self.memory_bytes = 0  # per GPU, what the GPU view shows
        self._window = _Window()
        self._busy = BusyMeter()
        self._zmq: zmq.asyncio.Context | None = None
        self.sender: LMCacheSender | None = None
        self.receiver: LMCacheReceiver | None = None
        self.nixl_producer: NixlProducer | None = None
        self.nixl_consumer: NixlConsumer | None = None
        self.crash_requested = asyncio.Event()

    # ------------------------------------------------------------------ sizes ----
    @property
    def tp(self) -> int:
        return self.settings.tensor_parallel_size

    @property
    def kv_bytes_per_token(self) -> int:
        return self.shape.kv_bytes_per_token(self.tp)

    @property
    def chunk_bytes(self) -> int:
        chunk = self.settings.lmcache.chunk_size if self.settings.lmcache else 256
        return chunk * self.kv_bytes_per_token

    @property
    def reserved_bytes(self) -> int:
        """What vLLM holds on each GPU once up: its share of --gpu-memory-utilization."""
        return int(self.settings.gpu_memory_utilization * self.settings.gpu_total_bytes)

    @property
    def weight_bytes_per_gpu(self) -> int:
        return min(self.reserved_bytes, self.shape.weight_bytes // self.tp)

    @property
    def utilization(self) -> float:
        """Simulated GPU utilization as NVML reports it: averaged over the last second, so
        it follows the request load (a sample taken between two short requests is not 0)."""
        if self.hung:
            return 100.0  # a wedged kernel spins at 100 %, what operators see on a hung GPU
        self._note_load()
        return self._busy.average()

    def _note_load(self) -> None:
        """How hard the GPU works right now: prefill saturates it, decode keeps it partly busy."""
        if self.prefilling:
            level = 97.0
        elif self.running:
            level = min(95.0, 45.0 + 5.0 * self.running)
        else:
            level = 0.0
        self._busy.set_level(level)

    # -------------------------------------------------------------- transfers ----
    def start_transfers(self) -> None:
        """Bind side channels and dial the proxy; TransferError when a port is taken."""
        s = self.settings
        self._zmq = zmq.asyncio.Context()
        if s.is_lmcache_pd and s.lmcache is not None:
            lm = s.lmcache
            if lm.pd_role in ("sender", "both"):
                endpoint = None
                if lm.pd_proxy_host and lm.pd_proxy_port and not lm.pd_skip_proxy_notification:
                    endpoint = f"tcp://{lm.pd_proxy_host}:{lm.pd_proxy_port}"
                self.sender = LMCacheSender(
                    self._zmq, s.model, lm.chunk_size, self.tp, self.kv_bytes_per_token,
                    endpoint, s.faults.drop_notif, self.log.lmcache, s.pd_timeout_s,
                )
            if lm.pd_role in ("receiver", "both"):
                self.receiver = LMCacheReceiver(
                    self._zmq, s.model, lm.chunk_size, self.tp, lm.pd_peer_host or "localhost",
                    lm.pd_peer_init_port, lm.pd_peer_alloc_port, lm.pd_buffer_size or 0,
                    self.chunk_bytes, self.log.lmcache, _allocation_timeout(lm.raw),
                )
                self.receiver.bind()
        if s.is_nixl:
            if s.kv_role in ("kv_producer", "kv_both"):
                self.nixl_producer = NixlProducer(
                    self._zmq, self.engine_id, s.nixl_side_channel_host, s.nixl_side_channel_port,
                    self.kv.release,
                )
                self.nixl_producer.bind()
            if s.kv_role in ("kv_consumer", "kv_both"):
                self.nixl_consumer = NixlConsumer(self._zmq)

    def close(self) -> None:
        for part in (self.sender, self.receiver, self.nixl_producer, self.nixl_consumer):
            if part is not None:
                part.close()
        if self._zmq is not None:
            self._zmq.term()
            self._zmq = None

    # -------------------------------------------------------------- requests ----
    def new_request_id(self, prefix: str = "cmpl") -> str:
        return f"{prefix}-{secrets.token_hex(8)}"

    def check_fits(self, prompt_len: int, max_tokens: int) -> None:
        limit = self.settings.max_model_len
        if prompt_len + max_tokens > limit:
            raise RequestError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_len + max_tokens} tokens ({prompt_len} in the messages, {max_tokens} in the "
                f"completion). Please reduce the length of the messages or completion.",
                400,
            )

    async def run(self, gen: Generation) -> AsyncGenerator[int, None]:
        """Yields generated token ids as they are produced; fills `gen` as it goes."""
        s = self.settings
        m = self.metrics
        c = m.child
        internal_id = f"{gen.request_id}-0-{secrets.token_hex(4)}"
        arrived = time.monotonic()
        prompt = gen.prompt_ids
        params = gen.kv_transfer_params or {}
        self.waiting += 1
        self._publish_queue()
        try:
            await self._slots.acquire()
            try:
                held_blocks = await self.kv.allocate(len(prompt) + gen.max_tokens)
            except BaseException:
                self._slots.release()
                raise
        finally:
            self.waiting -= 1
        scheduled = time.monotonic()
        self.running += 1
        self._publish_queue()
        keep_blocks = False
        try:
            hit = await self._load_external_kv(gen, internal_id, params)
            gen.cached_tokens = hit
            computed = max(0, len(prompt) - hit)
            self.prefilling += 1
            self._note_load()
            try:
                await _sleep(computed * s.prefill_us_per_token / 1e6)
            finally:
                self.prefilling -= 1
                self._note_load()
            c.prompt_tokens.inc(len(prompt))
            c.prompt_by_source["local_compute"].inc(computed)
            c.prompt_by_source["external_kv_transfer"].inc(hit)
            c.prompt_tokens_cached.inc(hit)
            c.prefill_kv_computed.observe(computed)
            c.iteration_tokens.observe(max(1, computed))
            self._window.prompt_tokens += len(prompt)
            context = list(prompt)
            first = tokenizer.next_token(context)
            prefill_done = time.monotonic()
            keep_blocks = await self._hand_off_kv(gen, internal_id, params, first, held_blocks)
            c.ttft.observe(time.monotonic() - scheduled)
            c.prefill_time.observe(prefill_done - scheduled)
            gen.output_ids.append(first)
            context.append(first)
            self._count_generated(1)
            yield first
            last = time.monotonic()
            while len(gen.output_ids) < gen.max_tokens:
                await _sleep(s.decode_ms_per_token / 1000.0)
                token = tokenizer.next_token(context)
                gen.output_ids.append(token)
                context.append(token)
                self._count_generated(1)
                now = time.monotonic()
                c.itl.observe(now - last)
                c.iteration_tokens.observe(1)
                last = now
                yield token
            gen.finish_reason = "length"
            finished = time.monotonic()
            decode_s = finished - prefill_done
            c.decode_time.observe(decode_s)
            if len(gen.output_ids) > 1:
                c.tpot.observe(decode_s / (len(gen.output_ids) - 1))
            c.e2e.observe(finished - arrived)
            c.queue_time.observe(scheduled - arrived)
            c.inference_time.observe(finished - scheduled)
            c.request_prompt_tokens.observe(len(prompt))
            c.request_generation_tokens.observe(len(gen.output_ids))
            c.max_num_generation_tokens.observe(gen.max_tokens)
            c.params_max_tokens.observe(gen.max_tokens)
            c.params_n.observe(1)
            c.success["length"].inc()
        except (asyncio.CancelledError, GeneratorExit):
            c.success["abort"].inc()
            raise
        finally:
            self.running -= 1
            if not keep_blocks:
                await self.kv.release(held_blocks)
            self._slots.release()
            self._publish_queue()
        self.finished_requests += 1
        crash_after = s.faults.crash_after
        if crash_after is not None and self.finished_requests >= crash_after:
            self.crash_requested.set()

    async def _load_external_kv(self, gen: Generation, internal_id: str, params: dict[str, Any]) -> int:
        """Tokens that arrive over a KV connector instead of being computed (the decoder's hit)."""
        s = self.settings
        m = self.metrics
        c = m.child
        prompt = gen.prompt_ids
        if s.kv_connector in ("LMCacheConnectorV1", "LMCacheConnector"):
            lookup_tokens = prompt[: max(0, len(prompt) - s.skip_last_n_tokens)]
            hit = self.receiver.lookup(lookup_tokens) if self.receiver is not None else 0
            self.log.lmcache("INFO", logfmt.lookup_message(internal_id, len(prompt), 0, hit, hit), logfmt.SRC_LOOKUP)
            c.external_queries.inc(len(prompt))
            c.external_hits.inc(hit)
            self._window.external_queries += len(prompt)
            self._window.external_hits += hit
            if m.lmcache is not None:
                m.lmcache.record_lookup(len(prompt), hit)
            if hit and self.receiver is not None:
                started = time.monotonic()
                nbytes = self.receiver.retrieve(lookup_tokens, hit)
                await _sleep(nbytes / TRANSFER_BYTES_PER_S / 4)  # local copy from the PD buffer
                cost_s = max(time.monotonic() - started, 1e-5)
                self.log.lmcache(
                    "INFO",
                    logfmt.retrieved_message(internal_id, hit, hit, hit, nbytes / 1024**3, cost_s * 1000),
                    logfmt.SRC_RETRIEVED,
                )
                if m.lmcache is not None:
                    m.lmcache.record_retrieve(len(lookup_tokens), hit, cost_s)
            return hit
        if s.is_nixl and params.get("do_remote_prefill") and self.nixl_consumer is not None:
            c.external_queries.inc(len(prompt))
            self._window.external_queries += len(prompt)
            started = time.monotonic()
            try:
                reply = await self.nixl_consumer.pull(params)
            except TransferError as exc:
                reply = {"ok": False, "error": str(exc)}
            if not reply.get("ok"):
                self.log.core(
                    "WARNING", "nixl_connector.py:2214",
                    f"Failed to read KV blocks of request {internal_id} from engine "
                    f"{params.get('remote_engine_id')}: {reply.get('error')}; recomputing the prompt.",
                )
                if m.nixl is not None:
                    m.nixl.failed_transfers.labels(**m.labels).inc()
                return 0
            nbytes = int(reply.get("bytes") or 0)
            await _sleep(nbytes / TRANSFER_BYTES_PER_S)
            seconds = max(time.monotonic() - started, 1e-5)
            hit = min(int(reply.get("tokens") or 0), len(prompt))
            c.external_hits.inc(hit)
            self._window.external_hits += hit
            self._window.nixl_transfers.append((seconds, nbytes))
            if m.nixl is not None:
                m.nixl.record(seconds, seconds / 10, nbytes, 2 * self.shape.num_layers * max(1, hit // 16))
            return hit
        return 0

    async def _hand_off_kv(
        self, gen: Generation, internal_id: str, params: dict[str, Any], first: int, held_blocks: int
    ) -> bool:
        """Prefiller side: store/announce the KV; True when the blocks stay held for a pull."""
        s = self.settings
        prompt = gen.prompt_ids
        spec = params.get("disagg_spec")
        if self.sender is not None and isinstance(spec, dict):
            proxy_req_id = str(spec.get("req_id", internal_id))
            started = time.monotonic()
            try:
                result = await self.sender.store(proxy_req_id, prompt, spec)
            except TransferError as exc:
                self.log.lmcache(
                    "ERROR",
                    f"Failed to send KV cache of request {proxy_req_id} to the decoder: {exc}",
                    "pd_backend_async.py:702:lmcache.v1.storage_backend.pd_backend_async",
                )
                raise RequestError(f"KV transfer to the decoder failed: {exc}", 500, "InternalServerError") from None
            write_s = result.nbytes / TRANSFER_BYTES_PER_S + (FIRST_CONTACT_S if result.first_contact else 0.0)
            await _sleep(write_s)
            cost_s = max(time.monotonic() - started, 1e-5)
            offload_s = min(cost_s * 0.15, 0.002)
            self.log.lmcache(
                "INFO",
                logfmt.stored_message(
                    internal_id, len(prompt), len(prompt), result.nbytes / 1024**3, cost_s * 1000,
                    offload_s * 1000, (cost_s - offload_s) * 1000,
                ),
                logfmt.SRC_STORED,
            )
            if self.metrics.lmcache is not None:
                self.metrics.lmcache.record_store(len(prompt), cost_s)
        if params.get("ret_first_tok"):
            gen.kv_transfer_params_out = {"first_tok": first}
        if s.is_nixl and params.get("do_remote_decode") and self.nixl_producer is not None:
            nbytes = len(prompt) * self.kv_bytes_per_token * self.tp
            block_ids = self.nixl_producer.hold(len(prompt), nbytes, held_blocks)
            gen.kv_transfer_params_out = {
                "do_remote_prefill": True,
                "do_remote_decode": False,
                "remote_block_ids": block_ids,
                "remote_engine_id": self.engine_id,
                "remote_host": self.nixl_producer.host,
                "remote_port": self.nixl_producer.port,
                "tp_size": self.tp,
            }
            return True
        return False

    def _count_generated(self, count: int) -> None:
        self.metrics.child.generation_tokens.inc(count)
        self._window.generation_tokens += count

    def _publish_queue(self) -> None:
        self._note_load()  # called whenever `running` changes
        c = self.metrics.child
        c.running.set(self.running)
        c.waiting.set(self.waiting)
        c.waiting_capacity.set(self.waiting)
        c.kv_usage.set(self.kv.usage)

    def mark_ready(self) -> None:
        self.ready = True
        self._window = _Window()  # throughput is averaged over serving time, not start-up

    # ----------------------------------------------------------- periodic log ----
    def log_stats_if_active(self) -> None:
        """vLLM's `Engine 000:` line, printed only when something happened since the last one."""
        window, self._window = self._window, _Window()
        if not window.active and not self.running and not self.waiting:
            return
        seconds = max(time.monotonic() - window.started, 1e-6)
        ext_rate = 100.0 * window.external_hits / window.external_queries if window.external_queries else 0.0
        self.log.api(
            "INFO",
            logfmt.SRC_ENGINE_STATS,
            logfmt.engine_stats_message(
                window.prompt_tokens / seconds, window.generation_tokens / seconds,
                self.running, self.waiting, 100.0 * self.kv.usage, 0.0, ext_rate,
            ),
        )
        if window.nixl_transfers:
            times = sorted(t * 1000 for t, _ in window.nixl_transfers)
            total_bytes = sum(b for _, b in window.nixl_transfers)
            total_s = sum(t for t, _ in window.nixl_transfers)
            p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
            self.log.api(
                "INFO",
                logfmt.SRC_KV_TRANSFER_METRICS,
                logfmt.kv_transfer_metrics_message(
                    len(times), sum(times) / len(times), p90, sum(times) / len(times) / 10, p90 / 10,
                    # vLLM's "MB" here is 2**20 bytes (checked against vllm:nixl_bytes_transferred on an H200).
                    total_bytes / len(times) / MIB, total_bytes / MIB / max(total_s, 1e-6),
                    2.0 * self.shape.num_layers,
                ),
            )

    async def expire_held_blocks(self) -> None:
        if self.nixl_producer is not None:
            await self.nixl_producer.expire()


def _allocation_timeout(raw: dict[str, Any]) -> float:
    """LMCache's pd_allocation_timeout_sec (default: forever), capped so a demo never wedges."""
    try:
        value = float(raw.get("pd_allocation_timeout_sec", 30.0))
    except (TypeError, ValueError):
        value = 30.0
    return max(0.0, min(value, 30.0))


# Costs under this wait this: the standard loop's epoll waits whole ms, rounded up, and the
# simulator's timing was that; uvloop rounds to the nearest ms (a 0.09 ms KV copy: nothing).
_TIMER_GRAIN_S = 0.001


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(max(seconds, _TIMER_GRAIN_S))
    else:
        await asyncio.sleep(0)
