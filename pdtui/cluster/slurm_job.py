"""What pdtui hands to Slurm, as text and data: pure functions, nothing is submitted here.

One job holds the allocation (`slurm-job.sh`, submitted with sbatch). Its batch script
waits until pdtui has rendered the plan for the nodes Slurm picked (their addresses are
only known then) and written `steps.sh`, then runs it: every instance becomes one job step
(`srun --exact --gres=gpu:N --nodelist=HOST`), the proxy one more when it runs on the first
node. The step processes' srun clients live inside the job on its first node, so the
deployment survives the operator's SSH session; `scancel` ends all of it.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

from pdtui.model.checks import is_secret_name
from pdtui.model.render import DeploymentPlan, InstancePlan
from pdtui.model.schema import Profile

JOB_SCRIPT = "slurm-job.sh"
STEPS_SCRIPT = "steps.sh"
JOB_LOG = "slurm-job.log"
EXIT_DIR = "exit"  # exit/<name>: a step's exit code, written when its srun returns
ABORT_FILE = "abort"  # pdtui gave up before writing steps.sh: the batch script exits
RESTART_DIR = "restart"  # restart/<name>: pdtui asks for the step again (once its srun returned)
HOLD_DIR = "hold"  # hold/<name>: stopped alone; the step waits until pdtui starts it again


def node_index(profile: Profile, instance_node: str | None) -> int:
    """Which node of the allocation (in Slurm's host order) an instance runs on."""
    if instance_node is None or not profile.nodes:
        return 0
    return [n.name for n in profile.nodes].index(instance_node)


def node_count(profile: Profile) -> int:
    return max(len(profile.nodes or ()), 1)


def sbatch_directives(profile: Profile, run_dir: Path, run_name: str) -> list[str]:
    """The #SBATCH options: as many nodes as the profile names, enough tasks and GPUs on each."""
    assert profile.cluster is not None
    cluster = profile.cluster
    per_node_tasks: Counter[int] = Counter()
    per_node_gpus: Counter[int] = Counter()
    for inst in profile.instances():
        i = node_index(profile, inst.node)
        per_node_tasks[i] += 1
        per_node_gpus[i] += inst.tensor_parallel_size
    # +1 for the batch script itself, +1 for the proxy on the first node; each task has the
    # CPUs of one engine (the batch script and the proxy need far less, but a job's tasks are alike).
    tasks = max(per_node_tasks.values()) + 2
    gpus = max(per_node_gpus.values())
    options = [
        f"--job-name=pdtui-{run_name}",
        f"--nodes={node_count(profile)}",
        f"--ntasks-per-node={tasks}",
        f"--cpus-per-task={cluster.cpus_per_instance}",
        f"--output={run_dir / JOB_LOG}",
        f"--chdir={run_dir}",
        "--no-requeue",  # a node failure is a failed instance to report, not a silent restart
    ]
    if gpus:
        options.append(f"--gres=gpu:{gpus}")
    if cluster.partition:
        options.append(f"--partition={cluster.partition}")
    if cluster.account:
        options.append(f"--account={cluster.account}")
    if cluster.time:
        options.append(f"--time={cluster.time}")
    options += list(cluster.sbatch_args)
    return options


def job_script(profile: Profile, run_dir: Path, run_name: str) -> str:
    run = shlex.quote(str(run_dir))
    lines = ["#!/bin/bash", f"# pdtui run {run_name} (profile {profile.name}): the Slurm job that holds the allocation."]
    lines += [f"#SBATCH {opt}" for opt in sbatch_directives(profile, run_dir, run_name)]
    lines += [
        "set -u",
        f"RUN={run}",
        "# pdtui writes steps.sh once it knows the addresses of the nodes Slurm picked.",
        f'while [ ! -f "$RUN/{STEPS_SCRIPT}" ]; do',
        f'  if [ -f "$RUN/{ABORT_FILE}" ]; then echo "pdtui gave up before starting the steps"; exit 1; fi',
        "  sleep 0.5",
        "done",
        f'exec bash "$RUN/{STEPS_SCRIPT}"',
        "",
    ]
    return "\n".join(lines)


def srun_argv(name: str, host: str, gpus: int, run_dir: Path, python: str, cpus: int = 1,
              extra: list[str] | None = None) -> list[str]:
    argv = [
        "srun", f"--job-name={name}", "--nodes=1", "--ntasks=1", "--exact", f"--cpus-per-task={cpus}",
        f"--nodelist={host}", f"--gres=gpu:{gpus}" if gpus else "--gres=none",
        f"--output={run_dir / (name + '.log')}", "--open-mode=append", "--export=ALL", *(extra or []),
        python, "-m", "pdtui.cluster.step", str(run_dir), name,
    ]
    return argv


def steps_script(
    plan: DeploymentPlan, profile: Profile, hosts: list[str], run_dir: Path, python: str, proxy_on_node: bool
) -> str:
    """Start every step in the background and record each exit code; the proxy first,
    decoders before prefillers (LMCache's order). Each step runs in a loop, so one
    instance can be restarted or stopped alone while the srun clients stay in the job:
    pdtui writes restart/NAME (or hold/NAME) and cancels the step; an instance that ended
    by itself waits in the allocation for a restart."""
    run = shlex.quote(str(run_dir))
    lines = [
        "#!/bin/bash",
        "# Written by pdtui after the allocation: one job step per instance (see docs/cluster.md).",
        f"RUN={run}",
        f'mkdir -p "$RUN/{EXIT_DIR}"',
        "step() {  # step NAME SRUN-ARGV...: run it, record its exit code; again when pdtui asks",
        '  local name=$1 code; shift',
        "  while true; do",
        f'    rm -f "$RUN/{EXIT_DIR}/$name" "$RUN/{RESTART_DIR}/$name"',
        '    "$@"',
        "    code=$?",
        f'    while [ -f "$RUN/{HOLD_DIR}/$name" ]; do sleep 0.5; done  # stopped alone: until started again',
        f'    [ -f "$RUN/{RESTART_DIR}/$name" ] && continue',
        f'    echo $code > "$RUN/{EXIT_DIR}/$name"',
        f'    until [ -f "$RUN/{RESTART_DIR}/$name" ]; do sleep 1; done  # ended by itself: until restarted',
        "  done",
        "}",
    ]
    if proxy_on_node:
        lines.append("step proxy " + shlex.join(srun_argv("proxy", hosts[0], 0, run_dir, python)) + " &")
    spec_by_name = {i.name: i for i in profile.instances()}
    for inst in plan.start_order():
        host = hosts[node_index(profile, spec_by_name[inst.name].node)]
        cluster = profile.cluster
        argv = srun_argv(inst.name, host, inst.tensor_parallel_size, run_dir, python,
                         cluster.cpus_per_instance if cluster else 1, list(cluster.srun_args) if cluster else [])
        lines.append(f"step {inst.name} " + shlex.join(argv) + " &")
    lines += ["wait", ""]
    return "\n".join(lines)


def step_spec(argv: tuple[str, ...], env: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """The JSON a step reads, and the secrets kept out of it (they travel in the job's
    environment instead: sbatch passes its environment to the steps)."""
    public = {k: v for k, v in env.items() if not is_secret_name(k)}
    secrets = {k: v for k, v in env.items() if is_secret_name(k)}
    return {"argv": list(argv), "env": public}, secrets


def instance_spec(inst: InstancePlan) -> tuple[dict, dict[str, str]]:
    spec, secrets = step_spec(inst.argv, inst.env)
    spec["gpus"] = list(inst.gpus)
    return spec, secrets
