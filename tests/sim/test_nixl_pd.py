"""vLLM NixlConnector PD between two real simulated engines (the decoder pulls from the prefiller)."""

from __future__ import annotations

import json
import re

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.sim.helpers import start_sim

KV_METRICS_RE = re.compile(
    r"KV Transfer metrics: Num successful transfers=(?P<n>\d+), Avg xfer time \(ms\)=(?P<avg>[\d.]+), .*"
    r"Throughput \(MB/s\)=(?P<mbps>[\d.]+)"
)


def _nixl(role: str) -> str:
    return json.dumps({"kv_connector": "NixlConnector", "kv_role": role})


def test_nixl_prefill_then_decode_pulls_blocks(tmp_path):
    side_port = free_port()
    prefiller = start_sim(tmp_path, "--kv-transfer-config", _nixl("kv_producer"),
                          env={"VLLM_NIXL_SIDE_CHANNEL_PORT": str(side_port)}, name="prefiller")
    decoder = start_sim(tmp_path, "--kv-transfer-config", _nixl("kv_consumer"),
                        env={"PDTUI_SIM_STATS_INTERVAL_S": "0.5"}, name="decoder")
    try:
        prefiller.wait_healthy()
        decoder.wait_healthy()
        prompt = list(range(300, 340))
        status, answer = prefiller.post("/v1/completions", {
            "prompt": prompt, "max_tokens": 1, "stream": False,
            "kv_transfer_params": {"do_remote_decode": True, "do_remote_prefill": False,
                                   "remote_engine_id": None, "remote_block_ids": None,
                                   "remote_host": None, "remote_port": None},
        })
        assert status == 200, answer
        params = answer["kv_transfer_params"]
        assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
        assert params["remote_port"] == side_port and params["tp_size"] == 1
        assert params["remote_block_ids"] and params["remote_engine_id"]

        status, decoded = decoder.post("/v1/completions", {"prompt": prompt, "max_tokens": 3,
                                                            "kv_transfer_params": params})
        assert status == 200
        assert decoded["usage"]["prompt_tokens_details"] == {"cached_tokens": len(prompt)}
        match = decoder.wait_for_log(KV_METRICS_RE.pattern)
        assert match["n"] == "1"
        families = {f.name: f for f in text_string_to_metric_families(decoder.get("/metrics")[1])}
        assert families["vllm:external_prefix_cache_hits"].samples[0].value == len(prompt)
        counts = [s.value for s in families["vllm:nixl_xfer_time_seconds"].samples if s.name.endswith("_count")]
        assert counts == [1.0]

        # The blocks were handed over once; a second pull finds nothing and the decoder recomputes.
        status, again = decoder.post("/v1/completions", {"prompt": prompt, "max_tokens": 1,
                                                          "kv_transfer_params": params})
        assert status == 200 and again["usage"]["prompt_tokens_details"] is None
        decoder.wait_for_log(r"Failed to read KV blocks .* recomputing the prompt")
    finally:
        prefiller.stop()
        decoder.stop()
