"""The LMCache PD rules of `validate`: one hash seed, whole chunks, one RPC name per
instance, LMCache keys it knows, and a PD buffer that holds whole chunks of KV.

Split from checks.py (which runs them): these are the mistakes that make a PD deployment
hang or silently never hit, each with what LMCache would do.
"""

from __future__ import annotations

import difflib
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from pdtui.clipaths import expand_user

from pdtui.model import effective
from pdtui.model.problems import Problem
from pdtui.model.schema import InstanceSpec, ModelShape, Profile


def _path(profile: Profile, instance: InstanceSpec, field: str = "") -> str:
    base = profile.instance_path(instance)
    return f"{base}.{field}" if field else base


KNOWN_LMCACHE_KEYS = {
    "chunk_size", "local_cpu", "max_local_cpu_size", "max_local_disk_size", "local_disk",
    "remote_url", "remote_serde", "save_unfull_chunk", "save_decode_cache", "use_layerwise",
    "pre_caching_hash_algorithm", "blocking_timeout_secs", "py_enable_gc", "store_location",
    "retrieve_locations", "extra_config", "min_retrieve_tokens", "enable_pd", "pd_role",
    "pd_buffer_size", "pd_buffer_device", "pd_peer_host", "pd_peer_init_port", "pd_peer_alloc_port",
    "pd_peer_query_port", "pd_proxy_host", "pd_proxy_port", "pd_allocation_timeout_sec",
    "pd_shutdown_timeout_sec", "pd_condition_poll_interval_sec", "pd_max_prefill_len",
    "pd_backend_mode", "pd_skip_proxy_notification", "pd_bidirectional", "transfer_channel",
    "nixl_backends", "nixl_buffer_size", "nixl_buffer_device", "internal_api_server_enabled",
    "internal_api_server_host", "internal_api_server_port_start", "enable_p2p", "enable_controller",
    "lmcache_instance_id", "cache_policy", "numa_mode", "priority_limit", "enable_async_loading",
}
LEGACY_LMCACHE_KEYS = {
    "enable_nixl": "the spring-2025 key; current LMCache uses enable_pd (pdtui sets it)",
    "nixl_role": "renamed to pd_role (pdtui sets it from the instance's role)",
    "nixl_receiver_host": "gone since summer 2025; pdtui sets pd_peer_host",
    "nixl_receiver_port": "gone since summer 2025; use the decoder's nixl_init_ports",
    "nixl_enable_gc": "gone since summer 2025",
    "enable_xpyd": "renamed to enable_pd (pdtui sets it)",
    "nixl_peer_host": "renamed to pd_peer_host (pdtui sets it)",
    "nixl_peer_init_port": "renamed to pd_peer_init_port: use the decoder's nixl_init_ports",
    "nixl_peer_alloc_port": "renamed to pd_peer_alloc_port: use the decoder's nixl_alloc_ports",
    "nixl_proxy_host": "renamed to pd_proxy_host (pdtui sets it from proxy.zmq_host)",
    "nixl_proxy_port": "renamed to pd_proxy_port (pdtui sets it from proxy.zmq_port)",
    "nixl_peer_port": "deprecated; use the decoder's nixl_init_ports",
}


