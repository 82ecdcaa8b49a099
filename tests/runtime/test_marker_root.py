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
    """An instance's main process as pdtui starts one: marked, leader of its own group."""
    env = dict(os.environ, **{RUN_MARKER_ENV: f"{run}/decoder1", RUN_ROOT_ENV: root})
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env, start_new_session=True)


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


def test_stops_and_the_keeper_never_touch_a_same_named_run_of_another_folder(tmp_path):
    """Run names are the profile's name and the second it started: two runs folders (two
    homes, two test sessions) can each hold "demo-20261201-000000". Stopping one of them, its
    watchdog's stop and its keeper leave the other's processes alone."""
    from pdtui.runtime.tree import leftovers, stop_tree
    from pdtui.runtime.watchdog import keep, stop_run

    run = "demo-20261201-000000"
    ours_root, other_root = tmp_path / "ours" / "runs", tmp_path / "other" / "runs"
    (ours_root / run).mkdir(parents=True)
    (other_root / run).mkdir(parents=True)
    ours, other = os.path.realpath(ours_root), os.path.realpath(other_root)
    mine = _marked_sleeper(run, ours)
    theirs = _marked_sleeper(run, other)
    try:
        assert wait_for(lambda: [p.pid for p in leftovers(run, "decoder1", root=ours)] == [mine.pid], 30)
        assert [p.pid for p in leftovers(run, "decoder1", root=other)] == [theirs.pid]
        # the keeper of our run sees something of it left; its stop takes only ours
        assert keep(str(ours_root / run)) is True
        assert stop_run(str(ours_root / run), "test") == ["decoder1"]
        assert mine.wait(30) is not None and theirs.poll() is None
        assert keep(str(ours_root / run)) is False  # nothing of ours left, theirs still runs
        result = stop_tree(None, run, "decoder1", root=other)
        assert [p.pid for p in result.stopped] == [theirs.pid]
        assert theirs.wait(30) is not None
    finally:
        for proc in (mine, theirs):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
