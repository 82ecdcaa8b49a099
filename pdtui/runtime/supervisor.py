"""The supervisor: starts a deployment, watches it, stops and restarts its processes.

Every public method returns at once. Blocking work (spawning, waiting for /health,
grace periods between signals) runs on the supervisor's own threads; long operations
hand back a `concurrent.futures.Future` (`await asyncio.wrap_future(f)` from asyncio).
State lives in `_Member` records guarded by one lock; every change of an instance's
state goes through `_transition`, which publishes a StateChanged event and marks the
state file dirty. One monitor thread tails the log files (batched LogLines events,
start-up milestones), notices exits, takes control requests from other pdtui processes
and flushes state.json.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

from pdtui.model.render import DeploymentPlan, mask_env
from pdtui.runtime import control
from pdtui.runtime.events import (
    Callback,
    DeploymentEvent,
    EventBus,
    LogLines,
    ReadinessProgress,
    StateChanged,
)
from pdtui.runtime.logtail import LogTailer, last_lines
from pdtui.runtime.members import LaunchSpec, specs_from_plan
from pdtui.runtime.preflight import PreflightError, preflight
from pdtui.runtime.processes import DEFAULT_STOP_SEQUENCE, ProcessHandle, open_private_log, spawn, stop_group
from pdtui.runtime.readiness import probe_health
from pdtui.runtime.status import DeploymentStatus, InstanceState, InstanceStatus
from pdtui.runtime.statefile import (
    STATE_VERSION,
    StateFileError,
    live_owner_pid,
    process_identity,
    read_state,
    verify_process,
    write_state,
)

log = logging.getLogger(__name__)

S = InstanceState
READINESS_POLL_S = 0.2
# The monitor's pace. It ticks fast while anything starts or stops, while log lines pour
# in (BURST_LINES or more in one tick: a traceback, a load test) and when a subscriber asks
# (watch_closely); once that has been over for QUIET_AFTER_S the tick doubles up to
# IDLE_TICK_S. A few lines now and then do not count: a ready engine logs an access line
# for every /health and /metrics GET (the proxy's health check, the UI's scrape), and
# those alone would otherwise keep an idle run at the fast tick for ever. A TUI left open
# on an idle deployment then costs a few stat() calls a second, plus one read of a log
# when it grew, instead of opening every log every 0.1 s.
MONITOR_TICK_S = 0.1
IDLE_TICK_S = 0.5
QUIET_AFTER_S = 2.0
BURST_LINES = 10
# Liveness. Our own children cost one waitpid(WNOHANG) each and are checked every tick
# (a crash is noticed within IDLE_TICK_S). Attached processes are not our children: the
# first check is a psutil verification, later ones a read of /proc/<pid>/stat
# (ProcessHandle.poll); they are checked at this pace (a crash is seen within ~1 s).
ATTACHED_EXIT_CHECK_S = 0.5
ATTACHED_EXIT_CHECK_IDLE_S = 1.0
# Control requests (`pdtui down/restart` from another process): the control directory is
# listed when its mtime moves, and at least this often in case two requests landed
# within one mtime tick.
CONTROL_CHECK_S = 0.3
CONTROL_RESCAN_S = 2.0
# How long subscribe() and watch_closely() keep the monitor at its fast tick.
WATCH_CLOSELY_S = 5.0
BUSY_STATES = (InstanceState.STARTING, InstanceState.STOPPING)


class AttachError(Exception):
    pass


class _Member:
    """Mutable per-process record; only touched with Supervisor._lock held."""

    def __init__(self, spec: LaunchSpec) -> None:
        self.spec = spec
        self.status = InstanceStatus(
            name=spec.name,
            kind=spec.kind,
            port=spec.port,
            gpus=spec.gpus,
            log_path=spec.log_path,
            health_url=spec.health_url,
            argv=spec.argv,
        )
        self.handle: ProcessHandle | None = None
        self.generation = 0  # bumped on every (re)start so stale waits can tell
        self.log_start = 0  # offset of this generation's output in the log file
        self.tailer = LogTailer.at_end(spec.log_path) if spec.log_path else None
        self.stopping = False
        self.crashes = 0  # consecutive, for the auto-restart backoff
        self.done = threading.Event()  # set when a start attempt ended (ready or failed)
        self.done.set()


class Supervisor:
    def __init__(
        self,
        plan: DeploymentPlan | None,
        run_dir: str | Path,
        *,
        detach: bool = False,
        auto_restart: bool = False,
        stop_sequence: tuple[tuple[str, float], ...] = DEFAULT_STOP_SEQUENCE,
        profile_name: str | None = None,
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
        specs = _specs if _specs is not None else specs_from_plan(plan, self.run_dir)
        self._members: dict[str, _Member] = {s.name: _Member(s) for s in specs}
        self._order = [s.name for s in specs]
        self._lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._bus = EventBus()
        self._dirty = False
        self._closed = threading.Event()
        self._wake = threading.Event()  # cuts the monitor's wait short (state change, close)
        self._fast_until = 0.0  # monotonic time until which the monitor ticks fast
        self.monitor_ticks = 0  # how many ticks the monitor ran (tests and benchmarks)
        self._deployment_stopping = False
        self._abort_start = threading.Event()
        self._watchdog: subprocess.Popen | None = None
        self._watchdog_pipe: int | None = None
        self._monitor: threading.Thread | None = None
        self._owner = True
        self._read_only = False

    # ------------------------------------------------------------------ creation ----
    @classmethod
    def launch(cls, profile, *, run_root: Path | None = None, python: str | None = None, **kwargs) -> Supervisor:
        """Render `profile` (a validated pdtui.model Profile) into a new run directory."""
        from pdtui.model import render_plan, write_rendered
        from pdtui.runtime.rundir import new_run_dir

        run_dir = new_run_dir(profile.name, run_root)
        plan = render_plan(profile, run_dir, python=python)
        write_rendered(plan, run_dir)
        return cls(plan, run_dir, **kwargs)

    @classmethod
    def attach(cls, run_dir: str | Path, *, take_ownership: bool = True, read_only: bool = False) -> Supervisor:
        """Re-attach to a run from its state.json. Each recorded pid is verified (psutil
        create_time + cmdline); one that is gone or recycled shows as failed with why.
        Raises AttachError when the state file cannot be used. take_ownership: this
        process becomes the run's owner (answers `pdtui down/restart` of others) until
        close()/detach(). read_only: only look (status, logs); never writes state.json."""
        run_dir = Path(run_dir)
        try:
            state = read_state(run_dir)
        except StateFileError as exc:
            raise AttachError(str(exc)) from None
        specs = []
        for name in state.get("order") or list(state["instances"]):
            rec = state["instances"].get(name)
            if rec is None:
                continue
            try:
                specs.append(LaunchSpec.from_record(name, rec))
            except (TypeError, ValueError) as exc:
                raise AttachError(f"{run_dir / 'state.json'}: instances.{name}: {exc}") from None
        stop_sequence = tuple((str(s), float(g)) for s, g in state.get("stop_sequence") or DEFAULT_STOP_SEQUENCE)
        sup = cls(
            None,
            run_dir,
            detach=bool(state.get("detached")),
            auto_restart=bool(state.get("auto_restart")),
            stop_sequence=stop_sequence,
            profile_name=str(state.get("profile", run_dir.name)),
            _specs=specs,
        )
        sup.created = float(state.get("created") or time.time())
        sup._owner = take_ownership and not read_only
        sup._read_only = read_only
        sup._adopt(state)
        if take_ownership:
            sup._persist()
            sup._ensure_monitor()
        sup._publish(DeploymentEvent(sup.run_name, "attached", f"re-attached to {sup.run_name}"))
        return sup

    def _adopt(self, state: dict) -> None:
        now = time.time()
        for name, member in self._members.items():
            rec = state["instances"][name]
            recorded = str(rec.get("state", "stopped"))
            common = dict(
                restarts=int(rec.get("restarts") or 0),
                started_at=rec.get("started_at"),
                ready_at=rec.get("ready_at"),
                milestone=rec.get("milestone"),
                exit_code=rec.get("exit_code"),
            )
            problem = verify_process(rec.get("pid"), rec.get("create_time"), rec.get("cmdline"))
            if problem is None:
                pid = int(rec["pid"])
                member.handle = ProcessHandle(pid, int(rec.get("pgid") or pid), float(rec["create_time"]), list(rec.get("cmdline") or []), member.spec.log_path)
                member.log_start = int(rec.get("log_start") or 0)
                ready = probe_health(member.spec.health_url, 1.0, any_status=member.spec.is_proxy) if member.spec.health_url else True
                if ready:
                    st = S.READY
                    common["ready_at"] = common["ready_at"] or now
                    reason = None
                elif recorded == "starting" and not self._read_only:
                    st, reason = S.STARTING, None
                    member.done.clear()
                    threading.Thread(target=self._await_ready, args=(member, member.generation), daemon=True).start()
                else:
                    st, reason = S.READY, None  # running but /health not answering right now: leave it be
                member.status = member.status.evolve(state=st, pid=pid, pgid=member.handle.pgid, reason=reason, **common)
            elif recorded in ("starting", "ready", "stopping"):
                member.status = member.status.evolve(state=S.FAILED, reason=problem, pid=None, pgid=None, **common)
            else:
                member.status = member.status.evolve(
                    state=S(recorded) if recorded in S._value2member_map_ else S.STOPPED, reason=rec.get("reason"), **common
                )

    # ------------------------------------------------------------------ events ----
    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """callback(event) runs on a supervisor thread; returns the unsubscribe function."""
        self.watch_closely()
        return self._bus.subscribe(callback)

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

    def _member(self, name: str) -> _Member:
        try:
            return self._members[name]
        except KeyError:
            raise KeyError(f"no instance named {name!r} in run {self.run_name}; known: {', '.join(self._order)}") from None

    def _transition(self, member: _Member, generation: int | None = None, allowed_from: tuple[S, ...] | None = None, **changes) -> bool:
        """Change a member's status; False (and nothing changed) when it moved on meanwhile."""
        with self._lock:
            if generation is not None and member.generation != generation:
                return False
            if allowed_from is not None and member.status.state not in allowed_from:
                return False
            previous = member.status
            member.status = previous.evolve(**changes)
            self._dirty = True
            event = StateChanged(self.run_name, member.spec.name, member.status, previous.state)
        if previous.state != event.status.state:
            self._wake.set()  # the monitor may be in an idle wait: a start or stop needs fast ticks
        if previous.state != event.status.state or previous.reason != event.status.reason:
            self._publish(event)
        return True

    # ------------------------------------------------------------------ state file ----
    def _state_dict(self) -> dict:
        with self._lock:
            instances = {}
            for name in self._order:
                m = self._members[name]
                st = m.status
                rec = m.spec.to_record()
                rec.update(
                    state=st.state.value,
                    reason=st.reason,
                    milestone=st.milestone,
                    pid=m.handle.pid if m.handle and st.pid else None,
                    pgid=m.handle.pgid if m.handle and st.pid else None,
                    create_time=m.handle.create_time if m.handle and st.pid else None,
                    cmdline=m.handle.cmdline if m.handle and st.pid else None,
                    log_start=m.log_start,
                    started_at=st.started_at,
                    ready_at=st.ready_at,
                    exit_code=st.exit_code,
                    restarts=st.restarts,
                )
                instances[name] = rec
            owner = None
            if self._owner and not self._closed.is_set():
                identity = process_identity(os.getpid())
                owner = {"pid": os.getpid(), "create_time": identity[0] if identity else None}
            self._dirty = False
            return {
                "version": STATE_VERSION,
                "run_name": self.run_name,
                "profile": self.profile_name,
                "created": self.created,
                "detached": self.detached,
                "auto_restart": self.auto_restart,
                "stop_sequence": [list(s) for s in self.stop_sequence],
                "owner": owner,
                "order": list(self._order),
                "instances": instances,
            }

    def _persist(self) -> None:
        if self._read_only:
            return
        with self._state_lock:
            try:
                write_state(self.run_dir, self._state_dict())
            except OSError as exc:
                log.error("cannot write %s/state.json: %s", self.run_dir, exc)

    # ------------------------------------------------------------------ preflight ----
    def preflight(self) -> list[str]:
        """What would make the start fail (blocking: a few port binds, maybe a subprocess)."""
        if self.plan is None:
            return []
        return preflight(self.plan)

    # ------------------------------------------------------------------ start ----
    def start(self, *, stop_on_failure: bool = True, run_preflight: bool = True) -> Future:
        """Start the deployment: proxy, then decoders, then prefillers; instances that share
        a GPU one after another (vLLM profiles free GPU memory at start-up), the others at
        once. The Future resolves to True when all are ready, False when one failed (then,
        with stop_on_failure, everything is stopped again); PreflightError when refused."""
        future: Future = Future()
        future.set_running_or_notify_cancel()
        threading.Thread(target=self._start_all, args=(future, stop_on_failure, run_preflight), name="pdtui-start", daemon=True).start()
        return future

    def _start_all(self, future: Future, stop_on_failure: bool, run_preflight: bool) -> None:
        try:
            problems = self.preflight() if run_preflight else []
            if problems:
                self._publish(DeploymentEvent(self.run_name, "preflight_failed", "; ".join(problems)))
                future.set_exception(PreflightError(problems))
                return
            self._abort_start.clear()
            self._persist()
            if not self.detached:
                self._start_watchdog()
            self._ensure_monitor()
            names = list(self._order)
            proxy_first = [n for n in names if self._members[n].spec.is_proxy]
            rest = [n for n in names if not self._members[n].spec.is_proxy]
            ok = all(self._start_member_and_wait(self._members[n]) for n in proxy_first)
            if ok:
                ok = self._start_concurrently(rest, stop_on_failure)
            if ok:
                ok = self._await_front_door(proxy_first)
            if ok:
                self._publish(DeploymentEvent(self.run_name, "ready", f"all {len(names)} processes ready"))
                future.set_result(True)
                return
            reasons = [f"{m.spec.name}: {m.status.reason}" for m in self._members.values() if m.status.state == S.FAILED]
            message = "; ".join(reasons) or "start aborted"
            self._publish(DeploymentEvent(self.run_name, "failed", message))
            if stop_on_failure:
                self._stop_all()
            future.set_result(False)
        except BaseException as exc:  # never leave the Future hanging
            log.exception("start of %s failed", self.run_name)
            if not future.done():
                future.set_exception(exc)

    def _await_front_door(self, proxies: list[str]) -> bool:
        """The proxy answers 503 until its own health check has seen a healthy prefiller and
        decoder (every ~2 s): "all ready" means requests through it work."""
        for name in proxies:
            member = self._members[name]
            deadline = time.monotonic() + member.spec.startup_timeout_s
            while not probe_health(member.spec.health_url, 1.0):
                if member.status.state != S.READY or self._abort_start.is_set():
                    return False
                if time.monotonic() > deadline:
                    self._transition(member, state=S.FAILED, reason=f"its /health did not turn 200 within {member.spec.startup_timeout_s:g} s after all instances were ready")
                    return False
                time.sleep(READINESS_POLL_S)
        return True

    def _start_concurrently(self, names: list[str], stop_on_failure: bool) -> bool:
        results: dict[str, bool] = {}
        threads = []
        for i, name in enumerate(names):
            member = self._members[name]
            gpus = set(member.spec.gpus)
            before = [self._members[n] for n in names[:i] if gpus & set(self._members[n].spec.gpus)]
            member.done.clear()  # so that later members sharing its GPU wait for it

            def run(member=member, before=before) -> None:
                for other in before:
                    other.done.wait()
                if self._abort_start.is_set():
                    member.done.set()
                    results[member.spec.name] = False
                    return
                ok = self._start_member_and_wait(member)
                results[member.spec.name] = ok
                if not ok and stop_on_failure:
                    self._abort_start.set()

            t = threading.Thread(target=run, name=f"pdtui-start-{name}", daemon=True)
            threads.append(t)
            t.start()
        for t in threads:
            t.join()
        return all(results.get(n, False) for n in names)

    def _start_member_and_wait(self, member: _Member) -> bool:
        generation = self._spawn_member(member)
        if generation is None:
            member.done.set()
            return False
        return self._await_ready(member, generation)

    def _spawn_member(self, member: _Member) -> int | None:
        spec = member.spec
        with self._lock:
            member.generation += 1
            generation = member.generation
            member.stopping = False
            member.done.clear()
        try:
            env = spec.full_environment()
        except LookupError as exc:
            self._transition(member, generation, state=S.FAILED, reason=str(exc), pid=None, pgid=None)
            return None
        for directory in (spec.prometheus_dir, env.get("PDTUI_SIM_GPU_DIR")):
            if directory:
                Path(directory).mkdir(parents=True, exist_ok=True)
        self._write_argv_file(spec)
        try:
            log_start = os.path.getsize(spec.log_path)
        except OSError:
            log_start = 0
        with self._lock:
            member.log_start = log_start
        try:
            handle = spawn(spec.argv, env, spec.log_path, cwd=self.run_dir)
        except OSError as exc:
            self._transition(member, generation, state=S.FAILED, reason=f"cannot execute {spec.argv[0]}: {exc.strerror or exc}", pid=None, pgid=None)
            return None
        with self._lock:
            member.handle = handle
        self._transition(
            member,
            generation,
            state=S.STARTING,
            pid=handle.pid,
            pgid=handle.pgid,
            exit_code=None,
            reason=None,
            milestone=None,
            milestone_detail="",
            started_at=time.time(),
            ready_at=None,
        )
        self._persist()  # at once: the watchdog must know this pid if we die now
        return generation

    def _await_ready(self, member: _Member, generation: int) -> bool:
        spec = member.spec
        started = member.status.started_at or time.time()
        deadline = started + spec.startup_timeout_s
        try:
            while True:
                with self._lock:
                    if member.generation != generation:
                        return False
                    state = member.status.state
                if state == S.READY:
                    return True
                if state != S.STARTING:
                    return False  # failed (noticed by the monitor) or being stopped
                if self._check_exit(member, generation):
                    return False
                if not spec.health_url or probe_health(spec.health_url, 1.0, any_status=spec.is_proxy):
                    if self._transition(member, generation, (S.STARTING,), state=S.READY, ready_at=time.time()):
                        with self._lock:
                            member.crashes = 0
                        self._persist()
                        return True
                    continue
                if time.time() > deadline:
                    milestone = member.status.milestone
                    reason = f"not ready after {spec.startup_timeout_s:g} s" + (f" (last start-up step: {milestone})" if milestone else " (no start-up step seen in its log)")
                    if self._transition(member, generation, (S.STARTING,), state=S.FAILED, reason=reason):
                        self._kill_member(member, mark=False)
                    return False
                time.sleep(READINESS_POLL_S)
        finally:
            with self._lock:
                if member.generation == generation:
                    member.done.set()

    def _write_argv_file(self, spec: LaunchSpec) -> None:
        from pdtui.model.files import atomic_write

        record = {"argv": list(spec.argv), "env": mask_env(spec.env, spec.secret_keys), "time": time.time()}
        try:
            atomic_write(self.run_dir / f"{spec.name}.argv.json", json.dumps(record, indent=2) + "\n")
        except OSError as exc:
            log.warning("cannot write argv file of %s: %s", spec.name, exc)

    # ------------------------------------------------------------------ exits ----
    def _check_exit(self, member: _Member, generation: int | None = None) -> bool:
        """Notice that a starting/ready process has exited; mark it failed with why."""
        with self._lock:
            handle = member.handle
            if handle is None or member.stopping or member.status.state not in (S.STARTING, S.READY):
                return False
            if generation is not None and member.generation != generation:
                return False
            gen = member.generation
            was = member.status.state
        code = handle.poll()
        if code is None:
            return False
        reason = self._exit_reason(member, code, was)
        if not self._transition(member, gen, (S.STARTING, S.READY), state=S.FAILED, reason=reason, exit_code=None if code == -999 else code, pid=None, pgid=None):
            return False
        self._persist()
        if was == S.READY:
            self._publish(DeploymentEvent(self.run_name, "instance_crashed", f"{member.spec.name}: {reason}"))
            self._maybe_auto_restart(member)
        # The leader is gone; make sure no child of it (EngineCore, workers) lingers.
        if handle.group_alive():
            threading.Thread(target=stop_group, args=(handle, self.stop_sequence), daemon=True).start()
        return True

    def _exit_reason(self, member: _Member, code: int, was: S) -> str:
        from pdtui.telemetry.rootcause import find_root_cause

        when = "during start-up" if was == S.STARTING else "while running"
        if code == -999:
            head = f"process exited {when} (not our child: exit code unknown)"
        elif code < 0:
            import signal

            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            head = f"killed by {name} {when}"
        else:
            head = f"exited with code {code} {when}"
        lines = last_lines(member.spec.log_path, 400, start_offset=member.log_start)
        cause = find_root_cause(lines)
        if cause is not None:
            return f"{head}: {cause.summary}"
        tail = [line.strip() for line in lines if line.strip()][-1:]
        return f"{head}; last log line: {tail[0][:300]}" if tail else head

    def _maybe_auto_restart(self, member: _Member) -> None:
        if not self.auto_restart or self._deployment_stopping or self._closed.is_set():
            return
        with self._lock:
            member.crashes += 1
            delay = min(60.0, 2.0 ** (member.crashes - 1))
        self._publish(DeploymentEvent(self.run_name, "auto_restart", f"{member.spec.name}: restarting in {delay:g} s (crash {member.crashes})"))
        timer = threading.Timer(delay, lambda: None if self._deployment_stopping or self._closed.is_set() else self.restart(member.spec.name))
        timer.daemon = True
        timer.start()

    # ------------------------------------------------------------------ monitor ----
    def _ensure_monitor(self) -> None:
        with self._lock:
            if self._monitor is None or not self._monitor.is_alive():
                self._closed.clear()
                self._monitor = threading.Thread(target=self._monitor_loop, name="pdtui-monitor", daemon=True)
                self._monitor.start()

    def _monitor_loop(self) -> None:
        tick = MONITOR_TICK_S
        now = time.monotonic()
        last_attached_check = last_control_check = last_control_scan = 0.0
        last_activity = now  # the last tick that was busy or read a burst of lines
        control_mtime: int | None = None
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            if self._closed.is_set():
                return
            self.monitor_ticks += 1
            try:
                now = time.monotonic()
                busy = self._busy(now)
                check_attached = now - last_attached_check >= (ATTACHED_EXIT_CHECK_S if busy else ATTACHED_EXIT_CHECK_IDLE_S)
                if check_attached:
                    last_attached_check = now
                lines = 0
                for name in self._order:
                    member = self._members[name]
                    lines += self._tail(member)
                    handle = member.handle
                    if handle is not None and (handle.popen is not None or check_attached):
                        self._check_exit(member)
                if self._owner and now - last_control_check >= CONTROL_CHECK_S:
                    last_control_check = now
                    mtime = self._control_dir_mtime()
                    if mtime is not None and (mtime != control_mtime or now - last_control_scan >= CONTROL_RESCAN_S):
                        control_mtime, last_control_scan = mtime, now
                        self._handle_control_requests()
                if self._dirty:
                    self._persist()
                if busy or lines >= BURST_LINES:
                    last_activity = now
                    tick = MONITOR_TICK_S
                elif now - last_activity >= QUIET_AFTER_S:
                    tick = min(IDLE_TICK_S, tick * 2)
            except Exception:  # the monitor must survive anything one tick meets
                log.exception("supervisor monitor tick failed")

    def _busy(self, now: float) -> bool:
        """Whether the monitor should tick fast: something starts or stops, or a
        subscriber asked for it."""
        with self._lock:
            if now < self._fast_until or self._deployment_stopping:
                return True
            return any(m.status.state in BUSY_STATES for m in self._members.values())

    def _control_dir_mtime(self) -> int | None:
        try:
            return os.stat(self._control_dir).st_mtime_ns
        except OSError:
            return None

    def _tail(self, member: _Member) -> int:
        """Publish the new lines of a member's log; how many there were."""
        if member.tailer is None:
            return 0
        lines = member.tailer.read_lines()
        if not lines:
            return 0
        from pdtui.telemetry.events import MilestoneEvent
        from pdtui.telemetry.logparse import parse_line

        self._publish(LogLines(self.run_name, member.spec.name, tuple(lines)))
        for line in lines:
            event = parse_line(line)
            if isinstance(event, MilestoneEvent):
                started = member.status.started_at
                elapsed = time.time() - started if started else None
                self._transition(member, milestone=event.kind, milestone_detail=event.detail)
                self._publish(ReadinessProgress(self.run_name, member.spec.name, event.kind, event.detail, elapsed))
        return len(lines)

    def _handle_control_requests(self) -> None:
        for request_id, request in control.pending(self.run_dir):
            action = request.get("action")
            args = request.get("args") or {}

            def work(request_id=request_id, action=action, args=args) -> None:
                try:
                    if action == "stop":
                        self.stop().result()
                        control.answer(self.run_dir, request_id, True, f"stopped {self.run_name}")
                    elif action == "restart":
                        ok = self.restart(str(args.get("name"))).result()
                        st = self.instance(str(args.get("name")))
                        control.answer(self.run_dir, request_id, ok, f"{st.name}: {st.state}" + (f" ({st.reason})" if st.reason else ""))
                    elif action == "restart_pair":
                        ok = self.restart_pair(str(args.get("prefiller")), str(args.get("decoder"))).result()
                        control.answer(self.run_dir, request_id, ok, "pair restarted" if ok else "pair restart failed")
                    else:
                        control.answer(self.run_dir, request_id, False, f"unknown action {action!r}")
                except Exception as exc:
                    control.answer(self.run_dir, request_id, False, str(exc))

            threading.Thread(target=work, name="pdtui-control", daemon=True).start()

    # ------------------------------------------------------------------ stop ----
    def stop(self) -> Future:
        """Stop everything: instances first (prefillers, decoders), the proxy last."""
        future: Future = Future()
        future.set_running_or_notify_cancel()

        def run() -> None:
            try:
                self._stop_all()
                future.set_result(None)
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name="pdtui-stop", daemon=True).start()
        return future

    def _stop_all(self) -> None:
        self._abort_start.set()
        with self._lock:
            self._deployment_stopping = True
        try:
            names = [n for n in reversed(self._order) if not self._members[n].spec.is_proxy]
            self._stop_members([self._members[n] for n in names])
            self._stop_members([self._members[n] for n in self._order if self._members[n].spec.is_proxy])
        finally:
            with self._lock:
                self._deployment_stopping = False
            self._persist()
        self._publish(DeploymentEvent(self.run_name, "stopped", f"{self.run_name} stopped"))

    def _stop_members(self, members: list[_Member]) -> None:
        threads = [threading.Thread(target=self._kill_member, args=(m,), daemon=True) for m in members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _kill_member(self, member: _Member, mark: bool = True) -> None:
        """Stop one process group; mark=False keeps a failed state (and its reason)."""
        with self._lock:
            handle = member.handle
            member.stopping = True
            generation = member.generation
        if handle is None or not handle.group_alive():
            if mark and member.status.state in (S.STARTING, S.READY, S.STOPPING):
                self._transition(member, generation, state=S.STOPPED, pid=None, pgid=None)
            return
        if mark:
            self._transition(member, generation, state=S.STOPPING)
        how = stop_group(handle, self.stop_sequence)
        code = handle.poll()
        if mark:
            reason = None
            if how == "SIGKILL":
                reason = "did not stop on SIGINT/SIGTERM: killed with SIGKILL"
            elif how == "survived":
                reason = "survived SIGKILL (stuck in the kernel?)"
            self._transition(
                member,
                generation,
                state=S.FAILED if how == "survived" else S.STOPPED,
                reason=reason,
                exit_code=None if code in (None, -999) else code,
                pid=None if how != "survived" else handle.pid,
                pgid=None if how != "survived" else handle.pgid,
            )
        self._persist()

    # ------------------------------------------------------------------ restart ----
    def restart(self, name: str, spec: LaunchSpec | None = None) -> Future:
        """Stop one process (if running) and start it again; Future[bool] = ready again.
        With `spec` (same name) it starts with that argv/env instead: the saved profile's
        settings rather than the ones it ran with."""
        member = self._member(name)
        if spec is not None:
            if spec.name != name or spec.kind != member.spec.kind:
                raise ValueError(f"restart {name!r}: the new settings are for {spec.kind} {spec.name!r}")
            with self._lock:
                member.spec = spec
                member.status = member.status.evolve(argv=spec.argv, port=spec.port, gpus=spec.gpus, health_url=spec.health_url)
        return self._restart_members([member])

    def restart_pair(self, prefiller: str, decoder: str) -> Future:
        """Restart a prefiller and a decoder together: a restarted prefiller leaves the
        decoder with stale NIXL state. Both are stopped, then the decoder starts first."""
        p, d = self._member(prefiller), self._member(decoder)
        if p.spec.kind != "prefiller" or d.spec.kind != "decoder":
            raise ValueError(f"restart_pair needs a prefiller and a decoder, got {p.spec.kind} {prefiller!r} and {d.spec.kind} {decoder!r}")
        return self._restart_members([d, p])

    def _restart_members(self, members: list[_Member]) -> Future:
        future: Future = Future()
        future.set_running_or_notify_cancel()

        def run() -> None:
            try:
                self._ensure_monitor()
                self._stop_members(members)
                ok = True
                for member in members:
                    with self._lock:
                        member.status = member.status.evolve(restarts=member.status.restarts + 1)
                    ok = self._start_member_and_wait(member) and ok
                future.set_result(ok)
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name="pdtui-restart", daemon=True).start()
        return future

    # ------------------------------------------------------------------ detach / close ----
    def _start_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.poll() is None:
            return
        read_end, write_end = os.pipe()  # both non-inheritable: later children never hold them
        try:
            with open_private_log(self.run_dir / "watchdog.log") as log_file:
                self._watchdog = subprocess.Popen(
                    [sys.executable, "-m", "pdtui.runtime.watchdog", str(self.run_dir)],
                    stdin=read_end,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in our terminal must not reach it
                    close_fds=True,
                )
        finally:
            os.close(read_end)
        self._watchdog_pipe = write_end

    def _release_watchdog(self) -> None:
        """Close our end of the pipe: the watchdog wakes, sees nothing to stop (or a detached
        run) and exits."""
        if self._watchdog_pipe is not None:
            os.close(self._watchdog_pipe)
            self._watchdog_pipe = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self._watchdog = None

    def detach(self) -> None:
        """Leave the deployment running on its own and stop watching it."""
        with self._lock:
            self.detached = True
        self._persist()  # before the watchdog wakes: it reads `detached` from the file
        self._owner = False
        self._closed.set()
        self._wake.set()
        self._persist()  # owner: null
        self._release_watchdog()
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
        self._release_watchdog()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def owner_of(run_dir: str | Path) -> int | None:
    """pid of the live pdtui process that owns a run, if any."""
    try:
        return live_owner_pid(read_state(run_dir))
    except StateFileError:
        return None
