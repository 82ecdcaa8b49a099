"""The GPU table names a GPU process left behind by a dead API server after its run/instance."""

from pdtui.gpus.processes import AttributedProcess
from pdtui.ui.rows import gpu_holders


def test_an_orphan_is_named_after_its_run_and_instance():
    orphan = AttributedProcess(gpu_index=0, pid=772, used_memory=1, owner="other", orphan_of="run-1/decoder1")
    ours = AttributedProcess(gpu_index=1, pid=800, used_memory=1, owner="own", instance="prefiller1")
    assert gpu_holders([orphan, ours]) == {0: "orphan of run-1/decoder1", 1: "prefiller1"}
