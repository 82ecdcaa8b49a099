"""Parsing vLLM's argv, LMCache's config precedence, faults; the toy tokenizer; the KV pool."""

from __future__ import annotations

import asyncio
import json

import pytest

from pdtui.sim import tokenizer
from pdtui.sim.faults import Faults, FaultSpecError, parse_faults
from pdtui.sim.kvcache import KVCache, model_shape
from pdtui.sim.settings import SimConfigError, parse_settings
from tests.conftest import SHARED_FIXTURES

DECODER_KV = json.dumps({"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_consumer",
                         "kv_connector_extra_config": {"skip_last_n_tokens": 1}})


def test_vllm_argv_with_unknown_flags():
    s = parse_settings(
        ["meta-llama/Llama-3.1-8B-Instruct", "--port", "7100", "--disable-log-requests", "--enforce-eager",
         "--no-enable-prefix-caching", "--kv-transfer-config", DECODER_KV, "--max-model-len", "2048",
         "--tensor-parallel-size", "2", "--served-model-name", "llama"],
        env={"CUDA_VISIBLE_DEVICES": "1,2"},
    )
    assert (s.port, s.host, s.max_model_len, s.tensor_parallel_size) == (7100, "127.0.0.1", 2048, 2)
    assert s.served_model_name == "llama" and s.gpus == (1, 2)
    assert s.skip_last_n_tokens == 1 and s.role == "decoder" and not s.is_lmcache_pd
    assert s.startup_s == 3.0 and s.prefill_us_per_token == 20.0 and s.decode_ms_per_token == 8.0


def test_real_lmcache_fixture_configs_with_env_overrides():
    path = SHARED_FIXTURES / "lmcache-configs" / "xpyd" / "lmcache-decoder-2-config.yaml"
    if not path.exists():
        pytest.skip("fixtures missing")
    s = parse_settings(["m", "--kv-transfer-config", DECODER_KV],
                       env={"LMCACHE_CONFIG_FILE": str(path), "LMCACHE_PD_PEER_ALLOC_PORT": "7501,7502",
                            "LMCACHE_CHUNK_SIZE": "128"})
    lm = s.lmcache
    assert lm is not None and lm.enable_pd and lm.pd_role == "receiver"
    assert lm.pd_peer_init_port == (7301,)
    assert lm.pd_peer_alloc_port == (7501, 7502)  # env overrides the file, as LMCache does
    assert lm.chunk_size == 128 and s.is_lmcache_pd and s.role == "decoder"


def test_legacy_alias_keys_are_mapped(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("enable_xpyd: true\nnixl_role: sender\nnixl_proxy_host: localhost\nnixl_proxy_port: 7500\n"
                   "nixl_buffer_size: 1024\n")
    lm = parse_settings(["m"], env={"LMCACHE_CONFIG_FILE": str(cfg)}).lmcache
    assert lm is not None and lm.pd_role == "sender" and lm.pd_proxy_port == 7500


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("enable_pd: true\npd_role: receiver\npd_buffer_size: 1\n", "needs pd_peer_host"),
        ("enable_pd: true\npd_role: sender\npd_buffer_size: 1\n", "needs pd_proxy_host and pd_proxy_port"),
        ("enable_pd: true\npd_role: boss\n", "pd_role: 'boss' is not one of"),
        ("enable_pd: maybe\n", "enable_pd: 'maybe' is not a boolean"),
        ("- a\n- b\n", "expected a mapping"),
        ("pd_peer_alloc_port: [70000]\n", "70000 is not a TCP port"),
    ],
)
def test_bad_lmcache_configs_name_file_key_and_value(tmp_path, yaml_text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(SimConfigError) as info:
        parse_settings(["m"], env={"LMCACHE_CONFIG_FILE": str(cfg)})
    assert needle in str(info.value)
    assert str(cfg) in str(info.value) or "pd_peer_alloc_port" in str(info.value)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "a MODEL is required"),
        (["m", "--port", "70000"], "not a TCP port"),
        (["m", "--gpu-memory-utilization", "1.5"], "between 0.01 and 1.0"),
        (["m", "--kv-transfer-config", "[1]"], "expected a JSON object"),
        (["m", "--kv-transfer-config", '{"kv_connector":"X","kv_role":"both"}'], "kv_role 'both'"),
    ],
)
def test_bad_argv(argv, needle):
    with pytest.raises(SimConfigError, match=None) as info:
        parse_settings(argv, env={})
    assert needle in str(info.value)


def test_faults_parse_and_reject():
    assert parse_faults("") == Faults()
    assert parse_faults("oom, crash_after=3,slow_start=2.5,drop_notif,hang,ignore_sigterm") == Faults(
        oom=True, crash_after=3, slow_start_s=2.5, drop_notif=True, hang=True, ignore_sigterm=True)
    for bad in ("crash_after=x", "slow_start=-1", "oom=1", "nope"):
        with pytest.raises(FaultSpecError):
            parse_faults(bad)


def test_tokenizer_is_stable_and_counts_subwords():
    assert tokenizer.encode("hello world") == tokenizer.encode("hello world")
    assert len(tokenizer.encode("hello, world!")) == 5  # BOS hello , world !
    assert len(tokenizer.encode("internationalization", add_special_tokens=False)) == 4
    assert tokenizer.generate([1, 2, 3], 5) == tokenizer.generate([1, 2, 3], 5)
    first = tokenizer.next_token([1, 2, 3])
    assert tokenizer.generate([1, 2, 3], 3) == [first] + tokenizer.generate([1, 2, 3, first], 2)


def test_model_shapes_by_name():
    assert model_shape("meta-llama/Llama-3.1-8B-Instruct").kv_bytes_per_token() == 131072
    assert model_shape("/root/tiny-llama").kv_shape(256) == (2, 2, 256, 4, 64)  # as the real log prints
    assert model_shape("meta-llama/Llama-3.1-70B").num_layers == 80


async def test_kv_pool_makes_requests_wait_and_frees():
    pool = KVCache(capacity_tokens=64)  # 4 blocks
    first = await pool.allocate(48)
    assert pool.usage == 0.75
    waiter = asyncio.create_task(pool.allocate(32))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await pool.release(first)
    assert await asyncio.wait_for(waiter, 2) == 2
    assert pool.usage == 0.5
