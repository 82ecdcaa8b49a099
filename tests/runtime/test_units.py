"""The small parts: command preflight, log tailing, state file reading, run discovery."""

from __future__ import annotations

import json
import sys
import time

import pytest

from pdtui.runtime.logtail import LogTailer, last_lines
from pdtui.runtime.preflight import check_command, engine_command
from pdtui.runtime.rundir import new_run_dir, runs_root
from pdtui.runtime.runs import find_runs
from pdtui.runtime.statefile import StateFileError, read_state, write_state


def test_check_command_forms(tmp_path):
    assert check_command([sys.executable, "-m", "json"]) is None
    assert "not importable" in check_command([sys.executable, "-m", "surely_not_a_module_xyz"])
    assert "not on PATH" in check_command(["vllm-does-not-exist-here"])
    script = tmp_path / "vllm"
    script.write_text("#!/bin/sh\n")
    assert "not an executable" in check_command([str(script)])
    script.chmod(0o755)
    assert check_command([str(script)]) is None
    assert "does not exist" in check_command([str(tmp_path / "missing")])
    assert engine_command(["python3", "-m", "vllm.entrypoints.cli.main", "serve", "m"]) == ["python3", "-m", "vllm.entrypoints.cli.main"]


def test_preflight_asks_its_own_interpreter_in_process(tmp_path, monkeypatch):
    """Same interpreter, same import path settings: no probe subprocess before the first
    spawn; another PYTHONPATH: the probe, which sees what the engine will see."""
    import os

    import pdtui.runtime.preflight as preflight

    real_run = preflight.subprocess.run
    probes = []

    def counting_run(*args, **kwargs):
        probes.append(args[0])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(preflight.subprocess, "run", counting_run)
    same = dict(os.environ)
    assert check_command([sys.executable, "-m", "pdtui.sim"], same) is None
    assert "not importable" in check_command([sys.executable, "-m", "pdtui.surely_not_a_module_xyz"], same)
    assert probes == []
    (tmp_path / "only_here_xyz.py").write_text("")
    other = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    assert check_command([sys.executable, "-m", "only_here_xyz"], other) is None
    assert len(probes) == 1


def test_run_files_are_written_whole_without_fsync(tmp_path, monkeypatch):
    import os

    from pdtui.model.files import atomic_write

    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    atomic_write(tmp_path / "state.json", "{}\n", durable=False)
    assert (tmp_path / "state.json").read_text() == "{}\n" and synced == []
    atomic_write(tmp_path / "profile.yaml", "a: 1\n")
    assert (tmp_path / "profile.yaml").read_text() == "a: 1\n" and len(synced) == 1


def test_log_tailer_whole_lines_and_truncation(tmp_path):
    path = tmp_path / "x.log"
    tailer = LogTailer(path)
    assert tailer.read_lines() == []
    with open(path, "ab") as f:
        f.write(b"one\ntw")
    assert tailer.read_lines() == ["one"]
    with open(path, "ab") as f:
        f.write(b"o\r\nthree\n")
    assert tailer.read_lines() == ["two", "three"]
    path.write_bytes(b"new\n")  # replaced by a shorter file
    assert tailer.read_lines() == ["new"]
    assert last_lines(path, 5) == ["new"]


def test_state_file_errors_are_specific(tmp_path):
    with pytest.raises(StateFileError, match="no state file"):
        read_state(tmp_path)
    (tmp_path / "state.json").write_text("{nope")
    with pytest.raises(StateFileError, match="not valid JSON"):
        read_state(tmp_path)
    (tmp_path / "state.json").write_text(json.dumps({"version": 99, "instances": {}}))
    with pytest.raises(StateFileError, match="version 99"):
        read_state(tmp_path)


def test_run_dirs_under_xdg_state_home_newest_first(private_state_home):
    assert runs_root() == private_state_home / "pdtui" / "runs"
    first = new_run_dir("my profile", now=1_000_000)
    second = new_run_dir("my profile", now=1_000_000)  # same second: still a new directory
    assert first != second and first.name.startswith("my_profile-")
    for i, run in enumerate((first, second)):
        write_state(run, {"version": 1, "profile": "p", "created": time.time() + i, "detached": False, "owner": None, "instances": {}})
    (runs_root() / "broken").mkdir()
    (runs_root() / "broken" / "state.json").write_text("[")
    runs = find_runs()
    assert [r.path for r in runs if r.problem is None] == [second, first]
    assert any(r.problem and "not valid JSON" in r.problem for r in runs)
    assert find_runs(live_only=True) == []
