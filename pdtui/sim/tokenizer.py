"""A deterministic toy tokenizer and token stream.

Words, numbers and punctuation become token ids through a stable hash (the same in every
process and every run, whatever PYTHONHASHSEED says), long words are cut into sub-words, so
prompt-token counts are stable. The next generated token depends only on the last few tokens
of the context, so a prefiller that produces the first token and a decoder that continues
from prompt + first token emit exactly what one engine alone would have: PD output equals
non-PD output, which is the golden-output check an operator wants.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from typing import Any
from collections.abc import Iterable, Sequence

VOCAB_SIZE = 32000
BOS_TOKEN_ID = 1
_FIRST_WORD_ID = 256  # ids below are "special", never produced by hashing
_SUBWORD_LEN = 6
_CONTEXT_TOKENS = 4

_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)

# Generated text comes from this small vocabulary so that streams read like words.
_WORDS = (
    "the of and to in is that for it as with was on be by this are at from or an which "
    "have not they but had one were all we when there can been has more if will would so "
    "no what up out about into than them only other time new some could these two may "
    "first then do any like my now over such our man me even most made after also did many "
    "before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get "
    "here between both life being under never day same another know while last might us great "
    "old year off come since against go came right used take three cache token prefill decode "
    "transfer layer chunk buffer engine request latency memory block stream proxy model kernel "
    "tensor batch queue window vector node rank shard page graph"
).split()


def _stable_hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=1 << 16)
def _piece_id(piece: str) -> int:  # cached: a prompt repeats its words (hashing was most of encode)
    return _FIRST_WORD_ID + _stable_hash(piece.encode("utf-8")) % (VOCAB_SIZE - _FIRST_WORD_ID)


def split_pieces(text: str) -> list[str]:
    pieces: list[str] = []
    for match in _PIECE.finditer(text):
        piece = match.group(0)
        if len(piece) <= _SUBWORD_LEN:
            pieces.append(piece)
        else:
            pieces.extend(piece[i : i + _SUBWORD_LEN] for i in range(0, len(piece), _SUBWORD_LEN))
    return pieces


def encode(text: str, add_special_tokens: bool = True) -> list[int]:
    ids = [_piece_id(piece) for piece in split_pieces(text)]
    return ([BOS_TOKEN_ID] if add_special_tokens else []) + ids


def token_text(token_id: int) -> str:
    """What a generated token id reads as (with its leading space)."""
    return " " + _WORDS[token_id % len(_WORDS)]


def decode(token_ids: Iterable[int]) -> str:
    return "".join(token_text(t) for t in token_ids if t >= _FIRST_WORD_ID)


def le_u32(ids: Sequence[int]) -> bytes:
    """Token ids as 4-byte little-endian unsigned ints; one struct call, where an id that
    does not fit raises the OverflowError int.to_bytes would."""
    try:
        return struct.pack(f"<{len(ids)}I", *ids)
    except struct.error:
        return b"".join(int(t).to_bytes(4, "little", signed=False) for t in ids)


def next_token(context: Sequence[int]) -> int:
    data = le_u32(context[-_CONTEXT_TOKENS:])
    return _FIRST_WORD_ID + _stable_hash(b"gen" + data) % (VOCAB_SIZE - _FIRST_WORD_ID)


def generate(context: Sequence[int], count: int) -> list[int]:
    tokens = list(context[-_CONTEXT_TOKENS:])
    out: list[int] = []
    for _ in range(count):
        token = next_token(tokens)
        out.append(token)
        tokens = tokens[1:] + [token] if len(tokens) >= _CONTEXT_TOKENS else tokens + [token]
    return out


def render_chat(messages: Any) -> str:
    """A fixed chat template: `<|role|> content` per message, then the assistant's turn."""
    if not isinstance(messages, list):
        raise ValueError("messages must be a list of {role, content} objects")
    parts = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError(f"messages[{index}] must be an object with a role and content")
        content = message.get("content", "")
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(
                str(part.get("text", "")) for part in content if isinstance(part, dict)
            )
        parts.append(f"<|{message['role']}|> {content}\n")
    parts.append("<|assistant|>")
    return "".join(parts)
