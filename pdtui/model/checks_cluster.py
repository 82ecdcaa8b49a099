"""Checks for profiles that span machines (`nodes:`) or run on Slurm (`cluster:`).

What breaks across nodes and nowhere else: a loopback address another machine cannot
reach, two instances of one node on one port (ports on different nodes may repeat),
tensor parallelism wider than a node's GPUs, a node name that names nothing.
Single-box profiles get no problem from here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from pdtui.model.ports import port_claims
from pdtui.model.placement import (
    has_rdma_transport,
    is_loopback,
    is_multi_node,
    is_wildcard,
    node_of,
    proxy_node,
)
from pdtui.model.problems import Problem
from pdtui.model.schema import InstanceSpec, Profile

SUBMIT_HOST = "<proxy host>"


def check_cluster(profile: Profile) -> list[Problem]:
    problems: list[Problem] = []
    if profile.nodes:
        for rule in (_node_names, _placements, _ports_per_node, _gpus_per_node, _addresses, _transport):
            problems.extend(rule(profile))
    return problems


def _where(profile: Profile, instance: InstanceSpec, field: str) -> str:
    return f"{profile.instance_path(instance)}.{field}"


def _node_names(profile: Profile) -> Iterable[Problem]:
    seen: set[str] = set()
    addresses: dict[str, str] = {}
    for i, node in enumerate(profile.nodes or ()):
        if node.name in seen:
            yield Problem(f"nodes[{i}].name", "node name used twice", node.name, "give every node its own name")
        seen.add(node.name)
        if node.address and node.address in addresses:
            yield Problem(
                f"nodes[{i}].address",
                f"address is also node {addresses[node.address]}'s",
                node.address,
                "one node per machine: list each machine once and place several instances on it",
            )
        elif node.address:
            addresses[node.address] = node.name


def _placements(profile: Profile) -> Iterable[Problem]:
    names = [n.name for n in profile.nodes or ()]
    for inst in profile.instances():
        if inst.node is None:
            if is_multi_node(profile):
                yield Problem(_where(profile, inst, "node"), "no node given in a multi-node profile", None, f"one of {names}")
        elif inst.node not in names:
            yield Problem(_where(profile, inst, "node"), f"unknown node {inst.node!r}", inst.node, f"one of {names}")


def _instance_node_key(profile: Profile, inst: InstanceSpec) -> str:
    node = node_of(profile, inst)
    return node.name if node is not None else profile.host


def _ports_per_node(profile: Profile) -> Iterable[Problem]:
    """Replaces the one-box rule: a port may repeat on different nodes, never on one."""
    by_path = {profile.instance_path(i): i for i in profile.instances()}
    proxy = proxy_node(profile)
    proxy_key = proxy.name if proxy is not None else SUBMIT_HOST
    first: dict[tuple[str, int], tuple[str, str]] = {}
    for port, path, what in port_claims(profile):
        owner = by_path.get(path.split(".", 1)[0])
        key = (_instance_node_key(profile, owner) if owner is not None else proxy_key, port)
        if key in first and first[key][0] != path:
            other_path, other_what = first[key]
            yield Problem(
                path,
                f"port {port} on node {key[0]} is also {other_what} ({other_path})",
                port,
                "instances on one node need different ports (on different nodes they may repeat)",
            )
        elif key in first:
            yield Problem(path, f"port {port} is used twice by {what}", port, "every port on a node must be different")
        else:
            first[key] = (path, what)


def _gpus_per_node(profile: Profile) -> Iterable[Problem]:
    owners: dict[tuple[str, int], list[InstanceSpec]] = defaultdict(list)
    for inst in profile.instances():
        node = node_of(profile, inst)
        if node is None:
            continue
        width = max(inst.tensor_parallel_size, len(inst.gpus))
        if width > node.gpus:
            yield Problem(
                _where(profile, inst, "tensor_parallel_size"),
                f"needs {width} GPUs but node {node.name} has {node.gpus}",
                inst.tensor_parallel_size,
                f"at most {node.gpus} on {node.name} (an instance runs on one node; spread the load over more instances instead)",
            )
        for i, gpu in enumerate(inst.gpus):
            if gpu >= node.gpus:
                yield Problem(
                    _where(profile, inst, f"gpus[{i}]"),
                    f"GPU {gpu} does not exist on node {node.name} ({node.gpus} GPUs)",
                    gpu,
                    f"an index from 0 to {node.gpus - 1}" if node.gpus else f"node {node.name} has no GPU",
                )
            owners[(node.name, gpu)].append(inst)
    for (node_name, gpu), insts in sorted(owners.items()):
        if len(insts) > 1 and not all(i.shared_gpus for i in insts):
            names = ", ".join(i.name for i in insts)
            for inst in insts[1:]:
                yield Problem(
                    _where(profile, inst, "gpus"),
                    f"GPU {gpu} of node {node_name} is given to several instances ({names})",
                    inst.gpus,
                    "pick another GPU, or set shared_gpus: true on each of them",
                    "warning",
                )


def _addresses(profile: Profile) -> Iterable[Problem]:
    if not is_multi_node(profile):
        return
    hint = "in a multi-node profile every address must be one the other machines can reach (the node's IP or hostname)"
    slurm = profile.cluster is not None
    for i, node in enumerate(profile.nodes or ()):
        if node.address is None and not slurm:
            yield Problem(f"nodes[{i}].address", "no address", None, hint + "; only on Slurm may it stay empty (the node's NodeAddr is used)")
        elif is_loopback(node.address) or is_wildcard(node.address):
            yield Problem(f"nodes[{i}].address", "loopback or wildcard address in a multi-node profile", node.address, hint)
    if slurm:
        return  # the proxy's address comes from the allocation (cluster.proxy_on)
    for path, host in (("proxy.host", profile.proxy.host), ("proxy.zmq_host", profile.proxy.zmq_host)):
        if is_loopback(host):
            yield Problem(
                path,
                "loopback address in a multi-node profile: prefillers on other nodes cannot reach the proxy",
                host,
                "the address of the machine the proxy runs on (a node's address, or the submit host's)",
            )
    if any(i.node is None for i in profile.instances()) and is_loopback(profile.host):
        yield Problem("host", "loopback address in a multi-node profile", profile.host, hint)


def _transport(profile: Profile) -> Iterable[Problem]:
    if not is_multi_node(profile):
        return
    for inst in profile.instances():
        tls = profile.effective_env(inst).get("UCX_TLS") or (profile.transport.ucx_tls if profile.transport else None)
        if tls and not has_rdma_transport(tls):
            yield Problem(
                _where(profile, inst, "env.UCX_TLS"),
                "no RDMA transport in UCX_TLS across nodes: KV goes over TCP",
                tls,
                "add rc (InfiniBand/RoCE), e.g. rc,cuda_copy,cuda_ipc,tcp — or remove UCX_TLS from env: pdtui renders "
                "transport.ucx_tls for multi-node profiles",
                "warning",
            )
            return
