"""The demo GPU view follows the simulated engines' files; process attribution with
real processes (own through an ancestor, other, gone)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pdtui.gpus.picking import busy_reason
from pdtui.gpus.processes import ProcessAttributor, attribute_processes
from pdtui.gpus.recorded_source import RecordedSource
from pdtui.gpus.sim_overlay import read_sim_usage
from pdtui.gpus.snapshot import GpuProcess, GpuSnapshot

GIB = 1024**3
SLEEPER = "import time; time.sleep(60)  # pdtui-test-sleeper"


@pytest.fixture
def sleeper():
    """A real child process; stopped at teardown."""
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def write_engine(directory: Path, pid: int, gpus: list[int], memory: int, utilization: float, updated: float | None = None) -> Path:
    path = directory / f"{pid}.json"
    path.write_text(json.dumps({
        "pid": pid, "name": "sim-model", "role": "decoder", "port": 7100, "gpus": gpus,
        "memory_bytes": memory, "utilization": utilization,
        "updated": time.time() if updated is None else updated,
    }))
    return path


def exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def test_overlay_follows_engines(tmp_path, sleeper):
    write_engine(tmp_path, sleeper.pid, [2, 3], 40 * GIB, 70.0)
    source = RecordedSource.demo(8, seed=3, sim_gpu_dir=tmp_path)
    inventory = source.poll()
    base = RecordedSource.demo(8, seed=3).poll()
    for index in (2, 3):
        gpu = inventory.gpus[index]
        assert gpu.memory_used == base.gpus[index].memory_used + 40 * GIB
        assert gpu.memory_free == gpu.memory_total - gpu.memory_used
        assert gpu.utilization_gpu == 70
        assert gpu.processes == (GpuProcess(pid=sleeper.pid, used_memory=40 * GIB),)
        assert gpu.temperature_c > base.gpus[index].temperature_c  # load warms the card
    assert inventory.gpus[0].processes == () and inventory.gpus[0].memory_used < GIB
    # The engine goes away (file removed at exit): the GPU is idle again.
    (tmp_path / f"{sleeper.pid}.json").unlink()
    assert source.poll().gpus[2].processes == ()


def test_overlay_ignores_stale_dead_and_garbage_files(tmp_path, sleeper):
    write_engine(tmp_path, sleeper.pid, [0], 10 * GIB, 50.0, updated=time.time() - 60)  # stale
    write_engine(tmp_path, exited_pid(), [1], 10 * GIB, 50.0)  # pid gone
    (tmp_path / "999.json").write_text('{"pid": 999, "gpus": [2], "memory_')  # partly written
    (tmp_path / "junk.json").write_text('{"pid": true, "gpus": "all"}')
    (tmp_path / "neg.json").write_text(json.dumps({"pid": os.getpid(), "gpus": [3], "memory_bytes": -5, "updated": time.time()}))
    inventory = RecordedSource.demo(4, seed=1, sim_gpu_dir=tmp_path).poll()
    assert all(gpu.processes == () for gpu in inventory.gpus)
    notes = "\n".join(inventory.notes)
    assert "stale" in notes and "is gone" in notes and "not valid JSON" in notes
    assert "'memory_bytes' must be an integer >= 0" in notes


def test_overlay_on_missing_directory_is_harmless(tmp_path):
    usages, skipped = read_sim_usage(tmp_path / "absent")
    assert usages == [] and skipped == []
    assert RecordedSource.demo(2, sim_gpu_dir=tmp_path / "absent").poll().error is None


def test_engine_gpu_index_beyond_the_box_is_ignored(tmp_path, sleeper):
    write_engine(tmp_path, sleeper.pid, [1, 9], GIB, 10.0)
    inventory = RecordedSource.demo(2, seed=0, sim_gpu_dir=tmp_path).poll()
    assert [len(g.processes) for g in inventory.gpus] == [0, 1]


def _gpu_with(*pids: int) -> GpuSnapshot:
    return GpuSnapshot(index=5, processes=tuple(GpuProcess(pid=p, used_memory=3 * GIB) for p in pids))


def test_attribution_own_through_ancestor_other_and_gone(sleeper):
    dead = exited_pid()
    gpu = _gpu_with(sleeper.pid, dead)
    # pdtui "started" this test process; the sleeper is its child, like an EngineCore.
    own = {os.getpid(): "decoder-0"}
    by_pid = {p.pid: p for p in attribute_processes([gpu], own)}
    child = by_pid[sleeper.pid]
    assert (child.owner, child.instance, child.gpu_index) == ("own", "decoder-0", 5)
    assert child.user == getpass.getuser()
    assert child.command == (sys.executable, "-c", SLEEPER)
    assert abs(child.started - time.time()) < 120
    assert by_pid[dead].owner == "gone"
    # Without a mapping the same process is someone else's.
    [other, _] = attribute_processes([gpu])
    assert other.owner == "other" and other.instance is None
    assert busy_reason(gpu, [other]) == f"GPU 5 is busy (3.0 GiB used by pid {sleeper.pid} of user {getpass.getuser()})"
    assert busy_reason(gpu, [child]) is None  # our own instance does not make it busy


def test_attributor_caches_and_notices_exit(sleeper):
    attributor = ProcessAttributor()
    gpu = _gpu_with(sleeper.pid)
    first = attributor.attribute([gpu])
    assert attributor.attribute([gpu]) == first
    sleeper.kill()
    sleeper.wait(timeout=30)
    [after] = attributor.attribute([gpu])
    assert after.owner == "gone"


def test_gpus_of_engines_read_the_engines_load_and_idle_gpus_read_about_zero(tmp_path, sleeper):
    """The demo's story: the GPUs that run engines are the ones whose figures move with load."""
    from pdtui.gpus.recorded_source import IDLE_UTILIZATION_MAX

    path = write_engine(tmp_path, sleeper.pid, [4], 40 * GIB, 0.0)
    source = RecordedSource.demo(8, seed=5, sim_gpu_dir=tmp_path)
    for load in (0.0, 12.5, 63.0, 0.0):
        record = json.loads(path.read_text())
        record.update(utilization=load, updated=time.time())
        path.write_text(json.dumps(record))
        inventory = source.poll()
        assert inventory.gpus[4].utilization_gpu == round(load)
        assert all(g.utilization_gpu <= IDLE_UTILIZATION_MAX for i, g in enumerate(inventory.gpus) if i != 4)


