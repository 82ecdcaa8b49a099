"""Checks that depend on this machine: ports already taken, GPU indices that do not exist.

Kept apart from the profile checks so a profile can be validated anywhere.
"""

from __future__ import annotations

import errno
import socket
from typing import Callable

from pdtui.model.checks import port_claims
from pdtui.model.problems import Problem
from pdtui.model.schema import Profile


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
    for inst in profile.instances():
        for i, gpu in enumerate(inst.gpus):
            if gpu >= gpu_count:
                problems.append(
                    Problem(
                        f"{profile.instance_path(inst)}.gpus[{i}]",
                        f"GPU {gpu} does not exist on this machine",
                        gpu,
                        f"this machine has {gpu_count} GPU(s): 0..{gpu_count - 1}" if gpu_count else "this machine has no GPU",
                    )
                )
    return problems
