"""Prefillers whose KV-ready notifications time out: stop routing to them, probe, re-admit.

A prefiller can answer /health and every prefill while its notifications never reach
the proxy (a wrong pd_proxy_port, a dropped ZMQ peer): then every request through it
waits the whole kv_wait timeout and fails. After `threshold` such timeouts in a row it
is marked degraded (routing skips it, GET /health says why). Every `probe_s` a
one-token request goes through it (tokenize, prefill, KV wait, decoder drain: the real
path); when its notifications arrive it is routable again. A request that was already
on its way there and gets its notifications re-admits it just as well.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pdtui.proxy.backends import HEALTH_DEGRADED, HEALTH_DOWN, HEALTH_UP, Backend

log = logging.getLogger(__name__)

Probe = Callable[[Backend], Awaitable[str | None]]  # None when it passed, else why not


class KvDegrade:
    def __init__(self, threshold: int, probe_s: float, kv_timeout_s: float,
                 on_change: Callable[[Backend], None]) -> None:
        self.threshold = threshold
        self.probe_s = probe_s
        self.kv_timeout_s = kv_timeout_s
        self._on_change = on_change
        self.probe: Probe | None = None
        self._probes: dict[str, asyncio.Task] = {}

    def kv_ok(self, p: Backend) -> None:
        p.kv_timeouts = 0
        if p.state == HEALTH_DEGRADED:
            self._set(p, HEALTH_UP, None)
            log.warning("prefiller %s re-admitted: a request through it got its KV-ready "
                        "notifications again", p.url)

    def kv_timed_out(self, p: Backend, req_id: str) -> None:
        p.kv_timeouts += 1
        if p.kv_timeouts < self.threshold or p.state in (HEALTH_DEGRADED, HEALTH_DOWN):
            return
        reason = (f"{p.kv_timeouts} requests in a row got no KV-ready notification within "
                  f"{self.kv_timeout_s:g} s (last: {req_id}); not routed to until a probe "
                  "request gets its notifications")
        self._set(p, HEALTH_DEGRADED, reason)
        log.warning("prefiller %s degraded: %s (probe every %g s)", p.url, reason, self.probe_s)
        if self.probe is not None and p.url not in self._probes:
            self._probes[p.url] = asyncio.get_running_loop().create_task(
                self._probe_loop(p), name=f"proxy-kv-probe {p.url}")

    def _set(self, p: Backend, state: str, error: str | None) -> None:
        if p.set_state(state, error):
            self._on_change(p)

    async def _probe_loop(self, p: Backend) -> None:
        try:
            while p.state == HEALTH_DEGRADED:
                await asyncio.sleep(self.probe_s)
                if p.state != HEALTH_DEGRADED or self.probe is None:
                    break
                try:
                    why = await self.probe(p)
                except Exception as exc:  # a probe that breaks must not end re-admission
                    why = f"probe failed: {exc!r}"
                if why is None:
                    self.kv_ok(p)
                elif p.state == HEALTH_DEGRADED:
                    p.last_error = f"{p.last_error.split(' | probe: ')[0]} | probe: {why}" \
                        if p.last_error else why
                    log.warning("prefiller %s still degraded: probe: %s", p.url, why)
        finally:
            self._probes.pop(p.url, None)

    async def stop(self) -> None:
        for task in list(self._probes.values()):
            task.cancel()
        for task in list(self._probes.values()):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
