"""The supervisor's health rounds: one thread for all of them, one kept-alive connection
per instance, a connection the server closed while idle replaced at once, a timeout not
waited twice, an engine the proxy vouches for not asked again (real HTTP on loopback)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pdtui.runtime.readiness import KeptAliveGets


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as vLLM's and the simulator's servers

    def do_GET(self):
        if self.server.hang.is_set():
            time.sleep(2)
        self.server.gets += 1
        body = self.server.body()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.connections.add(self.connection)

    def log_message(self, *args):
        pass


def _server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.hang = threading.Event()
    server.connections = set()
    server.gets = 0
    server.body = lambda: b"{}"
    server.handle_error = lambda *args: None  # a connection the test shut down mid-keep-alive
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/health"


def test_rounds_reuse_one_connection_and_replace_one_the_server_closed():
    server, url = _server()
    gets = KeptAliveGets(timeout_s=5)
    try:
        for _ in range(5):
            assert gets.get(url) == (200, b"{}")
        assert gets.connects == 1
        for conn in list(server.connections):  # the server ends its idle connection
            conn.shutdown(socket.SHUT_RDWR)
        assert gets.get(url) == (200, b"{}")  # asked again on a new one, not a failure
        assert gets.connects == 2
    finally:
        gets.close()
        server.shutdown()


def test_a_timeout_is_one_failure_and_is_not_asked_again():
    server, url = _server()
    gets = KeptAliveGets(timeout_s=0.3)
    try:
        assert gets.get(url) == (200, b"{}")
        server.hang.set()
        started = time.monotonic()
        assert gets.get(url) is None
        assert time.monotonic() - started < 1.5  # one timeout, not two
        server.hang.clear()
        assert gets.get(url) == (200, b"{}")
    finally:
        gets.close()
        server.shutdown()


def test_a_refused_connection_is_none():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        assert KeptAliveGets(timeout_s=1).get(f"http://127.0.0.1:{port}/health") is None


def test_the_supervisor_checks_on_one_thread_over_kept_connections(tmp_path):
    from pdtui.runtime.health import HEALTH_CHECK_S, HealthChecker
    from pdtui.runtime.members import LaunchSpec
    from pdtui.runtime.status import InstanceState
    from pdtui.runtime.supervisor import Supervisor

    servers = [_server() for _ in range(2)]
    specs = [LaunchSpec("proxy", "proxy", ("x",), {}, health_url=servers[0][1]),
             LaunchSpec("prefiller1", "prefiller", ("x",), {}, health_url=servers[1][1])]
    sup = Supervisor(None, tmp_path / "run", _specs=specs)
    checker = HealthChecker(sup)
    try:
        for name in ("proxy", "prefiller1"):
            sup._transition(sup._member(name), state=InstanceState.READY, ready_at=time.time() - 10)
        now = time.monotonic()
        threads = set()
        for round_ in range(4):
            checker.maybe_check(now + round_ * HEALTH_CHECK_S)
            threads.add(checker._thread)
            deadline = time.monotonic() + 30
            while checker._running.locked():  # this round is done when it lets go
                assert time.monotonic() < deadline
                time.sleep(0.01)
        (thread,) = threads  # every round on the same thread
        assert thread is not None and thread.is_alive()
        assert checker._gets.connects == 2  # one per instance, over four rounds
        # Asked exactly one interval apart (the idle tick is as long), every round ran,
        # though each ended a little after the tick that asked for it.
        assert servers[1][0].gets == 4
        checker.close()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        checker.close()
        for server, _ in servers:
            server.shutdown()


def test_the_rounds_thread_ends_when_no_round_is_asked_for(tmp_path, monkeypatch):
    from pdtui.runtime import health
    from pdtui.runtime.members import LaunchSpec
    from pdtui.runtime.status import InstanceState
    from pdtui.runtime.supervisor import Supervisor

    monkeypatch.setattr(health, "IDLE_EXIT_S", 0.2)
    server, url = _server()
    sup = Supervisor(None, tmp_path / "run", _specs=[LaunchSpec("proxy", "proxy", ("x",), {}, health_url=url)])
    checker = health.HealthChecker(sup)
    try:
        sup._transition(sup._member("proxy"), state=InstanceState.READY, ready_at=time.time() - 10)
        checker.maybe_check(time.monotonic())
        first = checker._thread
        assert first is not None
        first.join(30)  # its supervisor asks for nothing more: it ends on its own
        assert not first.is_alive() and checker._thread is None
        checker.maybe_check(time.monotonic() + health.HEALTH_CHECK_S)  # a later round starts another
        assert checker._thread is not None and checker._thread is not first
    finally:
        checker.close()
        server.shutdown()


def _round(checker, now):
    checker.maybe_check(now)
    deadline = time.monotonic() + 30
    while checker._running.locked():  # the round is done when it lets go
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_an_engine_the_proxy_found_healthy_just_now_is_not_asked_again(tmp_path):
    import json

    from pdtui.runtime.health import HEALTH_CHECK_S, VOUCH_S, HealthChecker
    from pdtui.runtime.members import LaunchSpec
    from pdtui.runtime.status import InstanceState
    from pdtui.runtime.supervisor import Supervisor

    (proxy, proxy_url), (engine, engine_url) = _server(), _server()
    verdict = {"state": "healthy", "checked_ago": 0.5, "last_error": None}
    proxy.body = lambda: json.dumps({"prefillers": [{
        "url": engine_url.removesuffix("/health"), "state": verdict["state"],
        "last_checked": time.time() - verdict["checked_ago"], "last_error": verdict["last_error"]}], "decoders": []}).encode()
    specs = [LaunchSpec("proxy", "proxy", ("x",), {}, health_url=proxy_url),
             LaunchSpec("prefiller1", "prefiller", ("x",), {}, health_url=engine_url)]
    sup = Supervisor(None, tmp_path / "run", _specs=specs)
    checker = HealthChecker(sup)
    try:
        for name in ("proxy", "prefiller1"):
            sup._transition(sup._member(name), state=InstanceState.READY, ready_at=time.time() - 10)
        now, step = time.monotonic(), HEALTH_CHECK_S + 1  # a round's end counts too
        for round_ in range(3):
            _round(checker, now + round_ * step)
        assert (proxy.gets, engine.gets) == (3, 0)  # one GET a round: the proxy's report
        assert sup.instance("prefiller1").health is None

        verdict["checked_ago"] = VOUCH_S + 5  # the proxy has not checked it lately: ask it
        _round(checker, now + 3 * step)
        assert (proxy.gets, engine.gets) == (4, 1)

        verdict.update(state="unhealthy", checked_ago=0.5, last_error="GET /health failed")
        _round(checker, now + 4 * step)
        assert (proxy.gets, engine.gets) == (5, 2)  # not vouched for: asked, and it answers
        st = sup.instance("prefiller1")
        assert st.health == "degraded" and "GET /health failed" in st.health_detail

        verdict.update(state="healthy", checked_ago=0.5)
        engine.hang.set()  # hung since the proxy's check: our own GET would time out, but
        _round(checker, now + 5 * step)  # the fresh "healthy" is what we go by
        assert sup.instance("prefiller1").health is None
    finally:
        engine.hang.clear()
        checker.close()
        for server in (proxy, engine):
            server.shutdown()
