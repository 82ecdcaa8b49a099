"""The UI's pure parts: formatting, rows, keys file, themes, settings, paths."""

from __future__ import annotations

import json
import subprocess
import sys

from pdtui.gpus.processes import AttributedProcess
from pdtui.gpus.snapshot import NA, GpuSnapshot
from pdtui.ui import format as fmt
from pdtui.ui import keys, paths, rows
from pdtui.ui.settings import load_settings
from pdtui.ui.themes import load_theme_file, load_themes
from tests.ui.conftest import fixed_reading


def test_bar_is_fixed_width_and_scales():
    assert fmt.bar(0, 8) == " " * 8
    assert fmt.bar(100, 8) == "█" * 8
    assert fmt.bar(50, 8) == "████    "
    assert fmt.bar(None, 4) == "····"
    assert len(fmt.bar(33.3, 10)) == 10


def test_duration_and_memory():
    assert fmt.duration(42) == "42s"
    assert fmt.duration(59.9) == "59s"
    assert fmt.duration(60) == "1m"
    assert fmt.duration(303) == "5m"
    assert fmt.duration(3599) == "59m"
    assert fmt.duration(3600) == "1h00m"
    assert fmt.duration(3 * 86400 + 4 * 3600 + 59) == "3d04h"
    assert fmt.duration(2 * 3600 + 7 * 60) == "2h07m"
    assert fmt.duration(None) == "-"
    assert fmt.memory_pair(12 * fmt.GIB, 141 * fmt.GIB) == "12/141G"
    assert fmt.memory_pair(NA, 141 * fmt.GIB) == "N/A"


def test_gpu_row_shows_na_and_lost():
    bare = GpuSnapshot(index=3)
    cells = rows.gpu_row(bare)
    assert cells[0] == "3 N/A" and "N/A" in str(cells[1]) and cells[3] == "N/A"
    lost = GpuSnapshot(index=1, name="NVIDIA H200", lost=True, lost_reason="Xid 79")
    assert "LOST: Xid 79" in str(rows.gpu_row(lost)[1])


def test_gpu_holders_names_own_instances_and_other_users():
    procs = [
        AttributedProcess(0, 100, 1, "own", instance="decoder1"),
        AttributedProcess(1, 200, 1, "other", user="alice"),
        AttributedProcess(2, 300, 1, "gone"),
    ]
    assert rows.gpu_holders(procs) == {0: "decoder1", 1: "alice:200"}


def test_instance_row_state_text_and_metrics():
    starting = rows.InstanceRowData("d1", "decoder", (2,), 7200, "starting", milestone="loading_weights", uptime_s=5)
    cells = rows.instance_row(starting)
    assert str(cells[4]) == "starting: loading model" and cells[6] == "-"
    failed = rows.InstanceRowData("p1", "prefiller", (0,), 7100, "failed", reason="exit code 1: CUDA out of memory")
    assert str(rows.instance_row(failed)[4]).startswith("failed: exit code 1")
    ready = rows.InstanceRowData("p1", "prefiller", (0,), 7100, "ready", uptime_s=61)
    cells = rows.instance_row(ready, rows.InstanceMetrics(running=3, waiting=1, kv_cache_usage=0.25))
    assert cells[5] == "1m" and cells[6] == "3/1" and cells[7] == "25%"
    # Past its first minute a row no longer changes every second (each change repaints it).
    later = rows.InstanceRowData("p1", "prefiller", (0,), 7100, "ready", uptime_s=62)
    assert rows.instance_row(later, rows.InstanceMetrics(running=3, waiting=1, kv_cache_usage=0.25)) == cells


def test_health_summary_counts_and_names_failures():
    data = [
        rows.InstanceRowData("proxy", "proxy", (), 9100, "ready"),
        rows.InstanceRowData("p1", "prefiller", (0,), 7100, "ready"),
        rows.InstanceRowData("d1", "decoder", (1,), 7200, "failed", reason="boom"),
    ]
    text = rows.health_summary(data, "degraded", fixed_reading().inventory, "demo-1")
    assert "degraded" in text and "1/2 engines ready" in text and "failed: d1" in text and "8 GPUs" in text


