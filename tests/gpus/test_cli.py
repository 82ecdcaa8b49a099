"""`pdtui gpus`: table, --json, --demo, --replay, and the no-driver path."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import pytest

from pdtui.gpus import cli
from tests.conftest import REPO_ROOT


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="pdtui")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["gpus", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_table(capsys, monkeypatch):
    monkeypatch.delenv("PDTUI_SIM_GPU_DIR", raising=False)
    code, out, _ = run(["--demo", "--seed", "1"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("pdtui gpus · source simulated · driver 580.159.04")
    rows = [line for line in lines if "NVIDIA H200" in line]
    assert len(rows) == 8  # --demo defaults to 8 GPUs
    assert "N/A" in rows[0]  # fan is Not Supported on the H200
    assert "NVLink groups: GPU 0-7" in out


def test_demo_json_is_seeded_and_shows_engine_processes(capsys, tmp_path):
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f"{engine.pid}.json").write_text(json.dumps({
            "pid": engine.pid, "name": "m", "role": "prefiller", "port": 7100, "gpus": [1],
            "memory_bytes": 20 * 1024**3, "utilization": 55.0, "updated": time.time(),
        }))
        code, out, _ = run(["--demo", "2", "--seed", "5", "--json", "--sim-gpu-dir", str(tmp_path)], capsys)
    finally:
        engine.kill()
        engine.wait(timeout=30)
    assert code == 0
    data = json.loads(out)
    assert data["format"] == "pdtui.gpus/1" and data["source"] == "simulated"
    assert len(data["gpus"]) == 2
    [process] = data["gpus"][1]["processes"]
    assert process["pid"] == engine.pid and process["owner"] == "other"
    assert process["command"][-1] == "import time; time.sleep(60)"
    assert data["gpus"][1]["utilization_gpu"] == 55
    assert data["gpus"][0]["fan_speed_pct"] is None
    assert data["gpus"][0]["not_available"]["fan_speed_pct"] == "Not Supported"


def test_no_driver_json_still_prints_json_with_the_reason(capsys, monkeypatch):
    import pynvml

    from tests.gpus.fake_pynvml import make_fake_pynvml

    fake = make_fake_pynvml([])
    fake.init_error = pynvml.NVMLError_LibraryNotFound
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    code, out, err = run(["--json"], capsys)
    reason = "NVIDIA driver library not found: is this a GPU machine? Try --demo"
    assert code == 1
    assert json.loads(out)["error"] == reason and json.loads(out)["gpus"] == []
    assert err == f"pdtui gpus: {reason}\n"
    code, out, err = run([], capsys)
    assert (code, out, err) == (1, "", f"pdtui gpus: {reason}\n")


def test_replay_and_bad_replay(capsys, shared_fixtures, tmp_path):
    code, out, _ = run(["--replay", str(shared_fixtures / "nvml" / "nvml_h200.json")], capsys)
    assert code == 0 and "source recorded" in out and "00000000:00:06.0" in out
    bad = tmp_path / "bad.json"
    bad.write_text('{"devices": [{"temp_c": "hot"}]}')
    code, out, err = run(["--replay", str(bad)], capsys)
    assert code == 2 and out == ""
    assert err.strip() == f"pdtui gpus: {bad}: devices[0].temp_c: must be an integer or an 'ERR ...' string, got 'hot'"


def test_demo_count_is_validated(capsys):
    with pytest.raises(SystemExit):
        run(["--demo", "0"], capsys)
    assert "--demo takes 1 to 64 GPUs, got 0" in capsys.readouterr().err


def test_real_source_without_driver_one_line_and_exit_1(tmp_path):
    """As a user would run it; on a GPU host it lists the GPUs instead."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "pdtui.gpus"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert "Traceback" not in result.stderr
    if result.returncode == 1:
        assert result.stdout == ""
        [reason] = result.stderr.splitlines()
        assert reason.startswith("pdtui gpus: ")
        assert "NVIDIA" in reason or "NVML" in reason or "nvidia-ml-py" in reason
    else:
        assert result.returncode == 0 and "source nvml" in result.stdout


def test_gpus_command_imports_no_heavy_layer():
    """The lent GPU box has no pydantic/aiohttp/zmq, and textual belongs to the UI."""
    code = (
        "import sys\n"
        "from pdtui.gpus.__main__ import main\n"
        "main(['--demo', '2', '--json'])\n"
        "bad = [m for m in ('textual', 'pydantic', 'aiohttp', 'zmq', 'yaml') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"] == "simulated"


def test_cli_module_is_stdlib_only_at_import():
    code = "import sys; import pdtui.gpus.cli; print(sorted(m for m in ('psutil', 'pynvml') if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.stdout.strip() == "[]", result.stderr
