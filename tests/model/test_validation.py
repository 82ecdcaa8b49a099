"""Every validation rule: a broken profile gives the problem at the right path, a fixed one passes."""

from __future__ import annotations

import copy

import pytest
import yaml

from pdtui.model import validate_text
from pdtui.model.hostchecks import check_host
from tests.conftest import REPO_ROOT

BASE = yaml.safe_load((REPO_ROOT / "configs" / "xpyd.yaml").read_text())


def validate(doc: dict):
    return validate_text(yaml.safe_dump(doc), "test.yaml")


def mutated(change) -> dict:
    doc = copy.deepcopy(BASE)
    change(doc)
    return doc


def problems_at(validation, path: str, severity: str = "error"):
    return [p for p in validation.problems if p.path == path and p.severity == severity]


def test_base_is_valid():
    v = validate(BASE)
    assert v.ok and not v.problems, [p.format() for p in v.problems]


# --- schema ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "change, path, words",
    [
        (lambda d: d["prefillers"][0].update(port=70000), "prefillers[0].port", "port between 1 and 65535"),
        (lambda d: d["prefillers"][0].update(port="http"), "prefillers[0].port", "whole number"),
        (lambda d: d.update(mode="lmcache"), "mode", "lmcache-pd"),
        (lambda d: d.update(engine="trtllm"), "engine", "vllm"),
        (lambda d: d["decoders"][0].update(nixl_init_ports=[0]), "decoders[0].nixl_init_ports[0]", "port"),
        (lambda d: d["prefillers"][0]["lmcache"].update(pd_buffer_size="1 GiBB"), "prefillers[0].lmcache.pd_buffer_size", "GiB"),
        (lambda d: d["prefillers"][0]["lmcache"].update(pd_buffer_device="gpu"), "prefillers[0].lmcache.pd_buffer_device", "cuda"),
        (lambda d: d["prefillers"][0].update(tensor_parallel_size=0), "prefillers[0].tensor_parallel_size", "greater than or equal to 1"),
        (lambda d: d["prefillers"][0].update(name="bad name!"), "prefillers[0].name", "letters, digits"),
        (lambda d: d.update(prefillers=[]), "prefillers", "at least one"),
        (lambda d: d.pop("model"), "model", ""),
    ],
)
def test_schema_errors_name_the_field_and_what_is_valid(change, path, words):
    v = validate(mutated(change))
    found = problems_at(v, path)
    assert found, [p.format() for p in v.problems]
    assert words in found[0].format()


def test_unknown_keys_are_errors_with_a_suggestion_and_position():
    doc = mutated(lambda d: d["decoders"][0].update(nixl_init_port=[7300]))
    v = validate(doc)
    (problem,) = problems_at(v, "decoders[0].nixl_init_port")
    assert "unknown key" in problem.message and "nixl_init_ports" in problem.hint
    assert problem.line is not None and problem.column is not None


def test_lmcache_keys_pdtui_derives_are_refused_with_the_reason():
    v = validate(mutated(lambda d: d["decoders"][0]["lmcache"].update(pd_peer_init_port=7300)))
    (problem,) = problems_at(v, "decoders[0].lmcache.pd_peer_init_port")
    assert "nixl_init_ports" in problem.hint


def test_sizes_accept_human_spellings():
    doc = mutated(lambda d: d["prefillers"][0]["lmcache"].update(pd_buffer_size="512MiB"))
    v = validate(doc)
    assert v.ok
    assert v.profile.prefillers[0].lmcache.pd_buffer_size == 512 * 1024 * 1024


# --- cross-instance ------------------------------------------------------------------------------

def test_duplicate_http_port_names_both_users():
    v = validate(mutated(lambda d: d["decoders"][1].update(port=7100)))
    (problem,) = problems_at(v, "decoders[1].port")
    assert "prefiller1's HTTP port" in problem.message and "prefillers[0].port" in problem.message


def test_duplicate_nixl_port_against_proxy_zmq_port():
    v = validate(mutated(lambda d: d["decoders"][0].update(nixl_alloc_ports=[7500])))
    (problem,) = problems_at(v, "decoders[0].nixl_alloc_ports[0]")
    assert "ZMQ notification port" in problem.message


def test_duplicate_instance_names():
    v = validate(mutated(lambda d: d["decoders"][1].update(name="prefiller1")))
    assert problems_at(v, "decoders[1].name")


