"""A run marker names its runs folder: `status` under one state home never lists the live
processes of another state home's runs as its own ("run directory is gone")."""

from __future__ import annotations

import os
import subprocess
import sys

from pdtui.constants import RUN_MARKER_ENV, RUN_ROOT_ENV
from pdtui.runtime.runs import find_runs
from tests.runtime.helpers import wait_for


def _marked_sleeper(run: str, root: str) -> subprocess.Popen:
    env = dict(os.environ, **{RUN_MARKER_ENV: f"{run}/decoder1", RUN_ROOT_ENV: root})
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env)


def test_marked_processes_of_another_runs_folder_are_not_ours(tmp_path):
    ours_root, other_root = tmp_path / "ours" / "runs", tmp_path / "other" / "runs"
    ours_root.mkdir(parents=True)
    other_root.mkdir(parents=True)
    mine = _marked_sleeper("mine-20261201-000000", os.path.realpath(ours_root))
    theirs = _marked_sleeper("theirs-20261201-000000", os.path.realpath(other_root))
    try:
        assert wait_for(lambda: any(r.name == "mine-20261201-000000" for r in find_runs(ours_root)), 30)
        names = {r.name: r for r in find_runs(ours_root)}
        assert names["mine-20261201-000000"].problem == "run directory is gone"
        assert names["mine-20261201-000000"].marked_pids == (mine.pid,)
        assert "theirs-20261201-000000" not in names
        theirs_view = {r.name for r in find_runs(other_root)}
        assert "theirs-20261201-000000" in theirs_view and "mine-20261201-000000" not in theirs_view
    finally:
        for proc in (mine, theirs):
            proc.kill()
            proc.wait()
