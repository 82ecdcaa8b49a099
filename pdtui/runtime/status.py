"""What the supervisor knows about each process: plain immutable snapshots."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, replace


class InstanceHealth(str, enum.Enum):
    """How a ready instance answers; stored as its value in InstanceStatus.health."""

    UNRESPONSIVE = "unresponsive"  # its /health timed out (hung, SIGSTOP, overloaded)
    DEGRADED = "degraded"  # the proxy reports it unhealthy / routes around it

    def __str__(self) -> str:
        return self.value


class InstanceState(str, enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"

    def __str__(self) -> str:  # so f"{state}" prints "ready", not "InstanceState.READY"
        return self.value


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    kind: str  # "proxy" | "prefiller" | "decoder"
    state: InstanceState = InstanceState.STOPPED
    milestone: str | None = None  # latest start-up milestone kind (pdtui.telemetry.events.MILESTONE_KINDS)
    milestone_detail: str = ""
    reason: str | None = None  # why it failed
    # While ready: None = answering, "unresponsive" = its /health timed out, "degraded" = the
    # proxy reports it unhealthy (e.g. a prefiller whose KV notifications time out).
    health: str | None = None
    health_detail: str | None = None
    pid: int | None = None
    pgid: int | None = None
    exit_code: int | None = None
    started_at: float | None = None
    ready_at: float | None = None
    restarts: int = 0
    port: int | None = None
    gpus: tuple[int, ...] = ()
    log_path: str = ""
    health_url: str = ""
    argv: tuple[str, ...] = field(default=(), repr=False)
    where: str | None = None  # where it runs when not on this machine: "on NODE, step JOB.N" (a Slurm run)

    @property
    def uptime_s(self) -> float | None:
        if self.started_at is None or self.state not in (InstanceState.STARTING, InstanceState.READY):
            return None
        return max(0.0, time.time() - self.started_at)

    @property
    def is_running(self) -> bool:
        return self.state in (InstanceState.STARTING, InstanceState.READY, InstanceState.STOPPING)

    def evolve(self, **changes) -> InstanceStatus:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state.value,
            "milestone": self.milestone,
            "milestone_detail": self.milestone_detail,
            "reason": self.reason,
            "health": self.health,
            "health_detail": self.health_detail,
            "pid": self.pid,
            "pgid": self.pgid,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "uptime_s": self.uptime_s,
            "restarts": self.restarts,
            "port": self.port,
            "gpus": list(self.gpus),
            "log_path": self.log_path,
            "health_url": self.health_url,
        }


@dataclass(frozen=True)
class DeploymentStatus:
    run_name: str
    run_dir: str
    profile: str
    detached: bool
    instances: tuple[InstanceStatus, ...]  # start order, proxy first
    stopping: bool = False

    def instance(self, name: str) -> InstanceStatus:
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    @property
    def phase(self) -> str:
        """stopped | starting | ready | degraded | failed | stopping, for one headline."""
        states = [i.state for i in self.instances]
        if self.stopping or InstanceState.STOPPING in states:
            return "stopping"
        if all(s == InstanceState.READY for s in states):
            return "degraded" if any(i.health for i in self.instances) else "ready"
        if all(s == InstanceState.STOPPED for s in states):
            return "stopped"
        if InstanceState.FAILED in states:
            return "degraded" if InstanceState.READY in states else "failed"
        if InstanceState.STARTING in states:
            return "starting"
        return "degraded"

    def to_dict(self) -> dict:
        return {
            "run_name": self.run_name,
            "run_dir": self.run_dir,
            "profile": self.profile,
            "detached": self.detached,
            "phase": self.phase,
            "instances": [i.to_dict() for i in self.instances],
        }
