"""LMCache PD between two real simulated engines and a ZMQ PULL socket standing in for the proxy."""

from __future__ import annotations

import json
import re

import msgpack
import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from pdtui.proxy.protocol import ProxyNotif, decode_pd_message
from tests.conftest import free_port
from tests.sim.helpers import clean, start_sim

# Reference regexes (shared/reference/lmcache-pd.md §5.4), used as the telemetry layer will.
LOOKUP_RE = re.compile(
    r"Reqid: (?P<req>\S+), Total tokens (?P<total>\d+), (?:Inference Engine computed tokens: (?P<computed>\d+), )?"
    r"LMCache hit tokens: (?P<hit>\d+), need to load: (?P<load>-?\d+)"
)
STORED_RE = re.compile(
    r"Stored (?P<tok>\d+) out of total (?P<req>\d+) tokens\. size: (?P<gb>[\d.]+) gb, cost (?P<ms>[\d.]+) ms, "
    r"throughput: (?P<gbps>[\d.]+) GB/s; offload_time: (?P<off>[\d.]+) ms, put_time: (?P<put>[\d.]+) ms",
    re.IGNORECASE,  # LMCache 0.5.3 really prints "GB" where the reference's regex says "gb"
)
RETRIEVED_RE = re.compile(
    r"Retrieved (?P<got>\d+) out of (?P<req>\d+) required tokens \(from (?P<total>\d+) total tokens\)\. "
    r"size: (?P<gb>[\d.]+) gb, cost (?P<ms>[\d.]+) ms, throughput: (?P<gbps>[\d.]+) GB/s;"
)
LMCACHE_RAW = re.compile(
    r"^\(EngineCore pid=\d+\) \x1b\[32;20m\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] LMCache INFO:\x1b\[0m .+ "
    r"\x1b\[3m\([\w.]+\.py:\d+:[\w.]+\)\x1b\[0m$"
)


def _write_configs(tmp_path, proxy_port, init_ports, alloc_ports):
    sender = tmp_path / "lmcache-prefiller.yaml"
    sender.write_text(
        "chunk_size: 256\nlocal_cpu: False\nsave_unfull_chunk: true\nenable_pd: True\n"
        'transfer_channel: "nixl"\npd_role: "sender"\npd_proxy_host: "localhost"\n'
        f"pd_proxy_port: {proxy_port}\npd_buffer_size: 268435456\npd_buffer_device: \"cuda\"\n"
        "nixl_backends: [UCX]\n"
    )
    receiver = tmp_path / "lmcache-decoder.yaml"
    receiver.write_text(
        "chunk_size: 256\nlocal_cpu: False\nmax_local_cpu_size: 0\nenable_pd: True\n"
        'transfer_channel: "nixl"\npd_role: "receiver"\npd_peer_host: "localhost"\n'
        f"pd_peer_init_port: {init_ports}\npd_peer_alloc_port: {alloc_ports}\n"
        'pd_buffer_size: 268435456\npd_buffer_device: "cuda"\nnixl_backends: [UCX]\n'
    )
    return sender, receiver


def _kv_config(role: str, extra: dict) -> str:
    return json.dumps({"kv_connector": "LMCacheConnectorV1", "kv_role": role, "kv_connector_extra_config": extra})


@pytest.fixture
def proxy_pull():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield sock, port
    finally:
        sock.close(0)
        ctx.term()


def _receive_notifs(sock, count, timeout_ms=10000):
    got = []
    while len(got) < count and sock.poll(timeout_ms):
        got.append(sock.recv())
    return got


