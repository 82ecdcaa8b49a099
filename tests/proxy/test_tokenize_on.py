"""Who tokenizes in lmcache-pd mode: the request's prefiller and decoder in turn (default),
or always the prefiller (--tokenize-on prefiller). Real HTTP/ZMQ fakes (fakes.py)."""

from __future__ import annotations

import argparse

import aiohttp
import pytest

from pdtui.proxy.config import ConfigError, DecoderSpec, PrefillerSpec, ProxyConfig, from_args
from pdtui.proxy.cli import add_arguments
from tests.conftest import free_port
from tests.proxy.fakes import FakeEngine, fake_tokenize
from tests.proxy.harness import engines, running_proxy, sse_payloads, wait_ready

pytestmark = pytest.mark.timeout(60)


async def _ask(proxy_url: str, prompts: list[str]) -> list[list[str]]:
    texts = []
    async with aiohttp.ClientSession() as s:
        await wait_ready(s, proxy_url)
        for prompt in prompts:
            async with s.post(proxy_url + "/v1/completions", json={
                    "model": "fake-model", "prompt": prompt, "max_tokens": 3,
                    "stream": True}) as resp:
                assert resp.status == 200, await resp.text()
                events = sse_payloads(await resp.read())
            assert events[-1] == "[DONE]"
            texts.append([e["choices"][0]["text"] for e in events[:-1] if e.get("choices")])
    return texts


@pytest.mark.parametrize("tokenize_on", ["pair", "prefiller"])
async def test_who_tokenizes(tokenize_on):
    zmq_port = free_port()
    p = FakeEngine("prefiller", zmq_port=zmq_port)
    d = FakeEngine("decoder")
    prompts = [f"prompt number {i}" for i in range(6)]
    async with engines(p, d), running_proxy([p], [d], zmq_port=zmq_port,
                                            tokenize_on=tokenize_on) as proxy:
        texts = await _ask(proxy.url, prompts)
    assert texts == [[" first", " d0", " d1"]] * 6
    tokenized_by_p = [c["prompt"] for c in p.tokenize_calls]
    tokenized_by_d = [c["prompt"] for c in d.tokenize_calls]
    if tokenize_on == "pair":
        # in turn, the prefiller first: each serves half of the /tokenize calls
        assert tokenized_by_p == prompts[0::2] and tokenized_by_d == prompts[1::2]
    else:
        assert tokenized_by_p == prompts and tokenized_by_d == []
    # whoever tokenized, the prefill and the decode got that prompt's token ids
    assert [r["prompt"] for r in p.requests] == [fake_tokenize(x) for x in prompts]
    assert [r["prompt"][:-1] for r in d.requests] == [fake_tokenize(x) for x in prompts]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_tokenize_on_from_argv_and_validated():
    args = ["--prefiller", "http://127.0.0.1:8100", "--decoder", "http://127.0.0.1:8200",
            "--decoder-init-ports", "7300", "--decoder-alloc-ports", "7400"]
    assert from_args(_parse(args)).tokenize_on == "pair"
    cfg = from_args(_parse(args + ["--tokenize-on", "prefiller"]))
    assert cfg.tokenize_on == "prefiller"
    with pytest.raises(SystemExit):  # argparse refuses other values
        _parse(args + ["--tokenize-on", "decoder"])
    bad = ProxyConfig(prefillers=(PrefillerSpec("http://127.0.0.1:8100"),),
                      decoders=(DecoderSpec("http://127.0.0.1:8200", (7300,), (7400,)),),
                      tokenize_on="anyone")
    with pytest.raises(ConfigError, match="--tokenize-on 'anyone': must be one of pair, prefiller"):
        bad.validate()
