"""Is a process ready? One HTTP GET of its health URL (blocking, short timeout); the
supervisor's health rounds keep their connections (`KeptAliveGets`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import http.client


def probe_health(url: str, timeout_s: float = 1.0, any_status: bool = False) -> bool:
    """True when url answers 200 (or any HTTP status when any_status: the proxy answers
    503 until it sees a healthy prefiller and decoder, but it is up)."""
    # Imported here: http.client pulls in ssl, and nothing needs it before the first spawn.
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s)
    try:
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        response.read()
        return any_status or response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class KeptAliveGets:
    """GETs of health URLs over one kept-alive connection per host and port, so a health
    round every 2 s opens no connection (and the engine closes none). For one thread."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._conns: dict[tuple[str, int], http.client.HTTPConnection] = {}
        self.connects = 0  # connections opened (tests)

    def get(self, url: str) -> tuple[int, bytes] | None:
        """(status, body), or None when it did not answer (refused, timed out, broken)."""
        import http.client
        import urllib.parse

        parts = urllib.parse.urlsplit(url)
        key = (parts.hostname or "127.0.0.1", parts.port or 80)
        conn = self._conns.pop(key, None)
        reused = conn is not None
        while True:
            if conn is None:
                conn = http.client.HTTPConnection(key[0], key[1], timeout=self.timeout_s)
                self.connects += 1
            try:
                conn.request("GET", parts.path or "/")
                response = conn.getresponse()
                body = response.read()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                conn.close()
                conn = None
                if reused:  # the server closed it while it sat idle: once more, on a new one
                    reused = False
                    continue
                return None
            except (OSError, http.client.HTTPException):  # a timeout is not retried
                conn.close()
                return None
            if response.will_close:
                conn.close()
            else:
                self._conns[key] = conn
            return response.status, body

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
