"""From a valid profile to exactly what will run: argv, environment, LMCache YAML.

Pure functions: nothing is started and nothing is written here (see
`write_rendered` for the one function that writes files).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pdtui.model import compat, effective, placement
from pdtui.model.schema import DecoderSpec, InstanceSpec, Profile, role_of
from pdtui.model.secret import API_KEY_ENV, MASK, SIM_SECRET_KEYS, is_secret, mask_env, scrub, split_secret_args

__all__ = ["MASK", "DeploymentPlan", "InstancePlan", "ProxyPlan", "mask_env", "render_plan", "write_rendered"]


@dataclass(frozen=True)
class InstancePlan:
    name: str
    role: str  # "prefiller" | "decoder"
    gpus: tuple[int, ...]
    host: str
    port: int
    tensor_parallel_size: int
    argv: tuple[str, ...]
    env: dict[str, str]  # set on top of the caller's environment
    lmcache_config: dict[str, Any] | None
    lmcache_config_path: str | None
    prometheus_dir: str
    startup_timeout_s: float
    shared_gpus: bool
    ports: tuple[tuple[int, str], ...]  # (port, what) this instance listens on
    secret_keys: frozenset[str] = field(default=frozenset(), repr=False)  # env keys holding secrets

    @property
    def health_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}/health"

    @property
    def lmcache_yaml(self) -> str | None:
        return None if self.lmcache_config is None else lmcache_yaml_text(self.lmcache_config)


@dataclass(frozen=True)
class ProxyPlan:
    host: str
    port: int
    zmq_port: int | None
    argv: tuple[str, ...]
    env: dict[str, str]
    startup_timeout_s: float
    secret_keys: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def health_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}/health"


@dataclass(frozen=True)
class DeploymentPlan:
    profile_name: str
    mode: str
    engine: str
    model: str
    proxy: ProxyPlan
    instances: tuple[InstancePlan, ...]
    output_dir: str
    # Every secret value of the deployment: no text pdtui writes may contain one (`scrub`).
    secret_values: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def instance(self, name: str) -> InstancePlan:
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    def start_order(self) -> list[InstancePlan]:
        """Decoders before prefillers, as LMCache's examples start them (after the proxy)."""
        return [i for i in self.instances if i.role == "decoder"] + [i for i in self.instances if i.role == "prefiller"]

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        def env(e: dict[str, str], secret_keys: frozenset[str]) -> dict[str, str]:
            return mask_env(e, secret_keys) if mask_secrets else dict(e)

        return {
            "profile": self.profile_name,
            "mode": self.mode,
            "engine": self.engine,
            "model": self.model,
            "output_dir": self.output_dir,
            "proxy": {
                "host": self.proxy.host,
                "port": self.proxy.port,
                "zmq_port": self.proxy.zmq_port,
                "argv": list(self.proxy.argv),
                "env": env(self.proxy.env, self.proxy.secret_keys),
            },
            "instances": [
                {
                    "name": i.name,
                    "role": i.role,
                    "gpus": list(i.gpus),
                    "port": i.port,
                    "tensor_parallel_size": i.tensor_parallel_size,
                    "argv": list(i.argv),
                    "env": env(i.env, i.secret_keys),
                    "lmcache_config_path": i.lmcache_config_path,
                    "prometheus_dir": i.prometheus_dir,
                    "ports": [list(p) for p in i.ports],
                }
                for i in self.instances
            ],
        }


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def lmcache_yaml_text(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def engine_command(profile: Profile, python: str) -> list[str]:
    if profile.engine == "sim":
        return [python, "-m", "pdtui.sim"]
    return list(profile.vllm_command)


def instance_argv(profile: Profile, instance: InstanceSpec, python: str = sys.executable) -> list[str]:
    settings = profile.effective_vllm(instance)
    host = placement.instance_host(profile, instance)
    argv = engine_command(profile, python) + ["serve", profile.model, "--host", host, "--port", str(instance.port)]
    if profile.served_model_name:
        argv += ["--served-model-name", profile.served_model_name]
    if instance.tensor_parallel_size != 1:
        argv += ["--tensor-parallel-size", str(instance.tensor_parallel_size)]
    if settings.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", _num(settings.gpu_memory_utilization)]
    if settings.max_model_len is not None:
        argv += ["--max-model-len", str(settings.max_model_len)]
    if settings.max_num_seqs is not None:
        argv += ["--max-num-seqs", str(settings.max_num_seqs)]
    if settings.max_num_batched_tokens is not None:
        argv += ["--max-num-batched-tokens", str(settings.max_num_batched_tokens)]
    if settings.block_size is not None:
        argv += ["--block-size", str(settings.block_size)]
    if settings.dtype:
        argv += ["--dtype", settings.dtype]
    if settings.enforce_eager:
        argv.append("--enforce-eager")
    if settings.enable_prefix_caching is not None:
        argv.append("--enable-prefix-caching" if settings.enable_prefix_caching else "--no-enable-prefix-caching")
    if settings.trust_remote_code:
        argv.append("--trust-remote-code")
    argv += compat.request_logging_flags(profile.vllm_version)
    argv += ["--kv-transfer-config", json.dumps(effective.kv_transfer_config(profile, instance), separators=(",", ":"))]
    # Secret flags never reach the command line (every local user can read it): `--api-key X`
    # travels as VLLM_API_KEY (see instance_env); validate refuses the ones with no such route.
    argv += split_secret_args(settings.extra_args or [], profile.secrets)[0]
    return argv


def _num(value: float) -> str:
    return f"{value:g}"


def instance_env(profile: Profile, instance: InstanceSpec, output_dir: Path) -> dict[str, str]:
    env: dict[str, str] = {
        # NVML numbers GPUs by PCI bus id; CUDA by default does not. Make them agree so the
        # GPU picked in the NVML view is the GPU the engine uses.
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in instance.gpus),
        "PYTHONUNBUFFERED": "1",
        # A private directory per instance, or lmcache:* never reaches vLLM's /metrics
        # (seen on real vLLM 0.26 + LMCache 0.5.3).
        "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir(output_dir, instance)),
    }
    if profile.mode == "lmcache-pd":
        env["LMCACHE_CONFIG_FILE"] = str(lmcache_config_path(output_dir, instance))
    else:
        env["VLLM_NIXL_SIDE_CHANNEL_HOST"] = placement.instance_host(profile, instance)
        env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(effective.nixl_side_channel_port(profile, instance))
    if profile.engine == "sim":
        env.update(_sim_env(instance))
    env.update(placement.transport_env(profile, instance))  # multi-node only; the profile's env wins
    env.update(profile.effective_env(instance))
    lmcache_secrets = effective.lmcache_env(profile, instance)
    env.update(lmcache_secrets)
    if profile.engine == "sim" and lmcache_secrets:
        # pdtui's simulator echoes its LMCache config as LMCache does: these keys it masks.
        env[SIM_SECRET_KEYS] = ",".join(sorted(k[len("LMCACHE_"):].lower() for k in lmcache_secrets))
    env.update(split_secret_args(profile.effective_vllm(instance).extra_args or [], profile.secrets)[1])
    return env


