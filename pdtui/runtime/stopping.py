"""Stop and restart: whole deployment or single instances, each with its whole process
tree (INT -> TERM -> KILL), saying what was stopped. A mixin of Supervisor."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

from pdtui.constants import EXIT_CODE_UNKNOWN
from pdtui.runtime.base import SupervisorBase
from pdtui.runtime.events import DeploymentEvent
from pdtui.runtime.futures import in_thread
from pdtui.runtime.member import Member
from pdtui.runtime.members import LaunchSpec
from pdtui.runtime.preflight import PreflightError
from pdtui.runtime.status import InstanceState

S = InstanceState
log = logging.getLogger(__name__)


class StopMixin(SupervisorBase):
    def stop(self) -> Future:
        """Stop everything: instances first (prefillers, decoders), the proxy last."""
        return in_thread(self._stop_all, "pdtui-stop")

    def _stop_all(self) -> list[str]:
        """Stop everything; returns one line per instance that had something to stop."""
        self._abort_start.set()
        with self._lock:
            self._deployment_stopping = True
        try:
            names = [n for n in reversed(self._order) if not self._members[n].spec.is_proxy]
            stopped = self._stop_members([self._members[n] for n in names])
            stopped += self._stop_members([self._members[n] for n in self._order if self._members[n].spec.is_proxy])
        finally:
            with self._lock:
                self._deployment_stopping = False
            self._persist()
        self.last_stopped = stopped
        self.stopped.set()
        self._publish(DeploymentEvent(self.run_name, "stopped", f"{self.run_name} stopped" + (f": {'; '.join(stopped)}" if stopped else "")))
        return stopped

    def _stop_members(self, members: list[Member]) -> list[str]:
        said: dict[str, str] = {}
        threads = [threading.Thread(target=lambda m=m: said.__setitem__(m.spec.name, self._kill_member(m)), daemon=True) for m in members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [f"{m.spec.name}: {said[m.spec.name]}" for m in members if said.get(m.spec.name)]

    def _kill_member(self, member: Member, mark: bool = True) -> str:
        """Stop one instance's tree; mark=False keeps a failed state (and its reason).
        Returns what was stopped ("" when nothing ran)."""
        with self._lock:
            handle = member.handle
            member.stopping = True
            generation = member.generation
            pid = member.status.pid
        running = handle is not None and handle.poll() is None
        left = self.backend.leftovers(member.spec, handle)
        if not running and not left:
            if mark and member.status.state in (S.STARTING, S.READY, S.STOPPING):
                self._transition(member, generation, state=S.STOPPED, pid=None, pgid=None)
            return ""
        if mark:
            self._transition(member, generation, state=S.STOPPING)
        result = self.backend.stop(member.spec, handle if running else None, self.stop_sequence)
        code = handle.poll() if handle is not None else None
        what = f"pid {pid}" if running and pid else ""
        if result.stopped:
            what = (what + "; " if what else "") + result.summary()
            if result.how == "SIGKILL":
                what += " (did not stop on SIGINT/SIGTERM: killed with SIGKILL)"
        elif what:
            what += " stopped" + (" with SIGKILL" if result.how == "SIGKILL" else "")
        if mark:
            reason = None
            if result.how == "SIGKILL":
                reason = "did not stop on SIGINT/SIGTERM: killed with SIGKILL"
            elif result.how == "survived":
                reason = "survived SIGKILL (stuck in the kernel?)"
            survived = result.how == "survived"
            self._transition(
                member, generation,
                state=S.FAILED if survived else S.STOPPED,
                reason=reason if survived or member.status.state != S.FAILED else member.status.reason,
                exit_code=None if code in (None, EXIT_CODE_UNKNOWN) else code,
                pid=handle.pid if survived and handle else None,
                pgid=handle.pgid if survived and handle else None,
            )
        self._persist()
        return what

    def stop_instance(self, name: str) -> Future:
        """Stop one instance's tree and leave it stopped (the others keep running);
        Future[str] = what was stopped. `restart(name)` starts it again."""
        member = self._member(name)
        return in_thread(lambda: "; ".join(self._stop_members([member])), "pdtui-stop-one")

    # ------------------------------------------------------------------ restart ----
    def restart(self, name: str, spec: LaunchSpec | None = None) -> Future:
        """Stop one instance's tree (if running) and start it again; Future[bool] = ready
        again; PreflightError (nothing stopped) when the restart could not work. With `spec`
        (same name) it starts with that argv/env instead: the saved profile's settings
        rather than the ones it ran with."""
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

    def _restart_members(self, members: list[Member]) -> Future:
        def run() -> bool:
            problems = self.restart_preflight([m.spec.name for m in members])
            if problems:
                raise PreflightError(problems)  # before anything was stopped
            self._ensure_monitor()
            self._stop_members(members)
            for member in members:
                left = self.backend.leftovers(member.spec, None)
                if left:
                    # Never start a new engine while the old tree still holds the GPU.
                    self._transition(member, state=S.FAILED, reason="not restarted: the old process tree is still there: " + "; ".join(p.describe() for p in left))
                    return False
            ok = True
            for member in members:
                with self._lock:
                    member.status = member.status.evolve(restarts=member.status.restarts + 1)
                    member.restarting = True
                try:
                    ok = self._start_member_and_wait(member) and ok
                finally:
                    member.restarting = False
            # "Restarted" means requests through the proxy reach it again: _await_ready
            # reports an engine ready only once the proxy routes to it (starting.py).
            return ok

        return in_thread(run, "pdtui-restart")
