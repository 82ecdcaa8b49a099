"""The values an instance really runs with, after defaults and deployment-wide settings.

Validation and rendering both use these functions, so what is checked is what
is started.
"""

from __future__ import annotations

from typing import Any

from pdtui.model.placement import instance_host
from pdtui.model.secret import lmcache_secret_env
from pdtui.model.schema import DecoderSpec, InstanceSpec, Profile, role_of

LMCACHE_CONNECTOR = "LMCacheConnectorV1"
NIXL_CONNECTOR = "NixlConnector"
NIXL_SIDE_CHANNEL_BASE = 5600  # vLLM's default VLLM_NIXL_SIDE_CHANNEL_PORT
LMCACHE_INTERNAL_API_DEFAULT_START = 6999


def role_index(profile: Profile, instance: InstanceSpec) -> int:
    """1-based position of the instance among its role (prefiller1, decoder2, ...)."""
    group = profile.decoders if isinstance(instance, DecoderSpec) else profile.prefillers
    for i, item in enumerate(group):
        if item is instance:
            return i + 1
    raise ValueError(f"{instance.name} is not part of this profile")


def rpc_name(profile: Profile, instance: InstanceSpec) -> str:
    """LMCache's lmcache_rpc_port: an IPC socket name, unique per instance on a host."""
    if instance.kv.lmcache_rpc_port:
        return instance.kv.lmcache_rpc_port
    prefix = "consumer" if isinstance(instance, DecoderSpec) else "producer"
    return f"{prefix}{role_index(profile, instance)}"


def kv_role(profile: Profile, instance: InstanceSpec) -> str:
    if instance.kv.kv_role:
        return instance.kv.kv_role
    if profile.mode == "nixl":
        return "kv_both"  # vLLM's NixlConnector docs and toy proxy use kv_both on both sides
    return "kv_consumer" if isinstance(instance, DecoderSpec) else "kv_producer"


def skip_last_n_tokens(instance: InstanceSpec) -> int | None:
    if instance.kv.skip_last_n_tokens is not None:
        return instance.kv.skip_last_n_tokens
    # The proxy sends the decoder prompt + the prefiller's first token, whose KV was
    # never stored; without this the decoder's lookup misses (LMCache PR #978).
    return 1 if isinstance(instance, DecoderSpec) else None


def discard_partial_chunks(instance: InstanceSpec) -> bool:
    return bool(instance.kv.discard_partial_chunks)


def kv_transfer_config(profile: Profile, instance: InstanceSpec) -> dict[str, Any]:
    """The dict that becomes vLLM's --kv-transfer-config JSON."""
    if profile.mode == "nixl":
        config: dict[str, Any] = {
            "kv_connector": instance.kv.kv_connector or NIXL_CONNECTOR,
            "kv_role": kv_role(profile, instance),
        }
        if instance.kv.extra_config:
            config["kv_connector_extra_config"] = dict(instance.kv.extra_config)
        return config
    extra: dict[str, Any] = {
        "discard_partial_chunks": discard_partial_chunks(instance),
        "lmcache_rpc_port": rpc_name(profile, instance),
    }
    skip = skip_last_n_tokens(instance)
    if skip is not None:
        extra["skip_last_n_tokens"] = skip
    if instance.kv.use_native is not None:
        extra["use_native"] = instance.kv.use_native
    extra.update(instance.kv.extra_config or {})
    return {
        "kv_connector": instance.kv.kv_connector or LMCACHE_CONNECTOR,
        "kv_role": kv_role(profile, instance),
        "kv_connector_extra_config": extra,
    }


def zmq_host(profile: Profile) -> str:
    return profile.proxy.zmq_host or profile.proxy.host


def nixl_side_channel_port(profile: Profile, instance: InstanceSpec) -> int:
    if instance.nixl_side_channel_port:
        return instance.nixl_side_channel_port
    # Each instance reserves tp ports (one per rank) above the base, in profile order.
    port = NIXL_SIDE_CHANNEL_BASE
    for other in profile.instances():
        if other is instance:
            return port
        port += max(other.tensor_parallel_size, 1)
    raise ValueError(f"{instance.name} is not part of this profile")


