"""Where the shipped profiles (configs/*.yaml) live, in a checkout and once installed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pdtui.clipaths import expand_user

DEMO_PRESET = "demo"


def presets_dir() -> Path | None:
    candidates = []
    if os.environ.get("PDTUI_CONFIGS"):
        candidates.append(Path(os.environ["PDTUI_CONFIGS"]))
    candidates.append(Path(__file__).resolve().parents[2] / "configs")  # source checkout / editable install
    candidates.append(Path(sys.prefix) / "share" / "pdtui" / "configs")  # wheel install (data-files)
    for candidate in candidates:
        if (candidate / f"{DEMO_PRESET}.yaml").is_file():
            return candidate
    return None


def list_presets() -> list[Path]:
    directory = presets_dir()
    return sorted(directory.glob("*.yaml")) if directory else []


def resolve_profile_path(name_or_path: str) -> Path:
    """A path as given if it exists, else the preset of that name (`1p1d` -> configs/1p1d.yaml)."""
    path = expand_user(name_or_path)
    if path.exists():
        return path
    directory = presets_dir()
    if directory is not None:
        stem = name_or_path[:-5] if name_or_path.endswith(".yaml") else name_or_path
        preset = directory / f"{stem}.yaml"
        if preset.is_file():
            return preset
    return path  # let the loader report "file not found" with the user's spelling
