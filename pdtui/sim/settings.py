"""What a simulated engine was asked to be: argv (as `vllm serve`), environment, LMCache YAML.

The simulator is started with exactly the argv pdtui renders for vLLM, so this parser accepts
vLLM's spelling of the flags that matter and ignores every other flag, as vLLM ignores flags
it does not act on. Bad input raises `SimConfigError` with a message naming the flag, file or
variable, the value, and what would be valid.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from pdtui.sim.faults import Faults, FaultSpecError, parse_faults

# The recorded H200's total memory (fixtures/nvml/nvml_h200.json): simulated GPUs are H200s.
DEFAULT_GPU_TOTAL_BYTES = 150_754_820_096


class SimConfigError(ValueError):
    """A flag, variable or config file the simulator cannot run with."""


@dataclass(frozen=True)
class LMCacheSettings:
    """The PD-relevant part of the LMCache config (file, then `LMCACHE_*` env overrides)."""

    config_file: str | None
    raw: dict[str, Any]
    chunk_size: int = 256
    enable_pd: bool = False
    pd_role: str | None = None
    pd_proxy_host: str | None = None
    pd_proxy_port: int | None = None
    pd_peer_host: str | None = None
    pd_peer_init_port: tuple[int, ...] = ()
    pd_peer_alloc_port: tuple[int, ...] = ()
    pd_buffer_size: int | None = None
    pd_skip_proxy_notification: bool = False
    save_unfull_chunk: bool = False


@dataclass(frozen=True)
class SimSettings:
    model: str
    served_model_name: str
    host: str
    port: int
    tensor_parallel_size: int
    max_model_len: int
    gpu_memory_utilization: float
    max_num_seqs: int
    kv_transfer_config: dict[str, Any] | None
    lmcache: LMCacheSettings | None
    gpus: tuple[int, ...]
    prometheus_multiproc_dir: str | None
    startup_s: float
    prefill_us_per_token: float
    decode_ms_per_token: float
    faults: Faults
    gpu_dir: str | None
    gpu_total_bytes: int
    kv_capacity_tokens: int
    stats_interval_s: float
    pd_timeout_s: float
    nixl_side_channel_host: str
    nixl_side_channel_port: int
    argv: tuple[str, ...] = field(default_factory=tuple)
    # vLLM's `--api-key` or $VLLM_API_KEY: /v1/* then needs `Authorization: Bearer <key>`.
    api_key: str | None = field(default=None, repr=False)

    @property
    def kv_connector(self) -> str | None:
        if not self.kv_transfer_config:
            return None
        return self.kv_transfer_config.get("kv_connector")

    @property
    def kv_role(self) -> str | None:
        if not self.kv_transfer_config:
            return None
        return self.kv_transfer_config.get("kv_role")

    @property
    def extra_config(self) -> dict[str, Any]:
        extra = (self.kv_transfer_config or {}).get("kv_connector_extra_config") or {}
        return extra if isinstance(extra, dict) else {}

    @property
    def skip_last_n_tokens(self) -> int:
        try:
            return max(0, int(self.extra_config.get("skip_last_n_tokens", 0)))
        except (TypeError, ValueError):
            return 0

    @property
    def is_lmcache_pd(self) -> bool:
        return (
            self.kv_connector in ("LMCacheConnectorV1", "LMCacheConnector")
            and self.lmcache is not None
            and self.lmcache.enable_pd
        )

    @property
    def is_nixl(self) -> bool:
        return self.kv_connector in ("NixlConnector", "NixlPullConnector")

    @property
    def role(self) -> str:
        """prefiller | decoder | both, as the GPU usage file names it."""
        if self.is_lmcache_pd and self.lmcache is not None:
            if self.lmcache.pd_role == "sender":
                return "prefiller"
            if self.lmcache.pd_role == "receiver":
                return "decoder"
        if self.kv_role == "kv_producer":
            return "prefiller"
        if self.kv_role == "kv_consumer":
            return "decoder"
        return "both"


def build_serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pdtui.sim serve",
        description="Simulated `vllm serve` (unknown flags are accepted and ignored).",
    )
    parser.add_argument("model", nargs="?", help="model name or path (as vllm serve)")
    parser.add_argument("--model", dest="model_flag", default=None)
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", default="8000")
    parser.add_argument("--served-model-name", "--served_model_name", nargs="+", default=None)
    parser.add_argument(
        "--tensor-parallel-size", "--tensor_parallel_size", "-tp", default="1"
    )
    parser.add_argument("--max-model-len", "--max_model_len", default=None)
    parser.add_argument(
        "--gpu-memory-utilization", "--gpu_memory_utilization", default="0.9"
    )
    parser.add_argument("--max-num-seqs", "--max_num_seqs", default="256")
    parser.add_argument("--kv-transfer-config", "--kv_transfer_config", default=None)
    parser.add_argument("--api-key", "--api_key", default=None)
    return parser


def _int_flag(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SimConfigError(f"{name}: {value!r} is not an integer") from None
    if number < minimum:
        raise SimConfigError(f"{name}: {number} is below the minimum {minimum}")
    return number


def _float_value(name: str, value: str, minimum: float = 0.0, maximum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SimConfigError(f"{name}: {value!r} is not a number") from None
    if number != number or number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SimConfigError(f"{name}: {value!r} must be a number {bound}")
    return number


def parse_kv_transfer_config(text: str | None) -> dict[str, Any] | None:
    if text is None or text == "":
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SimConfigError(
            f"--kv-transfer-config: not valid JSON ({exc.msg} at position {exc.pos}): {text!r:.120}"
        ) from None
    if not isinstance(value, dict):
        raise SimConfigError(f"--kv-transfer-config: expected a JSON object, got {text!r:.120}")
    role = value.get("kv_role")
    if value.get("kv_connector") and role not in ("kv_producer", "kv_consumer", "kv_both"):
        raise SimConfigError(
            f"--kv-transfer-config: kv_role {role!r} is not one of kv_producer, kv_consumer, kv_both"
        )
    return value


_BOOL_TRUE = {"true", "1", "yes", "on"}
_BOOL_FALSE = {"false", "0", "no", "off"}


def _as_bool(key: str, value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _BOOL_TRUE:
        return True
    if text in _BOOL_FALSE:
        return False
    raise SimConfigError(f"{source}: {key}: {value!r} is not a boolean (true/false)")


def _as_port_list(key: str, value: Any, source: str) -> tuple[int, ...]:
    if value is None:
        return ()
    items: list[Any]
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, int):
        items = [value]
    else:
        items = [part for part in str(value).strip("[] ").split(",") if part.strip()]
    ports = []
    for item in items:
        try:
            port = int(str(item).strip())
        except ValueError:
            raise SimConfigError(f"{source}: {key}: {item!r} is not a port number") from None
        if not 1 <= port <= 65535:
            raise SimConfigError(f"{source}: {key}: {port} is not a TCP port (1-65535)")
        ports.append(port)
    return tuple(ports)


# Deprecated LMCache spellings that current LMCache still maps (reference §2.2).
_LMCACHE_ALIASES = {
    "enable_xpyd": "enable_pd",
    "nixl_role": "pd_role",
    "nixl_peer_host": "pd_peer_host",
    "nixl_peer_init_port": "pd_peer_init_port",
    "nixl_peer_alloc_port": "pd_peer_alloc_port",
    "nixl_proxy_host": "pd_proxy_host",
    "nixl_proxy_port": "pd_proxy_port",
    "nixl_buffer_size": "pd_buffer_size",
}


def load_lmcache_settings(env: Mapping[str, str]) -> LMCacheSettings | None:
    """LMCache's precedence: the file named by LMCACHE_CONFIG_FILE, then LMCACHE_<KEY> overrides."""
    raw: dict[str, Any] = {}
    path = env.get("LMCACHE_CONFIG_FILE")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SimConfigError(
                f"LMCACHE_CONFIG_FILE={path}: cannot read it ({exc.strerror or exc})"
            ) from None
        import yaml

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SimConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise SimConfigError(f"{path}: expected a mapping of LMCache keys, got {type(loaded).__name__}")
        raw.update(loaded)
    for name, value in env.items():
        if not name.startswith("LMCACHE_") or name in ("LMCACHE_CONFIG_FILE",):
            continue
        key = name[len("LMCACHE_"):].lower()
        if key in ("log_level", "use_experimental", "disable_banner"):
            continue
        if key == "extra_config":
            try:
                raw[key] = json.loads(value)
            except json.JSONDecodeError:
                raise SimConfigError(f"{name}: not valid JSON: {value!r:.80}") from None
            continue
        raw[key] = value
    for old, new in _LMCACHE_ALIASES.items():
        if old in raw and new not in raw:
            raw[new] = raw[old]
    if not path and not raw:
        return None
    source = path or "LMCACHE_* environment"

    def get_int(key: str, default: int | None) -> int | None:
        if raw.get(key) is None:
            return default
        try:
            return int(raw[key])
        except (TypeError, ValueError):
            raise SimConfigError(f"{source}: {key}: {raw[key]!r} is not an integer") from None

    enable_pd = _as_bool("enable_pd", raw.get("enable_pd", False), source)
    pd_role = raw.get("pd_role")
    if pd_role is not None and pd_role not in ("sender", "receiver", "both"):
        raise SimConfigError(f"{source}: pd_role: {pd_role!r} is not one of sender, receiver, both")
    settings = LMCacheSettings(
        config_file=path,
        raw=raw,
        chunk_size=get_int("chunk_size", 256) or 256,
        enable_pd=enable_pd,
        pd_role=pd_role,
        pd_proxy_host=raw.get("pd_proxy_host"),
        pd_proxy_port=get_int("pd_proxy_port", None),
        pd_peer_host=raw.get("pd_peer_host"),
        pd_peer_init_port=_as_port_list("pd_peer_init_port", raw.get("pd_peer_init_port"), source),
        pd_peer_alloc_port=_as_port_list("pd_peer_alloc_port", raw.get("pd_peer_alloc_port"), source),
        pd_buffer_size=get_int("pd_buffer_size", None),
        pd_skip_proxy_notification=_as_bool(
            "pd_skip_proxy_notification", raw.get("pd_skip_proxy_notification", False), source
        ),
        save_unfull_chunk=True if enable_pd else _as_bool(
            "save_unfull_chunk", raw.get("save_unfull_chunk", False), source
        ),
    )
    if enable_pd:
        # The assertions LMCache's PDConfig makes, with its meaning spelled out.
        if settings.pd_role is None:
            raise SimConfigError(f"{source}: enable_pd is true but pd_role is not set (sender or receiver)")
        if settings.pd_buffer_size is None:
            raise SimConfigError(f"{source}: enable_pd is true but pd_buffer_size is not set")
        if settings.pd_role == "sender" and (not settings.pd_proxy_host or not settings.pd_proxy_port):
            if not settings.pd_skip_proxy_notification:
                raise SimConfigError(
                    f"{source}: pd_role sender needs pd_proxy_host and pd_proxy_port"
                )
        if settings.pd_role == "receiver" and (
            not settings.pd_peer_host or not settings.pd_peer_init_port or not settings.pd_peer_alloc_port
        ):
            raise SimConfigError(
                f"{source}: pd_role receiver needs pd_peer_host, pd_peer_init_port and pd_peer_alloc_port"
            )
    return settings


