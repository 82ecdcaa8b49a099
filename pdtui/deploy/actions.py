"""`pdtui down` and `pdtui restart`: ask a run's live owner, act directly on a run without
one, or stop by run marker what nobody else can reach (unreadable state, deleted run dir,
orphans). Imported by pdtui/deploy/cli.py when one of them runs."""

from __future__ import annotations

import os
import sys


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _resolve(name: str | None):
    from pdtui.runtime import resolve_run

    try:
        return resolve_run(name)
    except LookupError as exc:
        _err(f"pdtui: {exc}")
        return None


def _act(run, action: str, timeout_s: float, **kwargs) -> tuple[bool, str]:
    """Ask the live owner of the run, or act directly when there is none. A run whose
    state cannot be read (or whose directory is gone) is stopped through its run marker."""
    from pdtui.runtime import AttachError, Supervisor, control, owner_of

    owner = owner_of(run)
    if owner is not None:
        request_id = control.submit(run, action, **kwargs)
        answer = control.wait_done(run, request_id, timeout_s, still_owned=lambda: owner_of(run) == owner)
        if answer.get("ok") or "exited before answering" not in answer.get("message", ""):
            message = str(answer.get("message"))
            if action == "stop":
                message += _sweep(run.name, _root_of(run))
            return bool(answer.get("ok")), message
    try:
        sup = Supervisor.attach(run, take_ownership=False)
    except AttachError as exc:
        if action != "stop":
            raise
        swept = _sweep(run.name, _root_of(run))
        return True, f"{exc}" + (swept or "; no live process carries its run marker")
    if action == "stop":
        stopped = sup._stop_all()
        left = [i.name for i in sup.status().instances if i.pid]
        lines = "".join(f"\n  stopped {line}" for line in stopped) + _sweep(run.name, _root_of(run))
        return not left, (f"stopped {sup.run_name}" if not left else f"still running: {', '.join(left)}") + lines
    from pdtui.runtime import PreflightError

    try:
        ok = sup.restart(kwargs["name"]).result(timeout=timeout_s)
    except PreflightError as exc:
        return False, "refused, nothing was stopped: " + "; ".join(exc.problems)
    st = sup.instance(kwargs["name"])
    sup._persist()  # record the new pid for the next re-attach
    return ok, f"{st.name}: {st.state.value}" + (f" ({st.reason})" if st.reason else "")


def _root_of(run) -> str:
    """The runs folder a run's processes name in their marker (pdtui.runtime.backend)."""
    return os.path.realpath(run.parent)


def _sweep(run_name: str, root: str | None = None) -> str:
    """Stop what still carries the run's marker (a tree whose state was lost), of the runs
    folder root (default: ours); lines saying so."""
    from pdtui.gpus.markers import find_marked
    from pdtui.runtime.rundir import runs_root
    from pdtui.runtime.tree import stop_tree

    root = root or os.path.realpath(runs_root())
    lines = []
    for instance in sorted({p.instance for p in find_marked(run_name, root=root)}):
        result = stop_tree(None, run_name, instance, root=root)
        if result.stopped:
            lines.append(f"\n  stopped {run_name}/{instance} by its run marker: {result.summary()}")
    return "".join(lines)


def cmd_down(args) -> int:
    from pdtui.cluster.cli import cmd_down as slurm_down, resolve_slurm_run
    from pdtui.runtime import AttachError, find_runs

    if args.all:
        return _down_all()
    slurm_run = resolve_slurm_run(args.name) if args.name or not find_runs(live_only=True) else None
    if slurm_run is not None:
        return slurm_down(slurm_run)
    run = _resolve(args.name)
    if run is None:
        return 1
    try:
        ok, message = _act(run, "stop", 120)
    except AttachError as exc:
        _err(f"pdtui down: {exc}")
        return 1
    _err(message)
    return 0 if ok else 1


def _down_all() -> int:
    """Every live run, then every process left that carries a run marker (orphans)."""
    from pdtui.runtime import AttachError, find_runs

    ok, acted = True, False
    for run in find_runs(live_only=True):
        acted = True
        try:
            done, message = _act(run.path, "stop", 120)
        except AttachError as exc:
            done, message = False, str(exc)
        ok = ok and done
        _err(f"{run.name}: {message}")
    from pdtui.gpus.markers import marked_runs
    from pdtui.runtime.rundir import runs_root

    # This runs folder's markers only (a run whose directory is gone still names its folder):
    # another state home's runs, started by another pdtui or test at the same time, are not ours.
    root = os.path.realpath(runs_root())
    for run_name in sorted(marked_runs(root)):
        swept = _sweep(run_name, root)
        if swept:
            acted = True
            _err(f"{run_name}:{swept}")
    from pdtui.cluster.cli import cancel_all  # pdtui's Slurm jobs (docs/cluster.md)

    cancelled, lines = cancel_all()
    ok = ok and cancelled
    for line in lines:
        acted = True
        _err(line)
    if not acted:
        _err("nothing to stop: no live run, no Slurm job of pdtui, no process with a pdtui run marker")
    return 0 if ok else 1


def cmd_restart(args) -> int:
    from pdtui.cluster.cli import cmd_restart as slurm_restart, resolve_slurm_run
    from pdtui.runtime import AttachError, find_runs

    slurm_run = resolve_slurm_run(args.run) if args.run or not find_runs(live_only=True) else None
    if slurm_run is not None:  # a new job step for the instance (docs/cluster.md)
        return slurm_restart(slurm_run, args.instance)
    run = _resolve(args.run)
    if run is None:
        return 1
    try:
        ok, message = _act(run, "restart", 1800, name=args.instance)
    except (AttachError, KeyError) as exc:
        _err(f"pdtui restart: {exc.args[0] if exc.args else exc}")
        return 1
    _err(message)
    return 0 if ok else 1
