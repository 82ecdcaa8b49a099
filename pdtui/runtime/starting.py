"""Spawn + readiness: the start order, one instance's spawn, its wait for /health.

A mixin of Supervisor (supervisor.py holds the state and the lock it uses)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from pdtui.model.render import mask_env
from pdtui.runtime.base import SupervisorBase
from pdtui.runtime.events import DeploymentEvent
from pdtui.runtime.futures import in_thread
from pdtui.runtime.member import Member
from pdtui.runtime.members import LaunchSpec
from pdtui.runtime.preflight import PreflightError, preflight
from pdtui.runtime.readiness import probe_health
from pdtui.runtime.status import InstanceState

log = logging.getLogger(__name__)
S = InstanceState
# Readiness is woken by the instance's log (a start-up milestone, seen by the monitor);
# polling is the fallback: READINESS_POLL_S until the log says the server is near (or for
# an instance whose log says nothing), FAST_POLL_S from then on and for the proxy.
READINESS_POLL_S = 0.2
FAST_POLL_S = 0.02
NEAR_READY_MILESTONES = ("engine_initialized", "api_server_starting", "app_startup_complete", "uvicorn_running")
# Once an engine answers its own /health: how long the proxy may take to route to it.
ROUTABLE_WITHIN_S = 15.0


class StartMixin(SupervisorBase):
    # ------------------------------------------------------------------ preflight ----
    def preflight(self) -> list[str]:
        """What would make the start fail (blocking: a few port binds, maybe a subprocess)."""
        if self.plan is None:
            return []
        return preflight(self.plan)

    def restart_preflight(self, names: list[str]) -> list[str]:
        """What would make a restart of these instances fail, checked before anything is
        stopped: a secret pdtui does not store and that is not exported, a command that
        is not there any more."""
        problems = []
        for name in names:
            spec = self._member(name).spec
            try:
                spec.full_environment()
            except LookupError as exc:
                problems.append(str(exc))
            exe = spec.argv[0] if spec.argv else ""
            if exe and not (os.path.isabs(exe) and os.access(exe, os.X_OK)) and shutil.which(exe) is None:
                problems.append(f"{name}: cannot restart: {exe!r} is not an executable on PATH")
        return problems

    # ------------------------------------------------------------------ start ----
    def start(self, *, stop_on_failure: bool = True, run_preflight: bool = True) -> Future:
        """Start the deployment: the proxy and the engines at once; instances that share
        a GPU one after another (vLLM profiles free GPU memory at start-up), the others at
        once. An engine is ready once the proxy routes to it. The Future resolves to True
        when all are ready, False when one failed (then, with stop_on_failure, everything
        is stopped again); PreflightError when refused."""
        return in_thread(lambda: self._start_all(stop_on_failure, run_preflight), "pdtui-start")

    def _start_all(self, stop_on_failure: bool, run_preflight: bool) -> bool:
        problems = self.preflight() if run_preflight else []
        if problems:
            self._publish(DeploymentEvent(self.run_name, "preflight_failed", "; ".join(problems)))
            raise PreflightError(problems)
        self._abort_start.clear()
        self.stopped.clear()
        detached = self.detached
        if not detached:
            # Before the first spawn: if we die from here on, it stops what we started.
            self._watchdog.start()
        self._ensure_monitor()
        names = list(self._order)
        # The proxy holds no GPU: it starts beside the engines (its interpreter start and
        # imports overlap theirs); engines wait for it only to be told they are routable.
        # Off the way to the first spawn, while they run: the state file (each spawn
        # writes it again at once), launch.sh and plan.json (records, not read by the
        # engines) and a detached run's keeper (it stops nothing when we die, so it need
        # not exist before the spawns).
        ok = self._start_concurrently(names, stop_on_failure, lambda: self._after_spawns_began(detached))
        if ok:
            ok = self._await_front_door([n for n in names if self._members[n].spec.is_proxy])
        if ok:
            self._publish(DeploymentEvent(self.run_name, "ready", f"all {len(names)} processes ready"))
            return True
        reasons = [f"{m.spec.name}: {m.status.reason}" for m in self._members.values() if m.status.state == S.FAILED]
        self._publish(DeploymentEvent(self.run_name, "failed", "; ".join(reasons) or "start aborted"))
        if stop_on_failure:
            self._stop_all()
        return False

    def _after_spawns_began(self, detached: bool) -> None:
        self._persist()
        self._write_plan_records()
        if not detached:
            return
        try:
            self._watchdog.start(detached=True)
        except OSError as exc:  # the instances run already: say so, never leave them unwatched
            log.error("cannot start the run's keeper (python -m pdtui.runtime.watchdog): %s", exc)
            self._abort_start.set()

    def _await_front_door(self, proxies: list[str]) -> bool:
        """The proxy answers 503 until it has a routable prefiller and decoder: "all ready"
        means requests through it work. Every engine was reported ready only once the proxy
        routed to it, so this is normally one GET."""
        for name in proxies:
            member = self._members[name]
            deadline = time.monotonic() + member.spec.startup_timeout_s
            while not probe_health(member.spec.health_url, 1.0):
                if member.status.state != S.READY or self._abort_start.is_set():
                    return False
                if time.monotonic() > deadline:
                    self._transition(member, state=S.FAILED, reason=f"its /health did not turn 200 within {member.spec.startup_timeout_s:g} s after all instances were ready")
                    return False
                time.sleep(FAST_POLL_S)
        return True

    def _start_concurrently(self, names: list[str], stop_on_failure: bool, then: Callable[[], None] | None = None) -> bool:
        """Each instance on a thread of its own; then() once all those threads started."""
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
        if then is not None:
            then()
        for t in threads:
            t.join()
        return all(results.get(n, False) for n in names)

    def _start_member_and_wait(self, member: Member) -> bool:
        generation = self._spawn_member(member)
        if generation is None:
            member.done.set()
            return False
        return self._await_ready(member, generation)

    def _spawn_member(self, member: Member) -> int | None:
        spec = member.spec
        with self._lock:
            member.generation += 1
            generation = member.generation
            member.stopping = False
            member.done.clear()
            member.tree = []
            member.health_failures = 0
        try:
            env = spec.full_environment()
        except LookupError as exc:
            self._transition(member, generation, state=S.FAILED, reason=str(exc), pid=None, pgid=None)
            return None
        for directory in (spec.prometheus_dir, env.get("PDTUI_SIM_GPU_DIR")):
            if directory:
                Path(directory).mkdir(parents=True, exist_ok=True)
        try:
            log_start = os.path.getsize(spec.log_path)
        except OSError:
            log_start = 0
        with self._lock:
            member.log_start = log_start
        if self._start_cancelled(member):
            return None  # the deployment is being stopped: start nothing more
        try:
            handle = self.backend.spawn(spec, env)
        except OSError as exc:
            self._write_argv_file(spec)  # what was tried
            self._transition(member, generation, state=S.FAILED, reason=f"cannot execute {spec.argv[0]}: {exc.strerror or exc}", pid=None, pgid=None)
            return None
        with self._lock:
            member.handle = handle
            aborted = self._start_cancelled(member)
        self._transition(
            member, generation, state=S.STARTING, pid=handle.pid, pgid=handle.pgid, exit_code=None, reason=None,
            milestone=None, milestone_detail="", started_at=time.time(), ready_at=None,
        )
        self._persist()  # at once: the watchdog must know this pid if we die now
        self._write_argv_file(spec)  # after the spawn: a record for the operator, not on its way
        if aborted:
            # A stop of the whole deployment ran while we spawned: it could not see this
            # process yet, so stop it here rather than leave it behind.
            self._kill_member(member)
            return None
        return generation

    def _start_cancelled(self, member: Member) -> bool:
        """A stop of the whole deployment runs (or ran, for a start in progress): spawn
        nothing more. A restart asked for after a stop is not cancelled by it."""
        with self._lock:
            return self._deployment_stopping or (self._abort_start.is_set() and not member.restarting)

    def _await_ready(self, member: Member, generation: int) -> bool:
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
                if (not spec.health_url or probe_health(spec.health_url, 1.0, any_status=spec.is_proxy)) and self._answered_by_us(member):
                    if not self._await_routable(member, generation, deadline):
                        return False
                    if self._transition(member, generation, (S.STARTING,), state=S.READY, ready_at=time.time()):
                        with self._lock:
                            member.crashes = 0
                        self._record_tree(member)
                        self._persist()
                        return True
                    continue
                if time.time() > deadline:
                    milestone = member.status.milestone
                    reason = f"not ready after {spec.startup_timeout_s:g} s" + (f" (last start-up step: {milestone})" if milestone else " (no start-up step seen in its log)")
                    if self._transition(member, generation, (S.STARTING,), state=S.FAILED, reason=reason):
                        self._kill_member(member, mark=False)
                    return False
                near = spec.is_proxy or member.status.milestone in NEAR_READY_MILESTONES
                member.progress.wait(FAST_POLL_S if near else READINESS_POLL_S)
                member.progress.clear()
        finally:
            with self._lock:
                if member.generation == generation:
                    member.done.set()

    def _await_routable(self, member: Member, generation: int, deadline: float) -> bool:
        """Ready means routable: once an engine answers its own /health, wait until the
        deployment's proxy routes to it (it is asked to check it at once). True at once for
        the proxy itself, or when no proxy is starting or running. False when the start was
        given up (then the member is failed with why, or it moved on)."""
        if member.spec.is_proxy or not member.spec.health_url:
            return True
        from pdtui.runtime.routable import base_url, routes_to

        backend, since = base_url(member.spec.health_url), time.time()
        give_up = min(deadline, since + ROUTABLE_WITHIN_S)
        why = "the proxy is not ready yet"
        while True:
            proxy = next((m for m in self._members.values() if m.spec.is_proxy), None)
            if proxy is None:
                return True
            pstate = proxy.status.state
            if pstate == S.READY:
                ok, why = routes_to(proxy.spec.health_url, backend, since)
                if ok:
                    return True
            elif pstate != S.STARTING:
                return True  # no proxy runs: nothing routes to anything, nothing to wait for
            with self._lock:
                if member.generation != generation or member.status.state != S.STARTING:
                    return False
            if self._start_cancelled(member) or self._check_exit(member, generation):
                return False
            if time.time() > give_up and pstate == S.READY:
                reason = f"its /health answers, but the proxy does not route to it after {ROUTABLE_WITHIN_S:g} s: {why}"
                if self._transition(member, generation, (S.STARTING,), state=S.FAILED, reason=reason):
                    self._kill_member(member, mark=False)
                return False
            time.sleep(FAST_POLL_S)

    def _answered_by_us(self, member: Member) -> bool:
        """Whether the port that answered /health is listened on by this instance's own
        process tree: a second `up` of the same profile must not count the first run's
        proxy or engines as its own (its own processes fail on "address in use")."""
        handle, port = member.handle, member.spec.port
        if handle is None or not port:
            return True
        import psutil

        def listens(proc: psutil.Process) -> bool:
            try:
                return any(conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
                           for conn in proc.net_connections(kind="tcp"))  # HTTP listens on TCP only
            except psutil.Error:
                return False

        try:
            root = psutil.Process(handle.pid)
            # The main process first (vLLM's API server, the proxy): its children are found
            # by a scan of every process on the host, only needed when it does not listen.
            if listens(root):
                return True
            return any(listens(child) for child in root.children(recursive=True))
        except psutil.Error:
            return False

    def _record_tree(self, member: Member) -> None:
        """Remember the instance's descendants that left its process group (persisted, so
        a later pdtui stops them even if it could not read their environment)."""
        from pdtui.runtime.runstate import ProcessRef

        handle = member.handle
        if handle is None:
            return
        import psutil

        try:
            children = psutil.Process(handle.pid).children(recursive=True)
        except psutil.Error:
            return
        refs = []
        for child in children:
            try:
                if os.getpgid(child.pid) != handle.pgid:
                    refs.append(ProcessRef(pid=child.pid, create_time=child.create_time(), name=child.name()))
            except (OSError, psutil.Error):
                continue
        with self._lock:
            member.tree = refs

    def _write_argv_file(self, spec: LaunchSpec) -> None:
        from pdtui.model.files import atomic_write

        record = {"argv": list(spec.argv), "env": mask_env(spec.env, spec.secret_keys), "time": time.time()}
        try:
            atomic_write(self.run_dir / f"{spec.name}.argv.json", json.dumps(record, indent=2) + "\n", durable=False)
        except OSError as exc:
            log.warning("cannot write argv file of %s: %s", spec.name, exc)
