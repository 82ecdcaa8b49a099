"""What a deployment reports besides the runtime's events (pdtui.runtime.events)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeGpusRead:
    """Each node's GPUs (`pdtui.cluster.gpus.NodeGpus`, in node order); `nodes is None`:
    the cluster run no longer holds nodes (stopped), the local GPUs are the view again.
    `holders`: (host, GPU index) -> the instances Slurm placed there."""

    run_name: str
    nodes: tuple | None
    holders: dict[tuple[str, int], str] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
