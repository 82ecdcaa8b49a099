"""No cyclic garbage collection from the TUI's start until its first screen is painted.

Importing Textual and pdtui's UI, then composing and styling the first screen, allocates
so many objects that the collector runs over and over, and its older generations grow
with every pass: ~20 ms of CPU before the GPU rows appear on the 2-core box (measured with
the collector off, benchmarks/ui_startup.py). `pdtui` pauses it before it imports Textual
(pdtui.ui.cli.run_tui) and `Startup` resumes it once the GPU rows are on screen, or after
its bound when they do not come. Only a pause this module made is resumed: a caller that
turned the collector off itself keeps it off.

Standard library only (imported before Textual).
"""

from __future__ import annotations

import gc

__all__ = ["pause", "resume"]

_paused = False


def pause() -> None:
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    global _paused
    if _paused:
        _paused = False
        gc.enable()