def test_a_polling_reader_reads_a_file_again_only_when_it_was_rewritten(tmp_path, monkeypatch):
    """The demo's GPU view polls every second and an idle engine rewrites its file every 2 s
    (atomically: a new inode): an unchanged file is not parsed again, a rewritten one is,
    and a removed one is forgotten."""
    import json
    import os
    import time

    from pdtui.gpus import sim_overlay

    parsed: list[str] = []
    read_one = sim_overlay._read_one
    monkeypatch.setattr(sim_overlay, "_read_one", lambda path: (parsed.append(path.name), read_one(path))[1])

    def write(util: float) -> None:
        record = {"pid": os.getpid(), "name": "decoder1", "role": "decoder", "port": 1, "gpus": [0],
                  "memory_bytes": 1, "utilization": util, "updated": time.time()}
        tmp = tmp_path / ".x.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, tmp_path / f"{os.getpid()}.json")

    cache: dict = {}
    write(1.0)
    for _ in range(3):
        usages, _ = sim_overlay.read_sim_usage(tmp_path, cache=cache)
        assert [u.utilization for u in usages] == [1.0]
    assert len(parsed) == 1
    write(5.0)
    usages, _ = sim_overlay.read_sim_usage(tmp_path, cache=cache)
    assert [u.utilization for u in usages] == [5.0] and len(parsed) == 2
    (tmp_path / f"{os.getpid()}.json").unlink()
    assert sim_overlay.read_sim_usage(tmp_path, cache=cache)[0] == [] and cache == {}