def test_shared_gpu_is_an_error_unless_declared_shared():
    doc = mutated(lambda d: d["decoders"][0].update(gpus=[0]))
    v = validate(doc)
    assert not v.ok
    assert problems_at(v, "decoders[0].gpus", "error")

    def share(d, fraction=None):
        d["decoders"][0].update(gpus=[0], shared_gpus=True)
        d["prefillers"][0].update(shared_gpus=True)
        if fraction:
            for inst in (d["decoders"][0], d["prefillers"][0]):
                inst["vllm"] = {"gpu_memory_utilization": fraction}

    # Declared shared, but vLLM's default 0.9 twice does not fit on one GPU.
    over = validate(mutated(share))
    [problem] = over.errors
    assert "add up to 1.8" in problem.message and "at most 1.0" in problem.hint
    assert not validate(mutated(lambda d: share(d, 0.45))).problems


def test_tp_must_match_gpu_count():
    v = validate(mutated(lambda d: d["prefillers"][0].update(tensor_parallel_size=2)))
    (problem,) = problems_at(v, "prefillers[0].tensor_parallel_size")
    assert "2 but 1 GPU" in problem.message


def test_decoder_port_lists_must_have_one_port_per_rank():
    def tp2(d):
        for group in ("prefillers", "decoders"):
            for i, inst in enumerate(d[group]):
                inst.update(tensor_parallel_size=2, gpus=[10 * (group == "decoders") + 2 * i, 10 * (group == "decoders") + 2 * i + 1])

    v = validate(mutated(tp2))
    assert problems_at(v, "decoders[0].nixl_init_ports") and problems_at(v, "decoders[1].nixl_alloc_ports")
    assert "one port per TP rank: 2" in problems_at(v, "decoders[0].nixl_init_ports")[0].hint


def test_prefiller_and_decoder_tp_must_match_in_lmcache_pd():
    def uneven(d):
        d["decoders"][0].update(tensor_parallel_size=2, gpus=[2, 4], nixl_init_ports=[7300, 7302], nixl_alloc_ports=[7400, 7402])

    v = validate(mutated(uneven))
    assert any("differs from prefiller" in p.message for p in problems_at(v, "decoders[0].tensor_parallel_size"))


# --- PD consistency ------------------------------------------------------------------------------

def test_missing_hash_seed():
    v = validate(mutated(lambda d: d["env"].pop("PYTHONHASHSEED")))
    assert problems_at(v, "prefillers[0].env.PYTHONHASHSEED")
    assert "never hits" in problems_at(v, "decoders[1].env.PYTHONHASHSEED")[0].hint


def test_different_hash_seeds():
    v = validate(mutated(lambda d: d["decoders"][1].setdefault("env", {}).update(PYTHONHASHSEED=1)))
    (problem,) = problems_at(v, "decoders[1].env.PYTHONHASHSEED")
    assert "differs" in problem.message


def test_random_hash_seed():
    v = validate(mutated(lambda d: d["env"].update(PYTHONHASHSEED="random")))
    assert problems_at(v, "prefillers[0].env.PYTHONHASHSEED")


def test_partial_chunk_discarding_hangs_short_prompts():
    v = validate(mutated(lambda d: d["prefillers"][0].setdefault("kv", {}).update(discard_partial_chunks=True)))
    (problem,) = problems_at(v, "prefillers[0].kv.discard_partial_chunks")
    assert "hangs" in problem.hint
    v = validate(mutated(lambda d: d["prefillers"][0]["lmcache"].update(save_unfull_chunk=False)))
    assert problems_at(v, "prefillers[0].lmcache.save_unfull_chunk", "warning")


def test_buffer_must_be_a_multiple_of_a_chunk_when_the_shape_is_known():
    shape = {"num_layers": 28, "num_kv_heads": 8, "head_dim": 128, "dtype_bytes": 2}
    chunk = 2 * 28 * 256 * 8 * 128 * 2
    doc = mutated(lambda d: (d.update(model_shape=shape), d["prefillers"][0]["lmcache"].update(pd_buffer_size=chunk * 10 + 4096)))
    v = validate(doc)
    (problem,) = problems_at(v, "prefillers[0].lmcache.pd_buffer_size")
    assert f"use {chunk * 10} or {chunk * 11}" == problem.hint
    doc = mutated(lambda d: (d.update(model_shape=shape), d["prefillers"][0]["lmcache"].update(pd_buffer_size=chunk * 10)))
    assert not problems_at(validate(doc), "prefillers[0].lmcache.pd_buffer_size")


def test_buffer_shape_read_from_a_local_model_config(tmp_path):
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text(
        '{"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "hidden_size": 256, "torch_dtype": "bfloat16"}'
    )
    doc = mutated(lambda d: (d.update(model=str(model)), d["prefillers"][0]["lmcache"].update(pd_buffer_size=1000000)))
    v = validate(doc)
    (problem,) = problems_at(v, "prefillers[0].lmcache.pd_buffer_size")
    assert "524288 bytes" in problem.message  # 2 × 2 layers × 256 tokens × 4 heads × 64 × 2 bytes


