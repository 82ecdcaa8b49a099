"""The supervisor: starts a deployment, watches it, stops and restarts its processes.

Every public method returns at once. Blocking work (spawning, waiting for /health,
grace periods between signals) runs on the supervisor's own threads; long operations
hand back a `concurrent.futures.Future` (`await asyncio.wrap_future(f)` from asyncio).

This module is the state machine: `Member` records guarded by one lock, and every change
of an instance's state goes through `_transition`, which publishes a StateChanged event
and marks the typed run state dirty. The jobs around it live in their own modules:
spawn + readiness (starting.py), the monitor loop, exits and health (monitor.py, health.py),
stop and restart (stopping.py), control requests from other pdtui processes
(requests.py), the owner-death watchdog (watchdog.py); processes themselves are run by
an InstanceBackend (backend.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING

from pdtui.model.render import DeploymentPlan
from pdtui.runtime import control
from pdtui.runtime.backend import InstanceBackend, LocalProcessBackend
from pdtui.runtime.events import Callback, DeploymentEvent, EventBus, StateChanged
from pdtui.runtime.logtail import last_lines
from pdtui.runtime.member import Member
from pdtui.runtime.members import LaunchSpec, specs_from_plan
from pdtui.runtime.monitor import MonitorMixin
from pdtui.runtime.processes import DEFAULT_STOP_SEQUENCE
from pdtui.runtime.requests import ControlMixin
from pdtui.runtime.starting import StartMixin
from pdtui.runtime.status import DeploymentStatus, InstanceState, InstanceStatus
from pdtui.runtime.stopping import StopMixin
from pdtui.runtime.watchdog import WatchdogLink

if TYPE_CHECKING:
    from pdtui.runtime.runstate import RunState

log = logging.getLogger(__name__)

S = InstanceState
# How long subscribe() and watch_closely() keep the monitor at its fast tick.
WATCH_CLOSELY_S = 5.0


class AttachError(Exception):
    pass


class Supervisor(StartMixin, MonitorMixin, StopMixin, ControlMixin):
    def __init__(
        self,
        plan: DeploymentPlan | None,
        run_dir: str | Path,
        *,
        detach: bool = False,
        auto_restart: bool = False,
        stop_sequence: tuple[tuple[str, float], ...] = DEFAULT_STOP_SEQUENCE,
        profile_name: str | None = None,
        backend: InstanceBackend | None = None,
        _specs: list[LaunchSpec] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_name = self.run_dir.name
        self._control_dir = str(self.run_dir / control.CONTROL_DIR)
        self.plan = plan
        self.profile_name = profile_name or (plan.profile_name if plan else self.run_name)
        self.detached = detach
        self.auto_restart = auto_restart
        self.stop_sequence = tuple(stop_sequence)
        self.created = time.time()
        self.backend: InstanceBackend = backend or LocalProcessBackend(self.run_name, self.run_dir)
        if _specs is not None:
            specs = _specs
        elif plan is not None:
            specs = specs_from_plan(plan, self.run_dir)
        else:
            raise ValueError("Supervisor needs a plan (or the specs of a recorded run)")
        self._members: dict[str, Member] = {s.name: Member(s) for s in specs}
        self._order = [s.name for s in specs]
        self._lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._bus = EventBus()
        self._dirty = False
        self._closed = threading.Event()
        self._wake = threading.Event()  # cuts the monitor's wait short (state change, close)
        self._fast_until = 0.0  # monotonic time until which the monitor ticks fast
        self.monitor_ticks = 0  # how many ticks the monitor ran (tests and benchmarks)
        self.monitor_tick_s = 0.0  # the pace it chose for its next wait (tests: a state, not a stopwatch)
        self._deployment_stopping = False
        self._abort_start = threading.Event()
        # Set when the whole deployment was stopped (by us, a control request, the UI):
        # a foreground `pdtui up` returns on it, whatever state the instances ended in.
        self.stopped = threading.Event()
        self._watchdog = WatchdogLink(self.run_dir)
        self._monitor: threading.Thread | None = None
        self._owner = True
        self._read_only = False
        self._records_pending = False  # launch.sh and plan.json not written yet (launch)

    # ------------------------------------------------------------------ creation ----
    @classmethod
    def launch(cls, profile, *, run_root: Path | None = None, python: str | None = None, **kwargs) -> Supervisor:
        """Render `profile` (a validated pdtui.model Profile) into a new run directory."""
        from pdtui.model.render import render_plan, write_lmcache_configs
        from pdtui.runtime.rundir import new_run_dir

        run_dir = new_run_dir(profile.name, run_root)
        plan = render_plan(profile, run_dir, python=python)
        # What the engines read; launch.sh and plan.json follow once the spawns began
        # (_write_plan_records). A run directory: no fsync (see atomic_write).
        write_lmcache_configs(plan, durable=False)
        sup = cls(plan, run_dir, **kwargs)
        sup._records_pending = True
        return sup

    @classmethod
    def attach(cls, run_dir: str | Path, *, take_ownership: bool = True, read_only: bool = False) -> Supervisor:
        """Re-attach to a run from its state.json. Each recorded pid is verified (psutil
        create_time + cmdline); one that is gone or recycled shows as failed with why (the
        root cause from its log when there is one) and, unless read_only, what is left of
        its process tree is stopped. Raises AttachError when the state file cannot be used.
        take_ownership: this process becomes the run's owner (answers `pdtui down/restart`
        of others) until close()/detach(). read_only: only look; never writes or signals."""
        from pdtui.runtime.statefile import StateFileError, read_state

        run_dir = Path(run_dir)
        try:
            state = read_state(run_dir)
        except StateFileError as exc:
            raise AttachError(str(exc)) from None
        specs = [LaunchSpec.from_record(name, state.instances[name].model_dump()) for name in state.order]
        sup = cls(
            None,
            run_dir,
            detach=state.detached,
            auto_restart=state.auto_restart,
            stop_sequence=tuple((s, float(g)) for s, g in state.stop_sequence),
            profile_name=state.profile,
            _specs=specs,
        )
        sup.created = state.created
        sup._owner = take_ownership and not read_only
        sup._read_only = read_only
        sup._adopt(state)
        if take_ownership:
            sup._persist()
            sup._ensure_monitor()
        sup._publish(DeploymentEvent(sup.run_name, "attached", f"re-attached to {sup.run_name}"))
        return sup

    # ------------------------------------------------------------------ events ----
    def subscribe(self, callback: Callback, *, log_lines: bool = True) -> Callable[[], None]:
        """callback(event) runs on a supervisor thread; returns the unsubscribe function.
        log_lines=False: no LogLines (a caller that tails the logs itself, as the UI's
        deployment monitor does)."""
        self.watch_closely()
        return self._bus.subscribe(callback, log_lines=log_lines)

    def subscribe_queue(self, maxsize: int = 10000):
        self.watch_closely()
        return self._bus.subscribe_queue(maxsize)

    def watch_closely(self, for_s: float = WATCH_CLOSELY_S) -> None:
        """Tick fast (log lines and exits within ~0.1 s) for the next for_s seconds, even
        if the run is idle: e.g. a screen that shows live logs calls this when it opens."""
        with self._lock:
            self._fast_until = max(self._fast_until, time.monotonic() + for_s)
        self._wake.set()

    def _publish(self, event) -> None:
        self._bus.publish(event)

    # ------------------------------------------------------------------ status ----
    def status(self) -> DeploymentStatus:
        with self._lock:
            return DeploymentStatus(
                run_name=self.run_name,
                run_dir=str(self.run_dir),
                profile=self.profile_name,
                detached=self.detached,
                instances=tuple(self._members[n].status for n in self._order),
                stopping=self._deployment_stopping,
            )

    def instance(self, name: str) -> InstanceStatus:
        with self._lock:
            return self._member(name).status

    def names(self) -> list[str]:
        return list(self._order)

    def log_tail(self, name: str, count: int = 200) -> list[str]:
        """The last lines of an instance's log (reads the file: call off the UI thread)."""
        return last_lines(self._member(name).spec.log_path, count)

    def _member(self, name: str) -> Member:
        try:
            return self._members[name]
        except KeyError:
            raise KeyError(f"no instance named {name!r} in run {self.run_name}; known: {', '.join(self._order)}") from None

    # ------------------------------------------------------------------ state machine ----
    def _transition(self, member: Member, generation: int | None = None, allowed_from: tuple[S, ...] | None = None, **changes) -> bool:
        """Change a member's status; False (and nothing changed) when it moved on meanwhile."""
        with self._lock:
            if generation is not None and member.generation != generation:
                return False
            if allowed_from is not None and member.status.state not in allowed_from:
                return False
            previous = member.status
            if changes.get("state", previous.state) != S.READY:
                changes.setdefault("health", None)  # health is a property of a ready instance
                changes.setdefault("health_detail", None)
            member.status = previous.evolve(**changes)
            self._dirty = True
            event = StateChanged(self.run_name, member.spec.name, member.status, previous.state)
        if previous.state != event.status.state:
            self._wake.set()  # the monitor may be in an idle wait: a start or stop needs fast ticks
        if (previous.state, previous.reason, previous.health, previous.health_detail) != (
            event.status.state, event.status.reason, event.status.health, event.status.health_detail
        ):
            self._publish(event)
        return True

    # ------------------------------------------------------------------ run state ----
    def _run_state(self) -> RunState:
        # Imported here: the typed run state (pydantic models) is first needed right after
        # the first spawn, not on `up`'s way to it.
        from pdtui.runtime.runstate import InstanceRecord, OwnerRecord, RunState
        from pdtui.runtime.statefile import process_identity

        with self._lock:
            instances = {}
            for name in self._order:
                m = self._members[name]
                st = m.status
                handle = m.handle
                running = handle if handle is not None and st.pid is not None else None
                rec = m.spec.to_record()
                rec.update(
                    state=st.state.value,
                    health=st.health,
                    health_detail=st.health_detail,
                    reason=st.reason,
                    milestone=st.milestone,
                    pid=running.pid if running else None,
                    # The group is kept after the leader died: what is left of the tree
                    # (EngineCore) is still found through it and the run marker.
                    pgid=handle.pgid if handle is not None else None,
                    create_time=running.create_time if running else None,
                    cmdline=running.cmdline if running else None,
                    tree=list(m.tree),
                    log_start=m.log_start,
                    started_at=st.started_at,
                    ready_at=st.ready_at,
                    exit_code=st.exit_code,
                    restarts=st.restarts,
                )
                instances[name] = InstanceRecord.model_validate(rec)
            owner = None
            if self._owner and not self._closed.is_set():
                identity = process_identity(os.getpid())
                owner = OwnerRecord(pid=os.getpid(), create_time=identity[0] if identity else None)
            self._dirty = False
            return RunState(
                run_name=self.run_name,
                profile=self.profile_name,
                created=self.created,
                detached=self.detached,
                auto_restart=self.auto_restart,
                stop_sequence=[(s, g) for s, g in self.stop_sequence],
                owner=owner,
                order=list(self._order),
                instances=instances,
            )

    def _write_plan_records(self) -> None:
        """launch.sh and plan.json of a launched run, once (after its first spawns)."""
        if not self._records_pending or self.plan is None:
            return
        self._records_pending = False
        from pdtui.model.render import write_plan_records

        try:
            write_plan_records(self.plan, self.run_dir, durable=False)
        except OSError as exc:
            log.error("cannot write launch.sh / plan.json in %s: %s", self.run_dir, exc)

    def _persist(self) -> None:
        if self._read_only:
            return
        from pdtui.runtime.statefile import write_state

        with self._state_lock:
            try:
                write_state(self.run_dir, self._run_state())
            except OSError as exc:
                log.error("cannot write %s/state.json: %s", self.run_dir, exc)

    # ------------------------------------------------------------------ detach / close ----
    def detach(self) -> None:
        """Leave the deployment running on its own and stop watching it."""
        # One write, detached with no owner, before the watchdog is told: if we die between
        # the two, the watchdog finds the run detached and leaves it running, as asked.
        with self._lock:
            self.detached = True
            self._owner = False
        self._persist()
        self._watchdog.detach()  # tells the watchdog through its pipe: it needs no file for it
        self._closed.set()
        self._wake.set()
        self._publish(DeploymentEvent(self.run_name, "detached", f"{self.run_name} keeps running; re-attach with `pdtui status`/the TUI"))

    def close(self) -> None:
        """Blocking: stop the deployment unless detached, then end our threads."""
        if self._closed.is_set() and not self._owner:
            return
        if not self.detached and self._owner and any(m.handle is not None and m.handle.group_alive() for m in self._members.values()):
            self._stop_all()
        was_owner = self._owner
        self._owner = False
        self._closed.set()
        self._wake.set()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=5)
        if was_owner:
            self._persist()
        self._watchdog.release()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def owner_of(run_dir: str | Path) -> int | None:
    """pid of the live pdtui process that owns a run, if any."""
    from pdtui.runtime.statefile import StateFileError, live_owner_pid, read_state

    try:
        return live_owner_pid(read_state(run_dir))
    except StateFileError:
        return None


__all__ = ["AttachError", "Supervisor", "owner_of"]
