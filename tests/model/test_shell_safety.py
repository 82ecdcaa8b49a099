"""Nothing from a profile reaches a shell unquoted (issue 15, item 1).

The exact inputs of the issue: an env key `X$(touch /tmp/pwned)`, a key ending in `_TOKEN`
carrying `:?$(...)` into the secret check, and a key `A=B` that made `up` die with a
ValueError. Hostile *values* are valid and must run as plain text: the rendered launch.sh
is executed against simulated engines and must create no file, and every rendered script
(presets and hostile profiles) passes shellcheck.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from pdtui.model import render_plan, validate_text, write_rendered
from pdtui.model.launch_script import launch_script
from pdtui.model.schema import Profile
from tests.conftest import REPO_ROOT
from tests.model.launch_helpers import launch_argv, stop_launch_script
from tests.model.test_launch_script import demo_with_free_ports

SHELLCHECK = shutil.which("shellcheck")


def _hostile_keys(canary: Path) -> dict[str, str]:
    return {
        f"X$(touch {canary}/pwned)": "1",
        f"B:?$(touch {canary}/pwned2)}}_TOKEN": "x",
        "A=B": "1",
    }


@pytest.mark.parametrize("key", ["X$(touch /tmp/pwned)", "B:?$(touch /tmp/pwned2)}_TOKEN", "A=B", "1ABC", "", "A B", "É"])
def test_validate_refuses_non_posix_env_names(key):
    doc = demo_with_free_ports()
    doc["decoders"][0]["env"] = {key: "1"}
    validation = validate_text(yaml.safe_dump(doc))
    assert not validation.ok
    (problem,) = [p for p in validation.errors if "environment variable name" in p.message]
    assert problem.path == "decoders[0].env" and problem.value == key
    assert "[A-Za-z_][A-Za-z0-9_]*" in problem.hint


def test_the_renderer_refuses_them_too_whatever_called_it(tmp_path):
    """By construction: a plan that skipped validate still never turns a key into shell."""
    for key, value in _hostile_keys(tmp_path).items():
        doc = demo_with_free_ports()
        doc["env"][key] = value
        profile = Profile.model_validate(doc)  # schema-valid; only validate's rules refuse it
        plan = render_plan(profile, tmp_path / "out")
        with pytest.raises(ValueError, match="not a POSIX name"):
            launch_script(plan)


def test_up_refuses_a_key_with_an_equals_sign_without_a_traceback(tmp_path):
    doc = demo_with_free_ports()
    doc["env"]["A=B"] = "1"
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(check=False, args=[sys.executable, "-m", "pdtui", "up", str(profile)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO_ROOT)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "ValueError" not in done.stderr
    assert "env: not a valid environment variable name ('A=B')" in done.stderr


def _hostile_values_profile(canary: Path) -> dict:
    doc = demo_with_free_ports()
    payloads = [
        f"$(touch {canary}/a)",
        f"`touch {canary}/b`",
        f"'; touch {canary}/c; '",
        f'"; touch {canary}/d; "',
        f"x\ntouch {canary}/e",
        f"${{HOME:?$(touch {canary}/f)}}",
        f"\\'$(touch {canary}/g)",
    ]
    doc["env"].update({f"HOSTILE_{i}": p for i, p in enumerate(payloads)})
    doc["env"]["EVIL_TOKEN"] = f"$(touch {canary}/t)"  # a secret: required from the caller by the script
    doc["proxy"]["env"] = {"PROXY_HOSTILE": payloads[2]}
    doc["served_model_name"] = f"m$(touch {canary}/h)"
    doc["decoders"][0]["vllm"] = {"extra_args": [f"--x-note=$(touch {canary}/i)", f"`touch {canary}/j`"]}
    doc["prefillers"][0]["kv"] = {"extra_config": {"note": f"$(touch {canary}/k)"}}
    doc["prefillers"][0]["lmcache"]["extra"] = {"lmcache_instance_id": f"id$(touch {canary}/l)"}
    return doc


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (CI installs it: .ci/run)")
@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.yaml")))
def test_every_preset_renders_a_script_shellcheck_accepts(tmp_path, preset):
    from pdtui.model import validate_file

    validation = validate_file(REPO_ROOT / "configs" / f"{preset}.yaml")
    assert validation.ok
    write_rendered(render_plan(validation.profile, tmp_path), tmp_path)
    check = subprocess.run(check=False, args=[SHELLCHECK, "--severity=info", str(tmp_path / "launch.sh")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (CI installs it: .ci/run)")
def test_hostile_values_render_a_script_shellcheck_accepts(tmp_path):
    validation = validate_text(yaml.safe_dump(_hostile_values_profile(tmp_path / "canary")))
    assert validation.ok, [p.format() for p in validation.errors]
    write_rendered(render_plan(validation.profile, tmp_path / "out"), tmp_path / "out")
    check = subprocess.run(check=False, args=[SHELLCHECK, "--severity=info", str(tmp_path / "out" / "launch.sh")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


@pytest.mark.timeout(150)
def test_hostile_values_run_as_plain_text_and_create_no_file(tmp_path):
    canary = tmp_path / "canary"
    canary.mkdir()
    doc = _hostile_values_profile(canary)
    validation = validate_text(yaml.safe_dump(doc))
    assert validation.ok, [p.format() for p in validation.errors]
    out = tmp_path / "rendered"
    plan = render_plan(validation.profile, out)
    write_rendered(plan, out)
    err_path = tmp_path / "launch.err"
    env = {**os.environ, "EVIL_TOKEN": doc["env"]["EVIL_TOKEN"], "PYTHONPATH": str(REPO_ROOT)}
    with open(err_path, "w") as err:
        proc = subprocess.Popen(launch_argv(out / "launch.sh"), stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, env=env)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while "deployment ready" not in err_path.read_text():
            assert proc.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        # The engines got every value verbatim ...
        decoder = next(c for c in children if "--port" in c.cmdline() and str(plan.instance("decoder1").port) in c.cmdline())
        environ = decoder.environ()
        for key, value in doc["env"].items():
            assert environ[key] == str(value), key
        assert f"--x-note=$(touch {canary}/i)" in decoder.cmdline()
        # ... and not one of them ran.
        assert list(canary.iterdir()) == []
    finally:
        stop_launch_script(proc, err_path)
    psutil.wait_procs(children, timeout=10)
    assert list(canary.iterdir()) == []


def test_the_script_refuses_to_start_without_its_secrets(tmp_path):
    doc = _hostile_values_profile(tmp_path / "canary")
    validation = validate_text(yaml.safe_dump(doc))
    write_rendered(render_plan(validation.profile, tmp_path / "out"), tmp_path / "out")
    env = {k: v for k, v in os.environ.items() if k != "EVIL_TOKEN"}
    done = subprocess.run(check=False, args=["bash", str(tmp_path / "out" / "launch.sh")], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 1 and "export EVIL_TOKEN before running this script" in done.stderr
    assert not (tmp_path / "canary").exists()