def _secret_keys(profile: Profile, instance: InstanceSpec | None, env: dict[str, str]) -> frozenset[str]:
    moved: set[str] = set()
    if instance is not None:
        moved |= set(effective.lmcache_env(profile, instance))
        moved |= set(split_secret_args(profile.effective_vllm(instance).extra_args or [], profile.secrets)[1])
    return frozenset(k for k, v in env.items() if v and (k in moved or is_secret(k, v, profile.secrets)))


def _proxy_api_key(instances: list[InstancePlan]) -> dict[str, str]:
    """The engines' API key for the proxy, which sends it as `Authorization: Bearer` to
    every backend: by environment, as the engines get it (validate refuses two keys)."""
    keys = sorted({i.env[API_KEY_ENV] for i in instances if i.env.get(API_KEY_ENV)})
    return {API_KEY_ENV: keys[0]} if keys else {}


def _sim_env(instance: InstanceSpec) -> dict[str, str]:
    sim = instance.sim
    env: dict[str, str] = {}
    if sim.startup_s is not None:
        env["PDTUI_SIM_STARTUP_S"] = _num(sim.startup_s)
    if sim.prefill_us_per_token is not None:
        env["PDTUI_SIM_PREFILL_US_PER_TOKEN"] = _num(sim.prefill_us_per_token)
    if sim.decode_ms_per_token is not None:
        env["PDTUI_SIM_DECODE_MS_PER_TOKEN"] = _num(sim.decode_ms_per_token)
    if sim.faults:
        env["PDTUI_SIM_FAULT"] = ",".join(sim.faults)
    return env


