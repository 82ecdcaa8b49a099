"""The Slurm backend: one job per deployment, one job step per instance.

Narrow on purpose: launch (submit + allocation + steps), status, wait_ready, stop.
Its state is `slurm.json` in the run directory (which must be on a filesystem the nodes
share: the steps read their specs and write their logs there).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pdtui.cluster import slurm_cmd
from pdtui.cluster.gpus import sim_gpu_dir
from pdtui.cluster.slurm_cmd import SlurmError
from pdtui.cluster.slurm_job import (
    ABORT_FILE,
    EXIT_DIR,
    HOLD_DIR,
    JOB_SCRIPT,
    RESTART_DIR,
    STEPS_SCRIPT,
    instance_spec,
    job_script,
    step_spec,
    steps_script,
)
from pdtui.cluster.status import (
    ClusterInstance,
    ClusterStatus,
    engine_load,
    gpus_from_log,
    instance_state,
)
from pdtui.cluster.step import step_spec_path
from pdtui.model.checks import is_secret_name
from pdtui.model.files import atomic_write
from pdtui.model.placement import with_node_addresses
from pdtui.model.render import render_plan, write_rendered
from pdtui.model.schema import Profile
from pdtui.text import plural

STATE_FILE = "slurm.json"


def profile_secrets(profile: Profile) -> dict[str, str]:
    """Secret values written in the profile: they go to the job's environment, never a file."""
    found: dict[str, str] = {}
    for env in (profile.env, profile.proxy.env, *(i.env for i in profile.instances())):
        found.update({k: v for k, v in env.items() if is_secret_name(k)})
    return found


