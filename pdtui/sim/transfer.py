"""KV "transfers" between simulated engines over real ZMQ sockets.

LMCache PD mode (LMCache `pd_backend.py`): the decoder (receiver) binds a REP socket per TP
rank on `pd_peer_init_port` (the NIXL handshake) and `pd_peer_alloc_port` (buffer
allocation); the prefiller (sender) dials them lazily on its first request to that decoder,
asks for room for every KV chunk of the prompt (an `AllocRequest` carrying the chunk keys),
"writes" them, then PUSHes one ProxyNotif per TP rank to the proxy. The decoder later looks
the prompt's chunk keys up in what it received: that is its "LMCache hit tokens". Chunk keys
are chained hashes of token ids, so only the same tokens hit, as in LMCache.

vLLM NixlConnector mode: the prefiller keeps the request's KV blocks and binds a REP side
channel (VLLM_NIXL_SIDE_CHANNEL_HOST/PORT); the decoder pulls the blocks named in
`kv_transfer_params` from it. Everything here is real between processes; only the bytes are
imaginary.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Sequence

import msgpack
import zmq
import zmq.asyncio

from pdtui.proxy.protocol import encode_proxy_notif
from pdtui.sim.tokenizer import le_u32

HANDSHAKE_TIMEOUT_S = 5.0


class TransferError(RuntimeError):
    pass


def zmq_bind_host(host: str) -> str:
    """ZMQ binds to interfaces or addresses, not names; map the usual names."""
    if host in ("localhost", ""):
        return "127.0.0.1"
    if host in ("0.0.0.0", "*"):
        return "*"
    return host


def chunk_keys(model: str, tokens: Sequence[int], chunk_size: int, rank: int, world: int) -> list[tuple[str, int]]:
    """(key, tokens in chunk) per chunk; each key hashes every token before it (prefix chain)."""
    keys: list[tuple[str, int]] = []
    running = hashlib.blake2b(digest_size=8)
    for start in range(0, len(tokens), chunk_size):
        chunk = tokens[start : start + chunk_size]
        running.update(le_u32(chunk))
        keys.append((f"{model}@{world}@{rank}@{running.hexdigest()}", len(chunk)))
    return keys


def _pack(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes) -> dict[str, Any]:
    obj = msgpack.unpackb(data, raw=False)
    if not isinstance(obj, dict):
        raise TransferError(f"unexpected side-channel message {obj!r:.80}")
    return obj


async def _request(sock: zmq.asyncio.Socket, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    await sock.send(_pack(message))
    # poll()'s flags default to POLLIN (pyzmq's stub for the asyncio socket leaves them out).
    if not await sock.poll(int(timeout * 1000)):
        raise TransferError("no answer")
    return _unpack(await sock.recv())


class _ReqPool:
    """One REQ socket per endpoint, used by one request at a time (REQ is lock-step)."""

    def __init__(self, ctx: zmq.asyncio.Context) -> None:
        self._ctx = ctx
        self._sockets: dict[str, zmq.asyncio.Socket] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def call(self, endpoint: str, message: dict[str, Any], timeout: float = HANDSHAKE_TIMEOUT_S) -> dict[str, Any]:
        lock = self._locks.setdefault(endpoint, asyncio.Lock())
        async with lock:
            sock = self._sockets.get(endpoint)
            if sock is None:
                sock = self._ctx.socket(zmq.REQ)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(endpoint)
                self._sockets[endpoint] = sock
            try:
                return await _request(sock, message, timeout)
            except (TransferError, zmq.ZMQError) as exc:
                # A REQ socket that missed its reply is stuck: drop it, dial afresh next time.
                sock.close(0)
                self._sockets.pop(endpoint, None)
                raise TransferError(f"{endpoint}: {exc}") from None

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close(0)
        self._sockets.clear()


@dataclass
class StoreResult:
    tokens: int
    nbytes: int
    offload_s: float
    put_s: float
    first_contact: bool


class LMCacheSender:
    """The prefiller's half of LMCache PD."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        model: str,
        chunk_size: int,
        tp: int,
        bytes_per_token: int,
        proxy_endpoint: str | None,
        drop_notif: bool,
        log_lmcache: Callable[[str, str, str], None],
        timeout_s: float = HANDSHAKE_TIMEOUT_S,
    ) -> None:
        self._pool = _ReqPool(ctx)
        self._timeout_s = timeout_s
        self._model = model
        self._chunk_size = chunk_size
        self._tp = tp
        self._bytes_per_token = bytes_per_token
        self._drop_notif = drop_notif
        self._log = log_lmcache
        self._initialised: set[str] = set()
        self._push: zmq.asyncio.Socket | None = None
        if proxy_endpoint:
            self._push = ctx.socket(zmq.PUSH)
            self._push.setsockopt(zmq.LINGER, 0)
            # ZMQ PUSH/connect tolerates a proxy that binds later; messages queue meanwhile.
            self._push.connect(proxy_endpoint)
        self.notifs_sent = 0

    async def store(self, proxy_req_id: str, tokens: Sequence[int], spec: dict[str, Any]) -> StoreResult:
        host = str(spec.get("receiver_host") or "localhost")
        init_ports = list(spec.get("receiver_init_port") or [])
        alloc_ports = list(spec.get("receiver_alloc_port") or [])
        if not alloc_ports:
            raise TransferError("disagg_spec has no receiver_alloc_port")
        started = time.monotonic()
        first_contact = False
        for rank in range(self._tp):
            alloc_port = alloc_ports[rank % len(alloc_ports)]
            peer = f"{host}{init_ports[rank % len(init_ports)] if init_ports else alloc_port}"
            if peer not in self._initialised and init_ports:
                # LMCache dials the decoder's NIXL side channel on first use, not at start-up.
                first_contact = True
                init_port = init_ports[rank % len(init_ports)]
                await self._pool.call(
                    f"tcp://{host}:{init_port}",
                    {"type": "NixlInitRequest", "sender_id": f"sender-{id(self):x}", "rank": rank},
                    timeout=self._timeout_s,
                )
                await self._pool.call(
                    f"tcp://{host}:{init_port}", {"type": "NixlMemRegRequest", "rank": rank},
                    timeout=self._timeout_s,
                )
                self._initialised.add(peer)
            keys = chunk_keys(self._model, tokens, self._chunk_size, rank, self._tp)
            reply = await self._pool.call(
                f"tcp://{host}:{alloc_port}",
                {
                    "type": "AllocRequest",
                    "keys": [key for key, _ in keys],
                    "fmt": 1,
                    "shape": [len(keys), self._chunk_size],
                    "dtype": "bfloat16",
                    "last_chunk_toks": keys[-1][1] if keys else 0,
                    "chunk_tokens": [count for _, count in keys],
                    "bytes_per_token": self._bytes_per_token,
                    "req_id": proxy_req_id,
                },
                # The decoder may hold the answer while its buffer is full (up to 30 s).
                timeout=self._timeout_s + 30.0,
            )
            if reply.get("type") != "AllocResponse":
                raise TransferError(f"decoder refused the allocation: {reply.get('error', reply)!r:.120}")
        put_s = time.monotonic() - started
        nbytes = len(tokens) * self._bytes_per_token * self._tp
        if self._push is not None and not self._drop_notif:
            for _ in range(self._tp):
                await self._push.send(encode_proxy_notif(proxy_req_id))
                self.notifs_sent += 1
        return StoreResult(
            tokens=len(tokens),
            nbytes=nbytes,
            offload_s=0.0,
            put_s=put_s,
            first_contact=first_contact,
        )

    def close(self) -> None:
        self._pool.close()
        if self._push is not None:
            self._push.close(0)


