"""The monitor: one thread that tails the logs, notices exits, checks health, takes
control requests and flushes the run state; plus re-attaching to a recorded run.

A mixin of Supervisor. When an instance's main process exits, what is left of its tree
(vLLM's EngineCore keeps the GPU after its API server died) is stopped before the
instance is reported failed, and the reason says what was stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

from pdtui.constants import EXIT_CODE_UNKNOWN
from pdtui.runtime.base import SupervisorBase
from pdtui.runtime.events import DeploymentEvent, LogLines, ReadinessProgress
from pdtui.runtime.health import HealthChecker
from pdtui.runtime.logtail import last_lines
from pdtui.runtime.member import Member
from pdtui.runtime.processes import ProcessHandle
from pdtui.runtime.readiness import probe_health
from pdtui.runtime.status import InstanceState

if TYPE_CHECKING:  # the typed run state (pydantic) loads after the first spawn
    from pdtui.runtime.runstate import RunState

log = logging.getLogger(__name__)
S = InstanceState
# The monitor's pace. It ticks fast while anything starts or stops, while log lines pour
# in (BURST_LINES or more in one tick: a traceback, a load test) and when a subscriber asks
# (watch_closely); once that has been over for QUIET_AFTER_S the tick doubles up to
# IDLE_TICK_S. A ready engine logs an access line for every /health and /metrics GET, and
# those alone would otherwise keep an idle run at the fast tick for ever.
MONITOR_TICK_S = 0.1
IDLE_TICK_S = 2.0  # an idle deployment: exits, control requests, health rounds within 2 s
QUIET_AFTER_S = 2.0
BURST_LINES = 10
# Liveness. Our own children cost one waitpid(WNOHANG) each and are checked every tick.
# Attached processes are not our children: a read of /proc/<pid>/stat at this pace.
ATTACHED_EXIT_CHECK_S = 0.5
ATTACHED_EXIT_CHECK_IDLE_S = 1.0
# Control requests: the control directory is listed when its mtime moves, and at least
# this often in case two requests landed within one mtime tick.
CONTROL_CHECK_S = 0.3
CONTROL_RESCAN_S = 2.0
BUSY_STATES = (InstanceState.STARTING, InstanceState.STOPPING)
# uvicorn's "Application startup complete." can come after /health first answers.
LINES_AFTER_READY_S = 10.0


class MonitorMixin(SupervisorBase):
    # ------------------------------------------------------------------ attach ----
    def _adopt(self, state: RunState) -> None:
        from pdtui.runtime.statefile import verify_process

        now = time.time()
        for name, member in self._members.items():
            rec = state.instances[name]
            common = dict(restarts=rec.restarts, started_at=rec.started_at, ready_at=rec.ready_at,
                          milestone=rec.milestone, exit_code=rec.exit_code)
            member.log_start = rec.log_start
            member.tree = list(rec.tree)
            problem = verify_process(rec.pid, rec.create_time, rec.cmdline) if rec.pid else "no pid recorded"
            if problem is None and rec.pid is not None and rec.create_time is not None:
                member.handle = ProcessHandle(rec.pid, rec.pgid or rec.pid, rec.create_time, list(rec.cmdline or []), member.spec.log_path)
                ready = probe_health(member.spec.health_url, 1.0, any_status=member.spec.is_proxy) if member.spec.health_url else True
                if ready:
                    st, reason = S.READY, None
                    common["ready_at"] = common["ready_at"] or now
                elif rec.state == "starting" and not self._read_only:
                    st, reason = S.STARTING, None
                    member.done.clear()
                    threading.Thread(target=self._await_ready, args=(member, member.generation), daemon=True).start()
                else:
                    st, reason = S.READY, None  # running, but its /health does not answer now
                health, detail = (rec.health, rec.health_detail) if st == S.READY and ready else (None, None)
                if st == S.READY and not ready:
                    health, detail = "unresponsive", "its /health did not answer within 1 s"
                member.status = member.status.evolve(state=st, pid=rec.pid, pgid=member.handle.pgid, reason=reason,
                                                     health=health, health_detail=detail, **common)
                continue
            if rec.state in ("starting", "ready", "stopping"):
                # It died while nobody watched: say why (the log), and stop what it left.
                reason = self._gone_reason(member, problem or "no pid recorded")
                from pdtui.runtime.watchdog import keeper_notes

                notes = keeper_notes(self.run_dir, name, since=rec.started_at)
                if notes:
                    reason = f"{reason}; {'; '.join(notes)}"
                if rec.pgid is not None:
                    member.handle = ProcessHandle(rec.pid or rec.pgid, rec.pgid, 0.0, [], member.spec.log_path, exit_code=EXIT_CODE_UNKNOWN)
                member.status = member.status.evolve(state=S.FAILED, reason=reason, pid=None, pgid=None, **common)
                if not self._read_only:
                    summary = self.backend.stop(member.spec, None, self.stop_sequence).summary()
                    if summary:
                        member.status = member.status.evolve(reason=f"{reason}; {summary}")
                else:
                    left = self.backend.leftovers(member.spec, None)
                    if left:
                        member.status = member.status.evolve(
                            reason=f"{reason}; still running: {'; '.join(p.describe() for p in left)} (pdtui down / restart {name} stops it)")
            else:
                member.status = member.status.evolve(state=S(rec.state), reason=rec.reason, **common)

    def _gone_reason(self, member: Member, problem: str) -> str:
        from pdtui.telemetry.rootcause import find_root_cause

        cause = find_root_cause(last_lines(member.spec.log_path, 400, start_offset=member.log_start))
        return f"{problem}: {cause.summary}" if cause is not None else problem

    # ------------------------------------------------------------------ loop ----
    def _ensure_monitor(self) -> None:
        with self._lock:
            if self._monitor is None or not self._monitor.is_alive():
                self._closed.clear()
                self._health = HealthChecker(self)
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
                self._health.close()
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
                        self._check_exit(member, wait=False)
                self._health.maybe_check(now)
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
                self.monitor_tick_s = tick
            except Exception:  # the monitor must survive anything one tick meets
                log.exception("supervisor monitor tick failed")

    def _busy(self, now: float) -> bool:
        with self._lock:
            if now < self._fast_until or self._deployment_stopping:
                return True
            return any(m.status.state in BUSY_STATES for m in self._members.values())

    def _control_dir_mtime(self) -> int | None:
        try:
            return os.stat(self._control_dir).st_mtime_ns
        except OSError:
            return None

    def _tail(self, member: Member) -> int:
        """Publish the new lines of a member's log; how many there were. A ready member's
        lines matter only to LogLines subscribers (milestones are a start's, and its last
        ones may follow readiness by a moment): with none, once it has been ready for
        LINES_AFTER_READY_S its log is skipped unread, one stat."""
        tailer = member.tailer
        if tailer is None:
            return 0
        if not self._bus.wants_log_lines:
            # The stat before the state: a restart that begins in between finds the offset
            # at or before its first line, and the next tick reads that start whole.
            size = tailer.size()
            status = member.status
            if status.state == S.READY and size is not None and time.time() - (status.ready_at or 0.0) > LINES_AFTER_READY_S:
                tailer.skip_to(size)
                return 0
        lines = tailer.read_lines()
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
                member.progress.set()
                self._publish(ReadinessProgress(self.run_name, member.spec.name, event.kind, event.detail, elapsed))
        return len(lines)

    # ------------------------------------------------------------------ exits ----
    def _check_exit(self, member: Member, generation: int | None = None, wait: bool = True) -> bool:
        """Notice that a starting/ready process has exited: stop what is left of its tree,
        then mark it failed with why and what was stopped. wait=False (the monitor's tick):
        the clean-up (up to the whole stop sequence) runs on a thread of its own, so the
        other instances' logs, exits and control requests are not held up by it."""
        with self._lock:
            handle = member.handle
            if handle is None or member.stopping or member.status.state not in (S.STARTING, S.READY):
                return False
            if generation is not None and member.generation != generation:
                return False
            gen = member.generation
            was = member.status.state
        code = self.backend.exit_code(handle)
        if code is None:
            return False
        with self._lock:
            if member.stopping or member.generation != gen:
                return False
            member.stopping = True  # nobody else acts on it while we clean up
        if wait:
            return self._finish_exit(member, gen, was, handle, code)
        threading.Thread(target=self._finish_exit, args=(member, gen, was, handle, code),
                         name=f"pdtui-exit-{member.spec.name}", daemon=True).start()
        return True

    def _finish_exit(self, member: Member, gen: int, was: S, handle: ProcessHandle, code: int) -> bool:
        reason = self._exit_reason(member, code, was)
        try:
            summary = self.backend.stop(member.spec, handle, self.stop_sequence).summary()
        finally:
            with self._lock:
                member.stopping = False
        if summary:
            reason = f"{reason}; {summary}"
        if not self._transition(member, gen, (S.STARTING, S.READY), state=S.FAILED, reason=reason,
                                exit_code=None if code == EXIT_CODE_UNKNOWN else code, pid=None, pgid=None):
            return False
        self._persist()
        if was == S.READY:
            self._publish(DeploymentEvent(self.run_name, "instance_crashed", f"{member.spec.name}: {reason}"))
            self._maybe_auto_restart(member)
        return True

    def _exit_reason(self, member: Member, code: int, was: S) -> str:
        from pdtui.telemetry.rootcause import find_root_cause

        when = "during start-up" if was == S.STARTING else "while running"
        if code == EXIT_CODE_UNKNOWN:
            head = f"process exited {when} (not our child: exit code unknown)"
        elif code < 0:
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
        if code < 0 and code != EXIT_CODE_UNKNOWN:
            return head  # killed from outside: its last line (an access log line, say) says nothing
        tail = [line.strip() for line in lines if line.strip()][-1:]
        return f"{head}; last log line: {tail[0][:300]}" if tail else head

    def _maybe_auto_restart(self, member: Member) -> None:
        if not self.auto_restart or self._deployment_stopping or self._closed.is_set():
            return
        with self._lock:
            member.crashes += 1
            delay = min(60.0, 2.0 ** (member.crashes - 1))
        self._publish(DeploymentEvent(self.run_name, "auto_restart", f"{member.spec.name}: restarting in {delay:g} s (crash {member.crashes})"))
        timer = threading.Timer(delay, lambda: None if self._deployment_stopping or self._closed.is_set() else self.restart(member.spec.name))
        timer.daemon = True
        timer.start()
