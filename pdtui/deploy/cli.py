"""`pdtui up / down / status / logs / restart`: the headless face of the supervisor.

Only the standard library at import time; the supervisor is imported inside each command.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time


def register(subparsers) -> None:
    up = subparsers.add_parser("up", help="start a deployment (foreground until Ctrl-C, or --detach)")
    up.add_argument("profile", help="a profile file or a preset name (demo, 1p1d, ...)")
    up.add_argument("--detach", action="store_true", help="return once everything is ready and leave it running")
    up.add_argument("--auto-restart", action="store_true", help="restart a crashed instance (with backoff)")
    up.add_argument(
        "--timeout", type=_seconds, metavar="S",
        help="overall readiness deadline: when not everything is ready S seconds after the start, "
        "stop it all and exit 1 (each instance's own startup_timeout_s still applies when smaller)",
    )
    up.add_argument("--backend", choices=("local", "slurm"), default=None,
                    help="where to run: local processes, or one Slurm job (default: slurm when the profile has cluster:)")
    up.set_defaults(func=cmd_up)

    down = subparsers.add_parser("down", help="stop a run (default: the only live one)")
    down.add_argument("name", nargs="?", help="run name (see `pdtui status`)")
    down.add_argument("--all", action="store_true",
                      help="stop every run, and every process that carries a pdtui run marker (orphans too)")
    down.set_defaults(func=cmd_down)

    status = subparsers.add_parser("status", help="the live runs and the state of their processes")
    status.add_argument("name", nargs="?", help="one run (name or directory)")
    status.add_argument("--json", action="store_true")
    status.add_argument("--all", action="store_true", help="also runs that are no longer live")
    status.add_argument("--gpus", action="store_true", help="Slurm runs: also each node's GPUs (`pdtui gpus` as a job step)")
    status.set_defaults(func=cmd_status)

    logs = subparsers.add_parser("logs", help="an instance's log (proxy, prefiller1, ...)")
    logs.add_argument("instance")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument("--run", help="run name (default: the newest live run)")
    logs.set_defaults(func=cmd_logs)

    restart = subparsers.add_parser("restart", help="restart one instance of a run")
    restart.add_argument("instance")
    restart.add_argument("--run", help="run name (default: the newest live run)")
    restart.set_defaults(func=cmd_restart)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _not_ready_lines(sup) -> list[str]:
    """Each instance that is not ready, with how far it got (for the --timeout message)."""
    lines = []
    for inst in sup.status().instances:
        if inst.state.value == "ready":
            continue
        if inst.state.value == "starting":
            step = inst.milestone or "no start-up step seen in its log yet"
            lines.append(f"  - {inst.name}: starting, last start-up step: {step}  (log: {inst.log_path})")
        elif inst.pid is None and inst.state.value == "stopped":
            lines.append(f"  - {inst.name}: not started yet (waits for an instance before it)")
        else:
            lines.append(f"  - {inst.name}: {inst.state.value}" + (f" ({inst.reason})" if inst.reason else ""))
    return lines


_ERR_LOCK = threading.Lock()


def _err(message: str) -> None:
    """One whole line per call, from any thread: the supervisor's threads print progress
    while the main thread prints too (two `print` writes used to interleave)."""
    with _ERR_LOCK:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _progress_printer(start: float):
    from pdtui.runtime.events import DeploymentEvent, ReadinessProgress, StateChanged

    def on_event(event) -> None:
        stamp = f"[{time.monotonic() - start:6.1f}s]"
        if isinstance(event, StateChanged):
            st = event.status
            if st.state.value in ("stopping", "stopped"):
                return  # `_stop_and_say` says what was stopped (and how), once
            extra = f" (pid {st.pid})" if st.state.value == "starting" and st.pid else ""
            extra += f": {st.reason}" if st.reason else ""
            _err(f"{stamp} {event.name}: {st.state.value}{extra}")
        elif isinstance(event, ReadinessProgress):
            _err(f"{stamp} {event.name}: {event.milestone}" + (f" ({event.detail})" if event.detail else ""))
        elif isinstance(event, DeploymentEvent) and event.kind not in ("ready", "stopped"):
            _err(f"{stamp} {event.kind}: {event.message}")

    return on_event


def cmd_up(args) -> int:
    from pdtui.model import validate_file
    from pdtui.model.presets import resolve_profile_path

    try:
        path = resolve_profile_path(args.profile)
    except (FileNotFoundError, LookupError, ValueError) as exc:
        _err(f"pdtui up: {exc}")
        return 2
    from pdtui.clipaths import input_file_problem

    if problem := input_file_problem(path):  # one line, like every CLI path error
        _err(f"pdtui up: {args.profile}: {problem}")
        return 2
    validation = validate_file(path)
    for problem in validation.problems:
        _err(problem.format(str(path)))
    if not validation.ok or validation.profile is None:
        _err(f"pdtui up: {path} is not valid; nothing started")
        return 2
    from pdtui.cluster.cli import dispatch_up  # Slurm and multi-node profiles (docs/cluster.md)

    handled = dispatch_up(validation.profile, args)
    if handled is not None:
        return handled
    from pdtui.runtime.launching import already_running, profile_lock

    with profile_lock(validation.profile.name) as lock:
        # Under the lock: a second `up` of this profile waits here, then sees the first.
        running = already_running(validation.profile.name)
        if running is not None:
            _err(f"pdtui up: {validation.profile.name} is already running as {running} "
                 f"(pdtui status {running} / pdtui down {running})")
            return 1
        return _up(args, validation.profile, lock.release)


def _up(args, profile, start_over) -> int:
    from pdtui.runtime import PreflightError, Supervisor

    sup = Supervisor.launch(profile, detach=args.detach, auto_restart=args.auto_restart)
    start = time.monotonic()
    sup.subscribe(_progress_printer(start))
    _err(f"run {sup.run_name}: {sup.run_dir}")
    stop_requested = threading.Event()
    wake = threading.Event()  # a stop asked for, or the start over: no poll delay on "all ready"

    def on_term(signum, frame) -> None:
        stop_requested.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_term)
    # Explicitly: a shell starting `pdtui up &` leaves SIGINT ignored, and Ctrl-C must stop.
    signal.signal(signal.SIGINT, on_term)
    future = sup.start()
    future.add_done_callback(lambda _f: wake.set())
    # Measured from here, like each instance's startup_timeout_s is from its own start: the
    # overall deadline wins whenever it comes first (instances that wait for a shared GPU
    # start later, so their own timeouts alone can add up far beyond it).
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        while not future.done():
            wake.wait(0.1)
            if stop_requested.is_set():
                raise KeyboardInterrupt
            if deadline is not None and time.monotonic() > deadline and not future.done():
                _err(f"pdtui up: not everything was ready within --timeout {args.timeout:g} s; "
                     "stopping everything:")
                for line in _not_ready_lines(sup):
                    _err(line)
                _stop_and_say(sup)
                return 1
        try:
            ok = future.result()
        except PreflightError as exc:
            _err("pdtui up: refused to start:")
            for problem in exc.problems:
                _err(f"  - {problem}")
            _stop_and_say(sup)
            return 1
        if not ok:
            failed = [i for i in sup.status().instances if i.state.value == "failed"]
            _err("pdtui up: the deployment did not come up; everything was stopped:")
            for inst in failed:
                _err(f"  - {inst.name}: {inst.reason}  (log: {inst.log_path})")
            _stop_and_say(sup)
            return 1
        start_over()  # the run is live now: a second `up` of the profile will see it
        proxy = next((i for i in sup.status().instances if i.kind == "proxy"), None)
        url = proxy.health_url.rsplit("/health", 1)[0] if proxy else ""
        _err(f"[{time.monotonic() - start:6.1f}s] all ready: {url}  (run {sup.run_name})")
        if args.detach:
            sup.detach()
            from pdtui.constants import reattach_command

            _err(f"detached: {sup.run_name} keeps running; re-attach with `{reattach_command(sup.run_name)}`, "
                 f"stop it with `pdtui down {sup.run_name}`")
            print(sup.run_name)
            args.exit_at_once = True  # detached: nothing of this process is needed any more
            return 0
        _err("Ctrl-C stops everything")
        # Foreground: until Ctrl-C/SIGTERM, or until another pdtui stopped it (`pdtui down`).
        # Whatever state the instances ended in (one may have crashed before), a stop of
        # the deployment from elsewhere ends this command.
        while not stop_requested.wait(0.5):
            if sup.stopped.is_set():
                _err("the deployment was stopped (pdtui down or the TUI)")
                sup.close()
                return 0
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        _err("stopping everything ...")
        was_ready = future.done() and not future.exception() and future.result()
        _stop_and_say(sup)
        return 0 if was_ready else 130


def _stop_and_say(sup) -> None:
    """Stop everything this run started, detached or not, and say what was stopped."""
    earlier = list(getattr(sup, "last_stopped", []))  # a failed start stopped it already
    stopped = earlier + sup._stop_all()
    sup.close()
    for line in stopped:
        _err(f"  stopped {line}")
    left = [i.name for i in sup.status().instances if i.pid]
    _err("all processes stopped" if not left else f"still running: {', '.join(left)}")


def _resolve(name: str | None):
    from pdtui.runtime import resolve_run

    try:
        return resolve_run(name)
    except LookupError as exc:
        _err(f"pdtui: {exc}")
        return None


def cmd_status(args) -> int:
    """Every run; one whose state file cannot be read is listed as "unreadable: why" with
    the live processes that carry its marker, and never hides the others."""
    from pdtui.runtime import find_runs
    from pdtui.runtime.runs import RunInfo

    from pdtui.cluster.cli import print_status, resolve_slurm_run, status_reports  # Slurm runs

    slurm = status_reports(args.name, args.all) if not args.name or resolve_slurm_run(args.name) else []
    if args.name and slurm:
        print_status(slurm, args.json, getattr(args, "gpus", False))
        return 0
    runs = find_runs()
    if args.name:
        run = _resolve(args.name)
        if run is None:
            return 1
        runs = [r for r in runs if r.path == run] or [RunInfo(run, run.name, "?", 0.0, False, False, None, {})]
    elif not args.all:
        runs = [r for r in runs if r.live]
    reports, problems = _status_reports(runs)
    if args.json:
        out = [r.to_dict() for r in reports] + [r.to_dict() for r in slurm] + [
            {"run_name": r.name, "run_dir": str(r.path), "phase": "unreadable", "problem": r.problem,
             "marked_pids": list(r.marked_pids), "instances": []} for r in problems
        ]
        print(json.dumps(out, indent=2))
        return 0
    print_status(slurm, False, getattr(args, "gpus", False))
    if not reports and not problems and not slurm:
        print("no live runs" + ("" if args.all else " (--all shows the others)"))
        return 0
    for report in reports:
        print(f"{report.run_name}  {report.phase}{'  detached' if report.detached else ''}  {report.run_dir}")
        for inst in report.instances:
            up = f"{inst.uptime_s:7.0f}s" if inst.uptime_s is not None else "       -"
            gpus = ",".join(map(str, inst.gpus)) or "-"
            state = inst.state.value + (f"/{inst.health}" if inst.health else "")
            line = f"  {inst.name:<14} {inst.kind:<9} {state:<9} pid {str(inst.pid or '-'):<8} port {str(inst.port or '-'):<6} gpus {gpus:<5} up {up}"
            if inst.reason or inst.health_detail:
                line += f"  {inst.health_detail or inst.reason}"
            print(line)
    for run in problems:
        print(f"{run.name}  unreadable: {run.problem}  {run.path}")
        if run.marked_pids:
            print(f"  live processes carrying its run marker: {', '.join(map(str, run.marked_pids))} "
                  f"(pdtui down {run.name} stops them)")
    return 0


def _status_reports(runs):
    from pdtui.runtime import AttachError, Supervisor

    reports, problems = [], []
    for run in runs:
        if run.problem is not None:
            problems.append(run)
            continue
        try:
            reports.append(Supervisor.attach(run.path, read_only=True).status())
        except AttachError as exc:
            from dataclasses import replace

            problems.append(replace(run, problem=str(exc)))
    return reports, problems


def cmd_logs(args) -> int:
    from pdtui.runtime import AttachError, Supervisor
    from pdtui.runtime.logtail import LogTailer, last_lines

    from pdtui.cluster.cli import slurm_log_path  # a Slurm run's logs are files in its run directory

    path = slurm_log_path(args.run, args.instance)
    run = None if path else _resolve(args.run)
    if run is None and path is None:
        return 1
    try:
        if path is None:
            sup = Supervisor.attach(run, read_only=True)
            path = sup.instance(args.instance).log_path
    except (AttachError, KeyError) as exc:
        _err(f"pdtui logs: {exc.args[0] if exc.args else exc}")
        return 1
    for line in last_lines(path, args.lines):
        print(line)
    sys.stdout.flush()
    if not args.follow:
        return 0
    tailer = LogTailer.at_end(path)
    try:
        while True:
            for line in tailer.read_lines():
                print(line)
            sys.stdout.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0


def cmd_down(args) -> int:
    from pdtui.deploy.actions import cmd_down as down

    return down(args)


def cmd_restart(args) -> int:
    from pdtui.deploy.actions import cmd_restart as restart

    return restart(args)
