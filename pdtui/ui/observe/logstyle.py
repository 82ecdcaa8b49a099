"""How a log line is shown: timestamps hidden or not, wrapping, colour by kind.

vLLM and LMCache lines are coloured by level and by what they are about: KV-transfer lines
(store / retrieve / lookup hit, P<->D handshake) in their own colours, alerts from the
telemetry parser (zero hit tokens on a decoder, allocation retries, CUDA OOM, NIXL/UCX
errors) marked with a red background, the current search term reversed.
"""

from __future__ import annotations

import re

from rich.highlighter import Highlighter
from rich.text import Text

from pdtui.telemetry.events import Alert, HandshakeEvent, LookupHitEvent, RetrieveEvent, StoreBeginEvent, StoreEvent
from pdtui.telemetry.logparse import parse_line

__all__ = ["LogHighlighter", "display_line", "wrap_line"]

# Timestamps as vLLM (`INFO 06-02 17:49:42 [f.py:1]`), LMCache (`[2025-06-02 17:50:11,239] LMCache`)
# and NIXL (`2026-11-29 10:53:48 NIXL`) print them, after an optional `(EngineCore pid=N) `.
_TIMESTAMPS = (
    re.compile(r"^(\([^()]*pid=\d+\) )?((?:DEBUG|INFO|WARNING|ERROR|CRITICAL) )\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? "),
    re.compile(r"^(\([^()]*pid=\d+\) )?()\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d+)?\] "),
    re.compile(r"^(\([^()]*pid=\d+\) )?()\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[,.]\d+)? "),  # NIXL, pdtui's proxy
)


def display_line(line: str, timestamps: bool = True) -> str:
    line = line.replace("\t", "    ")
    if timestamps:
        return line
    for pattern in _TIMESTAMPS:
        match = pattern.match(line)
        if match:
            return (match.group(1) or "") + match.group(2) + line[match.end():]
    return line


def wrap_line(line: str, width: int) -> list[str]:
    """Hard-wrap at `width` cells (continuations indented by two spaces)."""
    if width < 8 or len(line) <= width:
        return [line]
    out = [line[:width]]
    rest = line[width:]
    step = width - 2
    while rest:
        out.append("  " + rest[:step])
        rest = rest[step:]
    return out


_LEVEL_STYLES = (
    (" CRITICAL", "bold red"), ("CRITICAL ", "bold red"),
    ("ERROR", "red"), ("WARNING", "yellow"), ("WARN", "yellow"), ("DEBUG", "dim"),
)


class LogHighlighter(Highlighter):
    def __init__(self) -> None:
        self.search = ""

    def highlight(self, text: Text) -> None:
        plain = text.plain
        event = parse_line(plain) if plain else None
        if isinstance(event, Alert):
            text.stylize("bold white on dark_red")
        elif isinstance(event, (StoreEvent, StoreBeginEvent)):
            text.stylize("cyan")
        elif isinstance(event, (RetrieveEvent, LookupHitEvent)):
            text.stylize("magenta")
        elif isinstance(event, HandshakeEvent):
            text.stylize("blue")
        else:
            head = plain[:48]
            for needle, style in _LEVEL_STYLES:
                if needle in head:
                    text.stylize(style)
                    break
            if "LMCache" in head:
                text.stylize("bold", 0, min(len(plain), head.find("LMCache") + 7))
        if self.search:
            needle, lower = self.search.lower(), plain.lower()
            start = lower.find(needle)
            while start >= 0:
                text.stylize("reverse", start, start + len(needle))
                start = lower.find(needle, start + len(needle))
