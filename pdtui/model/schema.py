"""The deployment profile: one PD deployment, typed.

Unknown keys are errors everywhere (a typo must not pass silently, unlike
LMCache's own loader which only logs "Unknown configuration key"). Settings
that can be given deployment-wide (`vllm`, `lmcache`) are merged into each
instance field by field: what an instance sets wins.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

import pdtui.constants as C
from pdtui.model.units import parse_size

PD_MODES = C.MODES
ENGINES = ("vllm", "sim")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


def _size(value: Any) -> Any:
    return None if value is None else parse_size(value)


def _env_value(value: Any) -> Any:
    # YAML turns `PYTHONHASHSEED: 0` into an int; environment values are strings.
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return str(value)
    return value


ByteSize = Annotated[int, BeforeValidator(_size), Field(ge=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
EnvValue = Annotated[str, BeforeValidator(_env_value)]
Env = dict[str, EnvValue]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class VllmSettings(StrictModel):
    """vLLM flags pdtui renders itself; anything else goes in extra_args."""

    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=1)
    max_num_seqs: int | None = Field(None, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=1)
    block_size: int | None = Field(None, ge=1)
    dtype: str | None = None
    enforce_eager: bool | None = None
    enable_prefix_caching: bool | None = None
    trust_remote_code: bool | None = None
    extra_args: list[str] | None = None


class LmcacheSettings(StrictModel):
    """LMCache keys pdtui knows; `extra` carries any other key to the YAML as-is."""

    chunk_size: int | None = Field(None, ge=1)
    local_cpu: bool | None = None
    max_local_cpu_size: float | None = Field(None, ge=0)
    max_local_disk_size: float | None = Field(None, ge=0)
    local_disk: str | None = None
    save_unfull_chunk: bool | None = None
    transfer_channel: Literal["nixl", "mooncake"] | None = None
    pd_buffer_size: ByteSize | None = None
    pd_buffer_device: Literal["cuda", "cpu"] | None = None
    pd_backend_mode: Literal["sync", "async"] | None = None
    pd_allocation_timeout_sec: float | None = Field(None, gt=0)
    pd_max_prefill_len: int | None = Field(None, ge=0)
    nixl_backends: list[str] | None = None
    use_layerwise: bool | None = None
    internal_api_server_enabled: bool | None = None
    internal_api_server_host: str | None = None
    internal_api_server_port_start: Port | None = None
    extra: dict[str, Any] | None = None


class KvTransferSettings(StrictModel):
    """What goes into vLLM's --kv-transfer-config for this instance."""

    kv_connector: str | None = None  # default from the mode
    kv_role: Literal["kv_producer", "kv_consumer", "kv_both"] | None = None  # default from the role
    lmcache_rpc_port: str | None = None  # default producer<N> / consumer<N>
    discard_partial_chunks: bool | None = None  # default false: true makes short prompts hang
    skip_last_n_tokens: int | None = Field(None, ge=0)  # default 1 on decoders
    use_native: bool | None = None
    extra_config: dict[str, Any] | None = None


class SimSettings(StrictModel):
    """Behaviour of a simulated engine (engine: sim); ignored for real vLLM."""

    startup_s: float | None = Field(None, ge=0)
    prefill_us_per_token: float | None = Field(None, ge=0)
    decode_ms_per_token: float | None = Field(None, ge=0)
    faults: list[str] | None = None

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, faults: list[str] | None) -> list[str] | None:
        if faults is None:
            return faults
        pattern = re.compile(r"^(oom|hang|drop_notif|ignore_sigterm|crash_after=\d+|slow_start=\d+(\.\d+)?)$")
        for fault in faults:
            if not pattern.match(fault):
                raise ValueError(
                    f"unknown fault {fault!r}; valid: oom, hang, drop_notif, ignore_sigterm, crash_after=N, slow_start=S"
                )
        return faults


