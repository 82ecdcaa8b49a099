"""An instance's whole process tree: find it, say what it holds, stop all of it.

The tree is the process group pdtui created (the leader is the `vllm serve` API server),
plus every process carrying the instance's run marker (EngineCore and TP workers inherit
it, even when they leave the group or are re-parented to init after the API server died).
vLLM's EngineCore outlives a `kill -9` of the API server and keeps its GPU memory, so
every path that ends an instance (its exit, `down`, `restart`, the watchdog) stops the
tree, not only the leader, and says what it stopped and what GPU memory that held.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from pdtui.gpus.markers import MarkedProcess, find_marked
from pdtui.runtime.processes import DEFAULT_STOP_SEQUENCE, ProcessHandle


@dataclass(frozen=True)
class TreeProcess:
    pid: int
    name: str
    create_time: float
    gpu_bytes: int = 0  # total over its GPUs, when NVML / the sim GPU dir tells it
    gpus: tuple[int, ...] = ()

    def describe(self, still: bool = True) -> str:
        """still: its main process was already gone (it outlived it, holding the memory)."""
        label = _short_name(self.name)
        if self.gpu_bytes:
            where = ",".join(map(str, self.gpus)) or "?"
            return f"{label} {self.pid} {'still held' if still else 'held'} {self.gpu_bytes / 1024**3:.1f} GiB on GPU {where}"
        return f"{label} {self.pid}"


@dataclass(frozen=True)
class TreeStop:
    how: str | None  # the signal that ended it, None when nothing was running, "survived"
    stopped: tuple[TreeProcess, ...]  # processes besides the leader that were still there
    leader_was_running: bool = False

    def summary(self) -> str:
        if not self.stopped:
            return ""
        return "; ".join(p.describe(still=not self.leader_was_running) for p in self.stopped) + (": stopped" if self.how != "survived" else ": NOT stopped (survived SIGKILL)")


def _short_name(name: str) -> str:
    # "VLLM::EngineCore" -> "EngineCore", "VLLM::Worker_TP1" -> "Worker_TP1"; the kernel
    # keeps 15 bytes of a process name, so vLLM's EngineCore shows as "VLLM::EngineCor".
    short = name.split("::", 1)[1] if "::" in name else name
    return "EngineCore" if short == "EngineCor" else short


def leftovers(run_name: str, instance: str, leader_pid: int | None = None, gpu_dirs: tuple[str, ...] = (),
              root: str | None = None) -> list[TreeProcess]:
    """The instance's live processes other than its leader, with the GPU memory they hold
    (root: the run's runs folder, realpath; None: of any folder)."""
    marked = [p for p in find_marked(run_name, instance, root=root) if p.pid != leader_pid]
    return with_gpu_memory(marked, gpu_dirs)


def with_gpu_memory(marked: list[MarkedProcess], gpu_dirs: tuple[str, ...] = ()) -> list[TreeProcess]:
    held = gpu_memory_by_pid(gpu_dirs) if marked else {}
    result = []
    for p in marked:
        gpus, nbytes = held.get(p.pid, ((), 0))
        result.append(TreeProcess(p.pid, p.name or (p.cmdline[0] if p.cmdline else "?"), p.create_time, nbytes, gpus))
    return result


def gpu_memory_by_pid(gpu_dirs: tuple[str, ...] = ()) -> dict[int, tuple[tuple[int, ...], int]]:
    """pid -> (GPU indices, bytes in all) from the simulated GPU files and from NVML."""
    held: dict[int, tuple[tuple[int, ...], int]] = {}
    if gpu_dirs:
        from pdtui.gpus.sim_overlay import read_sim_usage

        for directory in gpu_dirs:
            if directory and Path(directory).is_dir():
                for usage in read_sim_usage(directory, stale_after_s=3600.0)[0]:
                    held[usage.pid] = (usage.gpus, usage.memory_bytes * max(1, len(usage.gpus)))
    try:
        import pynvml
    except ImportError:
        return held
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver / no GPU: only the simulated figures
        return held
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                gpus, nbytes = held.get(proc.pid, ((), 0))
                held[proc.pid] = (gpus + (index,), nbytes + int(proc.usedGpuMemory or 0))
    except Exception:
        pass
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return held


def _alive(proc: TreeProcess) -> bool:
    from pdtui.runtime.processes import ZOMBIE_STATES, proc_stat

    stat = proc_stat(proc.pid)
    if stat is None or stat[0] in ZOMBIE_STATES:
        return False
    try:
        import psutil

        return abs(psutil.Process(proc.pid).create_time() - proc.create_time) < 0.05
    except Exception:
        return False


def signal_processes(procs: list[TreeProcess], handle: ProcessHandle | None, sequence=DEFAULT_STOP_SEQUENCE, poll_s: float = 0.05) -> str | None:
    """INT -> TERM -> KILL to the group of handle and to each of procs, waiting for all of
    them to be gone; the signal that ended it, None if nothing ran, "survived" otherwise."""

    # The group is signalled only while its leader lives (until then its pgid cannot be
    # recycled); afterwards what is left is reached through the run marker alone.
    def leader_alive() -> bool:
        return handle is not None and handle.poll() is None

    def anything_alive() -> bool:
        return leader_alive() or any(_alive(p) for p in procs)

    if not anything_alive():
        return None
    for sig_name, grace in sequence:
        sig = getattr(signal, sig_name)
        if handle is not None and leader_alive():
            handle.signal_group(sig)
        for p in procs:
            if _alive(p):
                try:
                    os.kill(p.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not anything_alive():
                return sig_name
            time.sleep(poll_s)
    return "survived" if anything_alive() else None


def stop_tree(
    handle: ProcessHandle | None,
    run_name: str,
    instance: str,
    sequence=DEFAULT_STOP_SEQUENCE,
    gpu_dirs: tuple[str, ...] = (),
    root: str | None = None,
) -> TreeStop:
    """Stop the instance's leader (if any), its group and every marked process of it (of
    the runs folder `root`, realpath, when given)."""
    leader = handle.pid if handle is not None else None
    leader_was_running = handle is not None and handle.poll() is None
    rest = leftovers(run_name, instance, leader, gpu_dirs, root)
    how = signal_processes(rest, handle, sequence)
    # A child forked while we signalled would carry the marker too: one more sweep.
    late = leftovers(run_name, instance, leader, (), root)
    if late:
        how = signal_processes(late, None, sequence) or how
        rest += [p for p in late if p.pid not in {q.pid for q in rest}]
    _forget_sim_gpu_files(gpu_dirs, {p.pid for p in rest} | ({leader} if leader else set()))
    return TreeStop(how, tuple(rest), leader_was_running)


def _forget_sim_gpu_files(gpu_dirs: tuple[str, ...], pids: set[int]) -> None:
    """A simulated engine removes its GPU file when it exits; one that was killed cannot, and
    its stale file would show memory held by a process that is gone (NVML frees it)."""
    for directory in gpu_dirs:
        for pid in pids:
            if not _pid_alive(pid):
                try:
                    (Path(directory) / f"{pid}.json").unlink()
                except OSError:
                    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
