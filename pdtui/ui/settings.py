"""The TUI's own settings file (``$XDG_CONFIG_HOME/pdtui/config.yaml``).

    theme: pdtui-dark          # any shipped or user theme name
    gpu_interval_s: 1.0        # GPU refresh (>= 0.25 s, as nvitop)
    status_interval_s: 1.0     # instance state and /metrics refresh

A bad value is reported (file, key, value, what is valid) and the default is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pdtui.ui import paths

MIN_INTERVAL_S = 0.25
MAX_INTERVAL_S = 60.0


@dataclass
class UiSettings:
    theme: str = "pdtui-dark"
    gpu_interval_s: float = 1.0
    status_interval_s: float = 1.0
    problems: list[str] = field(default_factory=list)


def load_settings(path: Path | None = None) -> UiSettings:
    path = path or paths.config_file()
    settings = UiSettings()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return settings  # the usual case: no need to load yaml before the first frame
    except (OSError, UnicodeDecodeError) as exc:
        settings.problems.append(f"{path}: cannot read ({exc}); defaults used")
        return settings
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        settings.problems.append(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)}); defaults used")
        return settings
    if data is None:
        return settings
    if not isinstance(data, dict):
        settings.problems.append(f"{path}: expected a mapping such as `theme: pdtui-light`; defaults used")
        return settings
    for key, value in data.items():
        if key == "theme":
            if isinstance(value, str) and value.strip():
                settings.theme = value.strip()
            else:
                settings.problems.append(f"{path}: theme: must be a theme name, got {value!r}")
        elif key in ("gpu_interval_s", "status_interval_s"):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
                setattr(settings, key, float(value))
            else:
                settings.problems.append(
                    f"{path}: {key}: must be a number of seconds from {MIN_INTERVAL_S:g} to {MAX_INTERVAL_S:g}, got {value!r}"
                )
        else:
            settings.problems.append(
                f"{path}: unknown setting {key!r}; valid: theme, gpu_interval_s, status_interval_s"
            )
    return settings
