"""Backends and routing: round-robin or least-outstanding, sticky by header, skip unhealthy."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pdtui.proxy.config import DecoderSpec, PrefillerSpec

HEALTH_UNKNOWN = "unknown"
HEALTH_UP = "healthy"
HEALTH_DOWN = "unhealthy"
# Answers /health but its KV-ready notifications keep timing out (a prefiller): not routed
# to until a probe request through it gets its notifications again.
HEALTH_DEGRADED = "degraded"


class _Watch:
    """A task waiting on work that is pointless once this backend is down."""

    __slots__ = ("task", "fired")

    def __init__(self, task: asyncio.Task) -> None:
        self.task = task
        self.fired = False


@dataclass
class Backend:
    role: str  # "prefiller" | "decoder"
    url: str
    init_ports: tuple[int, ...] = ()
    alloc_ports: tuple[int, ...] = ()
    host: str = "127.0.0.1"
    state: str = HEALTH_UNKNOWN
    last_error: str | None = None
    last_checked: float | None = None
    last_change: float = field(default_factory=time.time)
    outstanding: int = 0
    served: int = 0
    # consecutive kv_wait timeouts of requests through this prefiller
    kv_timeouts: int = 0
    # consecutive /health checks that timed out (one alone may be this proxy's own load)
    health_timeouts: int = 0
    # consecutive streams that stayed open past `[DONE]` (streaming.finish_backend_response)
    slow_tails: int = 0
    # this backend's Prometheus label children (metrics.BackendMetrics), set by the service
    metrics: Any = field(default=None, repr=False, compare=False)
    _watches: set[_Watch] = field(default_factory=set, repr=False)

    def watch(self, task: asyncio.Task) -> _Watch:
        """Cancel `task` when this backend goes down (see ProxyService.unless_down).

        A callback instead of a second task racing the work: no task per stage."""
        w = _Watch(task)
        self._watches.add(w)
        return w

    def unwatch(self, w: _Watch) -> None:
        self._watches.discard(w)

    @property
    def tp_ranks(self) -> int:
        return len(self.init_ports)

    @property
    def routable(self) -> bool:
        # Unknown counts as routable so the first requests after start are not refused
        # before the first health round has finished.
        return self.state != HEALTH_DOWN and self.state != HEALTH_DEGRADED

    def set_state(self, state: str, error: str | None = None, *, abort_in_flight: bool = True) -> bool:
        """Returns True when the state changed. Going down aborts the requests running
        here (they are retried elsewhere) unless `abort_in_flight` is False: a backend that
        is only slow to answer /health is still working on them."""
        self.last_checked = time.time()
        self.last_error = error
        if state != self.state:
            self.state = state
            self.last_change = self.last_checked
            if state == HEALTH_DOWN and abort_in_flight and self._watches:
                for w in self._watches:
                    w.fired = True
                    w.task.cancel()
                self._watches.clear()
            return True
        return False

    def as_dict(self) -> dict:
        out = {
            "url": self.url,
            "role": self.role,
            "state": self.state,
            "outstanding": self.outstanding,
            "served": self.served,
            "last_error": self.last_error,
            "last_checked": self.last_checked,
            "last_change": self.last_change,
        }
        if self.role == "decoder" and self.init_ports:
            out["init_ports"] = list(self.init_ports)
            out["alloc_ports"] = list(self.alloc_ports)
        return out


class NoBackendError(Exception):
    def __init__(self, role: str, total: int) -> None:
        super().__init__(
            f"no healthy {role} (0 of {total} healthy); see GET /health for each backend's last error"
        )
        self.role = role


class _RolePicker:
    def __init__(self, backends: list[Backend], policy: str) -> None:
        self.backends = backends
        self.policy = policy
        self._next = 0

    def pick(self, exclude: set[str] | frozenset[str] = frozenset()) -> Backend:
        candidates = [b for b in self.backends if b.routable and b.url not in exclude]
        if not candidates:
            raise NoBackendError(self.backends[0].role, len(self.backends))
        start = self._next
        self._next += 1
        if self.policy == "least-outstanding":
            # Rotate before taking the minimum so ties spread round-robin.
            k = start % len(candidates)
            rotated = candidates[k:] + candidates[:k]
            return min(rotated, key=lambda b: b.outstanding)
        return candidates[start % len(candidates)]


class BackendPool:
    def __init__(
        self,
        prefillers: tuple[PrefillerSpec, ...],
        decoders: tuple[DecoderSpec, ...],
        policy: str = "round-robin",
        max_sticky: int = 65_536,
    ) -> None:
        self.prefillers = [Backend("prefiller", p.url) for p in prefillers]
        self.decoders = [
            Backend("decoder", d.url, d.init_ports, d.alloc_ports, host=d.host) for d in decoders
        ]
        self._p = _RolePicker(self.prefillers, policy)
        self._d = _RolePicker(self.decoders, policy)
        self._sticky: OrderedDict[str, tuple[Backend, Backend]] = OrderedDict()
        self._max_sticky = max_sticky
        self._tok_turn = 0  # tokenizer(): 1 = the prefiller's turn was last

    @property
    def all(self) -> list[Backend]:
        return self.prefillers + self.decoders

    def pick(
        self, sticky_key: str | None = None, exclude: set[str] | frozenset[str] = frozenset()
    ) -> tuple[Backend, Backend]:
        """A (prefiller, decoder) pair; the same pair for a sticky key while both are healthy."""
        if sticky_key is not None:
            pair = self._sticky.get(sticky_key)
            if (
                pair is not None
                and all(b.routable and b.url not in exclude for b in pair)
            ):
                self._sticky.move_to_end(sticky_key)
                return pair
        pair = (self._p.pick(exclude), self._d.pick(exclude))
        if sticky_key is not None:
            self._sticky[sticky_key] = pair
            self._sticky.move_to_end(sticky_key)
            while len(self._sticky) > self._max_sticky:
                self._sticky.popitem(last=False)
        return pair

    def tokenizer(self, p: Backend, d: Backend) -> Backend:
        """Who tokenizes a request routed to (p, d): p and d in turn.

        Tokenizing on the prefiller alone makes it serve two HTTP requests per proxied one
        while the decoder serves one; it is the first to run out of CPU (its API server
        parses, tokenizes and answers both). LMCache's example proxy spreads /tokenize
        round-robin over every prefiller and decoder; taking turns within the request's own
        pair does the same over many requests (the pairs are spread already) and never
        involves a third backend, so a backend this request was not routed to cannot fail
        it, and a degraded prefiller or a sticky pair is kept out of it as for the rest.
        Every engine of a deployment serves the same model, hence the same tokenizer."""
        self._tok_turn ^= 1
        return d if self._tok_turn == 0 else p

    def pick_decoder(self) -> Backend:
        return self._d.pick()

    def find(self, url: str) -> Backend | None:
        url = url.rstrip("/")
        return next((b for b in self.all if b.url == url), None)

    def ready(self) -> bool:
        return any(b.state == HEALTH_UP for b in self.prefillers) and any(
            b.state == HEALTH_UP for b in self.decoders
        )
