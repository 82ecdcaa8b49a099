"""`/metrics` shaped like real vLLM 0.26's (names, label sets, buckets of the recorded scrapes).

One private CollectorRegistry per engine (never prometheus_client's global one), so tests can
build several engines in one process. `lmcache:*` families exist only when
PROMETHEUS_MULTIPROC_DIR is set, as on real hardware, where LMCache's series reach vLLM's
/metrics only through that directory.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
               7.5, 10.0, 20.0, 40.0, 80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
                           40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
N_BUCKETS = (1, 2, 5, 10, 20)
HTTP_DURATION_BUCKETS = (0.1, 0.5, 1.0)
LMCACHE_TIME_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                        2.5, 5.0, 7.5, 10.0)
LMCACHE_SPEED_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                         32768, 65536)
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")
PROMPT_SOURCES = ("local_compute", "local_cache_hit", "external_kv_transfer")


def one_two_five_buckets(maximum: int) -> list[float]:
    """vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to `maximum`."""
    buckets: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > maximum:
                return buckets
            buckets.append(float(value))
        exponent += 1


class EngineMetrics:
    def __init__(
        self,
        model_name: str,
        max_model_len: int,
        gpu_memory_utilization: float,
        kv_capacity_tokens: int,
        with_lmcache: bool,
        with_nixl: bool,
        lmcache_role: str = "worker",
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        labels = ["engine", "model_name"]
        self._labels = {"engine": "0", "model_name": model_name}
        lv = self._labels

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels + list(extra), registry=registry)

        def hist(name: str, doc: str, buckets) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        self.running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.waiting_by_reason = Gauge(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
            "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). "
            "Sum of all reasons equals vllm:num_requests_waiting.",
            labels + ["reason"],
            registry=registry,
        )
        sleep_state = Gauge(
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; "
            "weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
            labels + ["sleep_state"],
            registry=registry,
        )
        for state, value in (("awake", 1), ("weights_offloaded", 0), ("discard_all", 0)):
            sleep_state.labels(**lv, sleep_state=state).set(value)
        self.kv_usage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.prefix_queries = counter(
            "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens."
        )
        self.prefix_hits = counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.")
        self.external_queries = counter(
            "vllm:external_prefix_cache_queries",
            "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.",
        )
        self.external_hits = counter(
            "vllm:external_prefix_cache_hits",
            "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.",
        )
        self.preemptions = counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.prompt_tokens_by_source = counter(
            "vllm:prompt_tokens_by_source", "Number of prompt tokens by source.", ("source",)
        )
        self.prompt_tokens_cached = counter(
            "vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external)."
        )
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self.request_success = counter(
            "vllm:request_success", "Count of successfully processed requests.", ("finished_reason",)
        )
        length_buckets = one_two_five_buckets(max_model_len)
        self.request_prompt_tokens = hist(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", length_buckets
        )
        self.request_generation_tokens = hist(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", length_buckets
        )
        self.iteration_tokens = hist(
            "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITERATION_TOKEN_BUCKETS
        )
        self.max_num_generation_tokens = hist(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            length_buckets,
        )
        self.params_n = hist("vllm:request_params_n", "Histogram of the n request parameter.", N_BUCKETS)
        self.params_max_tokens = hist(
            "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", length_buckets
        )
        self.ttft = hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS)
        self.itl = hist("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS)
        self.tpot = hist(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            ITL_BUCKETS,
        )
        self.e2e = hist(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", REQUEST_LATENCY_BUCKETS
        )
        self.queue_time = hist(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.inference_time = hist(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.prefill_time = hist(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.decode_time = hist(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.prefill_kv_computed = hist(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            length_buckets,
        )
        block_size = 16
        cache_info = Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            ["block_size", "cache_dtype", "enable_prefix_caching", "engine", "gpu_memory_utilization",
             "kv_cache_size_tokens", "num_gpu_blocks"],
            registry=registry,
        )
        cache_info.labels(
            block_size=str(block_size),
            cache_dtype="auto",
            enable_prefix_caching="False",
            engine="0",
            gpu_memory_utilization=str(gpu_memory_utilization),
            kv_cache_size_tokens=str(kv_capacity_tokens),
            num_gpu_blocks=str(kv_capacity_tokens // block_size),
        ).set(1)
        self.http_requests = Counter(
            "http_requests",
            "Total number of requests by method, status and handler.",
            ["handler", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important. ",
            ["handler", "method"],
            buckets=HTTP_DURATION_BUCKETS,
            registry=registry,
        )
        # Labelled series appear at zero from the start, as vLLM pre-creates them.
        for metric in (self.running, self.waiting, self.kv_usage, self.prefix_queries, self.prefix_hits,
                       self.external_queries, self.external_hits, self.preemptions, self.prompt_tokens,
                       self.prompt_tokens_cached, self.generation_tokens, self.request_prompt_tokens,
                       self.request_generation_tokens, self.iteration_tokens, self.max_num_generation_tokens,
                       self.params_n, self.params_max_tokens, self.ttft, self.itl, self.tpot, self.e2e,
                       self.queue_time, self.inference_time, self.prefill_time, self.decode_time,
                       self.prefill_kv_computed):
            metric.labels(**lv)
        for reason in ("capacity", "deferred"):
            self.waiting_by_reason.labels(**lv, reason=reason).set(0)
        for source in PROMPT_SOURCES:
            self.prompt_tokens_by_source.labels(**lv, source=source)
        for reason in FINISHED_REASONS:
            self.request_success.labels(**lv, finished_reason=reason)
        # This engine's label children, looked up once: labels() sorts and checks its
        # arguments on every call, a few dozen calls per request (the engine's hot path).
        self.child = SimpleNamespace(**{name: getattr(self, name).labels(**lv) for name in (
            "running", "waiting", "kv_usage", "external_queries", "external_hits", "prompt_tokens",
            "prompt_tokens_cached", "generation_tokens", "request_prompt_tokens",
            "request_generation_tokens", "iteration_tokens", "max_num_generation_tokens",
            "params_n", "params_max_tokens", "ttft", "itl", "tpot", "e2e", "queue_time",
            "inference_time", "prefill_time", "decode_time", "prefill_kv_computed")})
        self.child.waiting_capacity = self.waiting_by_reason.labels(**lv, reason="capacity")
        self.child.prompt_by_source = {
            source: self.prompt_tokens_by_source.labels(**lv, source=source) for source in PROMPT_SOURCES}
        self.child.success = {
            reason: self.request_success.labels(**lv, finished_reason=reason) for reason in FINISHED_REASONS}
        self._http: dict[tuple[str, str, str], tuple[Any, Any]] = {}

        self.lmcache: LMCacheMetrics | None = (
            LMCacheMetrics(registry, model_name, lmcache_role) if with_lmcache else None
        )
        self.nixl: NixlMetrics | None = NixlMetrics(registry, lv) if with_nixl else None

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._labels)

    def observe_http(self, handler: str, method: str, status: str, seconds: float) -> None:
        """One request in http_requests_total / http_request_duration_seconds (children kept)."""
        key = (handler, method, status)
        pair = self._http.get(key)
        if pair is None:
            pair = self._http[key] = (
                self.http_requests.labels(handler=handler, method=method, status=status),
                self.http_duration.labels(handler=handler, method=method))
        pair[0].inc()
        pair[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LMCacheMetrics:
    """The `lmcache:*` families of LMCache's PrometheusLogger that matter for PD."""

    def __init__(self, registry: CollectorRegistry, model_name: str, role: str) -> None:
        names = ["model_name", "served_model_name", "role", "worker_id"]
        self._lv = {"model_name": model_name, "served_model_name": model_name, "role": role, "worker_id": "0"}

        def counter(name: str, doc: str) -> Counter:
            metric = Counter(name, doc, names, registry=registry)
            metric.labels(**self._lv)
            return metric

        def gauge(name: str, doc: str) -> Gauge:
            metric = Gauge(name, doc, names, registry=registry)
            metric.labels(**self._lv)
            return metric

        def hist(name: str, doc: str, buckets) -> Histogram:
            metric = Histogram(name, doc, names, buckets=buckets, registry=registry)
            metric.labels(**self._lv)
            return metric

        self.num_retrieve_requests = counter("lmcache:num_retrieve_requests", "Total number of retrieve requests sent to lmcache")
        self.num_store_requests = counter("lmcache:num_store_requests", "Total number of store requests sent to lmcache")
        self.num_lookup_requests = counter("lmcache:num_lookup_requests", "Total number of lookup requests sent to lmcache")
        self.num_requested_tokens = counter("lmcache:num_requested_tokens", "Total number of tokens requested from lmcache")
        self.num_hit_tokens = counter("lmcache:num_hit_tokens", "Total number of tokens hit in lmcache")
        self.num_stored_tokens = counter("lmcache:num_stored_tokens", "Total number of tokens stored in lmcache including evicted ones")
        self.num_lookup_tokens = counter("lmcache:num_lookup_tokens", "Total number of tokens requested in lookup from lmcache")
        self.num_lookup_hits = counter("lmcache:num_lookup_hits", "Total number of tokens hit in lookup from lmcache")
        self.num_prompt_tokens = counter("lmcache:num_prompt_tokens", "Total number of prompt tokens")
        self.retrieve_hit_rate = gauge("lmcache:retrieve_hit_rate", "Hit rate of lmcache retrieve requests since last log")
        self.lookup_hit_rate = gauge("lmcache:lookup_hit_rate", "Hit rate of lmcache lookup requests since last log")
        self.local_cache_usage = gauge("lmcache:local_cache_usage", "Local cache usage (bytes) of lmcache")
        self.time_to_store = hist("lmcache:time_to_store", "Time to store to lmcache (seconds)", LMCACHE_TIME_BUCKETS)
        self.time_to_retrieve = hist("lmcache:time_to_retrieve", "Time to retrieve from lmcache (seconds)", LMCACHE_TIME_BUCKETS)
        self.store_speed = hist("lmcache:store_speed", "Store speed (tokens per second)", LMCACHE_SPEED_BUCKETS)
        self.retrieve_speed = hist("lmcache:retrieve_speed", "Retrieve speed (tokens per second)", LMCACHE_SPEED_BUCKETS)

        # label children, looked up once (see EngineMetrics.child)
        self._c: dict[str, Any] = {name: metric.labels(**self._lv) for name, metric in vars(self).items()
                   if isinstance(metric, (Counter, Gauge, Histogram))}

    def lv(self) -> dict[str, str]:
        return dict(self._lv)

    def record_lookup(self, total: int, hit: int) -> None:
        c = self._c
        c["num_lookup_requests"].inc()
        c["num_lookup_tokens"].inc(total)
        c["num_lookup_hits"].inc(hit)
        c["num_prompt_tokens"].inc(total)
        c["lookup_hit_rate"].set(hit / total if total else 0.0)

    def record_store(self, tokens: int, seconds: float) -> None:
        c = self._c
        c["num_store_requests"].inc()
        c["num_stored_tokens"].inc(tokens)
        c["time_to_store"].observe(seconds)
        if seconds > 0:
            c["store_speed"].observe(tokens / seconds)

    def record_retrieve(self, requested: int, hit: int, seconds: float) -> None:
        c = self._c
        c["num_retrieve_requests"].inc()
        c["num_requested_tokens"].inc(requested)
        c["num_hit_tokens"].inc(hit)
        c["retrieve_hit_rate"].set(hit / requested if requested else 0.0)
        c["time_to_retrieve"].observe(seconds)
        if seconds > 0 and hit:
            c["retrieve_speed"].observe(hit / seconds)


