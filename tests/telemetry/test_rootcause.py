"""The root cause of a failed start, not its last line."""

from __future__ import annotations

from pathlib import Path

from pdtui.telemetry.rootcause import find_root_cause


def test_real_failed_start_reduced_to_flashinfer(shared_fixtures: Path) -> None:
    path = shared_fixtures / "real-vllm/failed-start/decoder-flashinfer-missing.log"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert "See root cause above" in lines[-1]
    cause = find_root_cause(lines)
    assert cause is not None
    assert cause.summary == "ModuleNotFoundError: No module named 'flashinfer'"
    assert cause.exception_type == "ModuleNotFoundError" and cause.kind == "exception"
    assert cause.process == "EngineCore pid=827"
    assert cause.context[0] == "Traceback (most recent call last):"
    assert cause.context[-1] == cause.summary
    assert any("from flashinfer import" in line for line in cause.context)
    # The earlier WARNING-level nixl_ep tracebacks are not the cause.
    assert all("nixl_ep" not in line for line in cause.context)
    # The tail alone is enough.
    tail_cause = find_root_cause(lines[-80:])
    assert tail_cause is not None and tail_cause.summary == cause.summary


def test_cuda_oom_and_error_line_fallback() -> None:
    lines = [
        "(EngineCore_DP0 pid=5) INFO 09-01 10:00:00 [gpu_worker.py:1] Loading model",
        "(EngineCore_DP0 pid=5) ERROR 09-01 10:00:01 [core.py:1] EngineCore failed to start.",
        "(EngineCore_DP0 pid=5) ERROR 09-01 10:00:01 [core.py:1] torch.OutOfMemoryError: CUDA out of memory. "
        "Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139.80 GiB",
        "(APIServer pid=4) RuntimeError: Engine core initialization failed. See root cause above.",
    ]
    cause = find_root_cause(lines)
    assert cause is not None and cause.kind == "cuda_oom" and cause.line_number == 3
    assert cause.summary.startswith("torch.OutOfMemoryError: CUDA out of memory.")

    only_error = ["INFO x", "ERROR 09-01 10:00:01 [launcher.py:1] Port 7100 already in use", "done"]
    cause = find_root_cause(only_error)
    assert cause is not None and cause.kind == "error_line"
    assert cause.summary == "Port 7100 already in use"


def test_clean_log_has_no_root_cause(shared_fixtures: Path) -> None:
    with (shared_fixtures / "real-vllm/lmcache-pd/decoder.log").open(encoding="utf-8") as handle:
        assert find_root_cause(handle) is None
    assert find_root_cause([]) is None
