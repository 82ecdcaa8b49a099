"""The proxy's shared state and its backend calls (one keep-alive ClientSession).

Every backend call goes through here so that timeouts, error mapping, the
outstanding-request counts and the per-backend metrics are the same everywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

import aiohttp
from yarl import URL

from pdtui.proxy.backend_http import BackendHttp, ConnectionBudget, Disconnected
from pdtui.proxy.backends import HEALTH_DOWN, Backend, BackendPool
from pdtui.proxy.config import ProxyConfig
from pdtui.proxy.degrade import KvDegrade
from pdtui.proxy.errors import BackendUnreachable, StageError, backend_status, stage_timeout
from pdtui.proxy.health import HealthChecker, local_failure
from pdtui.proxy.metrics import ProxyMetrics
from pdtui.proxy.notifications import KvReadyWaiters, ProxyNotifListener
from pdtui.proxy.timeline import TimelineHub

log = logging.getLogger(__name__)


class ProxyService:
    def __init__(self, config: ProxyConfig, backend_connections: int = 0) -> None:
        self.config = config
        # 0 = no cap; the server sets one from the open-files budget (resources.py)
        self._backend_connections = backend_connections
        self.flow: Any = None  # set by build_app; the degraded-prefiller probe goes through it
        self.pool = BackendPool(config.prefillers, config.decoders, config.routing)
        self.metrics = ProxyMetrics()
        self.hub = TimelineHub(history=config.timeline_history)
        self.waiters = KvReadyWaiters()
        self.listener: ProxyNotifListener | None = None
        self.session: aiohttp.ClientSession | None = None
        self.health: HealthChecker | None = None
        self.auth_headers: dict[str, str] = (
            {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        )
        for b in self.pool.all:
            b.metrics = self.metrics.backend(b.role, b.url, outstanding=_reader(b))
            self._publish_health(b)
        self.degrade = KvDegrade(config.kv_timeouts_to_degrade, config.degraded_probe_s,
                                 config.timeouts.kv_s, self._on_health_change)
        self._health_session: aiohttp.ClientSession | None = None
        self._urls: dict[tuple[str, str], URL] = {}
        # Whole-answer calls over plain HTTP go through the lean client (backend_http.py).
        self._budget = ConnectionBudget(backend_connections)
        self._lean: dict[str, BackendHttp] = {
            b.url: self._budget.pool(b.url) for b in self.pool.all
            if b.url.startswith("http://")}
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        if self.config.mode == "lmcache-pd":
            self.listener = ProxyNotifListener(
                self.config.zmq_host, self.config.zmq_port, self.waiters,
                observe=self.metrics.count_notification,
            )
            self.listener.start()
        connector = aiohttp.TCPConnector(limit=self._backend_connections, keepalive_timeout=60,
                                         enable_cleanup_closed=True)
        # No cookie jar: backends set none worth keeping, and a jar is consulted on every
        # request and response.
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None),
            json_serialize=json.dumps, auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # Health checks get a session of their own: one kept-alive connection per backend
        # that requests in flight can never crowd out.
        self._health_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=2, keepalive_timeout=60),
            auto_decompress=False,
        )
        if self.flow is not None and hasattr(self.flow, "probe"):
            self.degrade.probe = self.flow.probe
        self.health = HealthChecker(
            self._health_session, self.pool.all, self.config.health_interval_s,
            self.config.health_timeout_s, on_change=self._on_health_change,
            headers=self.auth_headers,
        )
        self.health.start()

    async def stop(self) -> None:
        await self.degrade.stop()
        if self.health is not None:
            await self.health.stop()
        if self.listener is not None:
            await self.listener.stop()
        self._budget.close()
        if self.session is not None:
            await self.session.close()
        if self._health_session is not None:
            await self._health_session.close()

    async def check_now(self, backends: list[Backend]) -> None:
        """Health-check these backends at once (POST /backends/check), not at the next round."""
        if self.health is not None:
            await asyncio.gather(*(self.health.check(b) for b in backends))

    def _on_health_change(self, backend: Backend) -> None:
        self._publish_health(backend)
        self.hub.emit({
            "type": "backend", "req_id": "-", "stage": "health", "state": backend.state,
            "backend": backend.url, "role": backend.role, "detail": backend.last_error,
            "ts": backend.last_change,
        })

    def _publish_health(self, backend: Backend) -> None:
        value = {"healthy": 1, "unhealthy": 0, "degraded": 0}.get(backend.state, -1)
        backend.metrics.healthy.set(value)

    def mark_unreachable(self, backend: Backend, error: str) -> None:
        """Passive health: a failed connection takes the backend out until a check passes."""
        if self.health is not None:
            self.health.mark(backend, HEALTH_DOWN, error)
        elif backend.set_state(HEALTH_DOWN, error):
            self._on_health_change(backend)

    def outstanding(self, backend: Backend) -> _Outstanding:
        """`with svc.outstanding(b):` counts a request in flight at b and its outcome."""
        return _Outstanding(backend)

    async def unless_down(self, backend: Backend, awaitable, stage: str, why: str):
        """Await `awaitable`, but give up with BackendUnreachable if `backend` goes down.

        A prefiller writing KV to a decoder that died blocks until its own timeouts;
        aborting (which cancels the prefill at the prefiller) lets the request be
        retried on a live decoder instead. The backend cancels this task when it is
        marked down, so no second task races the work.
        """
        if backend.state == HEALTH_DOWN:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise BackendUnreachable(stage, backend.url, backend.last_error or "marked down")
        task = asyncio.current_task()
        assert task is not None
        watch = backend.watch(task)
        try:
            return await awaitable
        except asyncio.CancelledError:
            # Ours only if nobody else (a client hanging up) cancelled the task too.
            if watch.fired and task.uncancel() == 0:
                raise BackendUnreachable(
                    stage, backend.url, f"{why}: {backend.last_error or 'marked down'}"
                ) from None
            raise
        finally:
            backend.unwatch(watch)

    def _unreachable(self, backend: Backend, stage: str, path: str,
                     exc: Exception) -> StageError:
        if local_failure(exc):
            # Out of file descriptors (or memory) here: the backend is not to blame, so it
            # stays routable, and the client hears that this proxy is overloaded.
            return StageError(503, stage, backend.url,
                              f"{stage}: this proxy cannot open a connection to {backend.url} "
                              f"now: {exc}", "backend_unavailable")
        self.mark_unreachable(backend, f"POST {path}: {exc}")
        return BackendUnreachable(stage, backend.url, str(exc))

    def headers(self, req_id: str) -> dict[str, str]:
        """The headers of every request to a backend (the body is always JSON)."""
        return {**self.auth_headers, "X-Request-Id": req_id, "Content-Type": "application/json"}

    def _url(self, backend: Backend, path: str) -> URL:
        """Parsed once per backend and path, not per request (aiohttp parses a str URL)."""
        url = self._urls.get((backend.url, path))
        if url is None:
            url = self._urls[(backend.url, path)] = URL(backend.url + path)
        return url

    def _timeout(self, total: float | None, read: float | None = None) -> aiohttp.ClientTimeout:
        key = (total, read)
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=total, sock_connect=read, sock_read=read)
        return timeout

    def _lean_failure(self, exc: OSError, backend: Backend, stage: str, path: str,
                      timeout_s: float) -> StageError:
        """A failed call of the lean client as the stage error aiohttp's would have given."""
        if isinstance(exc, TimeoutError):
            return stage_timeout(stage, backend.url, timeout_s, f"the answer to POST {path}")
        if isinstance(exc, Disconnected) and not exc.before_answer:
            return StageError(502, stage, backend.url, f"{stage}: POST {path} failed: {exc}",
                              "backend_error")
        return self._unreachable(backend, stage, path, exc)  # no connection, or closed unanswered

    async def post_json(self, backend: Backend, path: str, body: dict | bytes, *, stage: str,
                        timeout_s: float, req_id: str) -> dict:
        """POST (a dict, or JSON already encoded) and read a whole JSON answer, with
        `timeout_s` for all of it."""
        assert self.session is not None
        lean = self._lean.get(backend.url)
        if lean is not None:
            try:
                status, data = await lean.post(path, _encoded(body), self.headers(req_id),
                                               timeout_s=timeout_s)
            except OSError as exc:  # TimeoutError and Disconnected are OSErrors too
                raise self._lean_failure(exc, backend, stage, path, timeout_s) from None
            if status != 200:
                raise backend_status(stage, backend.url, status, data.decode("utf-8", "replace"))
            return _json_object(data, stage, backend.url, path)
        try:
            async with self.session.post(
                self._url(backend, path), data=_encoded(body), headers=self.headers(req_id),
                timeout=self._timeout(timeout_s),
            ) as resp:
                data = await resp.read()
                if resp.status != 200:
                    raise backend_status(stage, backend.url, resp.status,
                                         data.decode("utf-8", "replace"))
        except asyncio.TimeoutError:
            raise stage_timeout(stage, backend.url, timeout_s, f"the answer to POST {path}") from None
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            raise self._unreachable(backend, stage, path, exc) from None
        except aiohttp.ClientError as exc:
            raise StageError(502, stage, backend.url, f"{stage}: POST {path} failed: {exc}",
                             "backend_error") from None
        return _json_object(data, stage, backend.url, path)

    async def open_stream(self, backend: Backend, path: str, body: dict | bytes, *, stage: str,
                          timeout_s: float, req_id: str) -> aiohttp.ClientResponse:
        """POST and return the response once its status line is in (caller closes it).

        `timeout_s` bounds every wait for data: the status line, the first byte and
        each silence between chunks afterwards (aiohttp's sock_read timer).
        """
        assert self.session is not None
        lean = self._lean.get(backend.url)
        if lean is not None:
            try:
                answer = await lean.post_stream(path, _encoded(body), self.headers(req_id),
                                                read_timeout_s=timeout_s)
            except OSError as exc:  # TimeoutError and Disconnected are OSErrors too
                raise self._lean_failure(exc, backend, stage, path, timeout_s) from None
            if answer.status != 200:
                try:
                    text = await answer.text()
                except (TimeoutError, ConnectionError):
                    text = ""
                finally:
                    answer.release()
                raise backend_status(stage, backend.url, answer.status, text)
            return cast(aiohttp.ClientResponse, answer)  # the same surface (StreamAnswer)
        try:
            resp = await self.session.post(
                self._url(backend, path), data=_encoded(body), headers=self.headers(req_id),
                timeout=self._timeout(None, timeout_s),
            )
        except asyncio.TimeoutError:
            raise stage_timeout(stage, backend.url, timeout_s, f"the answer to POST {path}") from None
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            raise self._unreachable(backend, stage, path, exc) from None
        except aiohttp.ClientError as exc:
            raise StageError(502, stage, backend.url, f"{stage}: POST {path} failed: {exc}",
                             "backend_error") from None
        if resp.status != 200:
            try:
                text = await resp.text()
            except (asyncio.TimeoutError, aiohttp.ClientError):
                text = ""
            finally:
                resp.release()
            raise backend_status(stage, backend.url, resp.status, text)
        return resp


