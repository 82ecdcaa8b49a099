"""The UI's handle on a deployment: the runtime's Supervisor (or, for a profile with
`cluster:`, a Slurm job: pdtui.deploy.deployment picks), seen through messages.

Every Supervisor method returns at once (its blocking work runs on its own threads);
its futures are awaited with `asyncio.wrap_future`, and its events arrive on a
supervisor thread and are re-posted to the app as Textual messages (`post_message` is
thread-safe). The UI never polls processes itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

from textual.message import Message


class SupervisorEvent(Message):
    """An event from the runtime (StateChanged, ReadinessProgress, LogLines, DeploymentEvent)."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


@dataclass(frozen=True)
class DetachedRun:
    path: Path
    name: str
    profile: str
    created: float | None


def detached_runs() -> list[DetachedRun]:
    """Runs left running by an earlier pdtui (detached, with live processes; Slurm runs
    whose job is still there). Blocking (reads state files, asks psutil and squeue): call
    from a thread worker."""
    from pdtui.deploy.deployment import running_cluster_runs
    from pdtui.runtime import find_runs

    found = []
    for run in find_runs():
        if getattr(run, "live", False) and getattr(run, "detached", False):
            found.append(DetachedRun(Path(run.path), str(run.name), str(getattr(run, "profile", "")), getattr(run, "created", None)))
    found += [DetachedRun(*run) for run in running_cluster_runs()]
    return found


class DeploymentControl:
    """One deployment at a time: launch or attach, then stop/restart/detach."""

    def __init__(self, post: Callable[[Message], object]) -> None:
        self._post = post
        self.supervisor: Any = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def active(self) -> bool:
        return self.supervisor is not None

    def status(self) -> Any:
        """The supervisor's snapshot (thread-safe, never blocks), or None."""
        return None if self.supervisor is None else self.supervisor.status()

    def running(self) -> bool:
        """Something to stop: a process of the deployment, or a Slurm job holding its allocation."""
        status = self.status()
        if status is None:
            return False
        return any(i.is_running for i in status.instances) or bool(getattr(self.supervisor, "holds_resources", False))

    def _adopt(self, supervisor: Any) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.supervisor = supervisor

        def forward(event: Any) -> None:
            self._post(SupervisorEvent(event))

        # Log lines are the deployment monitor's (it tails every file once): without a
        # subscriber for them the supervisor does not even read a ready instance's log.
        self._unsubscribe = supervisor.subscribe(forward, log_lines=False)

    def launch_blocking(self, profile: Any) -> Any:
        """Render into a new run dir and create the supervisor, or submit the Slurm job
        of a cluster profile (file I/O, sbatch: run in a thread)."""
        from pdtui.deploy.deployment import launch

        supervisor = launch(profile)
        self._adopt(supervisor)
        return supervisor

    def attach_blocking(self, run_dir: Path) -> Any:
        from pdtui.deploy.deployment import attach

        supervisor = attach(run_dir)
        self._adopt(supervisor)
        return supervisor

    def instance_actions_note(self) -> str | None:
        """Why one instance cannot be stopped/restarted alone here (None: it can)."""
        return getattr(self.supervisor, "instance_actions_note", None)

    async def start(self) -> bool:
        return bool(await asyncio.wrap_future(self.supervisor.start(stop_on_failure=True)))

    async def stop(self) -> None:
        await asyncio.wrap_future(self.supervisor.stop())

    async def stop_instance(self, name: str) -> str:
        return str(await asyncio.wrap_future(self.supervisor.stop_instance(name)))

    async def restart(self, name: str) -> bool:
        return bool(await asyncio.wrap_future(self.supervisor.restart(name)))

    async def restart_with(self, name: str, plan: Any) -> bool:
        """Restart `name` with the settings of `plan` (rendered for this run directory):
        its LMCache YAML is rewritten first, then the process starts with the new argv."""
        from pdtui.model.files import atomic_write
        from pdtui.runtime.members import specs_from_plan

        spec = next(s for s in specs_from_plan(plan, self.supervisor.run_dir) if s.name == name)
        if name != "proxy":
            inst = plan.instance(name)
            if inst.lmcache_config_path and inst.lmcache_yaml is not None:
                await asyncio.to_thread(atomic_write, inst.lmcache_config_path, inst.lmcache_yaml)
        return await asyncio.wrap_future(self.supervisor.restart(name, spec=spec))

    async def restart_pair(self, prefiller: str, decoder: str) -> bool:
        return bool(await asyncio.wrap_future(self.supervisor.restart_pair(prefiller, decoder)))

    def detach(self) -> None:
        self.supervisor.detach()

    def close_blocking(self) -> None:
        """End the supervisor's threads (stops the deployment unless detached). Blocking."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        supervisor, self.supervisor = self.supervisor, None
        if supervisor is not None:
            supervisor.close()

    def sim_gpu_dir(self) -> Path | None:
        status = self.status()
        if status is None:
            return None
        return Path(status.run_dir) / "sim-gpus"

    def own_pids(self) -> dict[int, str]:
        status = self.status()
        if status is None:
            return {}
        return {i.pid: i.name for i in status.instances if i.pid}
