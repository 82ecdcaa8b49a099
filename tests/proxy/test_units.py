"""Unit tests: configuration parsing, KV-ready waiters, routing, timelines."""

from __future__ import annotations

import argparse
import asyncio

import pytest
import zmq
import zmq.asyncio

from pdtui.proxy.backends import HEALTH_DOWN, HEALTH_UP, BackendPool, NoBackendError
from pdtui.proxy.cli import add_arguments
from pdtui.proxy.config import ConfigError, DecoderSpec, PrefillerSpec, from_args
from pdtui.proxy.notifications import KvReadyWaiters, ProxyNotifListener
from pdtui.proxy.protocol import encode_proxy_notif
from pdtui.proxy.streaming import DoneWatch
from pdtui.proxy.timeline import RequestTimeline, TimelineHub
from tests.conftest import free_port


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


# -- configuration ---------------------------------------------------------------------


def test_own_spelling_one_port_list_per_decoder():
    cfg = from_args(_args([
        "--prefiller", "http://127.0.0.1:7100", "--prefiller", "http://127.0.0.1:7101",
        "--decoder", "http://127.0.0.1:7200", "--decoder-init-ports", "7300,7301",
        "--decoder-alloc-ports", "7400,7401",
        "--decoder", "http://127.0.0.1:7201/", "--decoder-init-ports", "7310,7311",
        "--decoder-alloc-ports", "7410,7411",
        "--routing", "least-outstanding", "--sticky-header", "session-id",
    ]))
    assert [p.url for p in cfg.prefillers] == ["http://127.0.0.1:7100", "http://127.0.0.1:7101"]
    assert cfg.decoders == (
        DecoderSpec("http://127.0.0.1:7200", (7300, 7301), (7400, 7401)),
        DecoderSpec("http://127.0.0.1:7201", (7310, 7311), (7410, 7411)),
    )
    assert cfg.host == "127.0.0.1" and cfg.port == 9100 and cfg.zmq_port == 7500
    assert cfg.routing == "least-outstanding" and cfg.sticky_header == "session-id"


def test_lmcache_spelling_expands_like_lmcache():
    # the xpyd example's proxy line: consecutive ports, side-channel ports shifted per decoder
    cfg = from_args(_args([
        "--port", "9487", "--prefiller-host", "localhost", "--prefiller-port", "7100",
        "--num-prefillers", "2", "--decoder-host", "localhost", "--decoder-port", "7200",
        "--decoder-init-port", "7300", "--decoder-alloc-port", "7400",
        "--proxy-host", "localhost", "--proxy-port", "7500", "--num-decoders", "2",
    ]))
    assert [p.url for p in cfg.prefillers] == ["http://127.0.0.1:7100", "http://127.0.0.1:7101"]
    assert [(d.url, d.init_ports, d.alloc_ports) for d in cfg.decoders] == [
        ("http://127.0.0.1:7200", (7300,), (7400,)),
        ("http://127.0.0.1:7201", (7301,), (7401,)),
    ]
    assert cfg.zmq_host == "127.0.0.1" and cfg.zmq_port == 7500 and cfg.port == 9487
    # several hosts, one port: same side-channel ports on every host (multi-node)
    cfg = from_args(_args([
        "--prefiller-host", "10.0.0.1", "--prefiller-port", "7100",
        "--decoder-host", "10.0.0.2,10.0.0.3", "--decoder-port", "7200",
        "--decoder-init-port", "7300,7301", "--decoder-alloc-port", "7400,7401",
    ]))
    assert [(d.url, d.init_ports) for d in cfg.decoders] == [
        ("http://10.0.0.2:7200", (7300, 7301)), ("http://10.0.0.3:7200", (7300, 7301))]


