"""The theme files' parsed contents, kept between runs so that start-up imports no YAML.

Importing PyYAML costs ~9 ms and parsing the shipped themes ~3 ms, all before the first
frame (the theme must be chosen before Textual parses any CSS). A theme file whose path,
size and modification time match the cache is read from it (JSON, already imported);
any other is parsed and the cache rewritten. Only what the file says is kept: checking it
(`theme_from_dict`) runs on every start, so its problems are shown every time. A file
that does not parse is never cached. The cache is `$XDG_CACHE_HOME/pdtui/themes.json`;
losing it, or failing to write it, only costs the YAML import again.

Standard library only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pdtui.ui import paths

__all__ = ["ThemeFileCache"]

VERSION = 1


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class ThemeFileCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.cache_dir() / "themes.json"
        self._entries: dict[str, dict] = {}
        self._changed = False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("files"), dict):
            self._entries = data["files"]

    def get(self, file: Path) -> tuple[bool, object]:
        """(True, what the file says) when the cache has this very file, else (False, None)."""
        entry = self._entries.get(str(file))
        stamp = _stamp(file)
        if isinstance(entry, dict) and stamp is not None and entry.get("stamp") == stamp and "data" in entry:
            return True, entry["data"]
        return False, None

    def put(self, file: Path, data: object) -> None:
        stamp = _stamp(file)
        if stamp is None:
            return
        try:
            json.dumps(data)  # YAML can say more than JSON (dates, sets): such a file is parsed every time
        except (TypeError, ValueError):
            return
        self._entries[str(file)] = {"stamp": stamp, "data": data}
        self._changed = True

    def keep_only(self, files: list[Path]) -> None:
        wanted = {str(f) for f in files}
        for key in [k for k in self._entries if k not in wanted]:
            del self._entries[key]
            self._changed = True

    def save(self) -> None:
        """Rewrite the cache (atomically) when something changed; errors are ignored."""
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".themes-", suffix=".json", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump({"version": VERSION, "files": self._entries}, out)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            return
        self._changed = False
