"""`pdtui up / down / status` for Slurm runs: called from pdtui.deploy.cli.

`up` takes this path when the profile has `cluster: {type: slurm}` or `--backend slurm`
is given; `down` and `status` when the run directory holds a `slurm.json`.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

from pdtui.text import plural  # standard library only: keeps the import light

DEFAULT_ALLOCATION_TIMEOUT_S = 600.0


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def is_slurm_run(run_dir: Path | str | None) -> bool:
    from pdtui.cluster.slurm_backend import STATE_FILE

    return run_dir is not None and (Path(run_dir) / STATE_FILE).is_file()


def find_slurm_runs(root: Path | None = None) -> list[Path]:
    """Slurm run directories, newest first."""
    from pdtui.cluster.slurm_backend import STATE_FILE
    from pdtui.runtime.rundir import runs_root

    root = runs_root() if root is None else root
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / STATE_FILE).is_file()]
    return sorted(runs, key=lambda p: (p / STATE_FILE).stat().st_mtime, reverse=True)


def resolve_slurm_run(name: str | None) -> Path | None:
    """A named Slurm run, or (no name) the newest one not stopped; None when there is none."""
    from pdtui.cluster.slurm_backend import SlurmRun
    from pdtui.cluster.slurm_cmd import SlurmError
    from pdtui.runtime.rundir import runs_root

    if name:
        for candidate in (Path(name), runs_root() / name):
            if is_slurm_run(candidate):
                return candidate
        return None
    for run in find_slurm_runs():
        try:
            if not SlurmRun.load(run).state.get("stopped"):
                return run
        except SlurmError as exc:  # a broken file is not a live run; say why once
            _err(f"pdtui: skipping {run.name}: {exc}")
    return None


def slurm_log_path(run_name: str | None, instance: str) -> str | None:
    """The log of an instance of a Slurm run (None when the run is not a Slurm run)."""
    if run_name is None:
        from pdtui.runtime import find_runs

        if find_runs(live_only=True):
            return None  # a live local run is the default, as before
    run = resolve_slurm_run(run_name)
    if run is None:
        return None
    path = run / f"{instance}.log"
    if not path.is_file():
        names = sorted(p.stem for p in run.glob("*.log") if p.stem != "slurm-job")
        _err(f"pdtui logs: no instance {instance!r} in {run.name} (instances: {', '.join(names) or 'none started yet'})")
        return str(path)
    return str(path)


def _with_slurm_defaults(profile):
    """`--backend slurm` on a profile without a cluster section: an empty one."""
    if profile.cluster is not None:
        return profile
    from pdtui.model.schema import Profile

    data = profile.model_dump(exclude_unset=True)
    data["cluster"] = {"type": "slurm"}
    return Profile.model_validate(data)


def dispatch_up(profile, args) -> int | None:
    """`pdtui up` of a profile that does not run as local processes; None: run it locally."""
    from pdtui.model.placement import is_multi_node

    backend = getattr(args, "backend", None)
    if backend == "slurm" or (profile.cluster is not None and backend != "local"):
        return cmd_up(profile, args)
    if is_multi_node(profile):
        _err(f"pdtui up: {profile.name} spans {len(profile.nodes)} machines; this machine cannot start it alone. "
             "Add `cluster: {type: slurm}` (or pass --backend slurm), or run `pdtui render --target k8s`; "
             "see docs/cluster.md")
        return 2
    return None


def cmd_up(profile, args) -> int:
    from pdtui.cluster.slurm_backend import SlurmRun
    from pdtui.cluster.slurm_cmd import SlurmError
    from pdtui.runtime.rundir import new_run_dir

    profile = _with_slurm_defaults(profile)
    start = time.monotonic()
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: stop_requested.set())

    def say(message: str) -> None:
        _err(f"[{time.monotonic() - start:6.1f}s] {message}")

    run_dir = new_run_dir(profile.name)
    try:
        run = SlurmRun.submit(profile, run_dir)
    except SlurmError as exc:
        _err(f"pdtui up: Slurm refused the job: {exc}")
        return 1
    _err(f"run {run.name}: {run_dir}  (Slurm job {run.job_id})")
    try:
        # --timeout bounds everything from the submission: waiting in the queue counts too.
        hosts = run.wait_allocation(args.timeout or DEFAULT_ALLOCATION_TIMEOUT_S, say, stop_requested.is_set)
        if stop_requested.is_set():
            raise KeyboardInterrupt
        say(f"allocation: {', '.join(hosts)}")
        run.start_steps(profile, hosts)
        timeout = (args.timeout - (time.monotonic() - start)) if args.timeout else max(i.startup_timeout_s for i in profile.instances())

        def on_change(status) -> None:
            for inst in status.instances:
                say(f"{inst.name}: {inst.state}" + (f" on {inst.node} (step {inst.step_id})" if inst.step_id else "")
                    + (f": {inst.reason}" if inst.reason else ""))

        status = run.wait_ready(timeout, on_change, stop_requested.is_set)
        if stop_requested.is_set():
            raise KeyboardInterrupt
        if status.phase != "ready":
            _err(f"pdtui up: the deployment did not come up ({status.phase}); cancelling job {run.job_id}:")
            for inst in status.instances:
                if inst.state != "ready":
                    _err(f"  - {inst.name}: {inst.state}" + (f" ({inst.reason})" if inst.reason else "") + f"  (log: {inst.log_path})")
            run.stop()
            return 1
        proxy = status.instance("proxy")
        say(f"all ready: {proxy.health_url.rsplit('/health', 1)[0]}  (run {run.name}, Slurm job {run.job_id})")
        if args.detach:
            _err(f"detached; stop it with `pdtui down {run.name}` (scancel {run.job_id})")
            print(run.name)
            return 0
        _err("Ctrl-C cancels the job")
        while not stop_requested.wait(1.0):
            if run.status(probe=False).phase in ("stopped", "failed"):
                _err(f"job {run.job_id} ended: {run.status(probe=False).job_state}")
                return 0
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        _err(f"cancelling Slurm job {run.job_id} ...")
        _stopped(run.abort() if not (run_dir / "steps.sh").exists() else run.stop())
        return 130
    except SlurmError as exc:
        _err(f"pdtui up: {exc}")
        _stopped(run.abort())
        return 1


def _stopped(left: list[str] | None) -> None:
    if left:
        _err(f"still there after scancel: {', '.join(left)}")
    else:
        _err("job cancelled; no step left")


def cmd_down(run_dir: Path) -> int:
    from pdtui.cluster.slurm_backend import SlurmRun
    from pdtui.cluster.slurm_cmd import SlurmError

    try:
        run = SlurmRun.load(run_dir)
        left = run.stop()
    except SlurmError as exc:
        _err(f"pdtui down: {exc}")
        return 1
    if left:
        _err(f"pdtui down: still running after scancel: {', '.join(left)}")
        return 1
    _err(f"stopped {run.name} (Slurm job {run.job_id} cancelled)")
    return 0


def cmd_restart(run_dir: Path, name: str, timeout_s: float = 600.0) -> int:
    """`pdtui restart NAME` of a Slurm run: a new job step for it, then wait until it is ready."""
    from pdtui.cluster.slurm_backend import SlurmRun
    from pdtui.cluster.slurm_cmd import SlurmError

    try:
        run = SlurmRun.load(run_dir)
        before = next((i.step_id for i in run.status(probe=False).instances if i.name == name), None)
        run.restart_instance(name)
    except SlurmError as exc:
        _err(f"pdtui restart: {exc}")
        return 1
    deadline = time.monotonic() + timeout_s
    while True:
        inst = run.status().instance(name)
        if inst.state == "failed" or (inst.state == "ready" and inst.step_id != before) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    _err(f"{name}: {inst.state}" + (f" on {inst.node} (step {inst.step_id})" if inst.step_id else "") + (f" ({inst.reason})" if inst.reason else ""))
    return 0 if inst.state == "ready" else 1


def cancel_all() -> tuple[bool, list[str]]:
    """`pdtui down --all`'s Slurm part: every pdtui Slurm run still holding a job, and any
    job of this user named `pdtui-RUN` whose working directory is a run directory of this
    pdtui (its run directory deleted). (all cancelled, one line per job acted on)."""
    from pdtui.cluster import slurm_cmd
    from pdtui.cluster.slurm_backend import SlurmRun
    from pdtui.cluster.slurm_cmd import SlurmError
    from pdtui.runtime.rundir import runs_root

    if slurm_cmd.available() is not None:
        return True, []  # no Slurm client here: no Slurm run can be running from this machine
    try:
        queued = {job_id: (name, state, workdir) for job_id, name, state, workdir in slurm_cmd.user_jobs()}
    except SlurmError as exc:
        if slurm_cmd.unconfigured(exc) and not find_slurm_runs():
            return True, []  # the client is installed but no cluster is set up: no job can exist
        return False, [f"Slurm: cannot list the jobs ({exc}); pdtui's Slurm jobs were not cancelled"]
    ok, lines, seen = True, [], set()
    for run_dir in find_slurm_runs():
        try:
            run = SlurmRun.load(run_dir)
        except SlurmError as exc:
            lines.append(f"{run_dir.name}: {exc}")
            ok = False
            continue
        seen.add(run.job_id)
        if run.job_id not in queued and not run.left_behind():
            continue  # its job ended, nothing of it runs (a local proxy would show here)
        try:
            left = run.stop()
        except SlurmError as exc:
            left = [str(exc)]
        ok = ok and not left
        what = f"Slurm job {run.job_id} ({queued[run.job_id][1].lower()})" if run.job_id in queued else "its local proxy"
        lines.append(f"{run.name}: " + (f"still there after scancel: {', '.join(left)}" if left
                                        else f"cancelled {what}, no step left"))
    roots = {str(runs_root()), str(runs_root().resolve())}
    for job_id, (name, state, workdir) in queued.items():
        if job_id in seen or not name.startswith("pdtui-") or not any(workdir.startswith(r + "/") for r in roots):
            continue
        try:
            slurm_cmd.scancel(job_id)
            lines.append(f"{name.removeprefix('pdtui-')}: cancelled Slurm job {job_id} ({state.lower()}; its run state (slurm.json) is gone)")
        except SlurmError as exc:
            ok = False
            lines.append(f"{name}: scancel {job_id} failed: {exc}")
    return ok, lines


def status_reports(name: str | None, include_stopped: bool) -> list:
    from pdtui.cluster.slurm_backend import SlurmRun
    from pdtui.cluster.slurm_cmd import SlurmError

    runs = [resolve_slurm_run(name)] if name else find_slurm_runs()
    reports = []
    for run_dir in runs:
        if run_dir is None:
            continue
        try:
            run = SlurmRun.load(run_dir)
            if run.state.get("stopped") and not (include_stopped or name):
                continue
            reports.append(run.status())
        except SlurmError as exc:
            _err(f"pdtui status: {exc}")
    return reports


def print_status(reports: list, as_json: bool, gpus: bool = False) -> None:
    views = {r.run_dir: _node_views(r) for r in reports} if gpus else {}
    if as_json:
        data = [r.to_dict() for r in reports]
        for item in data:
            if gpus:
                item["nodes"] = [{"host": v.host, "gpus": v.inventory, "error": v.error} for v in views[item["run_dir"]]]
        print(json.dumps(data, indent=2))
        return
    for report in reports:
        print(f"{report.run_name}  {report.phase}  slurm job {report.job_id} {report.job_state}  {report.run_dir}")
        for inst in report.instances:
            gpu_list = ",".join(map(str, inst.gpus)) or "-"
            line = (f"  {inst.name:<14} {inst.kind:<9} {inst.state:<9} node {inst.node or '-'!s:<12} "
                    f"step {inst.step_id or '-'!s:<10} port {inst.port:<6} gpus {gpu_list}")
            if inst.load:
                line += "  " + "  ".join(f"{k} {_num(v)}" for k, v in inst.load.items())
            if inst.reason:
                line += f"  {inst.reason}"
            print(line)
        for view in views.get(report.run_dir, []):
            print(f"  node {view.host}: " + (view.error or plural(len((view.inventory or {}).get('gpus', [])), 'GPU')))
            for gpu in (view.inventory or {}).get("gpus", []):
                pids = ",".join(str(p.get("pid")) for p in gpu.get("processes") or []) or "-"
                used, total = gpu.get("memory_used"), gpu.get("memory_total")
                mem = f"{used / 2**30:.1f}/{total / 2**30:.0f} GiB" if used is not None and total else "N/A"
                print(f"    gpu {gpu.get('index')}  {gpu.get('name', '?'):<14} mem {mem:<16} util {gpu.get('utilization_gpu', 'N/A')}%  pids {pids}")


def _node_views(report) -> list:
    from pdtui.cluster.gpus import node_gpus
    from pdtui.cluster.slurm_backend import SlurmRun

    if report.job_state != "RUNNING":
        return []
    return node_gpus(SlurmRun.load(Path(report.run_dir)))


def _num(value: float | None) -> str:
    return "N/A" if value is None else f"{value:g}"
