"""vLLM 0.26 + LMCache 0.5.3 start-up, failure and shutdown lines (from fixtures/real-vllm).

Only the milestones an operator (and pdtui's log parser) looks for are reproduced, with the
file:line tags of the recorded logs, so a simulated log reads like the real one.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

from pdtui.model.secret import MASK, SIM_SECRET_KEYS, is_secret
from pdtui.sim.kvcache import ModelShape

if TYPE_CHECKING:
    from pdtui.sim.logfmt import EngineLog
    from pdtui.sim.settings import SimSettings

VLLM_VERSION = "0.26.0"
LMCACHE_VERSION = "0.5.3-g140819c9"
GIB = 1024**3

ROUTES = (
    ("/openapi.json", "GET, HEAD"), ("/docs", "GET, HEAD"), ("/docs/oauth2-redirect", "GET, HEAD"),
    ("/redoc", "GET, HEAD"), ("/load", "GET"), ("/version", "GET"), ("/health", "GET"),
    ("/metrics", "GET"), ("/tokenize", "POST"), ("/detokenize", "POST"), ("/v1/models", "GET"),
    ("/ping", "GET"), ("/ping", "POST"), ("/invocations", "POST"), ("/v1/chat/completions", "POST"),
    ("/v1/completions", "POST"),
)

_BANNER = (
    "",
    "       \u2588     \u2588     \u2588\u2584   \u2584\u2588",
    " \u2584\u2584 \u2584\u2588 \u2588     \u2588     \u2588 \u2580\u2584\u2580 \u2588  version {version}",
    "  \u2588\u2584\u2588\u2580 \u2588     \u2588     \u2588     \u2588  model   {model}",
    "   \u2580\u2580  \u2580\u2580\u2580\u2580\u2580 \u2580\u2580\u2580\u2580\u2580 \u2580     \u2580",
    "",
)


def engine_id() -> str:
    return str(uuid.uuid4())


def _masked(config: dict) -> dict:
    declared = [k for k in os.environ.get(SIM_SECRET_KEYS, "").split(",") if k]
    return {k: (MASK if is_secret(str(k), v, declared) else v) for k, v in config.items()}


def _kv_transfer_repr(settings: SimSettings, eid: str) -> str:
    cfg = settings.kv_transfer_config or {}
    return (
        f"KVTransferConfig(kv_connector={cfg.get('kv_connector')!r}, engine_id={eid!r}, "
        f"kv_buffer_device='cuda', kv_buffer_size=1000000000.0, kv_role={cfg.get('kv_role')!r}, "
        f"kv_rank=None, kv_parallel_size=1, kv_ip='127.0.0.1', kv_port=14579, "
        f"kv_connector_extra_config={_masked(settings.extra_config)!r}, kv_connector_module_path=None, "
        f"enable_permute_local_kv=False, kv_load_failure_policy='fail')"
    )


def api_server_begins(log: EngineLog, settings: SimSettings, eid: str) -> None:
    # The one line real vLLM never prints: whoever reads this log must know it is a simulation.
    log.api(
        "WARNING",
        "pdtui_sim.py:1",
        "SIMULATED ENGINE: this is pdtui's vLLM simulator (no GPU, no model weights); "
        "timings, tokens and KV transfers are simulated.",
    )
    for line in _BANNER:
        log.api("INFO", "api_utils.py:345", line.format(version=VLLM_VERSION, model=settings.model))
    args: dict[str, object] = {"model_tag": settings.model, "port": settings.port, "model": settings.model}
    if settings.host != "127.0.0.1" or "--host" in settings.argv:
        args["host"] = settings.host
    args["max_model_len"] = settings.max_model_len
    args["gpu_memory_utilization"] = settings.gpu_memory_utilization
    if settings.tensor_parallel_size > 1:
        args["tensor_parallel_size"] = settings.tensor_parallel_size
    args_text = repr(args)
    if settings.kv_transfer_config:
        args_text = args_text[:-1] + f", 'kv_transfer_config': {_kv_transfer_repr(settings, eid)}}}"
    log.api("INFO", "api_utils.py:273", f"non-default args: {args_text}")
    log.api("INFO", "model.py:623", "Resolved architecture: LlamaForCausalLM")
    log.api("INFO", "model.py:1788", f"Using max model len {settings.max_model_len}")
    log.api("INFO", "scheduler.py:252", "Chunked prefill is enabled with max_num_batched_tokens=8192.")
    log.api("INFO", "vllm.py:1109", "Asynchronous scheduling is enabled.")


def engine_core_loads_weights(log: EngineLog, settings: SimSettings, shape: ModelShape) -> None:
    log.core(
        "INFO",
        "core.py:116",
        f"Initializing a V1 LLM engine (v{VLLM_VERSION}) with config: model={settings.model!r}, "
        f"speculative_config=None, tokenizer={settings.model!r}, skip_tokenizer_init=False, "
        f"tokenizer_mode=auto, dtype=torch.bfloat16, max_seq_len={settings.max_model_len}, "
        f"tensor_parallel_size={settings.tensor_parallel_size}, pipeline_parallel_size=1, "
        f"data_parallel_size=1, served_model_name={settings.served_model_name}, "
        f"enable_prefix_caching=False, enable_chunked_prefill=True",
    )
    world = settings.tensor_parallel_size
    for rank in range(world):
        log.core(
            "INFO",
            "parallel_state.py:1946",
            f"rank {rank} in world size {world} is assigned as DP rank 0, PP rank 0, PCP rank 0, "
            f"TP rank {rank}, EP rank N/A, EPLB rank N/A",
        )
    log.core("INFO", "gpu_worker.py:378", "Using V2 Model Runner")
    log.core("INFO", "model_runner.py:284", "Loading model from scratch...")
    log.core(
        "INFO",
        "cuda.py:482",
        "Using FLASH_ATTN attention backend out of potential backends: ['FLASH_ATTN', 'TRITON_ATTN', 'FLEX_ATTENTION'].",
    )
    log.core_raw("Loading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]", "err")
    log.core_raw("Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00, 4.12it/s]", "err")
    weights_gib = shape.weight_bytes / max(1, settings.tensor_parallel_size) / GIB
    log.core("INFO", "default_loader.py:430", f"Loading weights took {0.24 + weights_gib / 10:.2f} seconds")
    log.core("INFO", "model_runner.py:305", f"Model loading took {weights_gib:.1f} GiB and {0.5 + weights_gib / 8:.6f} seconds")


def engine_core_allocates_kv(
    log: EngineLog, settings: SimSettings, kv_bytes: int, kv_tokens: int, eid: str
) -> None:
    log.core("INFO", "gpu_worker.py:560", f"Available KV cache memory: {kv_bytes / GIB:.2f} GiB")
    log.core("INFO", "kv_cache_utils.py:2177", f"GPU KV cache size: {kv_tokens:,} tokens")
    log.core(
        "INFO",
        "kv_cache_utils.py:2178",
        f"Maximum concurrency for {settings.max_model_len:,} tokens per request: "
        f"{kv_tokens / settings.max_model_len:.2f}x",
    )
    if settings.kv_connector:
        log.core(
            "INFO",
            "factory.py:62",
            f"Creating v1 connector with name: {settings.kv_connector} and engine_id: {eid}",
        )
        log.core(
            "WARNING",
            "base.py:190",
            "Initializing KVConnectorBase_V1. This API is experimental and subject to change in the future as we iterate the design.",
        )
    if settings.kv_connector in ("LMCacheConnectorV1", "LMCacheConnector"):
        log.core("INFO", "lmcache_connector.py:105", "Initializing latest dev LMCache connector")


def lmcache_initialises(log: EngineLog, settings: SimSettings, shape: ModelShape, chunk_bytes: int) -> None:
    lm = settings.lmcache
    if lm is None:
        return
    chunk = lm.chunk_size
    tp = settings.tensor_parallel_size
    if lm.config_file:
        log.lmcache("INFO", f"Loading LMCache config file {lm.config_file}", "utils.py:110:lmcache.integration.vllm.utils")
    if lm.enable_pd:
        if str(lm.raw.get("save_unfull_chunk", "")).lower() in ("true", "1"):
            log.lmcache(
                "INFO",
                "PD mode enabled with save_unfull_chunk=True - all KV cache including partial chunks will be transferred to decode node",
                "config.py:772:lmcache.v1.config",
            )
        else:
            log.lmcache(
                "WARNING",
                "PD (Peer-to-Peer Disaggregation) requires save_unfull_chunk=True for complete KV cache transfer. "
                "Automatically setting save_unfull_chunk=True.",
                "config.py:765:lmcache.v1.config",
            )
    heads = max(1, shape.num_kv_heads // tp)
    log.lmcache(
        "INFO",
        f"num_layer: {shape.num_layers}, chunk_size: {chunk}, num_kv_head (per gpu): {heads}, "
        f"head_size: {shape.head_size}, hidden_dim (D) for KV (per gpu): {heads * shape.head_size}, "
        f"use mla: False, kv shape: {shape.kv_shape(chunk, tp)}, num_draft_layers: 0",
        "vllm_service_factory.py:111:lmcache.integration.vllm.vllm_service_factory",
    )
    log.lmcache("INFO", "Creating LMCacheEngine instance vllm-instance", "cache_engine.py:2109:lmcache.v1.cache_engine")
    config = {"chunk_size": chunk}
    config.update({k: v for k, v in lm.raw.items() if k != "chunk_size"})
    if lm.enable_pd:
        config["save_unfull_chunk"] = True
    # Real LMCache echoes its whole config here; pdtui's simulator masks what is secret.
    config = _masked(config)
    log.lmcache("INFO", f"Creating LMCacheEngine with config: {config!r}", "cache_engine.py:2115:lmcache.v1.cache_engine")
    for rank in range(tp):
        log.lmcache(
            "INFO",
            f"LMCache initialized for role KVConnectorRole.WORKER with version {LMCACHE_VERSION}, "
            f"vllm version {VLLM_VERSION}, lmcache cache_engine metadata: LMCacheMetadata("
            f"model_name={settings.model!r}, world_size={tp}, local_world_size={tp}, worker_id={rank}, "
            f"local_worker_id={rank}, kv_dtype=torch.bfloat16, kv_shape={shape.kv_shape(chunk, tp)}, "
            f"use_mla=False, role='worker', served_model_name={settings.served_model_name!r}, chunk_size={chunk})",
            "vllm_v1_adapter.py:492:lmcache.integration.vllm.vllm_v1_adapter",
        )
    if lm.enable_pd:
        log.lmcache("INFO", "Setting cuda device to cuda:0 ", "pd_backend_async.py:445:lmcache.v1.storage_backend.pd_backend_async")
        log.core_raw(_nixl_line("Backend UCX was instantiated", "_api.py:405"))
        if lm.pd_role == "receiver":
            log.lmcache("INFO", "Starting async initialization loop", "nixl_channel.py:344:lmcache.v1.transfer_channel.nixl_channel")
            buffer = lm.pd_buffer_size or 0
            log.lmcache(
                "INFO",
                f"PDBackendAsync receiver: reservation-based admission control initialized with "
                f"total_chunks={max(1, buffer // max(1, chunk_bytes))} (buffer={buffer} bytes, chunk={chunk_bytes} bytes)",
                "pd_backend_async.py:423:lmcache.v1.storage_backend.pd_backend_async",
            )
        log.lmcache("INFO", "Created backend: PDBackend (PDBackendAsync)", "storage_manager.py:1296:lmcache.v1.storage_backend.storage_manager")
        if lm.pd_role == "receiver":
            for port in lm.pd_peer_alloc_port[:tp] or lm.pd_peer_alloc_port:
                log.lmcache("INFO", f"Async mem alloc server listening on port {port}", "pd_backend_async.py:1187:lmcache.v1.storage_backend.pd_backend_async")


def _nixl_line(message: str, source: str) -> str:
    import time

    return f"{time.strftime('%Y-%m-%d %H:%M:%S')} NIXL INFO    {source} {message}"


def engine_core_ready(log: EngineLog, settings: SimSettings, took_s: float) -> None:
    log.core("INFO", "core.py:347", f"init engine (profile, create kv cache, warmup model) took {took_s:.2f} s")


def api_server_ready(log: EngineLog, settings: SimSettings) -> None:
    log.api("INFO", "api_server.py:673", "Supported tasks: ['generate']")
    log.api("INFO", "api_server.py:677", f"Starting vLLM server on http://{settings.host}:{settings.port}")
    log.api("INFO", "launcher.py:37", "Available routes are:")
    for path, methods in ROUTES:
        log.api("INFO", "launcher.py:46", f"Route: {path}, Methods: {methods}")


def uvicorn_started(log: EngineLog, pid: int) -> None:
    log.uvicorn(f"Started server process [{pid}]")
    log.uvicorn("Waiting for application startup.")
    log.uvicorn("Application startup complete.")


def shutdown_lines(log: EngineLog, signal_name: str) -> None:
    log.core("INFO", "core.py:1313", f"[shutdown] EngineCore: trigger received signal={signal_name}")
    log.api("INFO", "launcher.py:100", "[shutdown] API server: shutdown triggered")
    log.api("INFO", "launcher.py:116", "[shutdown] API server: stopping engine client mode=abort timeout=0s")
    log.core("INFO", "core.py:1432", "[shutdown] EngineCore: start mode=abort timeout=0s")
    log.core("INFO", "core.py:1326", "[shutdown] EngineCore: exiting busy loop")
    log.api("INFO", "core_client.py:662", "[shutdown] MPClient: complete")
    log.api("INFO", "launcher.py:149", "[shutdown] API server: shutting down FastAPI HTTP server")
    log.uvicorn("Shutting down")
    log.uvicorn("Waiting for application shutdown.")
    log.uvicorn("Application shutdown complete.")


def _core_traceback_frames() -> list[str]:
    return [
        'File "/usr/lib/python3/site-packages/vllm/v1/engine/core.py", line 1299, in run_engine_core',
        "    engine_core = EngineCoreProc(*args, engine_index=dp_rank, **kwargs)",
        'File "/usr/lib/python3/site-packages/vllm/v1/engine/core.py", line 125, in __init__',
        "    self.model_executor = executor_class(vllm_config)",
        'File "/usr/lib/python3/site-packages/vllm/v1/engine/core.py", line 247, in _initialize_kv_caches',
        "    kv_cache_configs = get_kv_cache_configs(vllm_config, kv_cache_specs, available_gpu_memory)",
        'File "/usr/lib/python3/site-packages/vllm/v1/worker/gpu_worker.py", line 512, in determine_available_memory',
        "    self.model_runner.profile_run()",
        'File "/usr/lib/python3/site-packages/vllm/v1/worker/gpu/model_runner.py", line 3412, in _dummy_run',
        "    hidden_states = self.model(input_ids=input_ids, positions=positions)",
    ]


def oom_failure(log: EngineLog, settings: SimSettings, tried_bytes: int, free_bytes: int, total_bytes: int) -> None:
    """What vLLM prints when the EngineCore runs out of GPU memory while profiling."""
    gpu = settings.gpus[0] if settings.gpus else 0
    message = (
        f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {tried_bytes / GIB:.2f} GiB. "
        f"GPU {gpu} has a total capacity of {total_bytes / GIB:.2f} GiB of which {free_bytes / 2**20:.2f} MiB is free. "
        f"Including non-PyTorch memory, this process has {(total_bytes - free_bytes) / GIB:.2f} GiB memory in use. "
        f"Of the allocated memory {(total_bytes - free_bytes) / GIB * 0.97:.2f} GiB is allocated by PyTorch, and "
        f"{(total_bytes - free_bytes) / GIB * 0.01:.2f} GiB is reserved by PyTorch but unallocated. If reserved but "
        f"unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid "
        f"fragmentation.  See documentation for Memory Management  "
        f"(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
    )
    log.core("ERROR", "core.py:1330", "EngineCore failed to start.")
    log.core("ERROR", "core.py:1330", "Traceback (most recent call last):")
    for frame in _core_traceback_frames():
        log.core("ERROR", "core.py:1330", "  " + frame)
    log.core("ERROR", "core.py:1330", message)
    log.core_raw("Process EngineCore:", "err")
    log.core_raw("Traceback (most recent call last):", "err")
    for frame in _core_traceback_frames():
        log.core_raw("  " + frame, "err")
    log.core_raw(message, "err")
    _api_server_engine_failed(log)


def _api_server_engine_failed(log: EngineLog) -> None:
    log.api_raw("Traceback (most recent call last):")
    for frame in (
        'File "/usr/lib/python3/site-packages/vllm/entrypoints/openai/api_server.py", line 759, in run_server',
        "    await run_server_worker(listen_address, sock, args, **uvicorn_kwargs)",
        'File "/usr/lib/python3/site-packages/vllm/v1/engine/utils.py", line 1272, in wait_for_engine_startup',
        "    raise RuntimeError(",
    ):
        log.api_raw("  " + frame)
    log.api_raw("RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}")


def crash_lines(log: EngineLog) -> None:
    """A fatal CUDA error in the EngineCore while serving, and the API server giving up."""
    log.core("ERROR", "core.py:1138", "EngineCore encountered a fatal error.")
    log.core("ERROR", "core.py:1138", "Traceback (most recent call last):")
    log.core("ERROR", "core.py:1138", '  File "/usr/lib/python3/site-packages/vllm/v1/engine/core.py", line 1129, in run_engine_core')
    log.core("ERROR", "core.py:1138", "    engine_core.run_busy_loop()")
    log.core("ERROR", "core.py:1138", '  File "/usr/lib/python3/site-packages/vllm/v1/engine/core.py", line 1160, in _process_engine_step')
    log.core("ERROR", "core.py:1138", "    outputs, model_executed = self.step_fn()")
    log.core("ERROR", "core.py:1138", "torch.AcceleratorError: CUDA error: an illegal memory access was encountered")
    log.core("ERROR", "core.py:1138", "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.")
    log.api("ERROR", "async_llm.py:544", "AsyncLLM output_handler failed.")
    log.api_raw("Traceback (most recent call last):")
    log.api_raw('  File "/usr/lib/python3/site-packages/vllm/v1/engine/async_llm.py", line 498, in output_handler')
    log.api_raw("    outputs = await engine_core.get_output_async()")
    log.api_raw("vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.")
    log.uvicorn("Shutting down")
    log.uvicorn("Waiting for application shutdown.")
    log.uvicorn("Application shutdown complete.")
    log.uvicorn("Finished server process [%d]" % log.pid)
