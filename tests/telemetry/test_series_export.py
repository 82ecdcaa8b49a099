"""Bounded ring buffers and the CSV/JSON export."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from pdtui.telemetry.export import export_series
from pdtui.telemetry.series import RingSeries, SeriesStore


def test_ring_keeps_the_last_capacity_points_in_fixed_memory() -> None:
    ring = RingSeries(capacity=5)
    size_before = ring._times.buffer_info()[1], ring._values.buffer_info()[1]
    for i in range(23):
        assert ring.append(float(i), i * 10.0)
    assert len(ring) == 5
    assert ring.points() == [(18.0, 180.0), (19.0, 190.0), (20.0, 200.0), (21.0, 210.0), (22.0, 220.0)]
    assert (ring._times.buffer_info()[1], ring._values.buffer_info()[1]) == size_before
    assert ring.last() == (22.0, 220.0)


def test_ring_window_gaps_and_out_of_order() -> None:
    ring = RingSeries(capacity=100)
    for i in range(10):
        ring.append(float(i), None if i == 4 else float(i))
    assert [t for t, _ in ring.window(3.0)] == [6.0, 7.0, 8.0, 9.0]
    assert [t for t, _ in ring.window(2.0, now=5.0)] == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert math.isnan(ring.values()[4])
    assert ring.append(3.0, 1.0) is False and ring.dropped == 1 and len(ring) == 10
    assert RingSeries(3).window(5) == [] and RingSeries(3).last() is None
    with pytest.raises(ValueError):
        RingSeries(0)


def test_export_csv_and_json(tmp_path: Path) -> None:
    store = SeriesStore(capacity=4)
    store.record("p0/prompt_tokens_per_s", 1.0, 100.0)
    store.record("p0/prompt_tokens_per_s", 3.0, None)
    store.record("d0/decoder_hit_rate", 2.0, 0.5)
    out = tmp_path / "run" / "series"
    paths = export_series(store, out)
    assert [p.name for p in paths] == ["series.csv", "series.json"]
    rows = list(csv.reader((out / "series.csv").open()))
    assert rows == [
        ["series", "time", "value"],
        ["d0/decoder_hit_rate", "2.0", "0.5"],
        ["p0/prompt_tokens_per_s", "1.0", "100.0"],
        ["p0/prompt_tokens_per_s", "3.0", ""],
    ]
    data = json.loads((out / "series.json").read_text())
    assert data["series"]["p0/prompt_tokens_per_s"] == [[1.0, 100.0], [3.0, None]]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_export_rejects_bad_targets(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        export_series(SeriesStore(), a_file)
    with pytest.raises(ValueError, match="valid: csv, json"):
        export_series(SeriesStore(), tmp_path, formats=("xml",))
