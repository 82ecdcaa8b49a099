"""The supervisor: run directories, process groups, start order, readiness, stop/restart,
crash detection, the state file for detach/re-attach. See docs/interfaces.md."""

from __future__ import annotations

from pdtui.runtime.events import DeploymentEvent, Event, EventBus, LogLines, ReadinessProgress, StateChanged
from pdtui.runtime.preflight import PreflightError
from pdtui.runtime.rundir import RunInfo, find_runs, new_run_dir, resolve_run, runs_root
from pdtui.runtime.status import DeploymentStatus, InstanceState, InstanceStatus
from pdtui.runtime.supervisor import AttachError, Supervisor, owner_of

__all__ = [
    "AttachError",
    "DeploymentEvent",
    "DeploymentStatus",
    "Event",
    "EventBus",
    "InstanceState",
    "InstanceStatus",
    "LogLines",
    "PreflightError",
    "ReadinessProgress",
    "RunInfo",
    "StateChanged",
    "Supervisor",
    "find_runs",
    "new_run_dir",
    "owner_of",
    "resolve_run",
    "runs_root",
]
