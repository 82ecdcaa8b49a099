"""The run marker: find the processes of a run (or of one instance) from /proc alone.

Here, in the GPU layer (the lowest that needs it), because "which run and instance does
this GPU process belong to, and is it an orphan" is a question of process ownership,
which this layer answers for the GPU view; the runtime imports it from here.

Every process pdtui starts gets `PDTUI_RUN=<run name>/<instance>` in its environment;
children (vLLM's EngineCore, TP workers) inherit it, even when they move to a session of
their own or are re-parented to init after their parent died. So pdtui can find, and stop,
a run's processes when its run directory or state.json is gone, and name the owner of a
GPU process nobody else claims. Reading /proc/PID/environ needs the same user (or root),
which is the case for everything pdtui starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pdtui.constants import RUN_MARKER_ENV, RUN_ROOT_ENV

_NEEDLE = RUN_MARKER_ENV.encode() + b"="
_ROOT_NEEDLE = RUN_ROOT_ENV.encode() + b"="


def marker_value(run_name: str, instance: str) -> str:
    return f"{run_name}/{instance}"


@dataclass(frozen=True)
class MarkedProcess:
    pid: int
    run_name: str
    instance: str
    create_time: float
    name: str  # process name (comm): e.g. "VLLM::EngineCor"
    cmdline: tuple[str, ...]
    pgid: int | None
    ppid: int | None
    root: str | None = None  # the runs folder of its run (None: started by an older pdtui)

    @property
    def marker(self) -> str:
        return marker_value(self.run_name, self.instance)

    def describe(self) -> str:
        label = self.name or (self.cmdline[0] if self.cmdline else "?")
        return f"{label} {self.pid}"


def read_marker(pid: int) -> tuple[str, str] | None:
    """(run name, instance) from a process's environment, None when it has no marker
    (or is gone, or belongs to another user)."""
    found = _read_environ_marker(pid)
    return (found[0], found[1]) if found else None


def _read_environ_marker(pid: int) -> tuple[str, str, str | None] | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    marker: tuple[str, str] | None = None
    root: str | None = None
    for entry in data.split(b"\0"):
        if entry.startswith(_NEEDLE):
            value = entry[len(_NEEDLE):].decode("utf-8", "replace")
            run, _, instance = value.rpartition("/")
            if run:
                marker = (run, instance)
        elif entry.startswith(_ROOT_NEEDLE):
            root = entry[len(_ROOT_NEEDLE):].decode("utf-8", "replace")
    return (marker[0], marker[1], root) if marker else None


def find_marked(run_name: str | None = None, instance: str | None = None, root: str | None = None) -> list[MarkedProcess]:
    """Live (not zombie) processes carrying a run marker, optionally of one run / instance /
    runs folder (with a folder, only processes that name that very folder)."""
    me = os.getpid()
    found = []
    # /proc directly rather than psutil.process_iter (whose shared cache is not safe to use
    # from several threads at once); psutil only for the few processes that carry a marker.
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        marker = _read_environ_marker(pid)
        if marker is None or (run_name is not None and marker[0] != run_name) or (instance is not None and marker[1] != instance):
            continue
        # A process started by an older pdtui names no folder: it matches any. Otherwise a run
        # is its folder AND its name: two runs folders (two users' homes, two test sessions)
        # may each hold a "demo-20261201-101500".
        if root is not None and marker[2] is not None and marker[2] != root:
            continue
        import psutil  # here: a look for marked processes that finds none needs no psutil

        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                found.append(MarkedProcess(proc.pid, marker[0], marker[1], proc.create_time(), proc.name(),
                                           tuple(proc.cmdline()), _pgid(proc.pid), proc.ppid(), marker[2]))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def orphan_of(pid: int, marker: tuple[str, str] | None = None) -> str | None:
    """"RUN/INSTANCE" when pid carries a run marker but lives outside its instance's tree:
    it is not the main process (the leader of its process group) and no ancestor carries
    the same marker, i.e. its API server died and it was re-parented (vLLM's EngineCore
    after a kill -9 of `vllm serve`). None for a process of a live instance, or unmarked."""
    import psutil

    marker = marker or read_marker(pid)
    if marker is None or _pgid(pid) == pid:
        return None
    try:
        parents = psutil.Process(pid).parents()
    except psutil.Error:
        return None
    if any(read_marker(parent.pid) == marker for parent in parents):
        return None
    return marker_value(*marker)


def marked_runs(root: str | None = None) -> dict[str, list[MarkedProcess]]:
    """run name -> its live marked processes, for every run that has any (of one runs folder)."""
    runs: dict[str, list[MarkedProcess]] = {}
    for proc in find_marked(root=root):
        runs.setdefault(proc.run_name, []).append(proc)
    return runs


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
