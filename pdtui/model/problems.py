"""A problem found in a profile: where, what, the value, and what would be valid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pdtui.model.secret import MASK, looks_like_token, scrub

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    path: str  # dotted path into the profile, e.g. "decoders[0].nixl_init_ports"
    message: str  # what is wrong
    value: Any = None  # the offending value (None when there is nothing to show)
    hint: str = ""  # what would be valid
    severity: Severity = "error"
    line: int | None = None  # 1-based position in the YAML file, when known
    column: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def format(self, filename: str | None = None) -> str:
        where = ""
        if filename:
            where = filename
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        text = f"{where}{self.path or '<profile>'}: {self.message}"
        if self.value is not None and not _said(self.value, self.message):
            text += f" ({_short(self.value)})"  # the value once: not when the message names it
        if self.hint:
            text += f" — {self.hint}"
        if self.severity == "warning":
            text = "warning: " + text
        return scrub(text, ())  # a credential in a value the user mistyped is still not echoed

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "severity": self.severity,
            "message": self.message,
            # looks_like_token looks inside lists and dicts too
            "value": MASK if looks_like_token(self.value) else self.value if _jsonable(self.value) else repr(self.value),
            "hint": self.hint,
            "line": self.line,
            "column": self.column,
        }


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _said(value: Any, message: str) -> bool:
    text = str(value)
    return bool(text) and (text in message or repr(value) in message)


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]
