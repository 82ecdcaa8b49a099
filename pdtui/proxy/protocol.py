"""LMCache's PD side-channel messages, byte-compatible with `pd_backend.py`.

LMCache defines `ProxyNotif(msgspec.Struct, tag=True)` and sends
`msgspec.msgpack.encode(ProxyNotif(req_id=...))` over a ZMQ PUSH socket. A tagged
msgspec struct encodes as a msgpack map whose first key is "type" (the class
name) followed by the fields in declaration order, which is what we produce
and accept here with plain `msgpack`, so neither side needs msgspec or LMCache.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

PROXY_NOTIF_TAG = "ProxyNotif"


class ProtocolError(ValueError):
    """A side-channel message that is not a well-formed LMCache PD message."""


@dataclass(frozen=True)
class ProxyNotif:
    req_id: str


def encode_proxy_notif(req_id: str) -> bytes:
    return msgpack.packb({"type": PROXY_NOTIF_TAG, "req_id": req_id}, use_bin_type=True)


def decode_pd_message(data: bytes) -> ProxyNotif | dict:
    """Decode one message; ProxyNotif becomes a ProxyNotif, other PD messages stay dicts."""
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"not msgpack: {exc}") from exc
    if not isinstance(obj, dict) or "type" not in obj:
        raise ProtocolError(f"not a tagged PD message: {obj!r:.80}")
    if obj["type"] == PROXY_NOTIF_TAG:
        req_id = obj.get("req_id")
        if not isinstance(req_id, str):
            raise ProtocolError(f"ProxyNotif without a string req_id: {obj!r:.80}")
        return ProxyNotif(req_id=req_id)
    return obj