def lmcache_config_path(output_dir: Path, instance: InstanceSpec) -> Path:
    return output_dir / f"lmcache-{instance.name}.yaml"


def prometheus_dir(output_dir: Path, instance: InstanceSpec) -> Path:
    return output_dir / "prometheus" / instance.name


def proxy_argv(profile: Profile, python: str = sys.executable) -> list[str]:
    proxy = profile.proxy
    argv = [python, "-m", "pdtui.proxy", "--mode", profile.mode, "--host", proxy.host, "--port", str(proxy.port)]
    if profile.mode == "lmcache-pd":
        argv += ["--zmq-host", effective.zmq_host(profile), "--zmq-port", str(proxy.zmq_port)]
    for p in profile.prefillers:
        argv += ["--prefiller", f"http://{_url_host(placement.instance_host(profile, p))}:{p.port}"]
    for d in profile.decoders:
        argv += ["--decoder", f"http://{_url_host(placement.instance_host(profile, d))}:{d.port}"]
        if profile.mode == "lmcache-pd":
            argv += ["--decoder-init-ports", ",".join(str(x) for x in d.nixl_init_ports)]
            argv += ["--decoder-alloc-ports", ",".join(str(x) for x in d.nixl_alloc_ports)]
    argv += ["--routing", proxy.routing]
    if proxy.sticky_header:
        argv += ["--sticky-header", proxy.sticky_header]
    t = proxy.timeouts
    argv += [
        "--timeout-tokenize", _num(t.tokenize),
        "--timeout-prefill", _num(t.prefill),
        "--timeout-kv", _num(t.kv),
        "--timeout-decode", _num(t.decode),
    ]
    return argv + _proxy_options_set(proxy)


def _proxy_options_set(proxy) -> list[str]:
    """The proxy flags whose profile field is set (an unset one keeps the proxy's default,
    the same value: pdtui/constants.py), so profiles that set none render as before."""
    argv: list[str] = []
    client = proxy.client
    for name, flag in (("header_timeout", "--client-header-timeout"), ("body_timeout", "--client-body-timeout"),
                        ("idle_timeout", "--client-idle-timeout"), ("max_connections", "--max-connections"),
                        ("max_body_bytes", "--max-body-bytes")):
        if name in client.model_fields_set:
            argv += [flag, _arg(getattr(client, name))]
    if "first_token_from_prefiller" in proxy.model_fields_set and proxy.first_token_from_prefiller:
        argv.append("--first-token-from-prefiller")
    for name, flag in (("kv_timeouts_to_degrade", "--kv-timeouts-to-degrade"),
                        ("degraded_probe_interval", "--degraded-probe-interval")):
        if name in proxy.model_fields_set:
            argv += [flag, _arg(getattr(proxy, name))]
    return argv


def _arg(value: float) -> str:
    return str(value) if isinstance(value, int) else _num(value)  # 67108864, not 6.71089e+07