@dataclass
class _Received:
    tokens: int
    nbytes: int
    at: float = field(default_factory=time.monotonic)


class LMCacheReceiver:
    """The decoder's half: REP sockets on the init and alloc ports, and the received chunks."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        model: str,
        chunk_size: int,
        tp: int,
        host: str,
        init_ports: Sequence[int],
        alloc_ports: Sequence[int],
        buffer_bytes: int,
        chunk_bytes: int,
        log_lmcache: Callable[[str, str, str], None],
        allocation_timeout_s: float = 30.0,
    ) -> None:
        self._ctx = ctx
        self._allocation_timeout_s = allocation_timeout_s
        self._model = model
        self._chunk_size = chunk_size
        self._tp = tp
        self._host = zmq_bind_host(host)
        self._init_ports = list(init_ports)
        self._alloc_ports = list(alloc_ports)
        self.total_chunks = max(1, buffer_bytes // max(1, chunk_bytes))
        self._log = log_lmcache
        self._chunks: dict[str, _Received] = {}
        self._sockets: list[zmq.asyncio.Socket] = []
        self._tasks: list[asyncio.Task] = []
        self._freed = asyncio.Event()

    @property
    def used_chunks(self) -> int:
        return len(self._chunks)

    def bind(self) -> None:
        """Bind every side-channel port now; a port in use fails start-up, as in LMCache."""
        for kind, ports in (("init", self._init_ports), ("alloc", self._alloc_ports)):
            # One port per TP rank; a list shorter than TP means ranks share its ports.
            for port in dict.fromkeys(ports[: self._tp] or ports):
                sock = self._ctx.socket(zmq.REP)
                sock.setsockopt(zmq.LINGER, 0)
                try:
                    sock.bind(f"tcp://{self._host}:{port}")
                except zmq.ZMQError as exc:
                    sock.close(0)
                    raise TransferError(
                        f"cannot bind the PD {kind} side channel tcp://{self._host}:{port}: {exc}"
                    ) from None
                self._sockets.append(sock)
                self._tasks.append(asyncio.get_running_loop().create_task(self._serve(kind, sock, port)))

    async def _serve(self, kind: str, sock: zmq.asyncio.Socket, port: int) -> None:
        while True:
            try:
                data = await sock.recv()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            try:
                message = _unpack(data)
                reply = await self._handle(message)
            except Exception as exc:  # a malformed message must not kill the channel
                reply = {"type": "Error", "error": str(exc)}
            try:
                await sock.send(_pack(reply))
            except zmq.ZMQError:
                return

    async def _handle(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message.get("type")
        if kind == "NixlInitRequest":
            self._log("INFO", "Received initialization request", "nixl_channel.py:350:lmcache.v1.transfer_channel.nixl_channel")
            self._log("INFO", "Replying initialization response", "nixl_channel.py:270:lmcache.v1.transfer_channel.nixl_channel")
            return {"type": "NixlInitResponse"}
        if kind == "NixlMemRegRequest":
            self._log("INFO", "Received initialization request", "nixl_channel.py:350:lmcache.v1.transfer_channel.nixl_channel")
            self._log("INFO", "Replying mem register response", "nixl_channel.py:290:lmcache.v1.transfer_channel.nixl_channel")
            return {"type": "NixlMemRegResponse"}
        if kind == "AllocRequest":
            keys = [str(k) for k in message.get("keys") or []]
            counts = list(message.get("chunk_tokens") or [])
            per_token = int(message.get("bytes_per_token") or 0)
            new = [i for i, key in enumerate(keys) if key not in self._chunks]
            warned_at = 0.0
            deadline = time.monotonic() + self._allocation_timeout_s
            # The decoder frees buffer only when requests retrieve; until then the sender waits.
            while self.used_chunks + len(new) > self.total_chunks:
                if len(new) > self.total_chunks:
                    return {"type": "Error", "error": "request larger than the whole PD buffer"}
                now = time.monotonic()
                if now - warned_at >= 1.0:
                    self._log(
                        "WARNING",
                        "Failed to allocate memory object, retrying...",
                        "pd_backend_async.py:1214:lmcache.v1.storage_backend.pd_backend_async",
                    )
                    warned_at = now
                if now > deadline:
                    return {"type": "Error", "error": "PD buffer full"}
                self._freed.clear()
                try:
                    await asyncio.wait_for(self._freed.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
            for index in new:
                count = int(counts[index]) if index < len(counts) else self._chunk_size
                self._chunks[keys[index]] = _Received(tokens=count, nbytes=count * per_token)
            already = [i for i in range(len(keys)) if i not in new]
            return {"type": "AllocResponse", "already_sent_indexes": already, "remote_indexes": new}
        return {"type": "Error", "error": f"unknown message type {kind!r}"}

    def lookup(self, tokens: Sequence[int]) -> int:
        """Leading tokens whose chunks every TP rank received."""
        hit = None
        for rank in range(self._tp):
            matched = 0
            for key, count in chunk_keys(self._model, tokens, self._chunk_size, rank, self._tp):
                if key not in self._chunks:
                    break
                matched += count
            hit = matched if hit is None else min(hit, matched)
        return hit or 0

    def retrieve(self, tokens: Sequence[int], hit: int) -> int:
        """Take the hit chunks out of the buffer (LMCache frees them once loaded); bytes moved."""
        nbytes = 0
        for rank in range(self._tp):
            for key, _count in chunk_keys(self._model, tokens[:hit], self._chunk_size, rank, self._tp):
                received = self._chunks.pop(key, None)
                if received is not None:
                    nbytes += received.nbytes
        self._freed.set()
        return nbytes

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sock in self._sockets:
            sock.close(0)


# ---------------------------------------------------------------- vLLM NixlConnector mode ----


@dataclass
class _HeldBlocks:
    tokens: int
    nbytes: int
    kv_blocks: int
    expires: float


class NixlProducer:
    """The prefiller keeps a request's KV blocks until a decoder pulls them (or they expire)."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        engine_id: str,
        host: str,
        port: int,
        release_blocks: Callable[[int], Any],
        hold_s: float = 480.0,
    ) -> None:
        self._ctx = ctx
        self.engine_id = engine_id
        self.host = host
        self.port = port
        self._release = release_blocks
        self._hold_s = hold_s
        self._held: dict[int, _HeldBlocks] = {}
        self._next_block = 1
        self._sock: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task | None = None

    def bind(self) -> None:
        sock = self._ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(f"tcp://{zmq_bind_host(self.host)}:{self.port}")
        except zmq.ZMQError as exc:
            sock.close(0)
            raise TransferError(
                f"cannot bind the NIXL side channel {self.host}:{self.port} "
                f"(VLLM_NIXL_SIDE_CHANNEL_PORT): {exc}"
            ) from None
        self._sock = sock
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def hold(self, tokens: int, nbytes: int, kv_blocks: int) -> list[int]:
        block_count = max(1, math.ceil(tokens / 16))
        block_ids = list(range(self._next_block, self._next_block + block_count))
        self._next_block += block_count
        self._held[block_ids[0]] = _HeldBlocks(tokens, nbytes, kv_blocks, time.monotonic() + self._hold_s)
        return block_ids

    async def expire(self) -> None:
        now = time.monotonic()
        for first, held in list(self._held.items()):
            if held.expires < now:
                del self._held[first]
                await self._release(held.kv_blocks)

    async def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = await self._sock.recv()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            try:
                message = _unpack(data)
                block_ids = list(message.get("remote_block_ids") or [])
                held = self._held.pop(int(block_ids[0]), None) if block_ids else None
                if held is None:
                    reply = {"ok": False, "error": "unknown or expired blocks"}
                else:
                    await self._release(held.kv_blocks)
                    reply = {"ok": True, "tokens": held.tokens, "bytes": held.nbytes}
            except Exception as exc:
                reply = {"ok": False, "error": str(exc)}
            try:
                await self._sock.send(_pack(reply))
            except zmq.ZMQError:
                return

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._sock is not None:
            self._sock.close(0)


class NixlConsumer:
    """The decoder pulls the blocks a prefiller named in kv_transfer_params."""

    def __init__(self, ctx: zmq.asyncio.Context) -> None:
        self._pool = _ReqPool(ctx)

    async def pull(self, params: dict[str, Any]) -> dict[str, Any]:
        host = params.get("remote_host") or "localhost"
        port = params.get("remote_port")
        if not port:
            raise TransferError("kv_transfer_params has no remote_port")
        return await self._pool.call(
            f"tcp://{host}:{int(port)}",
            {
                "type": "NixlRead",
                "remote_engine_id": params.get("remote_engine_id"),
                "remote_block_ids": params.get("remote_block_ids") or [],
            },
        )

    def close(self) -> None:
        self._pool.close()