@pytest.mark.parametrize("argv, message", [
    (["--decoder", "http://127.0.0.1:7200", "--decoder-init-ports", "7300",
      "--decoder-alloc-ports", "7400"], "no prefiller"),
    (["--prefiller", "http://127.0.0.1:7100", "--decoder", "http://127.0.0.1:7200"],
     "no --decoder-init-ports"),
    (["--prefiller", "http://127.0.0.1:7100", "--decoder", "http://127.0.0.1:7200",
      "--decoder-init-ports", "7300,7301", "--decoder-alloc-ports", "7400"],
     "2 init ports [7300, 7301] but 1 alloc ports"),
    (["--prefiller", "127.0.0.1:7100", "--decoder", "http://127.0.0.1:7200",
      "--decoder-init-ports", "7300", "--decoder-alloc-ports", "7400"],
     "--prefiller '127.0.0.1:7100': expected a URL"),
    (["--prefiller", "http://127.0.0.1:7100", "--decoder", "http://127.0.0.1:7200",
      "--decoder-init-ports", "73x0", "--decoder-alloc-ports", "7400"],
     "--decoder-init-ports '73x0'"),
    (["--prefiller-host", "a,b,c", "--prefiller-port", "1,2", "--decoder",
      "http://127.0.0.1:7200", "--decoder-init-ports", "7300", "--decoder-alloc-ports", "7400"],
     "3 hosts but --prefiller-port has 2 ports"),
    (["--prefiller", "http://127.0.0.1:7100", "--decoder", "http://127.0.0.1:7200",
      "--decoder-init-ports", "7300", "--decoder-alloc-ports", "7400", "--timeout-kv", "0"],
     "--timeout-kv 0"),
])
def test_bad_settings_are_named(argv, message):
    with pytest.raises(ConfigError) as exc:
        from_args(_args(argv))
    assert message in str(exc.value)


