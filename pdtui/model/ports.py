"""Every TCP port a deployment listens on, with the profile path that sets it: one list that
the one-box port rules (checks.py) and the per-node rules (checks_cluster.py) both read."""

from __future__ import annotations

from pdtui.model import effective
from pdtui.model.schema import DecoderSpec, InstanceSpec, Profile


def _path(profile: Profile, instance: InstanceSpec, field: str = "") -> str:
    base = profile.instance_path(instance)
    return f"{base}.{field}" if field else base


def port_claims(profile: Profile) -> list[tuple[int, str, str]]:
    """Every TCP port the deployment will listen on: (port, profile path, what it is)."""
    claims: list[tuple[int, str, str]] = [
        (profile.proxy.port, "proxy.port", "the proxy's HTTP port"),
    ]
    if profile.mode == "lmcache-pd":
        claims.append((profile.proxy.zmq_port, "proxy.zmq_port", "the proxy's ZMQ notification port"))
    for inst in profile.instances():
        claims.append((inst.port, _path(profile, inst, "port"), f"{inst.name}'s HTTP port"))
        if profile.mode == "lmcache-pd" and isinstance(inst, DecoderSpec):
            for i, p in enumerate(inst.nixl_init_ports):
                claims.append((p, _path(profile, inst, f"nixl_init_ports[{i}]"), f"{inst.name}'s NIXL init port (rank {i})"))
            for i, p in enumerate(inst.nixl_alloc_ports):
                claims.append((p, _path(profile, inst, f"nixl_alloc_ports[{i}]"), f"{inst.name}'s NIXL alloc port (rank {i})"))
        if profile.mode == "nixl":
            base = effective.nixl_side_channel_port(profile, inst)
            for rank in range(inst.tensor_parallel_size):
                claims.append((base + rank, _path(profile, inst, "nixl_side_channel_port"), f"{inst.name}'s NIXL side channel (rank {rank})"))
        if profile.mode == "lmcache-pd":
            for i, p in enumerate(effective.internal_api_ports(profile, inst)):
                what = "scheduler" if i == 0 else f"worker {i - 1}"
                claims.append((p, _path(profile, inst, "lmcache.internal_api_server_port_start"), f"{inst.name}'s LMCache internal API server ({what})"))
    return claims
