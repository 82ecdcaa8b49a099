"""Checks that depend on this machine: ports already taken, GPU indices that do not exist.

Kept apart from the profile checks so a profile can be validated anywhere.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pdtui.model.ports import port_claims
from pdtui.model.problems import Problem
from pdtui.model.schema import Profile
from pdtui.model.units import format_size
from pdtui.text import plural


@dataclass(frozen=True)
class GpuFact:
    """What this box says about one GPU (memory None when unknown)."""

    index: int
    memory_bytes: int | None = None


def port_in_use(host: str, port: int) -> bool:
    """True when binding host:port fails because something holds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bind_host = "127.0.0.1" if host == "localhost" else host
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def check_host(
    profile: Profile,
    gpu_count: int | None,
    is_port_in_use: Callable[[str, int], bool] = port_in_use,
    gpu_error: str | None = None,
) -> list[Problem]:
    """Problems on this host. gpu_count None means unknown (no GPU check possible)."""
    if profile.nodes or profile.cluster is not None:
        # Other machines (or the ones Slurm will pick): this one says nothing about them.
        return [Problem("nodes" if profile.nodes else "cluster", "host checks skipped: the profile runs on other machines",
                        None, "run `pdtui validate --host-checks` on each node, or let Slurm place it", "warning")]
    problems: list[Problem] = []
    for port, path, what in port_claims(profile):
        host = profile.proxy.host if path.startswith("proxy.") else profile.host
        if is_port_in_use(host, port):
            problems.append(
                Problem(path, f"port {port} ({what}) is already in use on this machine", port, "stop what holds it or pick a free port")
            )
    if profile.engine == "sim":
        return problems  # simulated GPUs: any index the demo box has is fine
    if gpu_count is None:
        if gpu_error:
            problems.append(Problem("", f"cannot check GPUs: {gpu_error}", None, "", "warning"))
        return problems
    return problems + check_gpus(profile, [GpuFact(i) for i in range(gpu_count)])


def check_gpus(profile: Profile, gpus: Sequence[GpuFact]) -> list[Problem]:
    """The profile against this box's GPUs: indices that do not exist, and an LMCache PD
    buffer larger than the GPU it is allocated on."""
    problems: list[Problem] = []
    by_index = {gpu.index: gpu for gpu in gpus}
    valid = _index_ranges(sorted(by_index))
    for inst in profile.instances():
        base = profile.instance_path(inst)
        for i, gpu in enumerate(inst.gpus):
            if gpu not in by_index:
                problems.append(
                    Problem(f"{base}.gpus[{i}]", f"GPU {gpu} does not exist on this machine", None,
                            f"this machine has {plural(len(by_index), 'GPU')}: {valid}" if by_index else "this machine has no GPU")
                )
        lmcache = profile.effective_lmcache(inst)
        size = getattr(lmcache, "pd_buffer_size", None)
        if not size or getattr(lmcache, "pd_buffer_device", None) == "cpu":
            continue
        for gpu in inst.gpus:
            fact = by_index.get(gpu)
            if fact is not None and fact.memory_bytes and int(size) > fact.memory_bytes:
                problems.append(
                    Problem(f"{base}.lmcache.pd_buffer_size",
                            f"{format_size(int(size))} does not fit on GPU {gpu} ({format_size(fact.memory_bytes)})",
                            None, f"at most {format_size(fact.memory_bytes)}, and leave room for the model")
                )
                break
    return problems


def _index_ranges(indices: list[int]) -> str:
    if indices and indices == list(range(indices[0], indices[-1] + 1)):
        return f"{indices[0]}..{indices[-1]}"
    return ", ".join(str(i) for i in indices)
