"""Ready means routable: once `pdtui up` says ready, the proxy routes to every instance.

End to end with real processes (the proxy, simulated engines), and the fallback for a
proxy that has no POST /backends/check (a real HTTP server on loopback answering 404)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pdtui.runtime.routable import routes_to
from pdtui.runtime.statefile import read_state
from tests.runtime.helpers import (
    demo_profile_dict,
    pdtui_cli,
    stop_marked,
    write_profile,
)

ACCESS = re.compile(r"access \S+ completions (\S+) -> (\S+) status=200")


def test_first_requests_after_up_reach_every_prefiller(tmp_path):
    data = demo_profile_dict(startup_s=0.3)  # 2 prefillers, 2 decoders
    # The second prefiller comes up last: the old `up` returned before the proxy's health
    # round had seen it, and the first requests all went to the first one.
    data["prefillers"][1]["sim"]["startup_s"] = 1.5
    profile = write_profile(tmp_path, data)
    up = pdtui_cli("up", str(profile), "--detach")
    assert up.returncode == 0, up.stderr
    run = up.stdout.strip().splitlines()[-1]
    try:
        proxy = f"http://127.0.0.1:{data['proxy']['port']}"
        for i in range(8):  # sequential, straight after `up` returned
            body = json.dumps({"model": data["model"], "prompt": f"hello {i}", "max_tokens": 2}).encode()
            request = urllib.request.Request(proxy + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
        log = next((tmp_path / "state" / "pdtui" / "runs").glob(f"{run}/proxy.log"))
        deadline = time.monotonic() + 10
        while True:  # the access line is written when the response ends
            used = [m.group(1) for m in ACCESS.finditer(log.read_text())]
            if len(used) >= 8 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        prefillers = {f"http://127.0.0.1:{p['port']}" for p in data["prefillers"]}
        assert len(used) == 8, log.read_text()[-3000:]
        assert set(used) == prefillers, used
        # The proxy started beside the engines, not before them; an engine was reported
        # ready only after the proxy was (it is ready once the proxy routes to it).
        instances = read_state(log.parent).instances
        proxy = instances.pop("proxy")
        assert max(i.started_at for i in instances.values()) < proxy.ready_at
        assert min(i.ready_at for i in instances.values()) >= proxy.ready_at
    finally:
        down = pdtui_cli("down", run)
        stop_marked(run)
        assert down.returncode == 0, down.stderr


class _OldProxy(BaseHTTPRequestHandler):
    """A proxy without POST /backends/check: only a /health listing."""

    listing: dict = {}  # noqa: RUF012 - set by the test between requests

    def do_POST(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = json.dumps(self.listing).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_proxy_without_the_check_route_is_read_from_its_health_listing():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OldProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/health"
    backend = "http://127.0.0.1:7100"
    since = time.time()
    try:
        _OldProxy.listing = {"prefillers": [{"url": backend, "state": "healthy", "last_checked": since - 5}], "decoders": []}
        ok, why = routes_to(url, backend, since)
        assert not ok and "healthy" in why  # a verdict from before the instance was up
        _OldProxy.listing = {"prefillers": [{"url": backend, "state": "unhealthy", "last_checked": since + 1, "last_error": "refused"}]}
        assert routes_to(url, backend, since) == (False, "the proxy lists it unhealthy: refused")
        _OldProxy.listing = {"prefillers": [{"url": backend, "state": "healthy", "last_checked": since + 1}]}
        assert routes_to(url, backend, since) == (True, "")
        # Not one of its backends: nothing to wait for.
        assert routes_to(url, "http://127.0.0.1:7999", since) == (True, "")
    finally:
        server.shutdown()
        server.server_close()