def test_missing_buffer_size():
    v = validate(mutated(lambda d: d["decoders"][0]["lmcache"].pop("pd_buffer_size")))
    assert problems_at(v, "decoders[0].lmcache.pd_buffer_size")


def test_rpc_port_names_must_differ():
    v = validate(mutated(lambda d: d["decoders"][0].setdefault("kv", {}).update(lmcache_rpc_port="producer1")))
    (problem,) = problems_at(v, "decoders[0].kv.lmcache_rpc_port")
    assert "prefiller1" in problem.message


def test_shared_prometheus_dir():
    v = validate(mutated(lambda d: d["env"].update(PROMETHEUS_MULTIPROC_DIR="/tmp/lmcache_prometheus")))
    assert problems_at(v, "prefillers[1].env.PROMETHEUS_MULTIPROC_DIR")
    assert not problems_at(v, "prefillers[0].env.PROMETHEUS_MULTIPROC_DIR")


def test_internal_api_server_ports_collide_across_instances():
    v = validate(mutated(lambda d: d["lmcache"].update(internal_api_server_enabled=True)))
    assert any("internal API server" in p.message for p in v.errors)

    def own_ports(d):
        d["lmcache"].update(internal_api_server_enabled=True)
        for i, inst in enumerate(d["prefillers"] + d["decoders"]):
            inst["lmcache"]["internal_api_server_port_start"] = 6900 + 10 * i

    assert validate(mutated(own_ports)).ok


def test_internal_api_server_port_colliding_with_an_http_port():
    def clash(d):
        d["decoders"][0]["lmcache"].update(internal_api_server_enabled=True, internal_api_server_port_start=7099)

    v = validate(mutated(clash))
    assert any("port 7100" in p.message for p in v.errors)


def test_legacy_and_unknown_lmcache_keys():
    v = validate(mutated(lambda d: d["lmcache"].update(extra={"enable_nixl": True, "chunk_sise": 256})))
    assert problems_at(v, "lmcache.extra.enable_nixl")
    (warning,) = problems_at(v, "lmcache.extra.chunk_sise", "warning")
    assert "chunk_size" in warning.hint


def test_removed_vllm_flag_is_refused_for_new_vllm_only():
    doc = mutated(lambda d: d["vllm"].update(extra_args=["--disable-log-requests"]))
    assert problems_at(validate(doc), "prefillers[0].vllm.extra_args[0]")
    doc["vllm_version"] = "0.9.0"
    assert validate(doc).ok


def test_rendered_flags_cannot_be_given_twice():
    v = validate(mutated(lambda d: d["decoders"][0].setdefault("vllm", {}).update(extra_args=["--port=1234"])))
    assert problems_at(v, "decoders[0].vllm.extra_args[0]")


def test_public_bind_is_a_warning_and_secrets_in_profiles_are_flagged():
    v = validate(mutated(lambda d: (d.update(host="0.0.0.0"), d["env"].update(HF_TOKEN="hf_abc"))))
    assert problems_at(v, "host", "warning")
    (secret,) = problems_at(v, "env.HF_TOKEN", "warning")
    assert "hf_abc" not in secret.format()


# --- host checks -------------------------------------------------------------------------------

def test_host_checks_report_ports_in_use_and_missing_gpus():
    v = validate(BASE)
    taken = {7201, 9100}
    problems = check_host(v.profile, gpu_count=2, is_port_in_use=lambda host, port: port in taken)
    paths = {p.path for p in problems}
    assert {"decoders[1].port", "proxy.port", "decoders[0].gpus[0]", "decoders[1].gpus[0]"} <= paths
    assert any("0..1" in p.hint for p in problems)


def test_host_check_sees_a_real_listening_socket():
    import socket

    from pdtui.model.hostchecks import port_in_use

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)


@pytest.mark.parametrize(
    "name, secret",
    [("HF_TOKEN", True), ("HUGGING_FACE_HUB_TOKEN", True), ("OPENAI_API_KEY", True), ("AWS_SECRET_ACCESS_KEY", True),
     ("PDTUI_SIM_DECODE_MS_PER_TOKEN", False), ("PYTHONHASHSEED", False), ("UCX_TLS", False), ("TOKENIZERS_PARALLELISM", False)],
)
def test_secret_names(name, secret):
    from pdtui.model.checks import is_secret_name

    assert is_secret_name(name) is secret
