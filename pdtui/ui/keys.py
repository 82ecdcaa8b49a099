"""The TUI's key bindings, each with a stable id, and the user's keys file.

Keys follow k9s/lazydocker habits (`?` help, `enter` drill down, `esc` back, `/` ...).
Any of them can be rebound in ``$XDG_CONFIG_HOME/pdtui/keys.yaml``::

    launch: ctrl+u          # one key
    stop: ctrl+x,S          # several, comma-separated (Textual's syntax)

Textual applies the mapping through `App.set_keymap()`, which matches `Binding.id`.
A bad keys file never stops the app: each problem becomes a message naming the file,
the id and what is valid, shown as a notification.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeySpec:
    id: str  # what a keys file names
    key: str  # default keys (Textual syntax, comma-separated)
    action: str  # the Textual action
    description: str  # shown in the footer and in `?` help
    show: bool = True  # in the footer (help lists every binding anyway)
    scope: str = "app"  # "app", "dashboard", "editor", "picker", "instance", "observe"


# The app-wide bindings and those of each screen, in the order help shows them.
KEY_SPECS: tuple[KeySpec, ...] = (
    KeySpec("help", "question_mark,f1", "help", "Help"),
    KeySpec("quit", "q", "quit_app", "Quit"),
    KeySpec("dashboard", "1", "show_dashboard", "Dashboard", show=False),
    KeySpec("editor", "2,e", "show_editor", "Editor"),
    KeySpec("theme", "T", "next_theme", "Theme", show=False),
    KeySpec("launch", "u", "launch", "Launch all", scope="dashboard"),
    KeySpec("stop", "X", "stop", "Stop all", scope="dashboard"),
    KeySpec("stop-instance", "s", "stop_instance", "Stop", scope="dashboard"),
    KeySpec("start-instance", "S", "start_instance", "Start", scope="dashboard"),
    KeySpec("restart", "r", "restart_instance", "Restart", scope="dashboard"),
    KeySpec("restart-pair", "R", "restart_pair", "Restart P/D pair", show=False, scope="dashboard"),
    KeySpec("stop-orphans", "K", "stop_orphans", "Stop orphan GPU processes", show=False, scope="dashboard"),
    KeySpec("details", "enter", "details", "Details", scope="dashboard"),
    KeySpec("focus-next", "tab", "focus_next_table", "Next table", show=False, scope="dashboard"),
    KeySpec("all-logs", "a", "toggle_all_logs", "All logs", scope="dashboard"),
    KeySpec("background-load", "b", "toggle_background_load", "Demo load", scope="dashboard"),
    KeySpec("observe-logs", "l,o", "observe", "Logs", scope="dashboard"),
    KeySpec("observe-kv", "k", "observe('kv')", "KV", scope="dashboard"),
    KeySpec("observe-latency", "y", "observe('latency')", "Latency", show=False, scope="dashboard"),
    KeySpec("observe-playground", "p", "observe('playground')", "Playground", show=False, scope="dashboard"),
    KeySpec("save", "ctrl+s", "save", "Save", scope="editor"),
    KeySpec("save-as", "ctrl+shift+s,A", "save_as", "Save as", show=False, scope="editor"),
    KeySpec("undo", "ctrl+z", "undo", "Undo", show=False, scope="editor"),
    KeySpec("redo", "ctrl+r", "redo", "Redo", show=False, scope="editor"),
    KeySpec("revert", "ctrl+shift+z", "revert", "Revert", show=False, scope="editor"),
    KeySpec("open-profile", "ctrl+o", "open_profile", "Open", scope="editor"),
    KeySpec("add-prefiller", "ctrl+n", "add_instance('prefiller')", "Add P", show=False, scope="editor"),
    KeySpec("add-decoder", "ctrl+d", "add_instance('decoder')", "Add D", show=False, scope="editor"),
    KeySpec("duplicate", "ctrl+y", "duplicate_instance", "Duplicate", show=False, scope="editor"),
    KeySpec("remove", "ctrl+x", "remove_instance", "Remove", show=False, scope="editor"),
    KeySpec("pick-gpus", "ctrl+g", "pick_gpus", "Pick GPUs", scope="editor"),
    KeySpec("back", "escape", "back", "Back", scope="editor"),
    KeySpec("toggle-gpu", "space", "toggle_gpu", "Toggle", scope="picker"),
    KeySpec("accept-gpus", "enter", "accept", "OK", scope="picker"),
    KeySpec("cancel-gpus", "escape", "cancel", "Cancel", scope="picker"),
    KeySpec("instance-back", "escape", "back", "Back", scope="instance"),
    KeySpec("observe", "l", "observe", "Logs, KV, latency, playground", scope="instance"),
    KeySpec("tab-kv", "k", "tab('kv')", "KV", scope="observe"),
    KeySpec("tab-latency", "y", "tab('latency')", "Latency", scope="observe"),
    KeySpec("tab-playground", "p", "tab('playground')", "Playground", scope="observe"),
    KeySpec("observe-back", "escape", "app.pop_screen", "Back", scope="observe"),
)

_ID_PATTERN = re.compile(r"^[a-z][a-z0-9-]*$")
# Textual key names: letters, digits, named keys and modifiers joined by "+".
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_+-]+$|^[^\s,]$")


def specs_for(scope: str) -> list[KeySpec]:
    return [spec for spec in KEY_SPECS if spec.scope == scope]


def known_ids() -> list[str]:
    return [spec.id for spec in KEY_SPECS]


@dataclass(frozen=True)
class KeymapLoad:
    keymap: dict[str, str]
    problems: list[str]


def parse_keys_text(text: str, source: str) -> KeymapLoad:
    """Parse a keys file's text into a Textual keymap (id -> keys) and problems."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        return KeymapLoad({}, [f"{source}{where}: not valid YAML ({getattr(exc, 'problem', exc)}); keys file ignored"])
    if data is None:
        return KeymapLoad({}, [])
    if not isinstance(data, dict):
        return KeymapLoad({}, [f"{source}: expected a mapping of binding id to keys, e.g. `launch: ctrl+u`; keys file ignored"])
    ids = set(known_ids())
    keymap: dict[str, str] = {}
    problems: list[str] = []
    for raw_id, raw_keys in data.items():
        binding_id = str(raw_id)
        if binding_id not in ids:
            problems.append(
                f"{source}: unknown binding id {binding_id!r}; valid ids: {', '.join(sorted(ids))}"
            )
            continue
        if isinstance(raw_keys, list):
            raw_keys = ",".join(str(k) for k in raw_keys)
        if not isinstance(raw_keys, str) or not raw_keys.strip():
            problems.append(f"{source}: {binding_id}: keys must be a string like 'ctrl+u' or 'a,b', got {raw_keys!r}")
            continue
        keys = [k.strip() for k in raw_keys.split(",")]
        bad = [k for k in keys if not k or not _KEY_PATTERN.match(k)]
        if bad:
            problems.append(
                f"{source}: {binding_id}: {bad[0]!r} is not a key name (use names like 'u', 'ctrl+u', 'f5', 'question_mark')"
            )
            continue
        keymap[binding_id] = ",".join(keys)
    return KeymapLoad(keymap, problems)


def load_keys_file(path: Path) -> KeymapLoad:
    """The user's keymap; a missing file is an empty keymap, an unreadable one a problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return KeymapLoad({}, [])
    except (OSError, UnicodeDecodeError) as exc:
        return KeymapLoad({}, [f"{path}: cannot read keys file ({exc}); default keys used"])
    return parse_keys_text(text, str(path))


def effective_keys(keymap: dict[str, str]) -> dict[str, str]:
    """Every binding id with the keys it answers to after the user's rebinding."""
    return {spec.id: keymap.get(spec.id, spec.key) for spec in KEY_SPECS}


def display_keys(keys: str) -> str:
    """'question_mark,f1' -> '? / f1' for help and the footer."""
    names = {"question_mark": "?", "escape": "esc", "enter": "enter", "space": "space", "slash": "/",
             "left_square_bracket": "[", "right_square_bracket": "]"}
    return " / ".join(names.get(k, k) for k in keys.split(","))
