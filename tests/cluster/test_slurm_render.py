"""What pdtui hands to Slurm for a two-node profile (no Slurm needed): the job's size,
one step per instance on its node with its GPUs, addresses from the allocation, and no
secret in any file."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from pdtui.cluster.slurm_job import (
    job_script,
    sbatch_directives,
    step_spec,
    steps_script,
)
from pdtui.cluster.status import instance_state
from pdtui.cluster.step import step_environment
from pdtui.model.placement import with_node_addresses
from pdtui.model.render import render_plan
from pdtui.model.validate import validate_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cluster"


def _two_node_slurm_profile(**cluster):
    data = yaml.safe_load((EXAMPLES / "2node-lmcache.yaml").read_text())
    for node in data["nodes"]:
        node.pop("address")  # Slurm supplies them
    data["proxy"] = {"port": 9100, "zmq_port": 7500}
    data["cluster"] = {"type": "slurm", "partition": "gpu", "account": "proj", "time": "02:00:00", **cluster}
    validation = validate_text(yaml.safe_dump(data))
    assert validation.ok, [p.format() for p in validation.problems]
    return validation.profile


def test_job_asks_for_both_nodes_and_the_busiest_nodes_gpus(tmp_path):
    profile = _two_node_slurm_profile(sbatch_args=["--qos=high"], cpus_per_instance=16)
    options = sbatch_directives(profile, tmp_path, "run1")
    assert "--nodes=2" in options and "--gres=gpu:2" in options and "--ntasks-per-node=3" in options
    assert "--cpus-per-task=16" in options
    assert {"--partition=gpu", "--account=proj", "--time=02:00:00", "--no-requeue", "--qos=high"} <= set(options)
    script = job_script(profile, tmp_path, "run1")
    assert script.startswith("#!/bin/bash\n") and all(f"#SBATCH {o}" in script for o in options)
    assert "steps.sh" in script and "abort" in script


def test_steps_on_their_nodes_with_addresses_from_the_allocation(tmp_path):
    profile = _two_node_slurm_profile(srun_args=["--mem=0"])
    concrete = with_node_addresses(profile, {"gpu-a": "10.1.0.1", "gpu-b": "10.1.0.2"}, proxy_address="10.1.0.1")
    plan = render_plan(concrete, tmp_path, python="/shared/venv/bin/python")
    text = steps_script(plan, concrete, ["node-a17", "node-b03"], tmp_path, "/shared/venv/bin/python", proxy_on_node=True)
    steps = {}
    for line in text.splitlines():
        if line.startswith("step "):
            argv = shlex.split(line.rstrip(" &"))
            steps[argv[1]] = argv[2:]
    assert list(steps) == ["proxy", "decoder1", "prefiller1"]  # proxy, decoders, prefillers
    assert "--nodelist=node-a17" in steps["proxy"] and "--gres=none" in steps["proxy"]
    assert "--nodelist=node-b03" in steps["decoder1"] and "--gres=gpu:2" in steps["decoder1"]
    assert "--nodelist=node-a17" in steps["prefiller1"] and "--exact" in steps["prefiller1"]
    assert "--cpus-per-task=8" in steps["prefiller1"] and "--mem=0" in steps["prefiller1"]
    assert "--cpus-per-task=1" in steps["proxy"] and "--mem=0" not in steps["proxy"]
    assert steps["prefiller1"][-4:] == ["-m", "pdtui.cluster.step", str(tmp_path), "prefiller1"]
    # The plan was rendered for the allocated addresses.
    assert plan.instance("decoder1").lmcache_config["pd_peer_host"] == "10.1.0.2"
    assert plan.instance("prefiller1").lmcache_config["pd_proxy_host"] == "10.1.0.1"
    assert "http://10.1.0.2:8000" in plan.proxy.argv


def test_step_files_leave_secrets_to_the_job_environment():
    spec, secrets = step_spec(("vllm", "serve", "m"), {"HF_TOKEN": "hf_x", "PYTHONHASHSEED": "0"})
    assert spec == {"argv": ["vllm", "serve", "m"], "env": {"PYTHONHASHSEED": "0"}}
    assert secrets == {"HF_TOKEN": "hf_x"}
    assert "hf_x" not in json.dumps(spec)


def test_step_keeps_slurms_gpus_when_slurm_bound_some():
    spec = {"env": {"CUDA_VISIBLE_DEVICES": "0,1", "X": "1"}}
    env, where = step_environment(spec, {"SLURM_STEP_GPUS": "4,5", "CUDA_VISIBLE_DEVICES": "4,5"})
    assert env["CUDA_VISIBLE_DEVICES"] == "4,5" and env["X"] == "1" and "Slurm's allocation" in where
    env, where = step_environment(spec, {})
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and "from the profile" in where


def test_instance_state_rules(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("pdtui step x: ...\nRuntimeError: CUDA error: out of memory\n")
    assert instance_state("PENDING", "Resources", False, None, None, log, None, False) == ("starting", "job pending: Resources")
    assert instance_state("RUNNING", "None", False, None, None, log, None, False) == ("starting", None)
    state, reason = instance_state("RUNNING", "None", False, 1, None, log, None, False)
    assert state == "failed" and "code 1" in reason and "out of memory" in reason
    state, reason = instance_state("NODE_FAIL", "NodeDown", False, None, None, log, "node n1 DOWN: psu", False)
    assert state == "failed" and reason.startswith("node n1 DOWN: psu") and "NODE_FAIL" in reason
    assert instance_state("CANCELLED", "None", False, None, None, log, None, True) == ("stopped", None)


def test_up_refuses_a_multi_node_profile_without_a_cluster(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    done = subprocess.run([sys.executable, "-m", "pdtui", "up", str(EXAMPLES / "2node-nixl.yaml")], check=False,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "XDG_STATE_HOME": str(tmp_path)})
    assert done.returncode == 2
    assert "spans 2 machines" in done.stderr and "--backend slurm" in done.stderr
    assert not (tmp_path / "pdtui" / "runs").exists() or not any((tmp_path / "pdtui" / "runs").iterdir())


def test_steps_script_passes_shellcheck(tmp_path):
    """steps.sh runs each step in a loop (restart/hold markers): shell that shellcheck accepts."""
    import shutil
    import subprocess

    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (CI installs it)")
    profile = _two_node_slurm_profile()
    concrete = with_node_addresses(profile, {"gpu-a": "10.1.0.1", "gpu-b": "10.1.0.2"}, proxy_address="10.1.0.1")
    plan = render_plan(concrete, tmp_path, python="/shared/venv/bin/python")
    script = tmp_path / "steps.sh"
    script.write_text(steps_script(plan, concrete, ["node-a17", "node-b03"], tmp_path, "/shared/venv/bin/python", proxy_on_node=True))
    done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert 'restart/$name' in script.read_text() and 'hold/$name' in script.read_text()
