"""OpenAI-style requests through pdtui's proxy, one at a time, with per-request results.

Standard library only (http.client), so the acceptance run needs nothing beyond pdtui's own
dependencies on a bare GPU box. Streaming responses are read event by event so the time to
the first token is measured where the client sees it.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from dataclasses import asdict, dataclass, field


@dataclass
class RequestResult:
    index: int
    route: str  # "completions" | "chat"
    stream: bool
    status: int | None = None
    seconds: float | None = None
    ttft_seconds: float | None = None  # first content chunk (stream) or whole body
    sse_events: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    text: str = ""
    error: str | None = None
    finish_reason: str | None = None
    ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None and self.completion_tokens is not None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        out["text"] = self.text[:200]
        return out


def _connection(base_url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    url = urllib.parse.urlsplit(base_url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=timeout), url.path.rstrip("/")


def get_json(base_url: str, path: str, timeout: float = 10.0) -> dict:
    conn, prefix = _connection(base_url, timeout)
    try:
        conn.request("GET", prefix + path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {resp.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


def get_text(base_url: str, path: str, timeout: float = 10.0) -> str:
    conn, prefix = _connection(base_url, timeout)
    try:
        conn.request("GET", prefix + path)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", errors="replace")
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {resp.status}: {body[:200]!r}")
        return body
    finally:
        conn.close()


def _take_choice(result: RequestResult, chunk: dict, chat: bool) -> str:
    if chunk.get("id"):
        if not result.ids or result.ids[-1] != chunk["id"]:
            result.ids.append(chunk["id"])
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        result.prompt_tokens = usage.get("prompt_tokens")
        result.completion_tokens = usage.get("completion_tokens")
    text = ""
    for choice in chunk.get("choices") or []:
        if chat:
            part = choice.get("delta") or choice.get("message") or {}
            text += part.get("content") or ""
        else:
            text += choice.get("text") or ""
        if choice.get("finish_reason"):
            result.finish_reason = choice["finish_reason"]
    return text


def send(base_url: str, index: int, route: str, stream: bool, model: str, prompt: str,
         max_tokens: int, timeout: float = 300.0) -> RequestResult:
    """One request; never raises: what went wrong is in `.error`."""
    chat = route == "chat"
    body: dict = {"model": model, "max_tokens": max_tokens, "stream": stream, "temperature": 0}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if stream:
        body["stream_options"] = {"include_usage": True}
    path = "/v1/chat/completions" if chat else "/v1/completions"
    result = RequestResult(index=index, route=route, stream=stream)
    conn, prefix = _connection(base_url, timeout)
    t0 = time.monotonic()
    try:
        conn.request("POST", prefix + path, body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        result.status = resp.status
        if resp.status != 200:
            result.error = f"HTTP {resp.status}: {resp.read()[:300].decode('utf-8', 'replace')}"
            return result
        if not stream:
            payload = json.loads(resp.read())
            result.ttft_seconds = time.monotonic() - t0
            result.text = _take_choice(result, payload, chat)
            return result
        for raw in resp:  # SSE: "data: {...}" lines separated by blank lines
            line = raw.decode("utf-8", errors="replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            result.sse_events += 1
            chunk = json.loads(data)
            if "error" in chunk:
                result.error = f"error event: {json.dumps(chunk['error'])[:300]}"
                break
            piece = _take_choice(result, chunk, chat)
            if piece and result.ttft_seconds is None:
                result.ttft_seconds = time.monotonic() - t0
            result.text += piece
        return result
    except (OSError, http.client.HTTPException, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    finally:
        result.seconds = round(time.monotonic() - t0, 4)
        if result.ttft_seconds is not None:
            result.ttft_seconds = round(result.ttft_seconds, 4)
        conn.close()
