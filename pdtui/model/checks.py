"""Checks across instances and PD consistency: the mistakes nobody else catches.

Every rule returns Problems; none of them touches the machine (see hostchecks). The LMCache
PD rules are in lmcachechecks, environment and secret rules in envchecks.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from pdtui.model import compat, envchecks, lmcachechecks
from pdtui.model.ports import port_claims
from pdtui.model.problems import Problem
from pdtui.model.schema import InstanceSpec, Profile
from pdtui.model.secret import (
    MASK,
    is_secret,
    is_secret_name,  # noqa: F401  (re-exported: callers import it from here)
)
from pdtui.text import plural

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


def check_profile(profile: Profile, profile_dir: Path | None = None) -> list[Problem]:
    """All semantic problems of a schema-valid profile."""
    problems: list[Problem] = []
    for rule in (
        _unique_names,
        _unique_ports,
        _gpu_assignment,
        _tensor_parallel,
        _decoder_ports,
        lmcachechecks.hash_seed,
        lmcachechecks.partial_chunks,
        lmcachechecks.rpc_names,
        _prometheus_dirs,
        lmcachechecks.lmcache_keys,
        _vllm_flags,
        _bind_addresses,
        envchecks.env_names,
        envchecks.nul_bytes,
        envchecks.secrets,
        envchecks.stray_secrets,
        envchecks.api_keys,
    ):
        problems.extend(rule(profile))
    problems.extend(lmcachechecks.buffer_alignment(profile, profile_dir))
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
                f"tensor_parallel_size is {inst.tensor_parallel_size} but {plural(len(inst.gpus), 'GPU')} {'is' if len(inst.gpus) == 1 else 'are'} listed",
                inst.tensor_parallel_size,
                f"list {plural(inst.tensor_parallel_size, 'GPU')} in gpus, or set tensor_parallel_size: {len(inst.gpus)}",
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
                what = "missing" if not ports else f"has {plural(len(ports), 'port')} for TP {tp}"
                yield Problem(
                    _path(profile, dec, field),
                    f"{field} {what}",
                    ports or None,
                    f"one port per TP rank: {plural(tp, 'port')}, e.g. {_example_ports(7300 if 'init' in field else 7400, tp)}",
                )


def _example_ports(base: int, n: int) -> list[int]:
    return list(range(base, base + n))



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
