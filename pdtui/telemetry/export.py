"""Export a run's series to CSV and/or JSON in a directory (e.g. the run directory).

`export_series(store, directory, formats=("csv", "json"))` writes
- `series.csv`: long format, header `series,time,value` (time in unix seconds, empty
  value for a gap), one row per point;
- `series.json`: `{"exported_at": t, "series": {name: [[time, value|null], ...]}}`.
Files are written to a temporary name and renamed, so a reader never sees half a file.
Returns the paths written.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import time
from pathlib import Path
from collections.abc import Iterable

from pdtui.telemetry.series import SeriesStore
from pdtui.text import noun

__all__ = ["export_series"]

_FORMATS = ("csv", "json")


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def export_series(store: SeriesStore, directory: str | os.PathLike[str], formats: Iterable[str] = _FORMATS) -> list[Path]:
    formats = tuple(formats)
    unknown = [f for f in formats if f not in _FORMATS]
    if unknown:
        raise ValueError(f"unknown export {noun(len(unknown), 'format')} {unknown}; valid: {', '.join(_FORMATS)}")
    out_dir = Path(directory)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"cannot export series to {out_dir}: it exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = store.names()
    written: list[Path] = []
    if "csv" in formats:

        def write_csv(handle) -> None:
            writer = csv.writer(handle)
            writer.writerow(["series", "time", "value"])
            for name in names:
                for t, v in store.get(name) or ():
                    writer.writerow([name, repr(t), "" if math.isnan(v) else repr(v)])

        path = out_dir / "series.csv"
        _atomic_write(path, write_csv)
        written.append(path)
    if "json" in formats:

        def write_json(handle) -> None:
            data = {
                "exported_at": time.time(),
                "series": {
                    name: [[t, v if math.isfinite(v) else None] for t, v in store.get(name) or ()] for name in names
                },
            }
            json.dump(data, handle, allow_nan=False)

        path = out_dir / "series.json"
        _atomic_write(path, write_json)
        written.append(path)
    return written
