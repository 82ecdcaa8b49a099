"""Where the TUI keeps its settings: XDG directories, overridable for tests.

Everything here is standard library only (`pdtui info` imports it without textual).
"""

from __future__ import annotations

import os
from pathlib import Path

from pdtui.clipaths import expand_user

APP_DIR_NAME = "pdtui"


def config_dir() -> Path:
    """$PDTUI_CONFIG_DIR, else $XDG_CONFIG_HOME/pdtui, else ~/.config/pdtui."""
    override = os.environ.get("PDTUI_CONFIG_DIR")
    if override:
        return expand_user(override)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return expand_user(base) / APP_DIR_NAME


def config_file() -> Path:
    """UI settings: theme, GPU refresh interval (YAML)."""
    return config_dir() / "config.yaml"


def keys_file() -> Path:
    """Key rebinding: `action-id: keys` per line (YAML)."""
    return config_dir() / "keys.yaml"


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/pdtui, else ~/.cache/pdtui: what can be rebuilt (parsed theme files)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return expand_user(base) / APP_DIR_NAME


def user_themes_dir() -> Path:
    """Users drop their own `*.yaml` theme files here."""
    return config_dir() / "themes"


def user_profiles_dir() -> Path:
    """The default place "save as" offers for new profiles."""
    return config_dir() / "profiles"


def shipped_themes_dir() -> Path | None:
    """The themes/ folder shipped with pdtui (beside the package in a checkout, or in
    share/pdtui/themes once installed); None when neither exists."""
    import sys

    candidates = [
        Path(__file__).resolve().parents[2] / "themes",
        Path(sys.prefix) / "share" / "pdtui" / "themes",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def runs_dir() -> Path:
    """Where deployments keep their run directories (the runtime layer's choice when it
    says so; the same XDG rule otherwise)."""
    try:
        from pdtui.runtime.rundir import runs_root

        return Path(runs_root())
    except (ImportError, AttributeError):
        pass
    override = os.environ.get("PDTUI_RUNS_DIR")
    if override:
        return expand_user(override)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return expand_user(base) / APP_DIR_NAME / "runs"
