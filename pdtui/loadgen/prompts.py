"""Synthetic prompts of about N tokens, the same for the same seed.

Common short English words are one token each in Llama/Qwen-style tokenizers (with the
leading space), so N words give close to N tokens; the simulated engine counts words.
"""

from __future__ import annotations

import random

__all__ = ["synthetic_prompt"]

_WORDS = (
    "the of and to in is that it was for on are as with his they at be this from have or by one "
    "had not but what all were when we there can an your which their said if do will each about "
    "how up out them then she many some so these would other into has more her two like him see "
    "time could no make than first been its who now people my made over did down only way find "
    "use may water long little very after words called just where most know get through back"
).split()


def synthetic_prompt(n_tokens: int, seed: int = 0) -> str:
    if n_tokens < 1:
        raise ValueError(f"prompt length must be at least 1 token, got {n_tokens!r}")
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(n_tokens))
