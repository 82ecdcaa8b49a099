"""How ready instances answer: their own /health, and what the proxy says of them.

An instance stays `ready` (its process runs), and gets a health of its own:
- `unresponsive` when its /health did not answer within HEALTH_TIMEOUT_S, UNRESPONSIVE_AFTER
  times in a row (a hung or SIGSTOPped engine);
- `degraded` when pdtui's proxy reports it not healthy in its /health JSON (each backend
  has a `state`, e.g. "unhealthy", or a prefiller whose KV notifications time out), with
  the proxy's last error as the detail.
The proxy GETs every engine's /health itself: where its report says an engine answered
within VOUCH_S, that answer stands in for ours, so a round of an idle 1P1D costs one GET
(the proxy's /health) instead of three, and each engine's log one /health line per
interval instead of two. An engine the proxy does not vouch for is asked directly.
Checks run on a thread of their own (one round at a time), never on the monitor's tick.
"""

from __future__ import annotations

import json
import threading
import time

from pdtui.runtime.readiness import KeptAliveGets
from pdtui.runtime.status import InstanceHealth, InstanceState

HEALTH_CHECK_S = 2.0
HEALTH_TIMEOUT_S = 2.0
UNRESPONSIVE_AFTER = 2
EARLY_S = 0.25
IDLE_EXIT_S = 30.0
# How recent the proxy's own successful /health check of an engine must be to stand in
# for ours: its interval (PROXY_HEALTH_INTERVAL_S, 2 s) plus a check's time. A proxy run
# with a longer --health-interval is simply not trusted, and we GET the engine ourselves.
VOUCH_S = 3.0  # the rounds' thread ends after this long without a round
# Proxy backend states that mean "fine" (or not known yet).
_PROXY_OK = ("healthy", "unknown")


def _base(url: str) -> str:
    return url.rsplit("/health", 1)[0].rstrip("/")


def _vouched(entry: dict | None, now: float, ready_at: float | None) -> bool:
    """The proxy found this engine healthy within VOUCH_S, and since it became ready."""
    if entry is None or entry.get("state") != "healthy":
        return False
    checked = entry.get("last_checked")
    if not isinstance(checked, (int, float)) or isinstance(checked, bool):
        return False
    return now - VOUCH_S <= checked <= now + 1.0 and checked >= (ready_at or 0.0)


class HealthChecker:
    """Health rounds on one thread of its own, started with the first round and ended by
    close(): a new thread and new connections every 2 s cost an idle UI more than
    everything else it does in the background. The thread keeps one connection per
    instance open between rounds."""

    def __init__(self, sup) -> None:
        self.sup = sup
        self._last = 0.0
        self._running = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._gets = KeptAliveGets(HEALTH_TIMEOUT_S)

    def maybe_check(self, now: float) -> None:
        # Due a little early rather than a tick late: the idle tick is as long as the
        # interval, and a round's end (its `_last`) lags the tick that asked for it.
        if now - self._last < HEALTH_CHECK_S - EARLY_S or self.sup._read_only or self._closed:
            return
        if not self._running.acquire(blocking=False):
            return  # the previous round still waits on a timeout
        self._last = now
        if self._thread is None:
            self._thread = threading.Thread(target=self._rounds, name="pdtui-health", daemon=True)
            self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """End the thread (after a round in progress) and its connections."""
        self._closed = True
        self._wake.set()

    def _rounds(self) -> None:
        while True:
            if not self._wake.wait(IDLE_EXIT_S):
                # No round asked for in a while (its supervisor is gone without close()):
                # end, unless one is being asked for right now (it holds the lock then).
                if self._running.acquire(blocking=False):
                    self._gets.close()  # before a next round's thread can use them
                    self._thread = None
                    self._running.release()
                    return
                continue
            self._wake.clear()
            if self._closed:
                self._gets.close()
                return
            try:
                self.check_once()
            finally:
                self._running.release()

    def _answers(self, url: str, any_status: bool) -> bool:
        answer = self._gets.get(url)
        return answer is not None and (any_status or answer[0] == 200)

    def _proxy_report(self, url: str) -> tuple[bool, dict | None]:
        """Whether the proxy answered (200 or 503, with the same JSON body), and its report."""
        answer = self._gets.get(url)
        try:
            data = json.loads(answer[1]) if answer is not None else None
        except ValueError:
            data = None
        return answer is not None, data if isinstance(data, dict) else None

    def check_once(self) -> None:
        sup = self.sup
        S = InstanceState
        ready = [m for m in sup._members.values() if m.status.state == S.READY and m.spec.health_url]
        proxy_view: dict[str, dict] = {}
        proxy_answered: dict[str, bool] = {}
        for member in ready:
            if member.spec.is_proxy:
                answered, report = self._proxy_report(member.spec.health_url)
                proxy_answered[member.spec.name] = answered
                for entry in (report or {}).get("prefillers", []) + (report or {}).get("decoders", []):
                    if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                        proxy_view[_base(entry["url"])] = entry
        now = time.time()
        for member in ready:
            generation = member.generation
            entry = proxy_view.get(_base(member.spec.health_url))
            if member.spec.is_proxy:
                answered = proxy_answered[member.spec.name]
            else:
                # The proxy GETs each engine's /health every PROXY_HEALTH_INTERVAL_S: a
                # fresh "healthy" from it is an answer, and a second GET of ours would only
                # add CPU here and a line to the engine's log. Otherwise we ask ourselves.
                answered = _vouched(entry, now, member.status.ready_at) or self._answers(member.spec.health_url, False)
            with sup._lock:
                member.health_failures = 0 if answered else member.health_failures + 1
                failures = member.health_failures
            health, detail = None, None
            if failures >= UNRESPONSIVE_AFTER:
                health = InstanceHealth.UNRESPONSIVE.value
                detail = f"its /health did not answer within {HEALTH_TIMEOUT_S:g} s ({failures} checks in a row)"
            else:
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
