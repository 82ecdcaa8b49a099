"""`pdtui up` on a real Slurm: simulated engines as job steps, completions through the
proxy, steps visible in squeue, a node failure reported with Slurm's reason, and
`pdtui down` leaving no job and no process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from pdtui.cluster.gpus import node_gpus
from pdtui.cluster.slurm_backend import SlurmRun
from tests.conftest import REPO_ROOT, free_port

EXAMPLE = REPO_ROOT / "examples" / "cluster" / "slurm-sim.yaml"
NODE = "pdtui-node1"
# Real daemons and real processes on a busy 2-core machine: generous, never a timing check.
pytestmark = pytest.mark.timeout(600)


def _profile(tmp_path: Path, **cluster) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    ports: set[int] = set()
    while len(ports) < 6:  # a port just closed can come back: six different ones
        ports.add(free_port())
    proxy, zmq, prefill, decode, init, alloc = sorted(ports)
    data["proxy"].update(port=proxy, zmq_port=zmq)
    data["prefillers"][0]["port"] = prefill
    data["decoders"][0].update(port=decode, nixl_init_ports=[init], nixl_alloc_ports=[alloc])
    data["cluster"].update(cluster)
    path = tmp_path / "slurm-sim.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def env(slurm_cluster, tmp_path):
    e = dict(os.environ)
    e.update(PYTHONPATH=str(REPO_ROOT), XDG_STATE_HOME=str(tmp_path / "state"), SLURM_CONF=slurm_cluster)
    return e


def _pdtui(env, *args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pdtui", *args], env=env, check=False, capture_output=True, text=True, timeout=timeout)


def _squeue(env, *args) -> str:
    return subprocess.run(["squeue", "-h", *args], env=env, check=False, capture_output=True, text=True, timeout=30).stdout


def _processes_of(run_dir: Path) -> list[psutil.Process]:
    """Every process of the run: srun clients and step wrappers name the run directory on
    their command line, the engines and the proxy in their environment (LMCache config,
    Prometheus directory)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(run_dir) in part for part in proc.info["cmdline"] or ()) or any(
                str(run_dir) in value for value in proc.environ().values()
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _wait_for(predicate, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    return predicate()


def _completion(url: str) -> dict:
    body = json.dumps({"model": "demo/Llama-3.1-8B-Instruct-sim", "prompt": "hello from slurm", "max_tokens": 5}).encode()
    request = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("proxy_on", ["first-node", "submit-host"])
def test_up_completions_squeue_down(env, tmp_path, proxy_on):
    profile = _profile(tmp_path, proxy_on=proxy_on)
    up = _pdtui(env, "up", str(profile), "--detach", "--timeout", "180")
    assert up.returncode == 0, up.stderr
    run_name = up.stdout.strip().splitlines()[-1]
    run_dir = tmp_path / "state" / "pdtui" / "runs" / run_name
    state = json.loads((run_dir / "slurm.json").read_text())
    job_id = state["job_id"]
    try:
        # Every instance is a job step of the one job (the proxy too when it runs on the node).
        steps = _squeue(env, "-s", "-j", job_id, "-o", "%j")
        names = set(steps.split())
        assert {"prefiller1", "decoder1"} <= names, steps
        assert ("proxy" in names) == (proxy_on == "first-node")
        # Completions through the proxy, prefill and KV notification included.
        proxy_url = state["proxy"]["health_url"].rsplit("/health", 1)[0]
        answer = _completion(proxy_url)
        assert answer["choices"][0]["text"]
        # Status from squeue + /health over the network.
        status = _pdtui(env, "status", "--json", run_name)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)[0]
        assert report["backend"] == "slurm" and report["job_state"] == "RUNNING" and report["phase"] == "ready"
        by_name = {i["name"]: i for i in report["instances"]}
        assert by_name["prefiller1"]["node"] == NODE and by_name["prefiller1"]["step_id"].startswith(job_id + ".")
        # /metrics over the network: the engines' load (an idle engine runs 0 requests).
        assert by_name["decoder1"]["load"]["running"] == 0 and by_name["decoder1"]["load"]["waiting"] == 0
        # Logs on the (shared) run directory, GPUs from Slurm's allocation.
        log = (run_dir / "decoder1.log").read_text()
        fake_gpu = Path(env["SLURM_CONF"]).parent / "fake-gpus" / "gpu0"
        # Slurm binds GPUs (and sets CUDA_VISIBLE_DEVICES) when they are device files; where
        # mknod is not allowed the test cluster has plain files and the profile's indices apply.
        assert ("from Slurm's allocation" if fake_gpu.is_char_device() else "from the profile") in log
        # While it runs, the engines and the proxy are processes of this run.
        kinds = " ".join(" ".join(p.cmdline()) for p in _processes_of(run_dir))
        assert "pdtui.sim" in kinds and "pdtui.proxy" in kinds
        # The GPU view per node: `pdtui gpus --json` as a step on the node, with the
        # simulated engines on the GPUs Slurm gave them.
        # (the GPU holder is each engine's EngineCore child, as with vLLM, not its API server)
        engine_pids = {p.pid for p in _processes_of(run_dir)
                       if "pdtui.sim.enginecore" in " ".join(p.cmdline()) and "worker" not in p.cmdline()}

        def busy_gpus():
            views = node_gpus(SlurmRun.load(run_dir))
            assert [v.host for v in views] == [NODE] and views[0].error is None, views
            busy = {g["index"]: {p["pid"] for p in g["processes"]} for g in views[0].inventory["gpus"] if g["processes"]}
            return busy if set().union(*busy.values()) == engine_pids else None

        busy = _wait_for(busy_gpus, 60)
        assert busy and set(busy) == set(by_name["prefiller1"]["gpus"]) | set(by_name["decoder1"]["gpus"])
        table = _pdtui(env, "status", run_name, "--gpus")
        assert table.returncode == 0 and f"node {NODE}: 8 GPUs" in table.stdout, table.stdout + table.stderr
        gpu_lines = [line for line in table.stdout.splitlines() if line.strip().startswith("gpu ")]
        assert len(gpu_lines) == 8 and sum("pids -" not in line for line in gpu_lines) == len(busy)
        logs = _pdtui(env, "logs", "decoder1", "--run", run_name)
        assert logs.returncode == 0 and "pdtui step decoder1: Slurm step" in logs.stdout, logs.stderr
        # The secrets rule: no step file carries a secret value.
        for spec in (run_dir / "steps").glob("*.json"):
            assert "hf_test_secret" not in spec.read_text()
    finally:
        down = _pdtui(env, "down", run_name)
    assert down.returncode == 0, down.stderr
    assert job_id not in _squeue(env, "-o", "%i %T").split() or "CANCELLED" in _squeue(env, "-j", job_id, "-o", "%T")
    assert not _squeue(env, "-s", "-j", job_id)
    assert _wait_for(lambda: not _processes_of(run_dir), 60), [p.cmdline() for p in _processes_of(run_dir)]
    status = json.loads(_pdtui(env, "status", "--json", run_name).stdout)[0]
    assert {i["state"] for i in status["instances"]} == {"stopped"}


def test_secrets_travel_in_the_job_environment_not_in_files(env, tmp_path):
    profile = _profile(tmp_path)
    env = dict(env, HF_TOKEN="hf_test_secret")
    up = _pdtui(env, "up", str(profile), "--detach", "--timeout", "180")
    assert up.returncode == 0, up.stderr
    run_name = up.stdout.strip().splitlines()[-1]
    run_dir = tmp_path / "state" / "pdtui" / "runs" / run_name
    try:
        for path in run_dir.rglob("*"):
            if path.is_file() and not path.name.endswith(".log"):
                assert "hf_test_secret" not in path.read_text(errors="replace"), path
        engine = next(p for p in _processes_of(run_dir) if "pdtui.sim" in " ".join(p.cmdline()))
        assert engine.environ().get("HF_TOKEN") == "hf_test_secret"
    finally:
        assert _pdtui(env, "down", run_name).returncode == 0


def test_node_failure_is_a_failed_instance_with_slurms_reason(env, tmp_path):
    profile = _profile(tmp_path)
    up = _pdtui(env, "up", str(profile), "--detach", "--timeout", "180")
    assert up.returncode == 0, up.stderr
    run_name = up.stdout.strip().splitlines()[-1]
    run_dir = tmp_path / "state" / "pdtui" / "runs" / run_name
    scontrol = ["scontrol", "update", f"nodename={NODE}"]
    try:
        subprocess.run([*scontrol, "state=down", "reason=pdtui-test: power supply"], env=env, check=True, timeout=30)

        def failed():
            report = json.loads(_pdtui(env, "status", "--json", run_name).stdout)[0]
            return report if report["phase"] == "failed" else None

        report = _wait_for(failed, 90)
        assert report, _pdtui(env, "status", run_name).stdout
        decoder = next(i for i in report["instances"] if i["name"] == "decoder1")
        assert decoder["state"] == "failed"
        assert "NODE_FAIL" in decoder["reason"] and "power supply" in decoder["reason"], decoder["reason"]
    finally:
        subprocess.run([*scontrol, "state=resume"], check=False, env=env, timeout=30)
        _pdtui(env, "down", run_name)
        assert _wait_for(lambda: not _processes_of(run_dir), 60)
        # The node is back for the next test.
        assert _wait_for(lambda: "idle" in subprocess.run(["sinfo", "-h", "-n", NODE, "-o", "%T"], check=False, env=env,
                                                            capture_output=True, text=True).stdout, 60)


def test_foreground_up_ctrl_c_cancels_the_job(env, tmp_path):
    profile = _profile(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "pdtui", "up", str(profile)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:  # wait for the event, not for a time
            lines.append(line)
            if "Ctrl-C cancels the job" in line:
                break
        assert any("all ready" in line for line in lines), "".join(lines)
        run_name = next(line.split()[1].rstrip(":") for line in lines if line.startswith("run "))
        run_dir = tmp_path / "state" / "pdtui" / "runs" / run_name
        job_id = json.loads((run_dir / "slurm.json").read_text())["job_id"]
        assert _squeue(env, "-s", "-j", job_id)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    assert "job cancelled; no step left" in rest
    assert not _squeue(env, "-s", "-j", job_id)
    assert _wait_for(lambda: not _processes_of(run_dir), 60)


def test_a_job_slurm_refuses_is_a_clear_error(env, tmp_path):
    profile = _profile(tmp_path, partition="no-such-partition")
    up = _pdtui(env, "up", str(profile), "--detach")
    assert up.returncode == 1
    assert "Slurm refused the job" in up.stderr and "partition" in up.stderr.lower(), up.stderr


def test_timeout_covers_the_wait_in_the_queue(env, tmp_path):
    profile = _profile(tmp_path, sbatch_args=["--begin=now+1hour"])  # pending for an hour
    up = _pdtui(env, "up", str(profile), "--detach", "--timeout", "5")
    assert up.returncode == 1, up.stderr
    assert "pending: BeginTime" in up.stderr and "not running after 5 s" in up.stderr, up.stderr
    run_name = next(line.split()[1].rstrip(":") for line in up.stderr.splitlines() if line.startswith("run "))
    job_id = json.loads((tmp_path / "state" / "pdtui" / "runs" / run_name / "slurm.json").read_text())["job_id"]
    assert "PENDING" not in _squeue(env, "-j", job_id, "-o", "%T")