def hash_seed(profile: Profile) -> Iterable[Problem]:
    if profile.mode != "lmcache-pd":
        return
    seeds: dict[str, list[InstanceSpec]] = defaultdict(list)
    for inst in profile.instances():
        seed = profile.effective_env(inst).get("PYTHONHASHSEED")
        if seed is None:
            yield Problem(
                _path(profile, inst, "env.PYTHONHASHSEED"),
                "PYTHONHASHSEED is not set",
                None,
                "set env: {PYTHONHASHSEED: 0} for the whole deployment: LMCache's chunk keys are Python hashes, "
                "and with different seeds the decoder silently never hits",
            )
        elif seed == "random" or not seed.isdigit():
            yield Problem(
                _path(profile, inst, "env.PYTHONHASHSEED"),
                "PYTHONHASHSEED must be a fixed number",
                seed,
                "a number such as 0, the same for every prefiller and decoder",
            )
        else:
            seeds[seed].append(inst)
    if len(seeds) > 1:
        summary = "; ".join(f"{seed}: {', '.join(i.name for i in insts)}" for seed, insts in sorted(seeds.items()))
        for seed, insts in sorted(seeds.items())[1:]:
            for inst in insts:
                yield Problem(
                    _path(profile, inst, "env.PYTHONHASHSEED"),
                    f"PYTHONHASHSEED differs between instances ({summary})",
                    seed,
                    "use one value everywhere or the decoder never hits the prefiller's KV",
                )


def partial_chunks(profile: Profile) -> Iterable[Problem]:
    if profile.mode != "lmcache-pd":
        return
    for pre in profile.prefillers:
        if effective.discard_partial_chunks(pre):
            yield Problem(
                _path(profile, pre, "kv.discard_partial_chunks"),
                "partial-chunk discarding is on",
                True,
                "set it to false: a prompt shorter than chunk_size stores nothing, no notification reaches the proxy, and the request hangs",
            )
        if profile.effective_lmcache(pre).save_unfull_chunk is False:
            yield Problem(
                _path(profile, pre, "lmcache.save_unfull_chunk"),
                "save_unfull_chunk is false",
                False,
                "set it to true (current LMCache forces it for PD; older releases drop the last partial chunk and short prompts hang)",
                "warning",
            )
    for dec in profile.decoders:
        if effective.discard_partial_chunks(dec):
            yield Problem(
                _path(profile, dec, "kv.discard_partial_chunks"),
                "partial-chunk discarding is on",
                True,
                "set it to false on decoders too: the last partial chunk would never be looked up",
                "warning",
            )
        if effective.skip_last_n_tokens(dec) == 0:
            yield Problem(
                _path(profile, dec, "kv.skip_last_n_tokens"),
                "skip_last_n_tokens is 0",
                0,
                "use 1: the decoder receives prompt + the prefiller's first token, whose KV was never stored (LMCache PR #978)",
                "warning",
            )
        lm = profile.effective_lmcache(dec)
        extra = lm.extra or {}
        if extra.get("remote_url"):
            yield Problem(_path(profile, dec, "lmcache.extra.remote_url"), "remote_url must be null with PD", extra["remote_url"], "remove it")
    for inst in profile.instances():
        extra = profile.effective_lmcache(inst).extra or {}
        if extra.get("save_decode_cache"):
            yield Problem(_path(profile, inst, "lmcache.extra.save_decode_cache"), "save_decode_cache must stay false with PD", True, "remove it")
        if inst in profile.prefillers and extra.get("remote_url"):
            yield Problem(_path(profile, inst, "lmcache.extra.remote_url"), "remote_url must be null with PD", extra["remote_url"], "remove it")
        if extra.get("pd_skip_proxy_notification"):
            yield Problem(
                _path(profile, inst, "lmcache.extra.pd_skip_proxy_notification"),
                "the prefiller would never notify the proxy",
                True,
                "remove it: pdtui's proxy waits for LMCache's notifications",
            )


def rpc_names(profile: Profile) -> Iterable[Problem]:
    if profile.mode != "lmcache-pd":
        return
    seen: dict[str, InstanceSpec] = {}
    for inst in profile.instances():
        name = effective.rpc_name(profile, inst)
        if name in seen:
            yield Problem(
                _path(profile, inst, "kv.lmcache_rpc_port"),
                f"lmcache_rpc_port {name!r} is also used by {seen[name].name}",
                name,
                "every instance on a host needs its own name (it names an IPC socket; a clash gives cross-talk or 'Address already in use')",
            )
        else:
            seen[name] = inst