class NixlMetrics:
    """vLLM's NixlConnector families (only a NixlConnector engine exports them)."""

    def __init__(self, registry: CollectorRegistry, lv: dict[str, str]) -> None:
        names = list(lv)
        self._lv = lv
        self.xfer_time = Histogram(
            "vllm:nixl_xfer_time_seconds", "Histogram of transfer duration for NIXL KV Cache transfers.",
            names, buckets=TTFT_BUCKETS, registry=registry)
        self.post_time = Histogram(
            "vllm:nixl_post_time_seconds", "Histogram of transfer post time for NIXL KV Cache transfers.",
            names, buckets=TTFT_BUCKETS, registry=registry)
        self.bytes_transferred = Histogram(
            "vllm:nixl_bytes_transferred", "Histogram of bytes transferred per NIXL KV Cache transfers.",
            names, buckets=[2.0**k for k in range(10, 34, 2)], registry=registry)
        self.num_descriptors = Histogram(
            "vllm:nixl_num_descriptors", "Histogram of number of descriptors per NIXL KV Cache transfers.",
            names, buckets=[2.0**k for k in range(0, 16)], registry=registry)
        self.failed_transfers = Counter(
            "vllm:nixl_num_failed_transfers", "Number of failed NIXL KV Cache transfers.", names, registry=registry)
        self.failed_notifications = Counter(
            "vllm:nixl_num_failed_notifications", "Number of failed NIXL KV Cache notifications.", names,
            registry=registry)
        for metric in (self.xfer_time, self.post_time, self.bytes_transferred, self.num_descriptors,
                       self.failed_transfers, self.failed_notifications):
            metric.labels(**lv)

    def record(self, seconds: float, post_seconds: float, nbytes: int, descriptors: int) -> None:
        self.xfer_time.labels(**self._lv).observe(seconds)
        self.post_time.labels(**self._lv).observe(post_seconds)
        self.bytes_transferred.labels(**self._lv).observe(nbytes)
        self.num_descriptors.labels(**self._lv).observe(descriptors)