def local_address_towards(address: str) -> str:
    """This machine's address on the route to `address` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((address, 9))
            return s.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())


class SlurmRun:
    def __init__(self, run_dir: Path, state: dict) -> None:
        self.run_dir = Path(run_dir)
        self.state = state
        self._node_reasons: dict[str, str | None] = {}  # per status() call: one scontrol per host

    # --- launch ----------------------------------------------------------------------
    @classmethod
    def submit(cls, profile: Profile, run_dir: Path) -> SlurmRun:
        """Write the job script and submit it; the steps come in start_steps()."""
        if profile.cluster is None:
            raise ValueError("the profile has no cluster section")
        missing = slurm_cmd.available()
        if missing:
            raise SlurmError(missing)
        run_dir = Path(run_dir)
        script = run_dir / JOB_SCRIPT
        atomic_write(script, job_script(profile, run_dir, run_dir.name), mode=0o755)
        # PDTUI_RUN_DIR marks every process of the run (steps inherit the job's environment).
        env = {**os.environ, **profile_secrets(profile), "PDTUI_RUN_DIR": str(run_dir)}
        job_id = slurm_cmd.sbatch(script, [], env=env)
        run = cls(run_dir, {
            "version": 1, "backend": "slurm", "run_name": run_dir.name, "profile": profile.name,
            "created": time.time(), "job_id": job_id, "proxy_on": profile.cluster.proxy_on,
            "profile_data": profile.model_dump(mode="json", exclude_unset=True),
            "hosts": [], "addresses": {}, "instances": {}, "proxy": None, "stopped": False,
        })
        run.save()
        return run

    def wait_allocation(self, timeout_s: float, on_pending: Callable[[str], None] | None = None,
                        should_stop: Callable[[], bool] = lambda: False) -> list[str]:
        """Hosts of the allocation, in Slurm's order, once the job runs."""
        deadline = time.monotonic() + timeout_s
        last_reason = None
        while time.monotonic() < deadline and not should_stop():
            info = slurm_cmd.job(self.job_id)
            if info is None or info.state in slurm_cmd.TERMINAL_JOB_STATES:
                state = slurm_cmd.final_state(self.job_id) or ((info.state, info.reason) if info else ("GONE", ""))
                raise SlurmError(f"job {self.job_id} ended before it ran: {state[0]} {state[1]}".strip())
            if info.state == "RUNNING":
                return slurm_cmd.hostnames(info.nodelist)
            if on_pending and info.reason != last_reason:
                why = "" if info.reason in ("", "None") else f": {info.reason}"
                on_pending(f"job {self.job_id} {info.state.lower()}{why}")
                last_reason = info.reason
            time.sleep(0.5)
        raise SlurmError(f"job {self.job_id} not running after {timeout_s:g} s (still {last_reason or 'pending'})")

    def start_steps(self, profile: Profile, hosts: list[str], python: str | None = None) -> None:
        """Render the plan for these hosts and release the batch script into steps.sh."""
        python = python or (profile.cluster.python if profile.cluster and profile.cluster.python else sys.executable)
        names = [n.name for n in profile.nodes] if profile.nodes else ["node1"]
        if len(hosts) < len(names):
            raise SlurmError(f"Slurm gave {plural(len(hosts), 'node')}, the profile needs {len(names)}")
        addresses = {}
        for name, host in zip(names, hosts):
            given = next((n.address for n in profile.nodes or () if n.name == name and n.address), None)
            addresses[name] = given or slurm_cmd.show_node(host).get("NodeAddr") or host
        first = addresses[names[0]]
        proxy_on_node = self.state["proxy_on"] == "first-node"
        proxy_address = first if proxy_on_node else local_address_towards(first)
        concrete = with_node_addresses(profile, addresses, proxy_address, host=None if profile.nodes else first)
        plan = render_plan(concrete, self.run_dir, python=python)
        write_rendered(plan, self.run_dir)
        # Secrets stay out of the step files: they came from the profile or this shell and
        # travel in the job's environment (sbatch exports it to every step).
        spec_of = {i.name: i for i in concrete.instances()}
        host_of = {name: hosts[names.index(spec_of[name].node or names[0])] for name in spec_of}
        for inst in plan.instances:
            spec = instance_spec(inst)[0]
            if plan.engine == "sim":  # the node's GPU view follows the simulated engines on it
                spec["env"]["PDTUI_SIM_GPU_DIR"] = str(sim_gpu_dir(self.run_dir, host_of[inst.name]))
            atomic_write(step_spec_path(self.run_dir, inst.name), json.dumps(spec, indent=2))
        atomic_write(step_spec_path(self.run_dir, "proxy"), json.dumps(step_spec(plan.proxy.argv, plan.proxy.env)[0], indent=2))
        self.state.update(hosts=list(hosts), addresses=addresses, python=python, restartable=True, instances={
            inst.name: {
                "kind": inst.role, "node": spec_of[inst.name].node or names[0],
                "host": host_of[inst.name],
                "port": inst.port, "gpus": list(inst.gpus), "health_url": inst.health_url,
                "log": str(self.run_dir / f"{inst.name}.log"),
            } for inst in plan.start_order()
        }, proxy={"on": self.state["proxy_on"], "host": hosts[0] if proxy_on_node else socket.gethostname(),
                  "port": plan.proxy.port, "health_url": plan.proxy.health_url, "pid": None,
                  "log": str(self.run_dir / "proxy.log")})
        if not proxy_on_node:
            self._start_local_proxy(plan.proxy.argv, {**os.environ, **plan.proxy.env, "PDTUI_RUN_DIR": str(self.run_dir)})
        self.save()
        atomic_write(self.run_dir / STEPS_SCRIPT, steps_script(plan, concrete, hosts, self.run_dir, python, proxy_on_node))

    def _start_local_proxy(self, argv: tuple[str, ...], env: dict[str, str]) -> None:
        import psutil

        with open(self.run_dir / "proxy.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        self.state["proxy"].update(pid=proc.pid, create_time=psutil.Process(proc.pid).create_time())

    def abort(self) -> list[str]:
        """Before steps.sh exists: let the batch script end by itself, then cancel; what is left."""
        atomic_write(self.run_dir / ABORT_FILE, "pdtui up gave up\n")
        return self.stop()

    # --- state -----------------------------------------------------------------------
    @property
    def job_id(self) -> str:
        return str(self.state["job_id"])

    @property
    def name(self) -> str:
        return str(self.state["run_name"])

    def save(self) -> None:
        atomic_write(self.run_dir / STATE_FILE, json.dumps(self.state, indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> SlurmRun:
        path = Path(run_dir) / STATE_FILE
        try:
            state = json.loads(path.read_text())
            str(state["job_id"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SlurmError(f"{path}: not a pdtui Slurm run ({exc})") from exc
        return cls(Path(run_dir), state)

    # --- status ----------------------------------------------------------------------
    def status(self, probe: bool = True, load: bool = True) -> ClusterStatus:
        """Slurm's view (job, steps, node state) with /health over the network; `load`: also
        each ready engine's /metrics (the TUI's monitor scrapes those itself)."""
        self._node_reasons.clear()
        job = slurm_cmd.job(self.job_id)
        job_state, job_reason = (job.state, job.reason) if job else ("GONE", "")
        if job is None or job_state in slurm_cmd.TERMINAL_JOB_STATES:
            final = slurm_cmd.final_state(self.job_id)
            if final:
                job_state, job_reason = final
        steps = {s.name: s for s in slurm_cmd.steps(self.job_id)} if job_state == "RUNNING" else {}
        instances = []
        proxy = self.state.get("proxy")
        if proxy:
            instances.append(self._proxy_status(proxy, job_state, job_reason, steps, probe))
        for name, info in self.state.get("instances", {}).items():
            exit_code = self._exit_code(name)
            state, reason = self._asked(name, job_state, name in steps) or instance_state(
                job_state, job_reason, name in steps, exit_code, info["health_url"] if probe else None,
                Path(info["log"]), self._node_reason(info.get("host")), self.state.get("stopped", False),
            )
            step = steps.get(name)
            instances.append(ClusterInstance(
                name=name, kind=info["kind"], state=state, reason=reason, node=info.get("host"),
                step_id=step.step_id if step else None, port=info["port"],
                gpus=gpus_from_log(Path(info["log"])) or tuple(info.get("gpus") or ()),
                health_url=info["health_url"], log_path=info["log"],
                load=engine_load(info["health_url"]) if probe and load and state == "ready" else None,
            ))
        return ClusterStatus(self.name, str(self.run_dir), self.job_id, job_state, job_reason, tuple(self._remember(instances)))

    def _remember(self, instances: list[ClusterInstance]) -> list[ClusterInstance]:
        """Keep the first reason of each failure: a node resumed later no longer says why."""
        kept = self.state.setdefault("failures", {})
        changed = False
        out = []
        for inst in instances:
            if inst.state == "failed" and inst.reason and inst.name not in kept:
                kept[inst.name] = inst.reason
                changed = True
            if inst.state == "failed" and inst.name in kept:
                inst = replace(inst, reason=kept[inst.name])
            out.append(inst)
        if changed:
            self.save()
        return out

    def _proxy_status(self, proxy: dict, job_state: str, job_reason: str, steps: dict, probe: bool) -> ClusterInstance:
        if proxy.get("on") == "submit-host":
            alive = _local_alive(proxy.get("pid"), proxy.get("create_time"))
            job_state, in_step = ("RUNNING", alive) if alive else (job_state, False)
        else:
            in_step = "proxy" in steps
        state, reason = self._asked("proxy", job_state, in_step) or instance_state(
            job_state, job_reason, in_step, self._exit_code("proxy"), proxy["health_url"] if probe else None,
            Path(proxy["log"]), self._node_reason(proxy.get("host")), self.state.get("stopped", False),
        )
        step = steps.get("proxy")
        return ClusterInstance("proxy", "proxy", state, reason, proxy.get("host"), step.step_id if step else None,
                               proxy["port"], (), proxy["health_url"], proxy["log"])

    def _asked(self, name: str, job_state: str, step_running: bool) -> tuple[str, str | None] | None:
        """An instance pdtui stopped alone or asked to restart, between its steps."""
        if step_running or job_state != "RUNNING" or self.state.get("stopped"):
            return None
        if (self.run_dir / HOLD_DIR / name).exists():
            return "stopped", "stopped alone"
        if (self.run_dir / RESTART_DIR / name).exists():
            return "starting", "restarting"
        return None

    # --- one instance ------------------------------------------------------------------
    def instance_actions_problem(self, name: str) -> str | None:
        """Why `name` cannot be stopped/restarted alone (None: it can)."""
        if not self.state.get("restartable"):
            return "this run's steps.sh predates restarts of one instance (pdtui down cancels the whole job)"
        if name == "proxy" and (self.state.get("proxy") or {}).get("on") == "submit-host":
            return "the proxy runs on this machine (proxy_on: submit-host), not as a job step; X cancels the whole job"
        if name != "proxy" and name not in self.state.get("instances", {}):
            return f"no instance {name!r} in {self.name}"
        return None

    def restart_instance(self, name: str) -> None:
        """Start the instance's step again (its loop in steps.sh); a running step is cancelled."""
        problem = self.instance_actions_problem(name)
        if problem:
            raise SlurmError(problem)
        atomic_write(self.run_dir / RESTART_DIR / name, "restart\n")  # first: the loop reads it once srun returned
        (self.run_dir / HOLD_DIR / name).unlink(missing_ok=True)
        if self.state.get("failures", {}).pop(name, None) is not None:
            self.save()  # a new step, a new first reason
        self._cancel_step(name)

    def stop_instance(self, name: str) -> None:
        """Cancel the instance's step; it stays stopped (in the allocation) until restarted."""
        problem = self.instance_actions_problem(name)
        if problem:
            raise SlurmError(problem)
        atomic_write(self.run_dir / HOLD_DIR / name, "stopped alone by pdtui\n")
        self._cancel_step(name)

    def _cancel_step(self, name: str) -> None:
        for step in slurm_cmd.steps(self.job_id):
            if step.name == name:
                try:
                    slurm_cmd.scancel(step.step_id)
                except SlurmError as exc:
                    if "Invalid job id" not in str(exc) and "already completing" not in str(exc):
                        raise

    def _exit_code(self, name: str) -> int | None:
        try:
            return int((self.run_dir / EXIT_DIR / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def _node_reason(self, host: str | None) -> str | None:
        """Slurm's reason when the node is down or drained (a node failure)."""
        if not host or host not in self.state.get("hosts", []):
            return None
        if host not in self._node_reasons:
            self._node_reasons[host] = self._ask_node_reason(host)
        return self._node_reasons[host]

    def _ask_node_reason(self, host: str) -> str | None:
        try:
            node = slurm_cmd.show_node(host)
        except SlurmError:
            return None
        state = node.get("State", "")
        if any(word in state for word in ("DOWN", "DRAIN", "FAIL", "NOT_RESPONDING")):
            return f"node {host} {state}" + (f": {node['Reason']}" if node.get("Reason") else "")
        return None

    def wait_ready(self, timeout_s: float, on_change: Callable[[ClusterStatus], None] | None = None,
                   should_stop: Callable[[], bool] = lambda: False) -> ClusterStatus:
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            status = self.status()
            key = tuple((i.name, i.state, i.reason) for i in status.instances)
            if on_change and key != last:
                on_change(status)
                last = key
            failed = any(i.state == "failed" for i in status.instances)  # one is enough: stop_on_failure
            if status.phase == "ready" or failed or time.monotonic() > deadline or should_stop():
                return status
            time.sleep(0.5)

    # --- stop ------------------------------------------------------------------------
    def stop(self, timeout_s: float = 60.0) -> list[str]:
        """Cancel the job (every step with it) and the local proxy; what is still left."""
        self.state["stopped"] = True
        self.save()
        try:
            slurm_cmd.scancel(self.job_id)
        except SlurmError as exc:
            if "Invalid job id" not in str(exc) and "already completing" not in str(exc):
                raise
        proxy = self.state.get("proxy") or {}
        if proxy.get("on") == "submit-host" and _local_alive(proxy.get("pid"), proxy.get("create_time")):
            _stop_local(proxy["pid"])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            left = self.left_behind()
            if not left:
                return []
            time.sleep(0.5)
        return self.left_behind()

    def left_behind(self) -> list[str]:
        left = [f"step {s.step_id} ({s.name})" for s in slurm_cmd.steps(self.job_id)]
        job = slurm_cmd.job(self.job_id)
        if job is not None and job.state not in slurm_cmd.TERMINAL_JOB_STATES:
            left.append(f"job {self.job_id} ({job.state})")
        proxy = self.state.get("proxy") or {}
        if proxy.get("on") == "submit-host" and _local_alive(proxy.get("pid"), proxy.get("create_time")):
            left.append(f"proxy pid {proxy['pid']}")
        return left


def _local_alive(pid: int | None, create_time: float | None) -> bool:
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - (create_time or 0)) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_local(pid: int) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                if not _pid_exists(pid):
                    return
            time.sleep(0.1)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
