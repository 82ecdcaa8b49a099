"""Profiles that span machines: addresses other machines can reach, transport settings,
and the validation rules that only matter across nodes. Single-box profiles unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from pdtui.model.presets import list_presets
from pdtui.model.render import render_plan
from pdtui.model.validate import validate_file, validate_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cluster"


def _load(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def _validate(data: dict):
    return validate_text(yaml.safe_dump(data), "<test>")


def _errors(data: dict) -> list:
    return [p for p in _validate(data).problems if p.is_error]


def _plan(data: dict, tmp_path: Path):
    validation = _validate(data)
    assert validation.ok, [p.format() for p in validation.problems]
    return render_plan(validation.profile, tmp_path, python="/usr/bin/python3")


def test_lmcache_two_nodes_renders_reachable_addresses(tmp_path):
    plan = _plan(_load("2node-lmcache.yaml"), tmp_path)
    p, d = plan.instance("prefiller1"), plan.instance("decoder1")
    # Each engine binds to its own node's address, on the same port number.
    assert p.argv[p.argv.index("--host") + 1] == "10.0.0.11"
    assert d.argv[d.argv.index("--host") + 1] == "10.0.0.12"
    assert p.port == d.port == 8000
    assert p.health_url == "http://10.0.0.11:8000/health"
    # The prefiller pushes ZMQ notifications to the proxy's machine; the decoder's NIXL
    # init/alloc sockets are announced on the decoder's machine.
    assert p.lmcache_config["pd_proxy_host"] == "10.0.0.11"
    assert d.lmcache_config["pd_peer_host"] == "10.0.0.12"
    argv = list(plan.proxy.argv)
    assert argv[argv.index("--zmq-host") + 1] == "10.0.0.11"
    assert "http://10.0.0.11:8000" in argv and "http://10.0.0.12:8000" in argv
    # Transport: RDMA-capable UCX, the node's devices and interface.
    for inst in (p, d):
        assert inst.env["UCX_TLS"] == "rc,cuda_copy,cuda_ipc,tcp"
        assert inst.env["UCX_NET_DEVICES"] == "mlx5_0:1,ib0"
        assert inst.env["NCCL_SOCKET_IFNAME"] == inst.env["GLOO_SOCKET_IFNAME"] == "ib0"


def test_nixl_two_nodes_side_channels_on_node_addresses(tmp_path):
    plan = _plan(_load("2node-nixl.yaml"), tmp_path)
    p, d = plan.instance("prefiller1"), plan.instance("decoder1")
    assert p.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "10.0.0.11"
    assert d.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "10.0.0.12"
    assert d.env["UCX_NET_DEVICES"] == "mlx5_1:1,eth1"
    assert p.env["UCX_NET_DEVICES"] == "eth1"
    assert p.env["UCX_TLS"] == "rc,cuda_copy,cuda_ipc,tcp"  # default when the profile gives none


def test_profile_env_wins_over_rendered_transport_but_warns(tmp_path):
    data = _load("2node-lmcache.yaml")
    data["env"]["UCX_TLS"] = "cuda_ipc,cuda_copy,tcp"
    validation = _validate(data)
    warnings = [p for p in validation.problems if "RDMA" in p.message]
    assert warnings and warnings[0].severity == "warning"
    plan = render_plan(validation.profile, tmp_path)
    assert plan.instance("decoder1").env["UCX_TLS"] == "cuda_ipc,cuda_copy,tcp"


@pytest.mark.parametrize(
    "mutate, path, words",
    [
        (lambda d: d["nodes"][1].update(address="127.0.0.1"), "nodes[1].address", "loopback"),
        (lambda d: d["nodes"][0].update(address="localhost"), "nodes[0].address", "loopback"),
        (lambda d: d["proxy"].update(host="127.0.0.1", zmq_host=None), "proxy.host", "loopback"),
        (lambda d: d["proxy"].update(zmq_host="::1"), "proxy.zmq_host", "loopback"),
        (lambda d: d["nodes"][1].pop("address"), "nodes[1].address", "no address"),
        (lambda d: d["decoders"][0].update(node="gpu-c"), "decoders[0].node", "unknown node"),
        (lambda d: d["decoders"][0].pop("node"), "decoders[0].node", "no node"),
        (lambda d: d["nodes"][1].update(name="gpu-a"), "nodes[1].name", "used twice"),
    ],
)
def test_multi_node_errors(mutate, path, words):
    data = _load("2node-lmcache.yaml")
    mutate(data)
    found = [p for p in _errors(data) if p.path == path]
    assert found, [p.format() for p in _validate(data).problems]
    assert words in found[0].message


def test_two_instances_of_one_node_on_one_port():
    data = _load("2node-lmcache.yaml")
    second = copy.deepcopy(data["prefillers"][0])
    second.update(name="prefiller2", gpus=[2, 3], kv={"lmcache_rpc_port": "producer2"})
    data["prefillers"].append(second)  # same node gpu-a, same port 8000
    errors = [p for p in _errors(data) if p.path == "prefillers[1].port"]
    assert errors and "on node gpu-a" in errors[0].message
    second["node"] = "gpu-b"  # gpu-b's 8000 is the decoder's
    errors = [p for p in _errors(data) if p.path == "decoders[0].port"]
    assert errors and "prefiller2" in errors[0].message and "on node gpu-b" in errors[0].message
    second["port"] = 8001
    assert not _errors(data)


def test_port_repeats_across_nodes_but_proxy_clashes_on_its_node():
    data = _load("2node-lmcache.yaml")
    data["prefillers"][0]["port"] = 9100  # gpu-a also runs the proxy on 9100
    assert any(p.path == "prefillers[0].port" and "proxy" in p.message for p in _errors(data))
    data["prefillers"][0]["node"] = "gpu-b"
    data["decoders"][0]["node"] = "gpu-a"
    data["decoders"][0]["port"] = 9101
    assert not _errors(data), [p.format() for p in _errors(data)]


def test_tp_larger_than_a_nodes_gpus():
    data = _load("2node-lmcache.yaml")
    data["nodes"][1]["gpus"] = 1
    errors = {p.path: p for p in _errors(data)}
    assert "decoders[0].tensor_parallel_size" in errors
    assert "node gpu-b has 1" in errors["decoders[0].tensor_parallel_size"].message
    assert "decoders[0].gpus[1]" in errors  # GPU 1 does not exist there


def test_same_gpu_index_on_two_nodes_is_fine_on_one_node_warns():
    data = _load("2node-lmcache.yaml")
    assert not [p for p in _validate(data).problems if "GPU" in p.message]
    data["decoders"][0]["node"] = "gpu-a"
    data["decoders"][0]["port"] = 8001
    warnings = [p for p in _validate(data).problems if "GPU 0 of node gpu-a" in p.message]
    assert warnings and warnings[0].severity == "warning"


def test_slurm_profile_may_leave_addresses_to_the_allocation():
    data = _load("2node-lmcache.yaml")
    for node in data["nodes"]:
        node.pop("address")
    data["proxy"] = {"port": 9100, "zmq_port": 7500}
    assert any(p.path == "nodes[0].address" for p in _errors(data))
    data["cluster"] = {"type": "slurm", "partition": "gpu", "time": "1-00:00:00"}
    assert not _errors(data), [p.format() for p in _errors(data)]


def test_cluster_section_rejects_unknown_keys_and_bad_time():
    data = _load("slurm-sim.yaml")
    data["cluster"]["partiton"] = "gpu"
    problems = _validate(data).problems
    assert any("partiton" in p.path for p in problems)
    data["cluster"].pop("partiton")
    data["cluster"]["time"] = "half an hour"
    assert any(p.path == "cluster.time" for p in _validate(data).problems)


@pytest.mark.parametrize("preset", list_presets(), ids=lambda p: p.stem)
def test_single_box_presets_have_no_multi_node_problem(preset, tmp_path):
    validation = validate_file(preset)
    assert validation.profile is not None and validation.profile.nodes is None
    assert not [p for p in validation.problems if "node" in p.message]
    plan = render_plan(validation.profile, tmp_path)
    for inst in plan.instances:
        assert "UCX_NET_DEVICES" not in inst.env and "NCCL_SOCKET_IFNAME" not in inst.env
        assert inst.host == validation.profile.host
    json.dumps(plan.to_dict())
