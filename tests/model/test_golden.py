"""Rendering the presets gives LMCache's own example configs and kv-transfer JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pdtui.model import render_plan, validate_file
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"

# The reference (lmcache-pd.md §3.1/3.2): exact --kv-transfer-config of LMCache's launchers.
REFERENCE_KV = {
    "prefiller1": {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_producer",
                   "kv_connector_extra_config": {"discard_partial_chunks": False, "lmcache_rpc_port": "producer1"}},
    "prefiller2": {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_producer",
                   "kv_connector_extra_config": {"discard_partial_chunks": False, "lmcache_rpc_port": "producer2"}},
    "decoder1": {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_consumer",
                 "kv_connector_extra_config": {"discard_partial_chunks": False, "lmcache_rpc_port": "consumer1", "skip_last_n_tokens": 1}},
    "decoder2": {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_consumer",
                 "kv_connector_extra_config": {"discard_partial_chunks": False, "lmcache_rpc_port": "consumer2", "skip_last_n_tokens": 1}},
}


def _plan(name: str, tmp_path: Path):
    validation = validate_file(CONFIGS / f"{name}.yaml")
    assert validation.ok, [p.format() for p in validation.problems]
    return render_plan(validation.profile, tmp_path)


def _kv_json(argv: tuple[str, ...]) -> dict:
    return json.loads(argv[argv.index("--kv-transfer-config") + 1])


@pytest.mark.parametrize(
    "instance, fixture",
    [("prefiller1", "1p1d/lmcache-prefiller-config.yaml"), ("decoder1", "1p1d/lmcache-decoder-config.yaml")],
)
def test_1p1d_lmcache_yaml_equals_lmcache_example(tmp_path, shared_fixtures, instance, fixture):
    plan = _plan("1p1d", tmp_path)
    expected = yaml.safe_load((shared_fixtures / "lmcache-configs" / fixture).read_text())
    rendered = yaml.safe_load(plan.instance(instance).lmcache_yaml)
    assert rendered == expected


@pytest.mark.parametrize(
    "instance, fixture",
    [
        ("prefiller1", "xpyd/lmcache-prefiller-config.yaml"),
        ("prefiller2", "xpyd/lmcache-prefiller-config.yaml"),
        ("decoder1", "xpyd/lmcache-decoder-1-config.yaml"),
        ("decoder2", "xpyd/lmcache-decoder-2-config.yaml"),
    ],
)
def test_xpyd_lmcache_yaml_equals_lmcache_example(tmp_path, shared_fixtures, instance, fixture):
    plan = _plan("xpyd", tmp_path)
    expected = yaml.safe_load((shared_fixtures / "lmcache-configs" / fixture).read_text())
    assert yaml.safe_load(plan.instance(instance).lmcache_yaml) == expected


@pytest.mark.parametrize("preset, names", [("1p1d", ["prefiller1", "decoder1"]), ("xpyd", list(REFERENCE_KV))])
def test_kv_transfer_json_equals_reference(tmp_path, preset, names):
    plan = _plan(preset, tmp_path)
    for name in names:
        assert _kv_json(plan.instance(name).argv) == REFERENCE_KV[name]


def test_1p1d_argv_and_env_match_the_lmcache_launcher(tmp_path):
    plan = _plan("1p1d", tmp_path)
    p = plan.instance("prefiller1")
    assert list(p.argv[: p.argv.index("--kv-transfer-config")]) == [
        "vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--host", "localhost", "--port", "7100",
        "--enforce-eager", "--no-enable-prefix-caching",
    ]
    assert "--disable-log-requests" not in p.argv  # removed in vLLM 0.12
    assert p.env["CUDA_VISIBLE_DEVICES"] == "0" and p.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert p.env["PYTHONHASHSEED"] == "0"
    assert p.env["UCX_TLS"] == "cuda_ipc,cuda_copy,tcp"
    assert p.env["LMCACHE_CONFIG_FILE"] == str(tmp_path / "lmcache-prefiller1.yaml")
    d = plan.instance("decoder1")
    assert d.env["CUDA_VISIBLE_DEVICES"] == "1"
    assert p.env["PROMETHEUS_MULTIPROC_DIR"] != d.env["PROMETHEUS_MULTIPROC_DIR"]
    assert [i.name for i in plan.start_order()] == ["decoder1", "prefiller1"]


def test_proxy_argv_carries_every_decoder_port_list(tmp_path):
    plan = _plan("xpyd", tmp_path)
    argv = list(plan.proxy.argv)
    assert argv[1:3] == ["-m", "pdtui.proxy"]
    assert argv[argv.index("--port") + 1] == "9100"
    assert argv[argv.index("--zmq-port") + 1] == "7500"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--decoder"] == ["http://localhost:7200", "http://localhost:7201"]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--decoder-init-ports"] == ["7300", "7301"]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--decoder-alloc-ports"] == ["7400", "7401"]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--prefiller"] == ["http://localhost:7100", "http://localhost:7101"]


def test_nixl_mode_renders_nixl_connector_and_side_channels(tmp_path):
    plan = _plan("nixl-1p1d", tmp_path)
    p, d = plan.instance("prefiller1"), plan.instance("decoder1")
    assert _kv_json(p.argv) == {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
    assert p.lmcache_config is None and "LMCACHE_CONFIG_FILE" not in p.env
    assert {p.env["VLLM_NIXL_SIDE_CHANNEL_PORT"], d.env["VLLM_NIXL_SIDE_CHANNEL_PORT"]} == {"5600", "5601"}
    assert "--zmq-port" not in plan.proxy.argv and "--decoder-init-ports" not in plan.proxy.argv


def test_demo_runs_the_simulator_with_its_settings(tmp_path):
    plan = _plan("demo", tmp_path)
    p = plan.instance("prefiller2")
    assert list(p.argv[1:5]) == ["-m", "pdtui.sim", "serve", "demo/Llama-3.1-8B-Instruct-sim"]
    assert p.env["PDTUI_SIM_STARTUP_S"] == "4"
    assert len(plan.instances) == 4


def test_tp2_decoder_writes_port_lists(tmp_path):
    from pdtui.model import validate_text

    text = (CONFIGS / "1p1d.yaml").read_text()
    text = text.replace("gpus: [0]", "gpus: [0, 1]\n    tensor_parallel_size: 2").replace(
        "gpus: [1]", "gpus: [2, 3]\n    tensor_parallel_size: 2"
    ).replace("nixl_init_ports: [7300]", "nixl_init_ports: [7300, 7301]").replace(
        "nixl_alloc_ports: [7400]", "nixl_alloc_ports: [7400, 7401]"
    )
    validation = validate_text(text)
    assert validation.ok, [p.format() for p in validation.problems]
    plan = render_plan(validation.profile, tmp_path)
    d = plan.instance("decoder1")
    assert d.lmcache_config["pd_peer_init_port"] == [7300, 7301]
    assert d.lmcache_config["pd_peer_alloc_port"] == [7400, 7401]
    assert d.argv[d.argv.index("--tensor-parallel-size") + 1] == "2"
    assert d.env["CUDA_VISIBLE_DEVICES"] == "2,3"