def test_keys_file_rebinds_and_reports_bad_entries(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text("launch: ctrl+u\nstop: [x, S]\nlaunchh: a\nhelp: 'two words'\n")
    loaded = keys.load_keys_file(path)
    assert loaded.keymap == {"launch": "ctrl+u", "stop": "x,S"}
    assert any("unknown binding id 'launchh'" in p and "launch" in p for p in loaded.problems)
    assert any("help" in p and "'two words'" in p for p in loaded.problems)
    assert keys.effective_keys(loaded.keymap)["launch"] == "ctrl+u"


def test_keys_file_garbage_never_raises(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text("launch: [unclosed\n")
    loaded = keys.load_keys_file(path)
    assert loaded.keymap == {} and "not valid YAML" in loaded.problems[0]
    assert keys.load_keys_file(tmp_path / "missing.yaml").problems == []


def test_shipped_themes_load_cleanly():
    loaded = load_themes([paths.shipped_themes_dir()])
    assert loaded.problems == []
    assert {"pdtui-dark", "pdtui-light", "pdtui-high-contrast"} <= set(loaded.themes)
    assert loaded.themes["pdtui-light"].dark is False


def test_user_theme_overrides_and_bad_colour_is_named(tmp_path):
    user = tmp_path / "themes"
    user.mkdir()
    (user / "mine.yaml").write_text("name: pdtui-dark\nprimary: '#ff0000'\n")
    (user / "bad.yaml").write_text("name: broken\nprimary: notacolour\n")
    loaded = load_themes([paths.shipped_themes_dir(), user])
    assert loaded.themes["pdtui-dark"].primary == "#ff0000"
    assert "broken" not in loaded.themes
    assert any("bad.yaml" in p and "primary" in p and "notacolour" in p for p in loaded.problems)
    theme, problems = load_theme_file(tmp_path / "nope.yaml")
    assert theme is None and "cannot read" in problems[0]


def test_settings_validation(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("theme: pdtui-light\ngpu_interval_s: 0.1\ncolour: red\n")
    settings = load_settings(path)
    assert settings.theme == "pdtui-light" and settings.gpu_interval_s == 1.0
    assert any("gpu_interval_s" in p and "0.1" in p for p in settings.problems)
    assert any("unknown setting 'colour'" in p for p in settings.problems)


def test_pdtui_info_prints_every_path_without_textual(ui_home):
    code = (
        "import sys, pdtui.cli; rc = pdtui.cli.main(['info', '--json']);"
        "assert 'textual' not in sys.modules, 'info must not import textual'; sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["config dir"] == str(ui_home / "config")
    assert found["keys file"].endswith("keys.yaml")
    assert found["runs"].startswith(str(ui_home / "state"))
    assert found["shipped themes"].endswith("themes")


def test_monitor_scrape_keeps_only_what_the_deriver_reads(shared_fixtures):
    """The deployment monitor scrapes every second with traffic: it parses only the
    families the deriver reads, and gets the same figures as from the whole body."""
    from pdtui.telemetry.derive import InstanceDeriver, deriver_families
    from pdtui.telemetry.metrics import parse_metrics
    from pdtui.telemetry.series import SeriesStore

    families = deriver_families()
    assert "vllm:kv_cache_usage_perc" in families and "vllm:gpu_cache_usage_perc" in families  # old vLLM too
    for name in ("metrics_decoder.txt", "metrics_prefiller.txt"):
        body = (shared_fixtures / "real-vllm" / "lmcache-pd" / name).read_text()
        full = parse_metrics(body, 100.0)
        kept = parse_metrics(body, 100.0, keep_prefixes=families)
        for key in ("running", "waiting", "kv_cache_usage"):
            assert kept.value(key) is not None and kept.value(key) == full.value(key), (name, key)
        assert len(kept.families) < len(full.families)
        from_full = InstanceDeriver("x", SeriesStore(10)).ingest(full)
        from_kept = InstanceDeriver("x", SeriesStore(10)).ingest(kept)
        assert from_kept == from_full, name
