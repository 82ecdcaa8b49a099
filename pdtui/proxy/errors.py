"""Errors that end a proxied request, each naming the stage and the backend.

The body follows OpenAI's error shape (`{"error": {"message", "type", "code"}}`)
with `stage`, `backend` and `request_id` added, so a client sees at once
whether the tokenizer, the prefiller, the KV-ready wait or the decoder failed.
"""

from __future__ import annotations


class StageError(Exception):
    # metrics outcome label for each error type
    _OUTCOMES = {
        "timeout": "timeout",
        "backend_unavailable": "backend_error",
        "backend_error": "backend_error",
        "invalid_request_error": "client_error",
        "no_backend": "no_backend",
    }

    def __init__(self, status: int, stage: str, backend: str | None, message: str,
                 error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.stage = stage
        self.backend = backend
        self.message = message
        self.error_type = error_type

    @property
    def outcome(self) -> str:
        return self._OUTCOMES.get(self.error_type, "backend_error")

    def body(self, req_id: str | None) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "code": self.status,
                "stage": self.stage,
                "backend": self.backend,
                "request_id": req_id,
            }
        }


class BackendUnreachable(StageError):
    """Could not connect (or the connection dropped before an answer): worth another backend."""

    def __init__(self, stage: str, backend: str, detail: str) -> None:
        super().__init__(502, stage, backend,
                         f"{stage}: cannot reach {backend}: {detail}", "backend_unavailable")


def stage_timeout(stage: str, backend: str | None, seconds: float, what: str) -> StageError:
    return StageError(
        504, stage, backend,
        f"{stage} timed out after {seconds:g} s waiting for {what} from {backend}",
        "timeout",
    )


def bad_request(message: str) -> StageError:
    return StageError(400, "request", None, message, "invalid_request_error")


def backend_status(stage: str, backend: str, status: int, text: str) -> StageError:
    """A backend answered with an error: keep a client error's status, else 502."""
    detail = _backend_message(text)
    out_status = status if 400 <= status < 500 else 502
    return StageError(
        out_status, stage, backend,
        f"{stage}: {backend} answered HTTP {status}: {detail}",
        "invalid_request_error" if out_status < 500 else "backend_error",
    )


def _backend_message(text: str) -> str:
    import json

    try:
        obj = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])[:500]
        if "message" in obj:
            return str(obj["message"])[:500]
    return text.strip()[:500]