def internal_api_ports(profile: Profile, instance: InstanceSpec) -> list[int]:
    """Ports LMCache's internal API server takes when enabled: start (scheduler), start+1+i (worker i)."""
    lm = profile.effective_lmcache(instance)
    if not lm.internal_api_server_enabled:
        return []
    start = lm.internal_api_server_port_start or LMCACHE_INTERNAL_API_DEFAULT_START
    return [start] + [start + 1 + rank for rank in range(instance.tensor_parallel_size)]


# Order of keys in the rendered YAML follows LMCache's example files.
_LMCACHE_KEY_ORDER = (
    "chunk_size",
    "local_cpu",
    "max_local_cpu_size",
    "max_local_disk_size",
    "local_disk",
    "save_unfull_chunk",
    "use_layerwise",
)
_LMCACHE_PD_KEY_ORDER = (
    "pd_buffer_size",
    "pd_buffer_device",
    "pd_backend_mode",
    "pd_allocation_timeout_sec",
    "pd_max_prefill_len",
    "nixl_backends",
    "internal_api_server_enabled",
    "internal_api_server_host",
    "internal_api_server_port_start",
)


def lmcache_config(profile: Profile, instance: InstanceSpec) -> dict[str, Any] | None:
    """The LMCache YAML of an instance as data (None in nixl mode: no LMCache there).

    Secret keys are not in it: they reach LMCache through `lmcache_secret_env`."""
    config = _lmcache_config_with_secrets(profile, instance)
    return None if config is None else lmcache_secret_env(config, profile.secrets)[0]


def lmcache_env(profile: Profile, instance: InstanceSpec) -> dict[str, str]:
    """LMCACHE_<KEY> variables carrying the secret LMCache keys (LMCache reads them on top of the file)."""
    config = _lmcache_config_with_secrets(profile, instance)
    return {} if config is None else lmcache_secret_env(config, profile.secrets)[1]


def _lmcache_config_with_secrets(profile: Profile, instance: InstanceSpec) -> dict[str, Any] | None:
    if profile.mode != "lmcache-pd":
        return None
    lm = profile.effective_lmcache(instance)
    values = lm.model_dump(exclude_none=True)
    config: dict[str, Any] = {}
    for key in _LMCACHE_KEY_ORDER:
        if key in values:
            config[key] = values[key]
    config["enable_pd"] = True
    config["transfer_channel"] = lm.transfer_channel or "nixl"
    if isinstance(instance, DecoderSpec):
        config["pd_role"] = "receiver"
        config["pd_peer_host"] = instance_host(profile, instance)
        config["pd_peer_init_port"] = _port_list(instance.nixl_init_ports)
        config["pd_peer_alloc_port"] = _port_list(instance.nixl_alloc_ports)
    else:
        config["pd_role"] = "sender"
        config["pd_proxy_host"] = zmq_host(profile)
        config["pd_proxy_port"] = profile.proxy.zmq_port
    for key in _LMCACHE_PD_KEY_ORDER:
        if key in values:
            config[key] = values[key]
    if "nixl_backends" not in config:
        config["nixl_backends"] = ["UCX"]
    for key, value in (lm.extra or {}).items():
        config[key] = value
    # LMCache reads sizes in GB as floats; 0.0 and 0 mean the same, 0 reads better.
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in config.items()}


def _port_list(ports: list[int]) -> int | list[int]:
    # LMCache reads a list per TP rank; a single rank is written as a scalar exactly as
    # LMCache's examples do (and as ran on real vLLM 0.26 + LMCache 0.5.3).
    return ports[0] if len(ports) == 1 else list(ports)


def served_model_name(profile: Profile) -> str:
    return profile.served_model_name or profile.model


def role(instance: InstanceSpec) -> str:
    return role_of(instance)