@pytest.mark.parametrize("tp", [1, 2])
def test_prefill_store_notify_then_decoder_hits(tmp_path, proxy_pull, tp):
    pull, proxy_port = proxy_pull
    init_ports = [free_port() for _ in range(tp)]
    alloc_ports = [free_port() for _ in range(tp)]
    sender_yaml, receiver_yaml = _write_configs(tmp_path, proxy_port, init_ports, alloc_ports)
    decoder = start_sim(
        tmp_path, "--tensor-parallel-size", str(tp), "--kv-transfer-config",
        _kv_config("kv_consumer", {"discard_partial_chunks": False, "lmcache_rpc_port": "consumer1",
                                   "skip_last_n_tokens": 1}),
        env={"LMCACHE_CONFIG_FILE": str(receiver_yaml), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        name="decoder",
    )
    prefiller = start_sim(
        tmp_path, "--tensor-parallel-size", str(tp), "--unknown-flag", "ignored", "--enforce-eager",
        "--kv-transfer-config",
        _kv_config("kv_producer", {"discard_partial_chunks": False, "lmcache_rpc_port": "producer1"}),
        env={"LMCACHE_CONFIG_FILE": str(sender_yaml)},
        name="prefiller",
    )
    try:
        decoder.wait_healthy()
        prefiller.wait_healthy()
        _, tok = prefiller.post("/tokenize", {"prompt": " ".join(f"word{i % 97}" for i in range(600))})
        prompt = tok["tokens"]
        assert len(prompt) > 512  # several LMCache chunks plus a partial one
        spec = {"req_id": "17", "receiver_host": "localhost", "receiver_init_port": init_ports,
                "receiver_alloc_port": alloc_ports}
        status, answer = prefiller.post("/v1/completions", {
            "prompt": prompt, "max_tokens": 1, "stream": False,
            "kv_transfer_params": {"ret_first_tok": True, "disagg_spec": spec},
        })
        assert status == 200, answer
        first_tok = answer["kv_transfer_params"]["first_tok"]
        assert isinstance(first_tok, int)

        raw = _receive_notifs(pull, tp)
        assert len(raw) == tp  # one per TP rank
        for message in raw:
            assert msgpack.unpackb(message, raw=False) == {"type": "ProxyNotif", "req_id": "17"}
            assert decode_pd_message(message) == ProxyNotif(req_id="17")

        stored = prefiller.wait_for_log(STORED_RE.pattern.replace(" gb,", " GB,"))
        assert int(stored["tok"]) == int(stored["req"]) == len(prompt)
        assert any(LMCACHE_RAW.match(line) for line in prefiller.lines() if "Stored" in line)
        decoder.wait_for_log(r"Received initialization request")

        status, decoded = decoder.post("/v1/completions", {"prompt": prompt + [first_tok], "max_tokens": 4})
        assert status == 200
        lookup = decoder.wait_for_log(LOOKUP_RE.pattern)
        assert int(lookup["total"]) == len(prompt) + 1
        assert int(lookup["hit"]) == int(lookup["load"]) == len(prompt)  # skip_last_n_tokens: 1
        retrieved = decoder.wait_for_log(RETRIEVED_RE.pattern)
        assert int(retrieved["got"]) == len(prompt)

        # A request nobody stored for: the decoder misses, as LMCache reports it.
        _, other = decoder.post("/tokenize", {"prompt": "never prefilled anywhere at all"})
        decoder.post("/v1/completions", {"prompt": other["tokens"], "max_tokens": 2})
        misses = [LOOKUP_RE.search(clean(line)) for line in decoder.lines()]
        misses = [m for m in misses if m and int(m["total"]) == len(other["tokens"])]
        assert misses and misses[0]["hit"] == "0"

        families = {f.name: f for f in text_string_to_metric_families(decoder.get("/metrics")[1])}
        hits = families["vllm:external_prefix_cache_hits"].samples[0].value
        assert hits == len(prompt)
        by_source = {s.labels["source"]: s.value for s in families["vllm:prompt_tokens_by_source"].samples
                     if s.name.endswith("_total")}
        assert by_source["external_kv_transfer"] == len(prompt)
        lm_hits = [s.value for s in families["lmcache:num_hit_tokens"].samples if s.name.endswith("_total")]
        assert lm_hits == [len(prompt)]
        prefill_families = {f.name for f in text_string_to_metric_families(prefiller.get("/metrics")[1])}
        assert not any(name.startswith("lmcache:") for name in prefill_families)
    finally:
        prefiller.stop()
        decoder.stop()


def test_drop_notif_stores_but_never_notifies(tmp_path, proxy_pull):
    pull, proxy_port = proxy_pull
    init_port, alloc_port = free_port(), free_port()
    sender_yaml, receiver_yaml = _write_configs(tmp_path, proxy_port, [init_port], [alloc_port])
    decoder = start_sim(tmp_path, "--kv-transfer-config", _kv_config("kv_consumer", {"skip_last_n_tokens": 1}),
                        env={"LMCACHE_CONFIG_FILE": str(receiver_yaml)}, name="decoder")
    prefiller = start_sim(tmp_path, "--kv-transfer-config", _kv_config("kv_producer", {}),
                          env={"LMCACHE_CONFIG_FILE": str(sender_yaml), "PDTUI_SIM_FAULT": "drop_notif"},
                          name="prefiller")
    try:
        decoder.wait_healthy()
        prefiller.wait_healthy()
        spec = {"req_id": "5", "receiver_host": "localhost", "receiver_init_port": [init_port],
                "receiver_alloc_port": [alloc_port]}
        status, answer = prefiller.post("/v1/completions", {
            "prompt": [11, 12, 13, 14], "max_tokens": 1,
            "kv_transfer_params": {"ret_first_tok": True, "disagg_spec": spec}})
        assert status == 200 and "first_tok" in answer["kv_transfer_params"]
        prefiller.wait_for_log(r"Stored 4 out of total 4 tokens")
        assert _receive_notifs(pull, 1, timeout_ms=700) == []
    finally:
        prefiller.stop()
        decoder.stop()


def test_prefiller_reports_unreachable_decoder(tmp_path, proxy_pull):
    _, proxy_port = proxy_pull
    sender_yaml, _ = _write_configs(tmp_path, proxy_port, [free_port()], [free_port()])
    prefiller = start_sim(tmp_path, "--kv-transfer-config", _kv_config("kv_producer", {}),
                          env={"LMCACHE_CONFIG_FILE": str(sender_yaml), "PDTUI_SIM_PD_TIMEOUT_S": "1"},
                          name="prefiller")
    try:
        prefiller.wait_healthy()
        spec = {"req_id": "9", "receiver_host": "127.0.0.1", "receiver_init_port": [free_port()],
                "receiver_alloc_port": [free_port()]}
        status, answer = prefiller.post("/v1/completions", {
            "prompt": [1, 2, 3], "max_tokens": 1,
            "kv_transfer_params": {"ret_first_tok": True, "disagg_spec": spec}}, timeout=30)
        assert status == 500
        assert "KV transfer to the decoder failed" in answer["error"]["message"]
        prefiller.wait_for_log(r"LMCache ERROR: Failed to send KV cache of request 9")
    finally:
        prefiller.stop()


def test_full_decoder_buffer_makes_the_sender_wait_then_fail(tmp_path, proxy_pull):
    """Pain point: a decoder whose PD buffer is full stalls the prefiller ("retrying...")."""
    pull, proxy_port = proxy_pull
    init_port, alloc_port = free_port(), free_port()
    sender_yaml, receiver_yaml = _write_configs(tmp_path, proxy_port, [init_port], [alloc_port])
    # Tiny model: 2 layers x 2 x 4 heads x 64 x 2 B = 2 KiB/token, 512 KiB per 256-token chunk.
    receiver_yaml.write_text(
        receiver_yaml.read_text().replace("pd_buffer_size: 268435456", "pd_buffer_size: 1048576")
        + "pd_allocation_timeout_sec: 1\n"
    )
    decoder = start_sim(tmp_path, "--kv-transfer-config", _kv_config("kv_consumer", {"skip_last_n_tokens": 1}),
                        env={"LMCACHE_CONFIG_FILE": str(receiver_yaml)}, name="decoder")
    prefiller = start_sim(tmp_path, "--kv-transfer-config", _kv_config("kv_producer", {}),
                          env={"LMCACHE_CONFIG_FILE": str(sender_yaml)}, name="prefiller")
    try:
        decoder.wait_healthy()
        prefiller.wait_healthy()
        decoder.wait_for_log(r"total_chunks=2 \(buffer=1048576 bytes, chunk=524288 bytes\)")

        def prefill(req_id, prompt):
            spec = {"req_id": req_id, "receiver_host": "localhost", "receiver_init_port": [init_port],
                    "receiver_alloc_port": [alloc_port]}
            return prefiller.post("/v1/completions", {
                "prompt": prompt, "max_tokens": 1,
                "kv_transfer_params": {"ret_first_tok": True, "disagg_spec": spec}}, timeout=30)

        first_prompt = list(range(1000, 1400))  # 2 chunks: fills the buffer
        status, first = prefill("a", first_prompt)
        assert status == 200
        status, answer = prefill("b", list(range(5000, 5300)))  # no room until "a" is retrieved
        assert status == 500
        decoder.wait_for_log(r"LMCache WARNING: Failed to allocate memory object, retrying\.\.\.")
        # Decoding "a" frees its chunks; the next prefill gets through.
        decoder.post("/v1/completions", {"prompt": first_prompt + [first["kv_transfer_params"]["first_tok"]],
                                         "max_tokens": 1})
        status, _ = prefill("c", list(range(5000, 5300)))
        assert status == 200
        notified = [msgpack.unpackb(m, raw=False)["req_id"] for m in _receive_notifs(pull, 2)]
        assert notified == ["a", "c"]
    finally:
        prefiller.stop()
        decoder.stop()