def test_nixl_mode_needs_no_side_channel_ports(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    cfg = from_args(_args(["--mode", "nixl", "--prefiller", "http://127.0.0.1:8100",
                           "--decoder", "http://127.0.0.1:8200"]))
    assert cfg.mode == "nixl" and cfg.api_key == "sk-x"


# -- KV-ready waiters -------------------------------------------------------------------


async def test_waiter_resolves_after_one_notification_per_rank():
    w = KvReadyWaiters()
    fut = w.register("r1", 2)
    assert w.notify("r1") == "matched" and not fut.done()
    assert w.notify("r1") == "matched" and fut.done()
    assert len(w) == 0


async def test_early_notifications_are_kept_until_the_waiter_comes():
    w = KvReadyWaiters()
    assert w.notify("r1") == "early"
    assert w.notify("r1") == "early"
    assert await w.wait("r1", 2, timeout=1) == 2
    assert w.early_count == 0


async def test_early_map_is_bounded_and_finished_ids_drop_late_messages():
    w = KvReadyWaiters(max_early=3, max_finished=2)
    for i in range(5):
        w.notify(f"r{i}")
    assert w.early_count == 3 and w.early_evicted == 2
    with pytest.raises(asyncio.TimeoutError):
        await w.wait("gone", 1, timeout=0.05)
    assert w.notify("gone") == "late"
    assert w.early_count == 3 and len(w) == 0


async def test_listener_receives_real_zmq_proxy_notifs():
    port = free_port()
    w = KvReadyWaiters()
    kinds: list[str] = []
    listener = ProxyNotifListener("127.0.0.1", port, w, observe=kinds.append)
    listener.start()
    ctx = zmq.asyncio.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(f"tcp://127.0.0.1:{port}")
    try:
        fut = w.register("req-7", 2)
        await push.send(b"\xc1 not msgpack")
        await push.send(encode_proxy_notif("req-7"))
        await push.send(encode_proxy_notif("req-7"))
        assert await asyncio.wait_for(fut, 5) == 2
        assert kinds == ["malformed", "matched", "matched"]
        # a second listener on the same port fails with the endpoint named
        other = ProxyNotifListener("127.0.0.1", port, w)
        with pytest.raises(OSError, match=f"tcp://127.0.0.1:{port}"):
            other.start()
        await other.stop()
    finally:
        push.close()
        ctx.term()
        await listener.stop()


# -- routing ----------------------------------------------------------------------------


def _pool(policy="round-robin"):
    return BackendPool(
        (PrefillerSpec("http://p1"), PrefillerSpec("http://p2")),
        (DecoderSpec("http://d1", (1,), (2,)), DecoderSpec("http://d2", (3,), (4,))),
        policy,
    )


def test_round_robin_skips_unhealthy_and_says_when_none_left():
    pool = _pool()
    assert [pool.pick()[1].url for _ in range(4)] == ["http://d1", "http://d2"] * 2
    pool.decoders[0].set_state(HEALTH_DOWN, "refused")
    assert {pool.pick()[1].url for _ in range(4)} == {"http://d2"}
    pool.decoders[1].set_state(HEALTH_DOWN, "refused")
    with pytest.raises(NoBackendError, match="no healthy decoder"):
        pool.pick()
    assert not pool.ready()
    for b in pool.all:
        b.set_state(HEALTH_UP)
    assert pool.ready()


def test_least_outstanding_and_sticky():
    pool = _pool("least-outstanding")
    pool.decoders[0].outstanding = 5
    assert {pool.pick()[1].url for _ in range(4)} == {"http://d2"}
    pool = _pool()
    first = pool.pick("sess")
    assert all(pool.pick("sess") == first for _ in range(5))
    first[1].set_state(HEALTH_DOWN)
    moved = pool.pick("sess")
    assert moved[1] is not first[1] and pool.pick("sess") == moved


# -- timelines --------------------------------------------------------------------------


async def test_timeline_history_is_bounded_and_slow_readers_lose_events_not_memory():
    hub = TimelineHub(history=2)
    sub = hub.subscribe(maxsize=4)
    for i in range(3):
        tl = RequestTimeline(hub, f"r{i}", "completions")
        tl.start("request")
        tl.end("request")
    assert [t[0]["req_id"] for t in hub.finished_timelines()] == ["r1", "r2"]
    assert sub.queue.qsize() == 4 and sub.dropped == 2
    while not sub.queue.empty():
        sub.queue.get_nowait()
    hub.emit({"req_id": "r9", "stage": "x", "state": "start"})
    got = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    assert got[0] == {"type": "dropped", "count": 2, "ts": got[0]["ts"]}


# -- the end of a relayed SSE stream ---------------------------------------------------


def _done_after(chunks: list[bytes]) -> int | None:
    """The index of the chunk that completed the [DONE] event, or None."""
    watch = DoneWatch()
    for i, chunk in enumerate(chunks):
        if watch.feed(chunk):
            return i
    return None


def test_done_is_seen_in_a_chunk_of_its_own_or_after_events():
    assert _done_after([b'data: {"a":1}\n\n', b"data: [DONE]\n\n"]) == 1
    assert _done_after([b'data: {"a":1}\n\ndata: [DONE]\n\n']) == 0
    assert _done_after([b"data: [DONE]\n\n"]) == 0  # a stream that is only its end
    assert _done_after([b'data: {"a":1}\r\n\r\ndata:[DONE]\r\n\r\n']) == 0


def test_done_split_over_chunks_is_seen_when_its_blank_line_is_in():
    whole = b'data: {"a":1}\n\ndata: [DONE]\n\n'
    for cut in range(1, len(whole)):
        assert _done_after([whole[:cut], whole[cut:]]) == 1, cut
    assert _done_after([b"data: [DONE]\n"]) is None  # the event is not finished yet
    assert _done_after([b"data: [DO", b"NE]\n", b"\n"]) == 2


def test_done_inside_an_event_is_not_the_end():
    # JSON escapes newlines, so [DONE] text inside a payload never starts a line
    assert _done_after([b'data: {"text":"data: [DONE]\\n\\n"}\n\n']) is None
    assert _done_after([b"xdata: [DONE]\n\n"]) is None
