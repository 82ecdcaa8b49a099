"""Checks across instances and PD consistency: the mistakes nobody else catches.

Every rule returns Problems; none of them touches the machine (see hostchecks).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from pdtui.model import compat, effective, envchecks
from pdtui.model.ports import port_claims
from pdtui.model.problems import Problem
from pdtui.model.schema import InstanceSpec, ModelShape, Profile
from pdtui.model.secret import (
    MASK,
    is_secret,
    is_secret_name,  # noqa: F401  (re-exported: callers import it from here)
)

# vLLM flags the renderer owns; giving them in extra_args would start a different deployment
# from the one validated.
RENDERED_FLAGS = {
    "--port",
    "--host",
    "--kv-transfer-config",
    "--tensor-parallel-size",
    "-tp",
    "--gpu-memory-utilization",
    "--max-model-len",
    "--served-model-name",
}

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


def check_profile(profile: Profile, profile_dir: Path | None = None) -> list[Problem]:
    """All semantic problems of a schema-valid profile."""
    problems: list[Problem] = []
    for rule in (
        _unique_names,
        _unique_ports,
        _gpu_assignment,
        _tensor_parallel,
        _decoder_ports,
        _hash_seed,
        _partial_chunks,
        _rpc_names,
        _prometheus_dirs,
        _lmcache_keys,
        _vllm_flags,
        _bind_addresses,
        envchecks.env_names,
        envchecks.nul_bytes,
        envchecks.secrets,
        envchecks.stray_secrets,
        envchecks.api_keys,
    ):
        problems.extend(rule(profile))
    problems.extend(_buffer_alignment(profile, profile_dir))
    from pdtui.model.checks_cluster import check_cluster  # multi-node rules (lazy: single-box profiles never load them)

    problems.extend(check_cluster(profile))
    return [_without_secret_value(p, profile.secrets) for p in problems]


def _without_secret_value(problem: Problem, declared: list[str]) -> Problem:
    """Whatever rule found it, a problem never shows a secret (by its key, the profile's
    `secrets:` list, or its shape)."""
    key = problem.path.rsplit(".", 1)[-1]
    if problem.value not in (None, MASK) and is_secret(key, problem.value, declared):
        return dataclasses.replace(problem, value=MASK)
    return problem


def _path(profile: Profile, instance: InstanceSpec, field: str = "") -> str:
    base = profile.instance_path(instance)
    return f"{base}.{field}" if field else base


def _unique_names(profile: Profile) -> Iterable[Problem]:
    seen: dict[str, str] = {}
    for inst in profile.instances():
        here = _path(profile, inst, "name")
        if inst.name in seen:
            yield Problem(here, f"instance name already used by {seen[inst.name]}", inst.name, "give every instance its own name")
        else:
            seen[inst.name] = profile.instance_path(inst)


def _unique_ports(profile: Profile) -> Iterable[Problem]:
    if profile.nodes:
        return  # checks_cluster checks ports per node
    first: dict[int, tuple[str, str]] = {}
    for port, path, what in port_claims(profile):
        if port in first and first[port][0] != path:
            other_path, other_what = first[port]
            yield Problem(path, f"port {port} is also {other_what} ({other_path})", port, "every port in a deployment must be different")
        elif port in first:
            yield Problem(path, f"port {port} is used twice by {what}", port, "every port in a deployment must be different")
        else:
            first[port] = (path, what)


def _gpu_assignment(profile: Profile) -> Iterable[Problem]:
    if profile.nodes:
        return  # checks_cluster checks GPUs per node
    owners: dict[int, list[InstanceSpec]] = defaultdict(list)
    for inst in profile.instances():
        seen = set()
        for i, gpu in enumerate(inst.gpus):
            if gpu in seen:
                yield Problem(_path(profile, inst, f"gpus[{i}]"), f"GPU {gpu} is listed twice", gpu, "list each GPU once")
            seen.add(gpu)
            owners[gpu].append(inst)
    for gpu, insts in sorted(owners.items()):
        if len(insts) < 2:
            continue
        names = ", ".join(inst.name for inst in insts)
        if all(inst.shared_gpus for inst in insts):
            yield from _shared_memory(profile, gpu, insts, names)
            continue
        for inst in insts[1:]:
            yield Problem(
                _path(profile, inst, "gpus"),
                f"GPU {gpu} is given to several instances ({names})",
                None,
                "pick another GPU, or set shared_gpus: true on each of them (and lower gpu_memory_utilization so they fit)",
            )


VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


def _shared_memory(profile: Profile, gpu: int, insts: list[InstanceSpec], names: str) -> Iterable[Problem]:
    """Instances sharing a GPU each take their gpu_memory_utilization of it."""
    shares = [profile.effective_vllm(inst).gpu_memory_utilization or VLLM_DEFAULT_GPU_MEMORY_UTILIZATION for inst in insts]
    total = sum(shares)
    if total > 1.0 + 1e-9:
        yield Problem(
            _path(profile, insts[-1], "vllm.gpu_memory_utilization"),
            f"GPU {gpu} is shared by {names} whose gpu_memory_utilization add up to {total:g}",
            None,
            f"together at most 1.0, e.g. {1.0 / len(insts):.2g} each (unset means vLLM's {VLLM_DEFAULT_GPU_MEMORY_UTILIZATION})",
        )


def _tensor_parallel(profile: Profile) -> Iterable[Problem]:
    for inst in profile.instances():
        if inst.tensor_parallel_size != len(inst.gpus):
            yield Problem(
                _path(profile, inst, "tensor_parallel_size"),
                f"tensor_parallel_size is {inst.tensor_parallel_size} but {len(inst.gpus)} GPU(s) are listed",
                inst.tensor_parallel_size,
                f"list {inst.tensor_parallel_size} GPU(s) in gpus, or set tensor_parallel_size: {len(inst.gpus)}",
            )
    if profile.mode == "lmcache-pd":
        p_tps = {p.tensor_parallel_size for p in profile.prefillers}
        for dec in profile.decoders:
            for p in profile.prefillers:
                if p.tensor_parallel_size != dec.tensor_parallel_size:
                    yield Problem(
                        _path(profile, dec, "tensor_parallel_size"),
                        f"decoder TP {dec.tensor_parallel_size} differs from prefiller {p.name}'s TP {p.tensor_parallel_size}",
                        dec.tensor_parallel_size,
                        "in lmcache-pd mode every prefiller rank notifies the proxy once per decoder rank: use the same TP on both sides "
                        f"({sorted(p_tps)})",
                    )
                    break


def _decoder_ports(profile: Profile) -> Iterable[Problem]:
    if profile.mode != "lmcache-pd":
        return
    for dec in profile.decoders:
        tp = dec.tensor_parallel_size
        for field in ("nixl_init_ports", "nixl_alloc_ports"):
            ports = getattr(dec, field)
            if len(ports) != tp:
                what = "missing" if not ports else f"has {len(ports)} port(s) for TP {tp}"
                yield Problem(
                    _path(profile, dec, field),
                    f"{field} {what}",
                    ports or None,
                    f"one port per TP rank: {tp} port(s), e.g. {_example_ports(7300 if 'init' in field else 7400, tp)}",
                )


def _example_ports(base: int, n: int) -> list[int]:
    return list(range(base, base + n))


def _hash_seed(profile: Profile) -> Iterable[Problem]:
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


def _partial_chunks(profile: Profile) -> Iterable[Problem]:
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


def _rpc_names(profile: Profile) -> Iterable[Problem]:
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


def _prometheus_dirs(profile: Profile) -> Iterable[Problem]:
    seen: dict[str, InstanceSpec] = {}
    for inst in profile.instances():
        value = profile.effective_env(inst).get("PROMETHEUS_MULTIPROC_DIR")
        if value is None:
            continue  # the renderer gives each instance a private one
        if value in seen:
            yield Problem(
                _path(profile, inst, "env.PROMETHEUS_MULTIPROC_DIR"),
                f"PROMETHEUS_MULTIPROC_DIR is shared with {seen[value].name}",
                value,
                "remove it (pdtui gives each instance a private directory) or give each instance its own: shared, the "
                "instances' lmcache:* series merge or never reach vLLM's /metrics",
            )
        else:
            seen[value] = inst


def _lmcache_keys(profile: Profile) -> Iterable[Problem]:
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


def _vllm_flags(profile: Profile) -> Iterable[Problem]:
    for inst in profile.instances():
        args = profile.effective_vllm(inst).extra_args or []
        for i, arg in enumerate(args):
            if not arg.startswith("-"):
                continue
            flag = arg.split("=", 1)[0]
            path = _path(profile, inst, f"vllm.extra_args[{i}]")
            if flag in RENDERED_FLAGS:
                yield Problem(path, f"{flag} is rendered by pdtui from the profile", arg, "set the profile field instead")
                continue
            reason = compat.flag_problem(flag, profile.vllm_version)
            if reason:
                yield Problem(path, reason, arg, "remove it" + (" (set vllm_version if you run an older vLLM)" if not profile.vllm_version else ""))
    for i, arg in enumerate(profile.vllm_command):
        if arg == "serve":
            yield Problem(f"vllm_command[{i}]", "vllm_command must not include 'serve'", profile.vllm_command, "e.g. [vllm] or [python3, -m, vllm.entrypoints.cli.main]")


def _bind_addresses(profile: Profile) -> Iterable[Problem]:
    for path, host in (("host", profile.host), ("proxy.host", profile.proxy.host), ("proxy.zmq_host", profile.proxy.zmq_host)):
        if host is None or _is_loopback(host):
            continue
        yield Problem(
            path,
            f"binds to {host}, which is reachable from other machines",
            host,
            "use 127.0.0.1 unless other hosts must reach this deployment (vLLM and the proxy have no authentication by default)",
            "warning",
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- pd_buffer_size alignment ----------------------------------------------------------------

def chunk_kv_bytes(shape: ModelShape, chunk_size: int, tensor_parallel_size: int) -> int:
    """Bytes of one chunk's KV on one TP rank: K and V, every layer, this rank's heads."""
    heads_per_rank = max(shape.num_kv_heads // tensor_parallel_size, 1)
    return 2 * shape.num_layers * chunk_size * heads_per_rank * shape.head_dim * shape.dtype_bytes


def model_shape(profile: Profile, profile_dir: Path | None) -> ModelShape | None:
    """The profile's model_shape, else read from a local model's config.json, else None."""
    if profile.model_shape:
        return profile.model_shape
    model_path = Path(profile.model).expanduser()
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


def _buffer_alignment(profile: Profile, profile_dir: Path | None) -> Iterable[Problem]:
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
