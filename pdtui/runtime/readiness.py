"""Is a process ready? One HTTP GET of its health URL (blocking, short timeout)."""

from __future__ import annotations



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
