"""How ready instances answer: their own /health, and what the proxy says of them.

An instance stays `ready` (its process runs), and gets a health of its own:
- `unresponsive` when its /health did not answer within HEALTH_TIMEOUT_S, UNRESPONSIVE_AFTER
  times in a row (a hung or SIGSTOPped engine);
- `degraded` when pdtui's proxy reports it not healthy in its /health JSON (each backend
  has a `state`, e.g. "unhealthy", or a prefiller whose KV notifications time out), with
  the proxy's last error as the detail.
Checks run on a thread of their own (one round at a time), never on the monitor's tick.
"""

from __future__ import annotations

import json
import threading
import time

from pdtui.runtime.readiness import probe_health
from pdtui.runtime.status import InstanceHealth, InstanceState

HEALTH_CHECK_S = 2.0
HEALTH_TIMEOUT_S = 2.0
UNRESPONSIVE_AFTER = 2
# Proxy backend states that mean "fine" (or not known yet).
_PROXY_OK = ("healthy", "unknown")


def proxy_health(url: str, timeout_s: float = HEALTH_TIMEOUT_S) -> dict | None:
    """The proxy's /health JSON (it answers 200 or 503 with the same body), None if none."""
    import http.client  # here, like probe_health's: not on the way to the first spawn
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s)
    try:
        conn.request("GET", parts.path or "/health")
        body = conn.getresponse().read()
        data = json.loads(body)
        return data if isinstance(data, dict) else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def _base(url: str) -> str:
    return url.rsplit("/health", 1)[0].rstrip("/")


class HealthChecker:
    def __init__(self, sup) -> None:
        self.sup = sup
        self._last = 0.0
        self._running = threading.Lock()

    def maybe_check(self, now: float) -> None:
        if now - self._last < HEALTH_CHECK_S or self.sup._read_only:
            return
        if not self._running.acquire(blocking=False):
            return  # the previous round still waits on a timeout
        self._last = now
        threading.Thread(target=self._round, name="pdtui-health", daemon=True).start()

    def _round(self) -> None:
        try:
            self.check_once()
        finally:
            self._running.release()

    def check_once(self) -> None:
        sup = self.sup
        S = InstanceState
        ready = [m for m in sup._members.values() if m.status.state == S.READY and m.spec.health_url]
        proxy_view: dict[str, dict] = {}
        for member in ready:
            if member.spec.is_proxy:
                report = proxy_health(member.spec.health_url)
                for entry in (report or {}).get("prefillers", []) + (report or {}).get("decoders", []):
                    if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                        proxy_view[_base(entry["url"])] = entry
        for member in ready:
            generation = member.generation
            answered = probe_health(member.spec.health_url, HEALTH_TIMEOUT_S, any_status=member.spec.is_proxy)
            with sup._lock:
                member.health_failures = 0 if answered else member.health_failures + 1
                failures = member.health_failures
            health, detail = None, None
            if failures >= UNRESPONSIVE_AFTER:
                health = InstanceHealth.UNRESPONSIVE.value
                detail = f"its /health did not answer within {HEALTH_TIMEOUT_S:g} s ({failures} checks in a row)"
            else:
                entry = proxy_view.get(_base(member.spec.health_url))
                # The proxy checks every few seconds: a verdict from before this instance
                # became ready (it was still starting then) says nothing about it now.
                since = entry.get("last_checked") if entry is not None else None
                fresh = isinstance(since, (int, float)) and since >= (member.status.ready_at or 0.0)
                if entry is not None and fresh and str(entry.get("state")) not in _PROXY_OK:
                    health = InstanceHealth.DEGRADED.value
                    error = entry.get("last_error")
                    detail = f"the proxy reports it {entry.get('state')}" + (f": {error}" if error else "")
            if (member.status.health, member.status.health_detail) != (health, detail):
                sup._transition(member, generation, (S.READY,), health=health, health_detail=detail)
        self._last = time.monotonic()
