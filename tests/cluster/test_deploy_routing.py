"""The deploy layer picks the backend for the TUI (no Slurm needed for these): a plain
profile gets the supervisor, a cluster profile the Slurm deployment (with Slurm's own
words when it cannot submit), a multi-node profile without a cluster is refused, and a
stopped Slurm run cannot be attached. Plus the cockpit's per-node GPU rows."""

from __future__ import annotations

import json

import pytest
import yaml

from pdtui.cluster.gpus import NodeGpus
from pdtui.cluster.slurm_cmd import SlurmError
from pdtui.deploy import deployment
from pdtui.model import validate_text
from pdtui.telemetry.series import SeriesStore
from pdtui.ui.cli import attach_target
from pdtui.ui.cockpit_rows import node_gpu_rows, nodes_summary
from tests.cluster.test_slurm_render import EXAMPLES
from tests.conftest import REPO_ROOT


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def _profile(path, **changes):
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    validation = validate_text(yaml.safe_dump(data))
    assert validation.ok, [p.format() for p in validation.problems]
    return validation.profile


def test_a_plain_profile_gets_the_supervisor():
    from pdtui.runtime import Supervisor

    sup = deployment.launch(_profile(REPO_ROOT / "configs" / "demo.yaml"))
    try:
        assert isinstance(sup, Supervisor)
    finally:
        sup.close()


def test_a_multi_node_profile_without_a_cluster_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match=r"spans 2 machines.*cluster: \{type: slurm\}"):
        deployment.launch(_profile(EXAMPLES / "2node-lmcache.yaml"))


def test_a_cluster_profile_goes_to_slurm_and_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, squeue, ... here
    with pytest.raises(SlurmError, match="Slurm client commands not found: sbatch"):
        deployment.launch(_profile(EXAMPLES / "slurm-sim.yaml"))


def test_a_stopped_slurm_run_is_not_attached(state_home):
    run_dir = state_home / "pdtui" / "runs" / "slurm-sim-1"
    run_dir.mkdir(parents=True)
    (run_dir / "slurm.json").write_text(json.dumps({"job_id": "42", "run_name": "slurm-sim-1", "profile": "slurm-sim",
                                                     "stopped": True}))
    assert deployment.is_cluster_run(run_dir)
    path, problem = attach_target("slurm-sim-1")
    assert path is None and "it was stopped (Slurm job 42)" in problem and "pdtui up slurm-sim" in problem
    with pytest.raises(SlurmError, match="was stopped"):
        deployment.attach(run_dir)


def test_node_gpu_rows_group_each_nodes_gpus_under_it():
    gpu = {"index": 0, "name": "NVIDIA H200", "utilization_gpu": 50, "memory_used": 2**30, "memory_total": 8 * 2**30,
           "temperature_c": 40, "power_draw_w": 300.0, "processes": [{"pid": 7, "used_memory": 2**30}]}
    idle = dict(gpu, index=1, utilization_gpu=0, processes=[])
    nodes = (NodeGpus("gpu-a", {"gpus": [gpu, idle]}, None), NodeGpus("gpu-b", None, "srun: node down"))
    rows = node_gpu_rows(nodes, {("gpu-a", 0): "decoder1"}, SeriesStore(10), 6)
    assert [key for key, _ in rows] == ["node-gpu-a", "node-gpu-a-0", "node-gpu-a-1", "node-gpu-b"]
    cells = dict(rows)
    assert str(cells["node-gpu-a"][0]) == "node gpu-a" and str(cells["node-gpu-a"][1]) == "2 GPU(s)"
    assert cells["node-gpu-a-0"][0] == " 0 H200" and cells["node-gpu-a-0"][-1] == "decoder1"
    assert cells["node-gpu-a-1"][-1] == "-"  # nothing on it: nobody holds it
    assert str(cells["node-gpu-b"][1]) == "srun: node down"
    assert nodes_summary(nodes) == "2 GPUs on 2 node(s) (unread: gpu-b)"