def lmcache_keys(profile: Profile) -> Iterable[Problem]:
    if profile.mode != "lmcache-pd":
        return
    places = [("lmcache.extra", profile.lmcache.extra or {})]
    for inst in profile.instances():
        places.append((_path(profile, inst, "lmcache.extra"), inst.lmcache.extra or {}))
    from pdtui.model.loader import DERIVED_LMCACHE_KEYS

    for base, extra in places:
        for key in extra:
            path = f"{base}.{key}"
            if key in LEGACY_LMCACHE_KEYS:
                yield Problem(path, f"{key} is an old LMCache key", extra[key], LEGACY_LMCACHE_KEYS[key])
            elif key in DERIVED_LMCACHE_KEYS:
                yield Problem(path, f"{key} is set by pdtui", extra[key], DERIVED_LMCACHE_KEYS[key])
            elif key not in KNOWN_LMCACHE_KEYS:
                close = difflib.get_close_matches(key, sorted(KNOWN_LMCACHE_KEYS), n=1, cutoff=0.7)
                hint = f"did you mean {close[0]!r}?" if close else "LMCache would log 'Unknown configuration key' and ignore it"
                yield Problem(path, f"unknown LMCache key {key!r}", extra[key], hint, "warning")


# --- pd_buffer_size alignment ----------------------------------------------------------------

def chunk_kv_bytes(shape: ModelShape, chunk_size: int, tensor_parallel_size: int) -> int:
    """Bytes of one chunk's KV on one TP rank: K and V, every layer, this rank's heads."""
    heads_per_rank = max(shape.num_kv_heads // tensor_parallel_size, 1)
    return 2 * shape.num_layers * chunk_size * heads_per_rank * shape.head_dim * shape.dtype_bytes


def model_shape(profile: Profile, profile_dir: Path | None) -> ModelShape | None:
    """The profile's model_shape, else read from a local model's config.json, else None."""
    if profile.model_shape:
        return profile.model_shape
    model_path = expand_user(profile.model)
    if not model_path.is_absolute() and profile_dir is not None and not model_path.exists():
        model_path = profile_dir / model_path
    config_file = model_path / "config.json"
    try:
        if not config_file.is_file():
            return None
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return None
    config = config.get("text_config", config)
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads", heads))
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    dtype_bytes = 4 if "32" in dtype else 1 if "8" in dtype else 2
    return ModelShape(num_layers=layers, num_kv_heads=kv_heads, head_dim=head_dim, dtype_bytes=dtype_bytes)


def buffer_alignment(profile: Profile, profile_dir: Path | None) -> Iterable[Problem]:
    if profile.mode != "lmcache-pd":
        return
    shape = model_shape(profile, profile_dir)
    for inst in profile.instances():
        lm = profile.effective_lmcache(inst)
        path = _path(profile, inst, "lmcache.pd_buffer_size")
        if lm.pd_buffer_size is None:
            yield Problem(path, "pd_buffer_size is not set", None, "LMCache requires it on both sides, e.g. 1GiB on prefillers, 2GiB on decoders")
            continue
        if shape is None:
            continue
        chunk = chunk_kv_bytes(shape, lm.chunk_size or 256, inst.tensor_parallel_size)
        size = lm.pd_buffer_size
        if size < chunk:
            yield Problem(path, f"smaller than one chunk's KV ({chunk} bytes)", size, f"at least {chunk}")
        elif size % chunk:
            lower = size // chunk * chunk
            yield Problem(
                path,
                f"not a multiple of one chunk's KV size ({chunk} bytes = 2 × {shape.num_layers} layers × "
                f"{lm.chunk_size or 256} tokens × {max(shape.num_kv_heads // inst.tensor_parallel_size, 1)} KV heads × "
                f"{shape.head_dim} × {shape.dtype_bytes} bytes)",
                size,
                f"use {lower} or {lower + chunk}",
            )
