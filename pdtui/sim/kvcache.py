"""The simulated model's shape and its bounded, block-allocated KV cache."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

BLOCK_SIZE = 16  # vLLM's default block size (tokens per KV block)


@dataclass(frozen=True)
class ModelShape:
    num_layers: int
    num_kv_heads: int
    head_size: int
    weight_bytes: int
    dtype_bytes: int = 2

    def kv_bytes_per_token(self, tp: int = 1) -> int:
        """K and V for every layer, on one GPU of a TP group (heads are split across ranks)."""
        heads = max(1, self.num_kv_heads // max(1, tp))
        return 2 * self.num_layers * heads * self.head_size * self.dtype_bytes

    def kv_shape(self, chunk_size: int, tp: int = 1) -> tuple[int, ...]:
        """LMCache's `kv shape` log field: (layers, 2, chunk, heads, head_size)."""
        heads = max(1, self.num_kv_heads // max(1, tp))
        return (self.num_layers, 2, chunk_size, heads, self.head_size)


# Shapes of a few well-known families, picked by the size in the model name.
_SHAPES = (
    (re.compile(r"tiny", re.I), ModelShape(2, 4, 64, 4_721_152)),
    (re.compile(r"0\.5b", re.I), ModelShape(24, 2, 64, 988_000_000)),
    (re.compile(r"(^|[^.\d])1b", re.I), ModelShape(16, 8, 64, 2_471_000_000)),
    (re.compile(r"3b", re.I), ModelShape(28, 8, 128, 6_425_000_000)),
    (re.compile(r"70b", re.I), ModelShape(80, 8, 128, 141_100_000_000)),
    (re.compile(r"8b", re.I), ModelShape(32, 8, 128, 16_060_000_000)),
)
DEFAULT_SHAPE = ModelShape(32, 8, 128, 16_060_000_000)  # Llama-3.1-8B


def model_shape(model: str) -> ModelShape:
    for pattern, shape in _SHAPES:
        if pattern.search(model):
            return shape
    return DEFAULT_SHAPE


def blocks_for(tokens: int) -> int:
    return -(-max(0, tokens) // BLOCK_SIZE)


class KVCache:
    """A fixed pool of blocks; requests wait (vLLM's "Waiting") until theirs fit."""

    def __init__(self, capacity_tokens: int) -> None:
        self.total_blocks = max(1, capacity_tokens // BLOCK_SIZE)
        self.used_blocks = 0
        self._freed = asyncio.Condition()

    @property
    def usage(self) -> float:
        return self.used_blocks / self.total_blocks

    def fits_ever(self, tokens: int) -> bool:
        return blocks_for(tokens) <= self.total_blocks

    async def allocate(self, tokens: int) -> int:
        need = blocks_for(tokens)
        async with self._freed:
            await self._freed.wait_for(lambda: self.used_blocks + need <= self.total_blocks)
            self.used_blocks += need
        return need

    async def release(self, blocks: int) -> None:
        async with self._freed:
            self.used_blocks = max(0, self.used_blocks - blocks)
            self._freed.notify_all()