class NodeSpec(StrictModel):
    """A machine of a multi-node deployment (see docs/cluster.md)."""

    name: str = Field(pattern=NAME_PATTERN)
    # Where the other machines reach this one. On Slurm it may stay empty: the allocated
    # node's NodeAddr is used.
    address: str | None = None
    gpus: int = Field(8, ge=0)  # GPUs this node has (TP and GPU indices are checked against it)
    interface: str | None = None  # TCP interface: NCCL/GLOO_SOCKET_IFNAME, and UCX_NET_DEVICES
    rdma_devices: list[str] | None = None  # UCX_NET_DEVICES, e.g. [mlx5_0:1]


class TransportSettings(StrictModel):
    """How KV crosses machines (NIXL over UCX). Only rendered for multi-node profiles."""

    ucx_tls: str | None = None  # default for multi-node: rc,cuda_copy,cuda_ipc,tcp


class SlurmCluster(StrictModel):
    """Run the deployment as one Slurm job: every instance a job step (docs/cluster.md)."""

    type: Literal["slurm"]
    partition: str | None = None
    account: str | None = None
    time: str | None = Field(None, pattern=r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # sbatch --time
    proxy_on: Literal["first-node", "submit-host"] = "first-node"
    python: str | None = None  # interpreter on the nodes (default: this one, on the shared filesystem)
    cpus_per_instance: int = Field(8, ge=1)  # srun --cpus-per-task of each engine step (vLLM needs several)
    sbatch_args: list[str] = Field(default_factory=list)  # e.g. [--qos=high, --exclusive]
    srun_args: list[str] = Field(default_factory=list)  # added to every instance's step, e.g. [--mem=0]


class InstanceSpec(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    node: str | None = None  # the name of a node in `nodes` (multi-node profiles)
    gpus: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    port: Port
    tensor_parallel_size: int = Field(1, ge=1)
    shared_gpus: bool = False  # sharing a GPU with another instance is intended
    nixl_side_channel_port: Port | None = None  # nixl mode: VLLM_NIXL_SIDE_CHANNEL_PORT
    startup_timeout_s: float = Field(C.ENGINE_STARTUP_TIMEOUT_S, gt=0)
    vllm: VllmSettings = Field(default_factory=VllmSettings)
    lmcache: LmcacheSettings = Field(default_factory=LmcacheSettings)
    kv: KvTransferSettings = Field(default_factory=KvTransferSettings)
    sim: SimSettings = Field(default_factory=SimSettings)
    env: Env = Field(default_factory=dict)


class PrefillerSpec(InstanceSpec):
    pass


class DecoderSpec(InstanceSpec):
    # LMCache pd_peer_init_port / pd_peer_alloc_port: one per TP rank.
    nixl_init_ports: list[Port] = Field(default_factory=list)
    nixl_alloc_ports: list[Port] = Field(default_factory=list)


class ProxyTimeouts(StrictModel):
    tokenize: float = Field(C.PROXY_TIMEOUT_TOKENIZE_S, gt=0)
    prefill: float = Field(C.PROXY_TIMEOUT_PREFILL_S, gt=0)
    kv: float = Field(C.PROXY_TIMEOUT_KV_S, gt=0)
    decode: float = Field(C.PROXY_TIMEOUT_DECODE_S, gt=0)


class ProxyClientLimits(StrictModel):
    """What one client connection may take from the proxy (`pdtui proxy --client-*`)."""

    header_timeout: float = Field(C.PROXY_CLIENT_HEADER_TIMEOUT_S, gt=0)  # s, request headers
    body_timeout: float = Field(C.PROXY_CLIENT_BODY_TIMEOUT_S, gt=0)  # s, whole body (408)
    idle_timeout: float = Field(C.PROXY_CLIENT_IDLE_TIMEOUT_S, gt=0)  # s, kept-alive and idle
    max_connections: int = Field(C.PROXY_MAX_CONNECTIONS, ge=1)
    max_body_bytes: ByteSize = Field(C.PROXY_MAX_BODY_BYTES, ge=1)  # 413 above; "64MiB" works


class ProxySpec(StrictModel):
    """The proxy's settings. Those past `timeouts` reach its argv only when the profile
    sets them (its own defaults are the same values, pdtui/constants.py)."""

    host: str = "127.0.0.1"
    port: Port = 9100
    zmq_host: str | None = None  # default: host
    zmq_port: Port = 7500
    routing: Literal["round-robin", "least-outstanding"] = "round-robin"
    sticky_header: str | None = None
    timeouts: ProxyTimeouts = Field(default_factory=ProxyTimeouts)
    startup_timeout_s: float = Field(C.PROXY_STARTUP_TIMEOUT_S, gt=0)
    client: ProxyClientLimits = Field(default_factory=ProxyClientLimits)
    # Stream the prefiller's first token before the KV wait and the decode (LMCache's variant).
    first_token_from_prefiller: bool = C.PROXY_FIRST_TOKEN_FROM_PREFILLER
    # A prefiller whose KV notifications time out this many requests in a row is not routed
    # to until a probe request (every degraded_probe_interval seconds) gets them.
    kv_timeouts_to_degrade: int = Field(C.PROXY_KV_TIMEOUTS_TO_DEGRADE, ge=1)
    degraded_probe_interval: float = Field(C.PROXY_DEGRADED_PROBE_INTERVAL_S, gt=0)
    env: Env = Field(default_factory=dict)


class ModelShape(StrictModel):
    """Enough of the model's architecture to size KV chunks (optional)."""

    num_layers: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    dtype_bytes: int = Field(2, ge=1, le=8)


class Profile(StrictModel):
    version: Literal[1] = 1
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    model: str = Field(min_length=1)
    served_model_name: str | None = None
    model_shape: ModelShape | None = None
    mode: Literal["lmcache-pd", "nixl"] = "lmcache-pd"
    engine: Literal["vllm", "sim"] = "vllm"
    # How to start vLLM: ["vllm"], a path, or an interpreter + module
    # (a `pip install --target` install has no usable `vllm` script).
    vllm_command: list[str] = Field(default_factory=lambda: ["vllm"], min_length=1)
    vllm_version: str | None = Field(None, pattern=r"^\d+\.\d+(\.\d+)?")
    host: str = "127.0.0.1"
    proxy: ProxySpec = Field(default_factory=ProxySpec)
    env: Env = Field(default_factory=dict)
    vllm: VllmSettings = Field(default_factory=VllmSettings)
    lmcache: LmcacheSettings = Field(default_factory=LmcacheSettings)
    prefillers: list[PrefillerSpec] = Field(min_length=1)
    decoders: list[DecoderSpec] = Field(min_length=1)
    # Beyond one box (docs/cluster.md); both absent = a single-box profile, as before.
    nodes: list[NodeSpec] | None = None
    transport: TransportSettings | None = None
    cluster: SlurmCluster | None = None
    # Names whose values are secret beyond the ones pdtui recognises by itself: environment
    # variables, vLLM flags (--my-token) or lmcache.extra / kv.extra_config keys.
    secrets: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)

    def instances(self) -> list[InstanceSpec]:
        return [*self.prefillers, *self.decoders]

    def instance_path(self, instance: InstanceSpec) -> str:
        """The dotted path of an instance, e.g. 'decoders[1]'."""
        for i, p in enumerate(self.prefillers):
            if p is instance:
                return f"prefillers[{i}]"
        for i, d in enumerate(self.decoders):
            if d is instance:
                return f"decoders[{i}]"
        raise ValueError(f"{instance.name} is not part of this profile")

    def effective_vllm(self, instance: InstanceSpec) -> VllmSettings:
        return _merged(self.vllm, instance.vllm)

    def effective_lmcache(self, instance: InstanceSpec) -> LmcacheSettings:
        return _merged(self.lmcache, instance.lmcache)

    def effective_env(self, instance: InstanceSpec) -> dict[str, str]:
        return {**self.env, **instance.env}


def role_of(instance: InstanceSpec) -> str:
    return "decoder" if isinstance(instance, DecoderSpec) else "prefiller"


def _merged(base: StrictModel, override: StrictModel):
    update = override.model_dump(exclude_unset=True)
    merged = base.model_copy(update=update)
    # dict-valued escape hatches merge key by key rather than replacing.
    for field in ("extra", "extra_config"):
        if field in type(base).model_fields:
            a, b = getattr(base, field), getattr(override, field)
            if a and b:
                merged = merged.model_copy(update={field: {**a, **b}})
    return merged
