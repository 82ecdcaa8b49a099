"""Orphans: processes that carry a pdtui run marker but belong to no live instance (an
EngineCore or worker whose API server died, possibly of a run whose directory is gone).
`pdtui gpus` marks the GPU ones "orphan of RUN/INSTANCE"; `pdtui down --all` and the
GPU view's stop key (through `stop_orphans`) end them."""

from __future__ import annotations

from dataclasses import dataclass

from pdtui.gpus.markers import find_marked, orphan_of
from pdtui.runtime.processes import DEFAULT_STOP_SEQUENCE
from pdtui.runtime.tree import TreeProcess, signal_processes, with_gpu_memory


@dataclass(frozen=True)
class Orphan:
    process: TreeProcess
    owner: str  # "RUN/INSTANCE"

    def describe(self) -> str:
        return f"{self.process.describe()} (orphan of {self.owner})"


def find_orphans(gpu_dirs: tuple[str, ...] = ()) -> list[Orphan]:
    """Every live marked process outside its instance's tree, with the GPU memory it holds
    (from NVML, or the simulated GPU files in gpu_dirs)."""
    marked = []
    for proc in find_marked():
        owner = orphan_of(proc.pid, (proc.run_name, proc.instance))
        if owner is not None:
            marked.append((proc, owner))
    procs = with_gpu_memory([p for p, _ in marked], gpu_dirs)
    return [Orphan(proc, owner) for proc, (_, owner) in zip(procs, marked)]


def stop_orphans(orphans: list[Orphan], sequence=DEFAULT_STOP_SEQUENCE) -> list[str]:
    """Stop them (INT -> TERM -> KILL; each verified by its create time first); one line each."""
    if not orphans:
        return []
    how = signal_processes([o.process for o in orphans], None, sequence)
    verdict = "stopped" if how != "survived" else "NOT stopped (survived SIGKILL)"
    return [f"{o.describe()}: {verdict}" for o in orphans]
