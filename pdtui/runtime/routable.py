"""Does the proxy route to this instance? The one question behind "ready" and "restarted".

pdtui's proxy answers `POST /backends/check?url=URL`: it health-checks that backend at
once and answers 200 when it is routable, 503 when not (yet), 400 when the URL is not one
of its backends. A proxy that is not pdtui's, or one that predates the route (404/405),
is asked the slower way: its /health listing, which it refreshes every health round.
Blocking HTTP with short timeouts; callers loop (see starting.py)."""

from __future__ import annotations

import http.client
import json
import urllib.parse

CHECK_TIMEOUT_S = 3.0


def base_url(url: str) -> str:
    """http://host:port of a /health URL (how the proxy names its backends)."""
    return url.rsplit("/health", 1)[0].rstrip("/")


def _request(method: str, url: str, timeout_s: float) -> tuple[int | None, dict]:
    """(HTTP status, JSON body or {}); (None, {}) when nothing answered."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.request(method, path)
        response = conn.getresponse()
        raw = response.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        return response.status, body if isinstance(body, dict) else {}
    except (OSError, http.client.HTTPException):
        return None, {}
    finally:
        conn.close()


def _listed(report: dict, backend: str) -> dict | None:
    for entry in list(report.get("prefillers", [])) + list(report.get("decoders", [])):
        if isinstance(entry, dict) and base_url(str(entry.get("url", ""))) == backend:
            return entry
    return None


def routes_to(proxy_health_url: str, backend: str, since: float) -> tuple[bool, str]:
    """(True, "") when the proxy routes to `backend` (a base URL) now, or does not route to
    it at all (not one of its backends: nothing to wait for); else (False, why not).
    since: wall time after which a /health listing's verdict counts (the fallback)."""
    proxy = base_url(proxy_health_url)
    status, body = _request("POST", f"{proxy}/backends/check?" + urllib.parse.urlencode({"url": backend}), CHECK_TIMEOUT_S)
    if status == 200:
        return True, ""
    if status == 400:
        return True, ""  # not one of its backends
    if status == 503:
        verdicts = [c for c in body.get("checked", []) if isinstance(c, dict)]
        error = verdicts[0].get("last_error") if verdicts else None
        return False, f"the proxy's check of it failed: {error}" if error else "the proxy does not route to it yet"
    # Not pdtui's proxy (or an older one), or it did not answer: read its /health listing.
    status, report = _request("GET", proxy_health_url, CHECK_TIMEOUT_S)
    if status is None:
        return False, "the proxy's /health does not answer"
    entry = _listed(report, backend)
    if entry is None:
        return True, ""
    checked = entry.get("last_checked")
    if entry.get("state") == "healthy" and isinstance(checked, (int, float)) and checked >= since:
        return True, ""
    return False, f"the proxy lists it {entry.get('state')}" + (f": {entry['last_error']}" if entry.get("last_error") else "")