def _parse_gpus(value: str | None) -> tuple[int, ...]:
    if not value:
        return (0,)
    gpus = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            gpus.append(int(part))
        except ValueError:
            raise SimConfigError(
                f"CUDA_VISIBLE_DEVICES={value!r}: {part!r} is not a GPU index (the simulator takes indices, not UUIDs)"
            ) from None
    return tuple(gpus) or (0,)


def parse_settings(argv: list[str], env: Mapping[str, str] | None = None) -> SimSettings:
    """`argv` is what follows `serve` (MODEL and flags)."""
    env = os.environ if env is None else env
    args, _unknown = build_serve_parser().parse_known_args(argv)
    model = args.model or args.model_flag
    if not model:
        raise SimConfigError("serve: a MODEL is required (vllm serve MODEL --port P ...)")
    port = _int_flag("--port", args.port, 1)
    if port > 65535:
        raise SimConfigError(f"--port: {port} is not a TCP port (1-65535)")
    tp = _int_flag("--tensor-parallel-size", args.tensor_parallel_size, 1)
    max_model_len = _int_flag("--max-model-len", args.max_model_len, 1) if args.max_model_len else 8192
    gmu = _float_value("--gpu-memory-utilization", args.gpu_memory_utilization, 0.01, 1.0)
    max_num_seqs = _int_flag("--max-num-seqs", args.max_num_seqs, 1)
    kv_config = parse_kv_transfer_config(args.kv_transfer_config)
    lmcache = load_lmcache_settings(env)
    try:
        faults = parse_faults(env.get("PDTUI_SIM_FAULT", ""))
    except FaultSpecError as exc:
        raise SimConfigError(str(exc)) from None
    gpus = _parse_gpus(env.get("CUDA_VISIBLE_DEVICES"))

    def env_float(name: str, default: float) -> float:
        value = env.get(name)
        return default if value in (None, "") else _float_value(name, value, 0.0)

    kv_tokens_env = env.get("PDTUI_SIM_KV_TOKENS")
    kv_capacity = (
        _int_flag("PDTUI_SIM_KV_TOKENS", kv_tokens_env, 1)
        if kv_tokens_env
        else 16 * max_model_len
    )
    served = args.served_model_name[0] if args.served_model_name else model
    return SimSettings(
        model=model,
        served_model_name=served,
        host=args.host or "127.0.0.1",
        port=port,
        tensor_parallel_size=tp,
        max_model_len=max_model_len,
        gpu_memory_utilization=gmu,
        max_num_seqs=max_num_seqs,
        kv_transfer_config=kv_config,
        lmcache=lmcache,
        gpus=gpus,
        prometheus_multiproc_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        startup_s=env_float("PDTUI_SIM_STARTUP_S", 3.0),
        prefill_us_per_token=env_float("PDTUI_SIM_PREFILL_US_PER_TOKEN", 20.0),
        decode_ms_per_token=env_float("PDTUI_SIM_DECODE_MS_PER_TOKEN", 8.0),
        faults=faults,
        gpu_dir=env.get("PDTUI_SIM_GPU_DIR") or None,
        gpu_total_bytes=(
            _int_flag("PDTUI_SIM_GPU_TOTAL_BYTES", env["PDTUI_SIM_GPU_TOTAL_BYTES"], 1)
            if env.get("PDTUI_SIM_GPU_TOTAL_BYTES")
            else DEFAULT_GPU_TOTAL_BYTES
        ),
        kv_capacity_tokens=max(kv_capacity, max_model_len),
        stats_interval_s=env_float("PDTUI_SIM_STATS_INTERVAL_S", 10.0),
        pd_timeout_s=env_float("PDTUI_SIM_PD_TIMEOUT_S", 5.0),
        nixl_side_channel_host=env.get("VLLM_NIXL_SIDE_CHANNEL_HOST") or "localhost",
        nixl_side_channel_port=_int_flag(
            "VLLM_NIXL_SIDE_CHANNEL_PORT", env.get("VLLM_NIXL_SIDE_CHANNEL_PORT") or "5600", 1
        ),
        argv=tuple(argv),
        api_key=args.api_key or env.get("VLLM_API_KEY") or None,  # vLLM's order: the flag, then the variable
    )
