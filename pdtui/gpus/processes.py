"""Who is using each GPU: NVML's pids enriched with psutil, and classified.

NVML only knows pids and bytes. The operator wants "alice's training job" or "our
decoder", so each pid gets its user, command line and start time from psutil, and an
owner: `own` when the pid or one of its ancestors is a process pdtui started (vLLM's
EngineCore and TP workers hold the memory, not the `vllm serve` pid we launched),
`other` for anyone else, `gone` when the process has exited since NVML listed it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pdtui.gpus.snapshot import GpuSnapshot, Maybe, NotAvailable

ProcessOwner = Literal["own", "other", "gone"]


@dataclass(frozen=True, slots=True)
class AttributedProcess:
    gpu_index: int
    pid: int
    used_memory: Maybe[int]  # bytes on this GPU
    owner: ProcessOwner
    user: Maybe[str] = NotAvailable()
    command: Maybe[tuple[str, ...]] = NotAvailable()
    started: Maybe[float] = NotAvailable()  # unix time
    instance: str | None = None  # the pdtui instance name when owner == "own"
    # "RUN/INSTANCE" when it carries a pdtui run marker but its instance's main process is
    # gone (an EngineCore left on the GPU after its API server died): pdtui can stop it.
    orphan_of: str | None = None

    @property
    def command_line(self) -> str:
        if isinstance(self.command, NotAvailable):
            return "N/A"
        return " ".join(self.command)


@dataclass(frozen=True, slots=True)
class _HostInfo:
    create_time: float
    user: Maybe[str]
    command: Maybe[tuple[str, ...]]
    lineage: tuple[int, ...]  # the pid and its ancestors, nearest first
    orphan_of: str | None = None


class ProcessAttributor:
    """Keeps psutil answers between polls: a pid is looked up in full once, then only
    re-checked by its create time (which also catches pid reuse)."""

    def __init__(self) -> None:
        self._known: dict[int, _HostInfo] = {}

    def attribute(
        self,
        gpus: Iterable[GpuSnapshot],
        own_pids: Mapping[int, str] | None = None,
    ) -> tuple[AttributedProcess, ...]:
        import psutil  # lazy: `pdtui gpus --help` must stay stdlib-only

        own = dict(own_pids or {})
        looked_up: dict[int, _HostInfo | None] = {}  # a TP engine appears on several GPUs
        result: list[AttributedProcess] = []
        for gpu in gpus:
            if isinstance(gpu.processes, NotAvailable):
                continue
            for process in gpu.processes:
                if process.pid not in looked_up:
                    looked_up[process.pid] = self._host_info(psutil, process.pid)
                info = looked_up[process.pid]
                result.append(_classify(gpu.index, process.pid, process.used_memory, info, own))
        for pid in [pid for pid in self._known if pid not in looked_up]:
            del self._known[pid]
        return tuple(result)

    def _host_info(self, psutil: Any, pid: int) -> _HostInfo | None:
        try:
            proc = psutil.Process(pid)
            create_time = proc.create_time()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._known.pop(pid, None)
            return None
        except psutil.AccessDenied:
            create_time = float("nan")
        except Exception:
            return None
        cached = self._known.get(pid)
        if cached is not None and cached.create_time == create_time:
            return cached
        try:
            with proc.oneshot():
                user = _ask(psutil, proc.username)
                command = _ask(psutil, proc.cmdline)
                if isinstance(command, list):
                    command = tuple(command) if command else NotAvailable("empty command line (kernel thread?)")
                lineage = (pid, *(_ancestor_pids(psutil, proc)))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        from pdtui.gpus.markers import orphan_of

        info = _HostInfo(create_time=create_time, user=user, command=command, lineage=lineage, orphan_of=orphan_of(pid))
        self._known[pid] = info
        return info


def attribute_processes(
    gpus: Iterable[GpuSnapshot],
    own_pids: Mapping[int, str] | None = None,
    *,
    attributor: ProcessAttributor | None = None,
) -> tuple[AttributedProcess, ...]:
    """Every compute process on `gpus`, with user, command line, start time and owner.

    `own_pids` maps the pids pdtui started to their instance names; pass a long-lived
    `attributor` when polling, so unchanged processes are not looked up again.
    """
    return (attributor or ProcessAttributor()).attribute(gpus, own_pids)


def _classify(
    gpu_index: int,
    pid: int,
    used_memory: Maybe[int],
    info: _HostInfo | None,
    own: Mapping[int, str],
) -> AttributedProcess:
    lineage = info.lineage if info is not None else (pid,)
    instance = next((own[p] for p in lineage if p in own), None)
    if info is None:
        gone = NotAvailable("process has exited")
        return AttributedProcess(
            gpu_index=gpu_index,
            pid=pid,
            used_memory=used_memory,
            owner="gone",
            user=gone,
            command=gone,
            started=gone,
            instance=instance,
        )
    started: Maybe[float] = (
        info.create_time if info.create_time == info.create_time else NotAvailable("access denied")
    )
    return AttributedProcess(
        gpu_index=gpu_index,
        pid=pid,
        used_memory=used_memory,
        owner="own" if instance is not None else "other",
        user=info.user,
        command=info.command,
        started=started,
        instance=instance,
        orphan_of=info.orphan_of,
    )


def _ask(psutil: Any, getter: Any) -> Any:
    try:
        return getter()
    except psutil.AccessDenied:
        return NotAvailable("access denied")


def _ancestor_pids(psutil: Any, proc: Any) -> list[int]:
    try:
        return [parent.pid for parent in proc.parents()]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def describe_started(started: Maybe[float], now: float | None = None) -> str:
    """'3m ago'-style age for tables; N/A when unknown."""
    if isinstance(started, NotAvailable):
        return "N/A"
    age = max(0.0, (time.time() if now is None else now) - started)
    if age < 120:
        return f"{age:.0f}s ago"
    if age < 7200:
        return f"{age / 60:.0f}m ago"
    if age < 172800:
        return f"{age / 3600:.0f}h ago"
    return f"{age / 86400:.0f}d ago"
