"""The engine's simulated GPU usage, published for the demo GPU view.

`$PDTUI_SIM_GPU_DIR/<pid>.json`, written atomically (temp file + rename) so a reader never sees
half a file, at most every 0.5 s, and removed at exit (docs/interfaces.md).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

MIN_INTERVAL_S = 0.5
HEARTBEAT_S = 2.0  # rewrite an unchanged file now and then so readers can tell it is live


class GpuUsageFile:
    def __init__(self, directory: str, pid: int, name: str, role: str, port: int, gpus: tuple[int, ...]) -> None:
        self.path = Path(directory) / f"{pid}.json"
        self._fixed = {"pid": pid, "name": name, "role": role, "port": port, "gpus": list(gpus)}
        self._last_written = 0.0
        self._last_content: tuple[int, float] | None = None

    def update(self, memory_bytes: int, utilization: float, force: bool = False) -> bool:
        """Write if due; returns whether the file was written."""
        now = time.time()
        content = (int(memory_bytes), round(float(utilization), 1))
        if not force:
            if now - self._last_written < MIN_INTERVAL_S:
                return False
            if content == self._last_content and now - self._last_written < HEARTBEAT_S:
                return False
        record: dict[str, Any] = dict(self._fixed)
        record.update(memory_bytes=content[0], utilization=content[1], updated=now)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.path)
        self._last_written = now
        self._last_content = content
        return True

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
