"""Where each instance runs and which address the other machines use to reach it.

A single-box profile (no `nodes:`) renders exactly as before: every instance is on
`profile.host`. With `nodes:`, an instance binds to its node's address, the proxy and the
other instances reach it there, and the transport settings a multi-node NIXL/UCX run needs
are added to its environment (the profile's own `env` still wins).
"""

from __future__ import annotations

import ipaddress

from pdtui.model.schema import InstanceSpec, NodeSpec, Profile

# UCX transports across machines: RDMA reliable connection first, CUDA copies on the
# node, TCP as the fallback that always works (slow). Single-box profiles keep theirs.
MULTI_NODE_UCX_TLS = "rc,cuda_copy,cuda_ipc,tcp"
RDMA_TRANSPORTS = ("rc", "dc", "ud", "ib", "rc_x", "dc_x", "ud_x", "rc_v", "ud_v", "all")


def is_multi_node(profile: Profile) -> bool:
    """More than one machine: two or more nodes (a single node is still one box)."""
    return profile.nodes is not None and len(profile.nodes) > 1


def node_named(profile: Profile, name: str | None) -> NodeSpec | None:
    for node in profile.nodes or ():
        if node.name == name:
            return node
    return None


def node_of(profile: Profile, instance: InstanceSpec) -> NodeSpec | None:
    """The instance's node; a one-node profile puts every instance on its only node."""
    if instance.node is not None:
        return node_named(profile, instance.node)
    if profile.nodes and len(profile.nodes) == 1:
        return profile.nodes[0]
    return None


def instance_host(profile: Profile, instance: InstanceSpec) -> str:
    """The address the instance binds to and is reached at."""
    node = node_of(profile, instance)
    if node is not None and node.address:
        return node.address
    return profile.host


def proxy_node(profile: Profile) -> NodeSpec | None:
    """The node whose address the proxy listens on (None: a machine outside `nodes`)."""
    for node in profile.nodes or ():
        if node.address and node.address in (profile.proxy.host, profile.proxy.zmq_host):
            return node
    return None


def transport_env(profile: Profile, instance: InstanceSpec) -> dict[str, str]:
    """UCX / socket settings for a multi-node instance; empty for a single box."""
    if not is_multi_node(profile):
        return {}
    env = {"UCX_TLS": (profile.transport.ucx_tls if profile.transport and profile.transport.ucx_tls else MULTI_NODE_UCX_TLS)}
    node = node_of(profile, instance)
    if node is None:
        return env
    devices = list(node.rdma_devices or [])
    if node.interface:
        devices.append(node.interface)
        # torch.distributed (GLOO) and NCCL pick the first interface otherwise, often docker0.
        env["GLOO_SOCKET_IFNAME"] = node.interface
        env["NCCL_SOCKET_IFNAME"] = node.interface
    if devices:
        env["UCX_NET_DEVICES"] = ",".join(devices)
    return env


def has_rdma_transport(ucx_tls: str) -> bool:
    names = [t.strip().lstrip("^") for t in ucx_tls.split(",")]
    if ucx_tls.strip().startswith("^"):
        return True  # "everything except ..." keeps RDMA
    return any(n in RDMA_TRANSPORTS for n in names)


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost" or host.startswith("localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str | None) -> bool:
    return host in ("0.0.0.0", "::", "")


def with_node_addresses(
    profile: Profile, addresses: dict[str, str], proxy_address: str | None = None, host: str | None = None
) -> Profile:
    """A copy of the profile with node addresses filled in (e.g. from a Slurm allocation).

    Addresses the profile already gives are kept. `proxy_address`, when given, becomes the
    proxy's host and ZMQ host (the proxy runs there); `host` replaces the profile's host
    (the instances without a node).
    """
    data = profile.model_dump(exclude_unset=True)
    if host is not None:
        data["host"] = host
    nodes = data.get("nodes") or []
    for node in nodes:
        if not node.get("address") and node["name"] in addresses:
            node["address"] = addresses[node["name"]]
    if nodes:
        data["nodes"] = nodes
    if proxy_address is not None:
        proxy = data.setdefault("proxy", {})
        proxy["host"] = proxy_address
        proxy["zmq_host"] = proxy_address
    return Profile.model_validate(data)
