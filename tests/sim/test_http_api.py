"""A real simulated engine process, spoken to over HTTP on loopback like a vLLM server."""

from __future__ import annotations

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.sim.helpers import start_sim

MODEL = "sim/tiny-llama"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    sim = start_sim(tmp_path_factory.mktemp("sim-http"), "--max-model-len", "2048", model=MODEL)
    try:
        sim.wait_healthy()
        yield sim
    finally:
        sim.stop()


def test_health_and_models(engine):
    status, body = engine.get("/health")
    assert status == 200 and body == ""
    status, body = engine.get("/v1/models")
    models = json.loads(body)
    assert status == 200
    assert [m["id"] for m in models["data"]] == [MODEL]
    assert models["data"][0]["max_model_len"] == 2048


def test_tokenize_string_tokens_and_chat(engine):
    status, body = engine.post("/tokenize", {"prompt": "The quick brown fox jumps"})
    assert status == 200
    assert body["count"] == len(body["tokens"]) == 6  # BOS + 5 words
    assert body["max_model_len"] == 2048
    again = engine.post("/tokenize", {"prompt": "The quick brown fox jumps"})[1]
    assert again["tokens"] == body["tokens"]  # deterministic across calls
    status, ids = engine.post("/tokenize", {"prompt": [5, 6, 7]})
    assert ids["tokens"] == [5, 6, 7]
    status, chat = engine.post("/tokenize", {"messages": [{"role": "user", "content": "hello there"}]})
    assert status == 200 and chat["count"] > 3


def test_completion_non_streaming_honours_max_tokens(engine):
    status, body = engine.post("/v1/completions", {"model": MODEL, "prompt": "one two three", "max_tokens": 7})
    assert status == 200, body
    assert body["object"] == "text_completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["text"].split()) == 7
    assert body["usage"] == {
        "prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11, "prompt_tokens_details": None,
    }


def _sse_events(url: str, body: dict) -> list[str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = response.read().decode()
    assert raw.endswith("data: [DONE]\n\n")
    events = raw.split("\n\n")
    assert events[-1] == ""
    assert all(event.startswith("data: ") for event in events[:-1])
    return [event[len("data: "):] for event in events[:-1]]


def test_completion_streaming_matches_non_streaming(engine):
    body = {"prompt": "stream me some words", "max_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True}}
    events = _sse_events(engine.url + "/v1/completions", body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    token_chunks = [c for c in chunks if c["choices"]]
    assert len(token_chunks) == 5
    assert [c["choices"][0]["finish_reason"] for c in token_chunks] == [None] * 4 + ["length"]
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    streamed = "".join(c["choices"][0]["text"] for c in token_chunks)
    _, whole = engine.post("/v1/completions", {"prompt": "stream me some words", "max_tokens": 5})
    assert whole["choices"][0]["text"] == streamed


def test_prompt_as_token_ids_continues_like_one_engine(engine):
    """Prompt ids + the first token, max_tokens-1: exactly the PD decoder's request."""
    _, ids = engine.post("/tokenize", {"prompt": "golden output check"})
    _, full = engine.post("/v1/completions", {"prompt": ids["tokens"], "max_tokens": 4})
    _, first = engine.post("/v1/completions", {"prompt": ids["tokens"], "max_tokens": 1,
                                               "kv_transfer_params": {"ret_first_tok": True}})
    first_tok = first["kv_transfer_params"]["first_tok"]
    _, rest = engine.post("/v1/completions", {"prompt": ids["tokens"] + [first_tok], "max_tokens": 3})
    assert first["choices"][0]["text"] + rest["choices"][0]["text"] == full["choices"][0]["text"]


def test_chat_completions_both_ways(engine):
    messages = [{"role": "user", "content": "Say something"}]
    status, body = engine.post("/v1/chat/completions", {"messages": messages, "max_completion_tokens": 3})
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert len(body["choices"][0]["message"]["content"].split()) == 3
    events = _sse_events(engine.url + "/v1/chat/completions", {"messages": messages, "max_tokens": 3, "stream": True})
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == body["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/completions", {"max_tokens": 2}, 400, "prompt"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 5000}, 400, "maximum context length is 2048"),
        ("/v1/completions", {"prompt": "x", "model": "other"}, 404, "does not exist"),
        ("/v1/chat/completions", {"messages": "nope"}, 400, "messages"),
    ],
)
def test_bad_requests_get_vllm_style_errors(engine, path, body, status, needle):
    got, answer = engine.post(path, body)
    assert got == status
    assert needle in answer["error"]["message"]
    assert answer["error"]["code"] == status


def test_metrics_parse_with_real_names_and_labels(engine):
    engine.post("/v1/completions", {"prompt": "count these tokens please", "max_tokens": 3})
    status, text = engine.get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prompt_tokens", "vllm:generation_tokens", "vllm:time_to_first_token_seconds",
                 "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds",
                 "vllm:external_prefix_cache_hits"):
        assert name in families, name
    labels = families["vllm:num_requests_running"].samples[0].labels
    assert labels == {"engine": "0", "model_name": MODEL}
    prompt_total = [s for s in families["vllm:prompt_tokens"].samples if s.name == "vllm:prompt_tokens_total"]
    assert prompt_total[0].value >= 6
    assert families["vllm:time_to_first_token_seconds"].type == "histogram"
    buckets = [s.labels["le"] for s in families["vllm:time_to_first_token_seconds"].samples
               if s.name.endswith("_bucket")]
    assert buckets[:3] == ["0.001", "0.005", "0.01"] and buckets[-1] == "+Inf"
    assert not any(name.startswith("lmcache:") for name in families)  # no PROMETHEUS_MULTIPROC_DIR
    assert "vllm:nixl_xfer_time_seconds" not in families


def test_access_log_lines_in_uvicorn_format(engine):
    engine.get("/health")
    engine.wait_for_log(r'^INFO:     127\.0\.0\.1:\d+ - "GET /health HTTP/1\.1" 200 OK$')


def test_client_hanging_up_mid_stream_aborts_and_frees(tmp_path):
    """A client that disconnects mid-stream: the request is aborted, running drops to 0."""
    import socket
    import time as _time

    from tests.sim.helpers import start_sim as _start

    sim = _start(tmp_path, env={"PDTUI_SIM_DECODE_MS_PER_TOKEN": "20"})
    try:
        sim.wait_healthy()
        body = json.dumps({"prompt": "long one", "max_tokens": 500, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as conn:
            conn.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            received = b""
            while b"data: " not in received:  # headers and the first event may come in separate reads
                chunk = conn.recv(4096)
                assert chunk, received
                received += chunk
        deadline = _time.monotonic() + 10
        while _time.monotonic() < deadline:
            families = {f.name: f for f in text_string_to_metric_families(sim.get("/metrics")[1])}
            aborted = [s.value for s in families["vllm:request_success"].samples
                       if s.name.endswith("_total") and s.labels["finished_reason"] == "abort"]
            if aborted == [1.0]:
                break
            _time.sleep(0.1)
        assert aborted == [1.0]
        assert families["vllm:num_requests_running"].samples[0].value == 0
        assert families["vllm:kv_cache_usage_perc"].samples[0].value == 0
    finally:
        sim.stop()
