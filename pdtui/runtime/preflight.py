"""Checks before anything is started, so a deployment is refused instead of half-started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from pdtui.model.render import DeploymentPlan
from pdtui.text import noun, plural


class PreflightError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("cannot start: " + "; ".join(problems))
        self.problems = problems


def engine_command(argv: tuple[str, ...] | list[str]) -> list[str]:
    """The part of an instance's argv before `serve`: `vllm`, `/path/vllm` or `python -m X`."""
    argv = list(argv)
    return argv[: argv.index("serve")] if "serve" in argv else argv[:1]


def check_command(command: list[str], env: dict[str, str] | None = None) -> str | None:
    """None when the command can run; otherwise why not."""
    if not command:
        return "the vLLM command is empty"
    exe = command[0]
    path_env = (env or os.environ).get("PATH", os.defpath)
    if os.sep in exe:
        if not os.path.exists(exe):
            return f"{exe} does not exist"
        if not os.access(exe, os.X_OK) or os.path.isdir(exe):
            return f"{exe} is not an executable file"
        resolved = exe
    else:
        found = shutil.which(exe, path=path_env)
        if found is None:
            return (
                f"{exe!r} is not on PATH; set vllm_command in the profile to a path or to an interpreter and module, "
                "e.g. [python3, -m, vllm.entrypoints.cli.main] (a `pip install --target` install has no usable vllm script)"
            )
        resolved = found
    if len(command) >= 3 and command[1] == "-m":
        module = command[2]
        here = _importable_here(module) if _same_interpreter(resolved, env) else None
        if here is not None:
            # Our own interpreter with our own import path: asked here, without starting
            # one more interpreter before the first spawn (the simulated engine's case).
            return None if here else f"module {module!r} is not importable by {resolved}"
        # Ask that interpreter itself: the module must import where it will run.
        probe = [resolved, "-c", "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 3)", module]
        try:
            done = subprocess.run(probe, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot run {resolved} to look for module {module}: {exc}"
        if done.returncode != 0:
            return f"module {module!r} is not importable by {resolved}" + (
                f": {done.stderr.decode(errors='replace').strip().splitlines()[-1]}" if done.stderr.strip() else ""
            )
    return None


# What decides where an interpreter looks for modules, besides the interpreter itself.
_IMPORT_PATH_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PYTHONPLATLIBDIR", "PYTHONUSERBASE", "VIRTUAL_ENV")


def _same_interpreter(exe: str, env: dict[str, str] | None) -> bool:
    """Whether exe is this very interpreter, run with the same import path settings."""
    if env is None:
        return False
    # The path as written, not the file it links to: a venv's python is a link to the
    # system's, and which sys.path it gets depends on where it was started from.
    if os.path.abspath(exe) != os.path.abspath(sys.executable):
        return False
    return all(env.get(key) == os.environ.get(key) for key in _IMPORT_PATH_ENV)


def _importable_here(module: str) -> bool | None:
    """find_spec in this process, only where it imports nothing new: a top-level module,
    or one whose parent package is imported already (pdtui.sim); otherwise the probe."""
    import importlib.util

    parent = module.rpartition(".")[0]
    if parent and parent not in sys.modules:
        return None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.path.exists(model)


def gpu_count() -> tuple[int | None, str | None]:
    from pdtui.gpus import gpu_count as nvml_gpu_count  # knows every NVML failure mode

    return nvml_gpu_count()


def preflight(plan: DeploymentPlan, gpu_counter=gpu_count, port_in_use=None) -> list[str]:
    """Everything that would make the start fail at once; empty list = go."""
    from pdtui.model.hostchecks import port_in_use as default_port_in_use

    port_in_use = port_in_use or default_port_in_use
    problems: list[str] = []
    claims: list[tuple[str, int, str]] = [(plan.proxy.host, plan.proxy.port, "proxy HTTP")]
    if plan.proxy.zmq_port:
        claims.append((plan.proxy.host, plan.proxy.zmq_port, "proxy ZMQ"))
    for inst in plan.instances:
        claims += [(inst.host, port, f"{inst.name} {what}") for port, what in inst.ports]
    for host, port, what in claims:
        if port_in_use(host, port):
            problems.append(f"port {port} ({what}) is already in use on {host}")
    if plan.engine != "sim":
        count, error = gpu_counter()
        wanted = sorted({g for inst in plan.instances for g in inst.gpus})
        if count is None:
            problems.append(f"cannot see the GPUs (NVML: {error}); GPUs {wanted} are needed")
        else:
            missing = [g for g in wanted if g >= count]
            if missing:
                problems.append(f"{noun(len(missing), 'GPU')} {missing} {'does' if len(missing) == 1 else 'do'} not exist: this machine has {plural(count, 'GPU')}")
        if looks_local(plan.model):
            path = Path(os.path.expanduser(plan.model))
            if not path.exists():
                problems.append(f"model path {plan.model} does not exist")
            elif not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
                problems.append(f"model path {plan.model} is not readable by this user")
    checked: set[tuple[str, ...]] = set()
    for inst in plan.instances:
        command = engine_command(inst.argv)
        if tuple(command) in checked:
            continue
        checked.add(tuple(command))
        env = dict(os.environ)
        env.update(inst.env)
        problem = check_command(command, env)
        if problem:
            problems.append(f"vLLM command: {problem}")
    return problems
