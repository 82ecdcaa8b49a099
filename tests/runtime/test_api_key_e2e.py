"""A deployment whose engines run with `--api-key` (issue 15): the simulated engines enforce
it as vLLM does (401 on /v1/* without the key; /health and /metrics open), pdtui's proxy
authenticates to them with the key it gets through its environment, and the key is in no
file of the run directory and on no command line."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest
import yaml

from pdtui.model.secret import API_KEY_ENV
from tests.conftest import REPO_ROOT
from tests.model.test_launch_script import demo_with_free_ports
from tests.model.test_secrets import _pdtui, _processes_of

KEY = "sk-proj-EngineKeyForTheProxy0123456789xyz"


def _http(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.timeout(240)
def test_engines_with_an_api_key_serve_through_the_proxy_and_refuse_direct_requests(tmp_path):
    doc = demo_with_free_ports()
    doc["vllm"] = {**(doc.get("vllm") or {}), "extra_args": ["--api-key", KEY]}
    profile = tmp_path / "keyed.yaml"
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(REPO_ROOT)}
    env.pop(API_KEY_ENV, None)
    env.pop("OPENAI_API_KEY", None)
    up = _pdtui("up", str(profile), "--detach", env=env)
    runs = [p for p in (tmp_path / "state" / "pdtui" / "runs").iterdir() if p.is_dir()]
    try:
        assert up.returncode == 0, up.stderr
        assert KEY not in up.stdout + up.stderr
        proxy = f"http://127.0.0.1:{doc['proxy']['port']}"
        prompt = {"model": doc.get("served_model_name") or doc["model"], "prompt": "hello there", "max_tokens": 4}
        status, body = _http("POST", proxy + "/v1/completions", prompt)
        assert status == 200, body  # the proxy sent the key to the prefiller and the decoder
        assert json.loads(body)["choices"][0]["text"]
        status, body = _http("GET", proxy + "/v1/models")
        assert status == 200, body
        status, body = _http("POST", proxy + "/backends/check")
        assert status == 200, body
        for inst in doc["prefillers"] + doc["decoders"]:
            engine = f"http://127.0.0.1:{inst['port']}"
            assert _http("POST", engine + "/v1/completions", prompt)[0] == 401
            assert _http("POST", engine + "/v1/completions", prompt, {"Authorization": "Bearer wrong"})[0] == 401
            assert _http("GET", engine + "/v1/models")[0] == 401
            assert _http("GET", engine + "/health")[0] == 200  # open, as in vLLM
            assert _http("GET", engine + "/metrics")[0] == 200  # open: telemetry scrapes it with no key
            assert _http("GET", engine + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})[0] == 200
        (run_dir,) = runs
        procs = _processes_of(run_dir)
        assert len(procs) >= 3, "proxy and two engines"
        for proc in procs:
            assert KEY not in "\0".join(proc.cmdline()), proc.pid
        environs = [proc.environ().get(API_KEY_ENV) for proc in procs]
        assert environs.count(KEY) >= 3, "the proxy and both engines got the key by environment"
        for path in (p for p in run_dir.rglob("*") if p.is_file()):
            assert KEY.encode() not in path.read_bytes(), path
    finally:
        down = _pdtui("down", *(str(r) for r in runs[:1]), env=env)
    assert down.returncode == 0, down.stderr
