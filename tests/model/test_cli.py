"""`pdtui validate` and `pdtui render` as a user runs them: real processes, real files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import yaml

from tests.conftest import REPO_ROOT


def pdtui(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pdtui", *args], capture_output=True, text=True, timeout=60, cwd=cwd or REPO_ROOT)


def test_validate_ok_preset_by_name():
    result = pdtui("validate", "xpyd")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_validate_reports_every_problem_and_exits_1(tmp_path):
    doc = yaml.safe_load((REPO_ROOT / "configs" / "1p1d.yaml").read_text())
    doc["decoders"][0]["port"] = 7100
    doc["env"].pop("PYTHONHASHSEED")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = pdtui("validate", str(path))
    assert result.returncode == 1
    assert "decoders[0].port: port 7100 is also prefiller1's HTTP port" in result.stderr
    assert "PYTHONHASHSEED is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_json(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodel: [unclosed\n")
    result = pdtui("validate", str(path), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["problems"][0]["line"] == 3


def test_validate_binary_file(tmp_path):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(os.urandom(512) + b"\x00")
    result = pdtui("validate", str(path))
    assert result.returncode == 1 and "binary" in result.stderr and "Traceback" not in result.stderr


def test_render_writes_configs_script_and_masked_plan(tmp_path):
    doc = yaml.safe_load((REPO_ROOT / "configs" / "1p1d.yaml").read_text())
    doc["env"]["HF_TOKEN"] = "hf_secret_value"
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "out"
    result = pdtui("render", str(profile), "-o", str(out))
    assert result.returncode == 0, result.stderr
    script = (out / "launch.sh").read_text()
    assert os.stat(out / "launch.sh").st_mode & stat.S_IXUSR
    assert "hf_secret_value" not in script and "hf_secret_value" not in (out / "plan.json").read_text()
    assert 'require_env HF_TOKEN' in script
    assert yaml.safe_load((out / "lmcache-decoder1.yaml").read_text())["pd_peer_init_port"] == 7300
    subprocess.run(["bash", "-n", str(out / "launch.sh")], check=True)
    # Proxy first, then the decoder, then the prefiller.
    assert script.index("start proxy") < script.index("start decoder1") < script.index("start prefiller1")
    plan = json.loads((out / "plan.json").read_text())
    assert plan["instances"][0]["env"]["HF_TOKEN"] == "***"


def test_render_refuses_an_invalid_profile(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodel: m\nprefillers: []\ndecoders: []\n")
    result = pdtui("render", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == 1 and not (tmp_path / "out").exists()


# --- path errors (issue 15, item 6): one line with the path and the reason, exit 2 ---------

def _one_line_path_error(result, path, reason):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"pdtui {result.args[3]}: {path}: {reason}"]


def test_render_into_an_existing_file(tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me\n")
    _one_line_path_error(pdtui("render", "1p1d", "-o", str(target)), target, "exists and is not a directory")
    assert target.read_text() == "keep me\n"


def test_render_under_a_file(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    target = blocker / "sub" / "out"
    _one_line_path_error(pdtui("render", "1p1d", "-o", str(target)), target, f"{blocker} is a file, not a directory")


def test_render_into_an_unwritable_directory(tmp_path):
    if os.geteuid() == 0:
        # root writes through any mode bits: /proc refuses new directories even to root
        target = "/proc/pdtui-render-test"
        result = pdtui("render", "1p1d", "-o", target)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"pdtui render: {target}: ") and len(line) > len(f"pdtui render: {target}: ")
        return
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _one_line_path_error(pdtui("render", "1p1d", "-o", str(locked / "out")), locked / "out",
                         f"not writable: permission denied on {locked}")


def test_validate_and_render_a_missing_or_directory_profile(tmp_path):
    _one_line_path_error(pdtui("validate", str(tmp_path / "nope.yaml")), tmp_path / "nope.yaml",
                         "no such file (nor the name of a preset in configs/)")
    _one_line_path_error(pdtui("render", str(tmp_path), "-o", str(tmp_path / "o")), tmp_path, "is a directory, not a file")


def test_up_a_missing_profile(tmp_path):
    _one_line_path_error(pdtui("up", str(tmp_path / "nope.yaml")), tmp_path / "nope.yaml", "no such file")


def test_validate_counts_in_words_not_error_s(tmp_path):
    from pdtui.text import plural

    assert (plural(1, "error"), plural(0, "warning"), plural(2, "process", "processes")) == ("1 error", "0 warnings", "2 processes")
    doc = yaml.safe_load((REPO_ROOT / "configs" / "1p1d.yaml").read_text())
    doc["decoders"][0]["port"] = doc["prefillers"][0]["port"]  # exactly one error
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = pdtui("validate", str(path))
    assert result.returncode == 1
    assert "1 error, " in result.stderr and "(s)" not in result.stderr + result.stdout, result.stderr