def _reader(backend: Backend):
    return lambda: backend.outstanding


def _json_object(data: bytes, stage: str, url: str, path: str) -> dict:
    try:
        # decoded here: json.loads(bytes) first guesses the encoding (in Python); JSON
        # between systems is UTF-8 (RFC 8259), and a decode error is a ValueError too
        obj = json.loads(data.decode("utf-8"))
    except ValueError:
        raise StageError(502, stage, url, f"{stage}: {url}{path} answered non-JSON: "
                         f"{data[:200].decode('utf-8', 'replace')!r}", "backend_error") from None
    if not isinstance(obj, dict):
        raise StageError(502, stage, url, f"{stage}: {url}{path} answered "
                         f"{type(obj).__name__}, expected a JSON object", "backend_error")
    return obj


def _encoded(body: dict | bytes) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


class _Outstanding:
    __slots__ = ("backend",)

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __enter__(self) -> None:
        b = self.backend
        b.outstanding += 1  # the gauge reads it when scraped

    def __exit__(self, exc_type, exc, tb) -> None:
        b = self.backend
        b.outstanding -= 1
        b.served += 1
        if exc_type is None:
            outcome = "ok"
        elif issubclass(exc_type, asyncio.CancelledError):
            outcome = "cancelled"
        elif isinstance(exc, StageError):
            outcome = exc.outcome
        else:
            outcome = "error"
        b.metrics.count(outcome)