def render_plan(profile: Profile, output_dir: str | Path, python: str | None = None) -> DeploymentPlan:
    """The plan of a profile that passed validation. Paths are under output_dir."""
    out = Path(output_dir)
    python = python or sys.executable
    instances = []
    for inst in [*profile.prefillers, *profile.decoders]:
        lm_config = effective.lmcache_config(profile, inst)
        env = instance_env(profile, inst, out)
        ports: list[tuple[int, str]] = [(inst.port, "http")]
        if isinstance(inst, DecoderSpec) and profile.mode == "lmcache-pd":
            ports += [(p, "nixl-init") for p in inst.nixl_init_ports]
            ports += [(p, "nixl-alloc") for p in inst.nixl_alloc_ports]
        instances.append(
            InstancePlan(
                name=inst.name,
                role=role_of(inst),
                gpus=tuple(inst.gpus),
                host=placement.instance_host(profile, inst),
                port=inst.port,
                tensor_parallel_size=inst.tensor_parallel_size,
                argv=tuple(instance_argv(profile, inst, python)),
                env=env,
                lmcache_config=lm_config,
                lmcache_config_path=str(lmcache_config_path(out, inst)) if lm_config is not None else None,
                prometheus_dir=str(prometheus_dir(out, inst)),
                startup_timeout_s=inst.startup_timeout_s,
                shared_gpus=inst.shared_gpus,
                ports=tuple(ports),
                secret_keys=_secret_keys(profile, inst, env),
            )
        )
    proxy_env = {"PYTHONUNBUFFERED": "1", **profile.proxy.env, **_proxy_api_key(instances)}
    proxy = ProxyPlan(
        host=profile.proxy.host,
        port=profile.proxy.port,
        zmq_port=profile.proxy.zmq_port if profile.mode == "lmcache-pd" else None,
        argv=tuple(proxy_argv(profile, python)),
        env=proxy_env,
        startup_timeout_s=profile.proxy.startup_timeout_s,
        secret_keys=_secret_keys(profile, None, proxy_env),
    )
    secret_values = {proxy_env[k] for k in proxy.secret_keys}
    for i in instances:
        secret_values |= {i.env[k] for k in i.secret_keys}
    return DeploymentPlan(
        profile_name=profile.name,
        mode=profile.mode,
        engine=profile.engine,
        model=profile.model,
        proxy=proxy,
        instances=tuple(instances),
        output_dir=str(out),
        secret_values=frozenset(secret_values),
    )


def write_rendered(plan: DeploymentPlan, output_dir: str | Path, durable: bool = True) -> list[Path]:
    """Write the LMCache YAMLs, launch.sh and plan.json into output_dir (durable=False:
    no fsync, for a run directory: see atomic_write).

    No secret is in any of them: they travel in the processes' environment, launch.sh
    requires them from its caller's, and every text is scrubbed of the plan's secret values
    as well (a secret pasted into a field pdtui did not expect still never lands on disk).
    """
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return write_lmcache_configs(plan, durable) + write_plan_records(plan, output_dir, durable)


def write_lmcache_configs(plan: DeploymentPlan, durable: bool = True) -> list[Path]:
    """The LMCache YAML of each instance that has one (what the engines read at start)."""
    from pdtui.model.files import atomic_write

    written: list[Path] = []
    for inst in plan.instances:
        if inst.lmcache_config is not None and inst.lmcache_config_path:
            path = Path(inst.lmcache_config_path)
            atomic_write(path, scrub(inst.lmcache_yaml or "", plan.secret_values), durable=durable)
            written.append(path)
    return written


def write_plan_records(plan: DeploymentPlan, output_dir: str | Path, durable: bool = True) -> list[Path]:
    """launch.sh and plan.json: for the operator (and a re-attach), not read by the engines."""
    from pdtui.model.files import atomic_write
    from pdtui.model.launch_script import launch_script

    out = Path(output_dir)
    written: list[Path] = []
    script = out / "launch.sh"
    atomic_write(script, scrub(launch_script(plan), plan.secret_values), mode=0o755, durable=durable)
    written.append(script)
    plan_file = out / "plan.json"
    atomic_write(plan_file, scrub(json.dumps(plan.to_dict(mask_secrets=True), indent=2) + "\n", plan.secret_values), durable=durable)
    written.append(plan_file)
    return written


def environment_for(plan_env: dict[str, str], base: dict[str, str] | None = None) -> dict[str, str]:
    """The full environment of a process: the caller's, with the plan's values on top."""
    env = dict(os.environ if base is None else base)
    env.update(plan_env)
    return env
