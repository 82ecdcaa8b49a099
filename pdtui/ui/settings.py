"""The TUI's own settings file (``$XDG_CONFIG_HOME/pdtui/config.yaml``).

    theme: pdtui-dark          # any shipped or user theme name
    gpu_interval_s: 1.0        # GPU refresh (>= 0.25 s, as nvitop)
    status_interval_s: 1.0     # instance state and /metrics refresh

A bad value is reported (file, key, value, what is valid) and the default is used.
The theme picked in the app (`T`, the command palette) is written back here by
`save_theme`: only the `theme:` line changes, the rest of the file (comments included)
stays as the operator wrote it, and the file is replaced atomically.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
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
        why = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line for the notice
        settings.problems.append(f"{path}: not valid YAML ({why}); defaults used")
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


_THEME_LINE = re.compile(r"^theme[ \t]*:[^\n]*?(?P<comment>[ \t]+#[^\n]*)?$", re.MULTILINE)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_save_lock = threading.Lock()  # two quick theme switches must not interleave their writes


def save_theme(name: str, path: Path | None = None) -> str | None:
    """Remember `name` as the theme: rewrite (or add) the `theme:` line of the settings file.

    Returns a one-line notice when something the operator wrote had to be moved aside (a
    file that is not a YAML mapping is kept as `config.yaml.bak` and a fresh one written),
    else None. OSError (read-only config dir, full disk) goes to the caller.
    """
    import yaml

    path = path or paths.config_file()
    with _save_lock:
        data: object = None
        corrupt = False
        try:
            text = path.read_text(encoding="utf-8")
            data = yaml.safe_load(text)
            corrupt = data is not None and not isinstance(data, dict)
        except FileNotFoundError:
            text = ""
        except (UnicodeDecodeError, yaml.YAMLError):
            corrupt = True
        notice = None
        if corrupt:
            backup = path.with_name(path.name + ".bak")
            number = 1
            while backup.exists():  # an older backup is the operator's too: keep it
                backup = path.with_name(f"{path.name}.bak{number}")
                number += 1
            os.replace(path, backup)
            notice = f"{path}: was not a valid settings file; kept as {backup.name}, new file written"
            text, data = "", None
        line = f"theme: {_yaml_scalar(name)}"
        match = _THEME_LINE.search(text)
        if match:
            new_text = text[: match.start()] + line + (match.group("comment") or "") + text[match.end():]
        else:
            new_text = text + ("" if not text or text.endswith("\n") else "\n") + line + "\n"
        if _theme_in(new_text) != name:  # a shape the line edit does not handle: rewrite the mapping
            mapping = dict(data) if isinstance(data, dict) else {}
            mapping["theme"] = name
            new_text = yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True)
        _write_atomically(path, new_text)
    return notice


def _yaml_scalar(name: str) -> str:
    import yaml

    if _PLAIN_NAME.fullmatch(name) and yaml.safe_load(name) == name:  # not `true`, `1.0`, `null` ...
        return name
    return json.dumps(name)  # a JSON string is a valid YAML double-quoted scalar


def _theme_in(text: str) -> object:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return data.get("theme") if isinstance(data, dict) else None


def _write_atomically(path: Path, text: str) -> None:
    """Temp file in the same directory, then rename: a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
