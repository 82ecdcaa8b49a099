"""Words for counts, one source for every layer ("1 error", "2 errors"; never "1 error(s)").
Standard library only: it sits below every floor of the house."""

from __future__ import annotations


def noun(n: int, word: str, many: str = "") -> str:
    """`word` for one, its plural (`many`, else word + "s") for any other count."""
    return word if n == 1 else (many or word + "s")


def plural(n: int, word: str, many: str = "") -> str:
    """"1 GPU", "0 GPUs", "3 processes" (many="processes")."""
    return f"{n} {noun(n, word, many)}"
