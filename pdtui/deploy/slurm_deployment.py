"""A Slurm run (pdtui.cluster.slurm_backend.SlurmRun) behind the `Deployment` interface.

What the TUI needs from a deployment, done with Slurm: `start` waits for the allocation,
starts the job steps and waits until every instance answers /health; `stop` is `pdtui
down` (scancel, then wait until no step and no job is left); `status` is a snapshot in
the runtime's words, refreshed by a poll thread (squeue + /health every POLL_INTERVAL_S);
each node's GPUs (`node_gpus`, a job step per node) are read every NODE_GPU_INTERVAL_S
and published as `NodeGpusRead`. One instance is stopped or restarted alone through its
step's loop in the batch script (SlurmRun.stop_instance / restart_instance): the new step
is started by the job, not by this process, so it outlives the TUI.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from collections.abc import Callable

from pdtui.cluster.slurm_backend import SlurmRun
from pdtui.cluster.slurm_cmd import TERMINAL_JOB_STATES, SlurmError
from pdtui.cluster.slurm_job import STEPS_SCRIPT
from pdtui.deploy.events import NodeGpusRead
from pdtui.runtime.events import DeploymentEvent, StateChanged
from pdtui.runtime.status import DeploymentStatus, InstanceState, InstanceStatus

POLL_INTERVAL_S = 2.0
NODE_GPU_INTERVAL_S = 15.0
DEFAULT_ALLOCATION_TIMEOUT_S = 600.0
RESTART_TIMEOUT_S = 600.0  # at most; each instance's startup_timeout_s when the profile is known


class SlurmDeployment:
    def __init__(self, run: SlurmRun, profile: Any = None) -> None:
        self.run = run
        self.run_dir = run.run_dir
        self.run_name = run.name
        self._profile = profile
        self.stopped = threading.Event()
        self._listeners: list[Callable[[Any], None]] = []
        self._lock = threading.Lock()
        self._run_lock = threading.RLock()  # one caller of the SlurmRun at a time (it writes slurm.json)
        self._starting = threading.Event()
        self._halt = threading.Event()  # stop or close asked: the start gives up
        self._closing = threading.Event()
        self._detached = False
        self._job_state = "PENDING"  # Slurm's, as last seen
        self._first_seen: dict[str, tuple[float | None, float | None]] = {}  # name -> (started_at, ready_at)
        self._status = self._convert(None)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"slurm-{run.job_id}")
        self._threads = [threading.Thread(target=loop, name=f"slurm-{run.job_id}-{loop.__name__}", daemon=True)
                         for loop in (self._poll_loop, self._gpu_loop)]
        for thread in self._threads:
            thread.start()

    # --- creation ------------------------------------------------------------------------
    @classmethod
    def launch(cls, profile: Any) -> SlurmDeployment:
        """Submit the job (the batch script waits for its steps until `start`)."""
        from pdtui.runtime.rundir import new_run_dir

        run_dir = new_run_dir(profile.name)
        return cls(SlurmRun.submit(profile, run_dir), profile)

    @classmethod
    def attach(cls, run_dir: Path) -> SlurmDeployment:
        run = SlurmRun.load(run_dir)
        if run.state.get("stopped"):
            raise SlurmError(f"{run.name} was stopped (Slurm job {run.job_id}); start it again with `pdtui up`")
        deployment = cls(run, _profile_of(run))
        deployment._refresh()  # the first picture from Slurm before the screen shows it
        return deployment

    # --- the Deployment surface --------------------------------------------------------------
    @property
    def holds_resources(self) -> bool:
        """The job is still queued or running, even when no instance runs (each step waits
        in the allocation for a restart): X and quit still have something to stop."""
        return not self.stopped.is_set() and self._job_state not in TERMINAL_JOB_STATES and self._job_state != "GONE"

    @property
    def instance_actions_note(self) -> str | None:
        """Why no instance can be stopped/restarted alone here (the UI says it), or None: a
        run whose steps.sh predates the restart loop (per-instance limits come as errors)."""
        if self.run.state.get("restartable") or not self.run.state.get("instances"):
            return None
        return "this run's steps.sh predates restarts of one instance; X cancels the whole job"

    def status(self) -> DeploymentStatus:
        return self._status

    def subscribe(self, callback: Callable[[Any], None], *, log_lines: bool = True) -> Callable[[], None]:
        del log_lines  # a Slurm deployment publishes no LogLines: its logs are the monitor's
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def start(self, *, stop_on_failure: bool = True) -> Future:
        return self._pool.submit(self._bring_up, stop_on_failure)

    def stop(self) -> Future:
        self._halt.set()
        return self._pool.submit(self._take_down)

    def stop_instance(self, name: str) -> Future:
        """Cancel the instance's step; the rest runs on. Resolves to a line saying so."""
        return self._pool.submit(self._stop_one, name)

    def restart(self, name: str, spec: Any = None) -> Future:
        """A new step for the instance (also starts one stopped alone); True once it is ready
        again. `spec` (another argv) is not supported: the step runs the run's plan."""
        return self._pool.submit(self._restart, (name,))

    def restart_pair(self, prefiller: str, decoder: str) -> Future:
        return self._pool.submit(self._restart, (prefiller, decoder))

    def detach(self) -> None:
        """The job runs on in Slurm whatever this process does; `close` then leaves it."""
        self._detached = True
        self._publish(DeploymentEvent(self.run_name, "detached", f"{self.run_name} keeps running as Slurm job {self.run.job_id}"))

    def close(self) -> None:
        self._halt.set()
        try:
            if not self._detached and not self.stopped.is_set():
                self._take_down()
        finally:
            self._closing.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    # --- work on the pool ----------------------------------------------------------------------
    def _bring_up(self, stop_on_failure: bool) -> bool:
        profile = self._profile
        timeout = max((i.startup_timeout_s for i in profile.instances()), default=600.0)
        self._starting.set()  # the poll thread waits: this thread reads Slurm meanwhile
        try:
            hosts = self.run.wait_allocation(DEFAULT_ALLOCATION_TIMEOUT_S, self._pending, self._halt.is_set)
            with self._run_lock:
                if self._halt.is_set():
                    return False
                self.run.start_steps(profile, hosts)
            self._publish(DeploymentEvent(self.run_name, "attached", f"Slurm job {self.run.job_id} on {', '.join(hosts)}: steps started"))
            deadline = time.monotonic() + timeout
            while True:
                with self._run_lock:
                    if self._halt.is_set():
                        return False
                    cluster = self.run.status(load=False)
                    self._refresh_from(cluster)
                failed = any(i.state == "failed" for i in cluster.instances)
                if cluster.phase == "ready" or failed or time.monotonic() > deadline:
                    break
                self._halt.wait(0.5)
        except SlurmError as exc:
            if self._halt.is_set():
                return False
            self._publish(DeploymentEvent(self.run_name, "failed", f"{self.run_name}: {exc}"))
            if stop_on_failure:
                self._take_down()
            return False
        finally:
            self._starting.clear()
        if cluster.phase == "ready":
            self._publish(DeploymentEvent(self.run_name, "ready", f"{self.run_name} ready (Slurm job {self.run.job_id})"))
            return True
        if not self._halt.is_set() and stop_on_failure:
            reasons = "; ".join(f"{i.name}: {i.reason}" for i in cluster.instances if i.state == "failed" and i.reason)
            self._publish(DeploymentEvent(self.run_name, "failed", f"{self.run_name} did not come up: {reasons or cluster.phase}"))
            self._take_down()
        return False

    def _stop_one(self, name: str) -> str:
        with self._run_lock:
            self.run.stop_instance(name)
        self._wait_for({name}, lambda i: i.state == "stopped", 120.0)
        return f"{name}: stopped (its step was cancelled; the job keeps its place in the allocation)"

    def _restart(self, names: tuple[str, ...]) -> bool:
        with self._run_lock:
            before = {i.name: i.step_id for i in self.run.status(probe=False).instances}
            for name in names:
                self.run.restart_instance(name)
        timeouts = [i.startup_timeout_s for i in self._profile.instances() if i.name in names] if self._profile else []
        final = self._wait_for(set(names), lambda i: i.state == "failed" or (i.state == "ready" and i.step_id != before.get(i.name)),
                               max(timeouts, default=RESTART_TIMEOUT_S))
        return all(i.state == "ready" for i in final)

    def _wait_for(self, names: set[str], done: Callable[[Any], bool], timeout_s: float) -> list[Any]:
        """Poll Slurm until every named instance is `done` (or the deadline); their last state."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._run_lock:
                cluster = self.run.status(load=False)
                self._refresh_from(cluster)
            found = [i for i in cluster.instances if i.name in names]
            if all(done(i) for i in found) or time.monotonic() > deadline or self._halt.is_set():
                return found
            time.sleep(0.5)

    def _take_down(self) -> list[str]:
        with self._run_lock:
            left = self.run.stop() if (self.run_dir / STEPS_SCRIPT).exists() else self.run.abort()
            self.stopped.set()
            self._refresh_locked()
        self.stopped.set()
        self._publish(NodeGpusRead(self.run_name, None))
        if left:
            self._publish(DeploymentEvent(self.run_name, "failed", f"still there after scancel: {', '.join(left)}"))
            raise SlurmError(f"still there after scancel of job {self.run.job_id}: {', '.join(left)}")
        self._publish(DeploymentEvent(self.run_name, "stopped", f"{self.run_name}: Slurm job {self.run.job_id} cancelled, no step left"))
        return left

    def _pending(self, message: str) -> None:
        self._refresh()
        self._publish(DeploymentEvent(self.run_name, "attached", message))

    # --- the poll threads ------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        while not self._closing.wait(POLL_INTERVAL_S):
            ended = self._job_state in TERMINAL_JOB_STATES or self._job_state == "GONE"  # nothing changes any more
            if not self.stopped.is_set() and not self._starting.is_set() and not ended:
                self._refresh()

    def _gpu_loop(self) -> None:
        from pdtui.cluster.gpus import node_gpus

        wait = 0.0
        while not self._closing.wait(wait):
            wait = POLL_INTERVAL_S
            if self.stopped.is_set() or self._status.phase not in ("ready", "degraded", "starting") or not self.run.state.get("hosts"):
                continue
            nodes = tuple(node_gpus(self.run))
            if not self._closing.is_set() and not self.stopped.is_set():
                self._publish(NodeGpusRead(self.run_name, nodes, self._holders()))
            wait = NODE_GPU_INTERVAL_S

    def _holders(self) -> dict[tuple[str, int], str]:
        """(host, GPU index) -> the instances on it: Slurm's placement and GPU binding."""
        hosts = {name: info.get("host") for name, info in (self.run.state.get("instances") or {}).items()}
        held: dict[tuple[str, int], list[str]] = {}
        for inst in self._status.instances:
            for gpu in inst.gpus:
                if hosts.get(inst.name):
                    held.setdefault((hosts[inst.name], gpu), []).append(inst.name)
        return {key: ",".join(names) for key, names in held.items()}

    def _refresh(self) -> None:
        with self._run_lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        try:
            cluster = self.run.status(load=False)
        except SlurmError as exc:  # slurmctld away for a moment: keep the last picture, say why once
            self._publish(DeploymentEvent(self.run_name, "failed", f"Slurm did not answer: {exc}"))
            return
        self._refresh_from(cluster)

    def _refresh_from(self, cluster: Any) -> None:
        """Under _run_lock: snapshots replace each other in the order Slurm was asked."""
        new = self._convert(cluster)
        self._job_state = cluster.job_state
        with self._lock:
            old, self._status = self._status, new
        before = {i.name: i for i in old.instances}
        for inst in new.instances:
            prev = before.get(inst.name)
            if prev is None or (prev.state, prev.reason) != (inst.state, inst.reason):
                self._publish(StateChanged(self.run_name, inst.name, inst, prev.state if prev else InstanceState.STOPPED))
            if inst.state == InstanceState.FAILED and prev is not None and prev.state != InstanceState.FAILED and not self._starting.is_set():
                # Out of the blue (a start reports its own failure): the operator hears why.
                self._publish(DeploymentEvent(self.run_name, "instance_crashed", f"{inst.name} failed: {inst.reason or 'ended'}"))

    def _convert(self, cluster: Any) -> DeploymentStatus:
        """The runtime's snapshot from Slurm's: before the steps exist, the profile's
        instances as `starting` with the job's state as the reason."""
        instances = []
        now = time.time()
        if cluster is not None and cluster.instances and self.run.state.get("instances"):
            for ci in cluster.instances:
                state = InstanceState(ci.state)
                started, ready = self._first_seen.get(ci.name, (None, None))
                if state in (InstanceState.STARTING, InstanceState.READY) and started is None and (ci.step_id or state == InstanceState.READY):
                    started = now
                if state == InstanceState.READY and ready is None:
                    ready = now
                if state not in (InstanceState.STARTING, InstanceState.READY):
                    started = ready = None
                self._first_seen[ci.name] = (started, ready)
                where = f"on {ci.node}" + (f", step {ci.step_id}" if ci.step_id else "") if ci.node else None
                instances.append(InstanceStatus(
                    name=ci.name, kind=ci.kind, state=state, reason=ci.reason, where=where,
                    started_at=started, ready_at=ready, port=ci.port, gpus=tuple(ci.gpus), log_path=ci.log_path,
                    health_url=ci.health_url,
                ))
        else:
            job = f"Slurm job {self.run.job_id}"
            if cluster is not None and cluster.job_state == "PENDING":
                reason = f"job pending: {cluster.job_reason}"
            elif cluster is not None and cluster.job_state not in ("RUNNING", "PENDING"):
                reason = f"{job} {cluster.job_state}"
            else:
                reason = f"{job}: waiting for its allocation"
            stopped = self.stopped.is_set() or self.run.state.get("stopped")
            state = InstanceState.STOPPED if stopped else InstanceState.STARTING
            for name, kind, port in _planned(self._profile):
                instances.append(InstanceStatus(name=name, kind=kind, state=state, reason=None if stopped else reason,
                                                port=port, log_path=str(self.run_dir / f"{name}.log")))
        return DeploymentStatus(self.run_name, str(self.run_dir), self.run.state.get("profile", ""), self._detached, tuple(instances))

    def _publish(self, event: Any) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not end the poll thread
                pass


def _planned(profile: Any) -> list[tuple[str, str, int | None]]:
    if profile is None:
        return []
    rows: list[tuple[str, str, int | None]] = [("proxy", "proxy", profile.proxy.port)]
    rows += [(p.name, "prefiller", p.port) for p in profile.prefillers]
    rows += [(d.name, "decoder", d.port) for d in profile.decoders]
    return rows


def _profile_of(run: SlurmRun) -> Any:
    from pdtui.model.schema import Profile

    try:
        return Profile.model_validate(run.state.get("profile_data") or {})
    except ValueError:
        return None


