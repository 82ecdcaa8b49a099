"""Textual Binding objects built from keys.KEY_SPECS (so ids, help and keymap agree)."""

from __future__ import annotations

from textual.binding import Binding, BindingType

from pdtui.ui.keys import specs_for


def bindings_for(scope: str, priority: frozenset[str] = frozenset()) -> list[BindingType]:
    # Typed as textual's BINDINGS are (a list is invariant: list[Binding] would not fit).
    return [
        Binding(spec.key, spec.action, spec.description, show=spec.show, id=spec.id, priority=spec.id in priority)
        for spec in specs_for(scope)
    ]
