"""One interface for whatever runs a deployment, so the TUI has one code path.

`launch(profile)` and `attach(run_dir)` pick the backend (docs/cluster.md, "The TUI"):
a profile with `cluster: {type: slurm}` (or a run directory holding `slurm.json`) gets a
`SlurmDeployment`, anything else the runtime's `Supervisor`. Both have the surface of the
`Deployment` protocol below, which is the part of the Supervisor the UI has always used.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol
from collections.abc import Callable

from pdtui.deploy.events import NodeGpusRead

__all__ = ["Deployment", "NodeGpusRead", "attach", "cluster_attach_target", "is_cluster_run", "launch"]


class Deployment(Protocol):
    """What a UI drives. Every method returns at once; blocking work runs on the
    deployment's own threads and ends in the returned Future."""

    run_name: str
    run_dir: Path

    def status(self) -> Any:
        """A `pdtui.runtime.DeploymentStatus` snapshot (thread-safe, never blocks)."""

    def subscribe(self, callback: Callable[[Any], None], *, log_lines: bool = True) -> Callable[[], None]:
        """Runtime events (StateChanged, DeploymentEvent, ...; NodeGpusRead for clusters);
        log_lines=False: without LogLines."""

    def start(self, *, stop_on_failure: bool = True) -> Future: ...

    def stop(self) -> Future: ...

    def stop_instance(self, name: str) -> Future: ...

    def restart(self, name: str, spec: Any = None) -> Future: ...

    def restart_pair(self, prefiller: str, decoder: str) -> Future: ...

    def detach(self) -> None: ...

    def close(self) -> None:
        """End the deployment's threads; stops the deployment unless detached. Blocking."""


def is_cluster_run(run_dir: Path | str | None) -> bool:
    from pdtui.cluster.cli import is_slurm_run

    return is_slurm_run(run_dir)


def cluster_attach_target(name: str) -> tuple[Path | None, str | None] | None:
    """For `pdtui --attach NAME` of a cluster run: (its directory, None), or (None, why it
    cannot be attached); None when NAME is not a cluster run."""
    from pdtui.cluster.cli import resolve_slurm_run
    from pdtui.cluster.slurm_backend import SlurmRun
    from pdtui.cluster.slurm_cmd import SlurmError

    run_dir = resolve_slurm_run(name)
    if run_dir is None:
        return None
    try:
        run = SlurmRun.load(run_dir)
    except SlurmError as exc:
        return None, f"pdtui: cannot attach to {run_dir}: {exc}"
    if run.state.get("stopped"):
        return None, (f"pdtui: cannot attach to {run.name}: it was stopped (Slurm job {run.job_id}); "
                      f"start it with `pdtui up {run.state.get('profile', 'PROFILE')}` or open the profile in the TUI")
    return Path(run_dir), None


def running_cluster_runs() -> list[tuple[Path, str, str, float | None]]:
    """(directory, name, profile, created) of the Slurm runs whose job is still queued or
    running, newest first: the TUI offers to re-attach. Blocking (squeue): off the UI thread."""
    from pdtui.cluster import slurm_cmd
    from pdtui.cluster.cli import find_slurm_runs
    from pdtui.cluster.slurm_backend import SlurmRun
    from pdtui.cluster.slurm_cmd import SlurmError

    candidates = []
    for run_dir in find_slurm_runs():
        try:
            run = SlurmRun.load(run_dir)
        except SlurmError:
            continue
        if not run.state.get("stopped"):
            candidates.append(run)
    if not candidates or slurm_cmd.available() is not None:
        return []
    found = []
    for run in candidates:
        try:
            job = slurm_cmd.job(run.job_id)
        except SlurmError:
            return []  # slurmctld does not answer: nothing to offer now
        if job is not None and job.state not in slurm_cmd.TERMINAL_JOB_STATES:
            found.append((run.run_dir, run.name, str(run.state.get("profile", "")), run.state.get("created")))
    return found


def launch(profile: Any) -> Deployment:
    """A new deployment of `profile`, not started yet (file I/O, sbatch: call off the UI thread)."""
    if profile.cluster is not None:
        from pdtui.deploy.slurm_deployment import SlurmDeployment

        return SlurmDeployment.launch(profile)
    from pdtui.model.placement import is_multi_node

    if is_multi_node(profile):
        raise ValueError(f"{profile.name} spans {len(profile.nodes)} machines; this machine cannot start it alone. "
                         "Add `cluster: {type: slurm}`, or run `pdtui render --target k8s` (docs/cluster.md)")
    from pdtui.runtime import Supervisor

    return Supervisor.launch(profile, detach=False, auto_restart=False)


def attach(run_dir: Path) -> Deployment:
    """Re-attach to a running deployment (reads its state: call off the UI thread)."""
    if is_cluster_run(run_dir):
        from pdtui.deploy.slurm_deployment import SlurmDeployment

        return SlurmDeployment.attach(run_dir)
    from pdtui.runtime import Supervisor

    return Supervisor.attach(run_dir)
