"""Secrets by name and by value stay out of every file and command line pdtui writes (issue 15, item 4).

The end-to-end test starts a real deployment of simulated engines with `pdtui up --detach`
and then looks at every file of the run directory and at /proc/PID/cmdline of every
process started.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from pdtui.model import render_plan, validate_text, write_rendered
from pdtui.model.secret import (
    is_secret,
    looks_like_token,
    mask_argv,
    mask_env,
    scrub,
    split_secret_args,
)
from tests.conftest import REPO_ROOT
from tests.model.test_launch_script import demo_with_free_ports

HF = "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
SK = "sk-proj-Qw3rTy7UiOp1AsDfGhJkLzXcVbNm4567"
AKIA = "AKIAIOSFODNN7EXAMPLE"
GHP = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
DECLARED = "correct-horse-battery-staple"  # nothing about it says secret: the profile lists its name
LM_SECRET = "sk-ant-LmCacheBackendKey0123456789abc"
LM_DECLARED = "plain-looking-backend-passphrase"  # an lmcache.extra key the profile lists
ALL = (HF, SK, AKIA, GHP, DECLARED, LM_SECRET, LM_DECLARED)


def secret_profile() -> dict:
    doc = demo_with_free_ports()
    doc["secrets"] = ["MY_PASSPHRASE", "backend_passphrase"]
    doc["env"].update({"MY_AUTH": HF, "AWS_KEY_ID": AKIA, "GH": GHP, "MY_PASSPHRASE": DECLARED})
    doc["decoders"][0]["vllm"] = {"extra_args": ["--api-key", SK]}
    doc["prefillers"][0]["lmcache"]["extra"] = {"extra_config": {"backend_auth": LM_SECRET}, "backend_passphrase": LM_DECLARED}
    return doc


def test_token_shapes_are_recognised_and_ordinary_words_are_not():
    for value in ALL[:4] + (LM_SECRET, "redis://user:pa55word@cache:6379"):
        assert looks_like_token(value), value
    for value in ("hf_transfer", "sk-learn", "AKIA", "0", "cuda_ipc,cuda_copy,tcp", "redis://cache:6379", "meta-llama/Llama-3.2-3B"):
        assert not looks_like_token(value), value
    assert is_secret("MY_AUTH", HF) and is_secret("HF_TOKEN", "x") and not is_secret("HF_TOKEN", "")
    assert is_secret("MY_PASSPHRASE", DECLARED, declared=["MY_PASSPHRASE"]) and not is_secret("MY_PASSPHRASE", DECLARED)
    assert mask_env({"MY_AUTH": HF, "A": "1", "B": DECLARED}, ["B"]) == {"MY_AUTH": "***", "A": "1", "B": "***"}
    assert mask_argv(["serve", "--api-key", SK, "--token=abc", "--x", GHP]) == ["serve", "--api-key", "***", "--token=***", "--x", "***"]
    assert scrub(f"a {DECLARED} b {HF}", [DECLARED]) == "a *** b ***"


def test_secret_flags_move_to_the_environment_or_are_refused():
    kept, env, refused = split_secret_args(["--api-key", SK, "--hf-token=" + HF, "--max-loras", "2"])
    assert kept == ["--max-loras", "2"] and env == {"VLLM_API_KEY": SK, "HF_TOKEN": HF} and refused == []
    kept, env, refused = split_secret_args(["--token", "abc", "--foo", GHP, "--my-pass", DECLARED], declared=["--my-pass"])
    assert kept == ["--foo"] and env == {} and refused == ["--token", "argument 3", "--my-pass"]


def test_validate_warns_and_refuses_without_echoing_the_value():
    doc = secret_profile()
    doc["decoders"][0]["kv"] = {"extra_config": {"auth": GHP}}
    doc["prefillers"][0]["vllm"] = {"extra_args": ["--token", DECLARED + "x"]}
    validation = validate_text(yaml.safe_dump(doc))
    text = "\n".join(p.format("p.yaml") for p in validation.problems)
    for secret in ALL + (DECLARED + "x",):
        assert secret not in text
    errors = {p.path: p.message for p in validation.errors}
    assert "command line (--kv-transfer-config)" in errors["decoders[0].kv.extra_config.auth"]
    assert "--token" in errors["prefillers[0].vllm.extra_args"]
    warnings = {p.path: p.message for p in validation.warnings}
    assert "by its value" in warnings["env.MY_AUTH"] and "by its name" in warnings["env.MY_PASSPHRASE"]
    assert "VLLM_API_KEY" in warnings["decoders[0].vllm.extra_args"]
    assert "LMCACHE_EXTRA_CONFIG" in warnings["prefillers[0].lmcache.extra.extra_config"]


def test_rendered_files_hold_no_secret_and_the_processes_still_get_them(tmp_path):
    validation = validate_text(yaml.safe_dump(secret_profile()))
    assert validation.ok, [p.format() for p in validation.errors]
    out = tmp_path / "out"
    plan = render_plan(validation.profile, out)
    for path in write_rendered(plan, out):
        text = path.read_text()
        for secret in ALL:
            assert secret not in text, (path.name, secret)
    decoder = plan.instance("decoder1")
    assert SK not in " ".join(decoder.argv) and decoder.env["VLLM_API_KEY"] == SK
    prefiller = plan.instance("prefiller1")
    assert LM_SECRET in prefiller.env["LMCACHE_EXTRA_CONFIG"]
    assert {"MY_AUTH", "AWS_KEY_ID", "GH", "MY_PASSPHRASE", "LMCACHE_EXTRA_CONFIG"} <= prefiller.secret_keys
    script = (out / "launch.sh").read_text()
    for name in ("MY_AUTH", "MY_PASSPHRASE", "VLLM_API_KEY", "LMCACHE_EXTRA_CONFIG"):
        assert f"require_env {name}\n" in script


def _pdtui(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(check=False, args=[sys.executable, "-m", "pdtui", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.timeout(240)
def test_up_keeps_every_secret_form_out_of_the_run_dir_and_the_process_list(tmp_path):
    profile = tmp_path / "secret.yaml"
    profile.write_text(yaml.safe_dump(secret_profile(), sort_keys=False))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(REPO_ROOT)}
    up = _pdtui("up", str(profile), "--detach", env=env)
    runs = [p for p in (tmp_path / "state" / "pdtui" / "runs").iterdir() if p.is_dir()]  # not the .lock files
    try:
        assert up.returncode == 0, up.stderr
        for secret in ALL:
            assert secret not in up.stdout + up.stderr
        (run_dir,) = runs
        procs = _processes_of(run_dir)
        assert len(procs) >= 3, "proxy and two engines"
        for proc in procs:
            cmdline = "\0".join(proc.cmdline())
            for secret in ALL:
                assert secret not in cmdline, (proc.pid, secret)
        # ... while the engines really received them, through their environment
        environs = "\n".join("\0".join(f"{k}={v}" for k, v in p.environ().items()) for p in procs)
        for secret in ALL:
            assert secret in environs, secret
        # Ready means started up: the engine has echoed its LMCache config (masked) already.
        prefiller_log = (run_dir / "prefiller1.log").read_text()
        assert "Creating LMCacheEngine with config" in prefiller_log and "'backend_passphrase': '***'" in prefiller_log
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        files = [p for p in run_dir.rglob("*") if p.is_file()]
        assert any(p.name == "state.json" for p in files) and any(p.name.endswith(".argv.json") for p in files)
        for path in files:
            data = path.read_bytes()
            for secret in ALL:
                assert secret.encode() not in data, (path, secret)
            if path.suffix == ".log":
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        down = _pdtui("down", *(str(r) for r in runs[:1]), env=env)
    assert down.returncode == 0, down.stderr


def _processes_of(run_dir: Path) -> list[psutil.Process]:
    import json

    state = json.loads((run_dir / "state.json").read_text())
    out = []
    for rec in state["instances"].values():
        try:
            proc = psutil.Process(rec["pid"])
            out.append(proc)
            out.extend(proc.children(recursive=True))
        except (psutil.NoSuchProcess, KeyError, TypeError):
            continue
    return out


def test_a_mistyped_secret_is_not_echoed_by_the_schema_error_either():
    doc = demo_with_free_ports()
    doc["env"]["MY_AUTH"] = [HF]  # a list where a string belongs: the loader reports the value
    validation = validate_text(yaml.safe_dump(doc))
    assert not validation.ok
    import json

    report = "\n".join(p.format("p.yaml") for p in validation.problems) + json.dumps([p.to_dict() for p in validation.problems])
    assert "env.MY_AUTH" in report and HF not in report


def test_the_editor_and_k8s_manifests_mask_secrets_by_value_too():
    from pdtui.model.fields import format_field
    from pdtui.model.k8s import K8sOptions, manifests_text, render_k8s

    shown = format_field("env", {"MY_AUTH": HF, "HF_TOKEN": "x", "A": "1"})
    assert shown == "MY_AUTH=***\nHF_TOKEN=***\nA=1"
    validation = validate_text(yaml.safe_dump(secret_profile()))
    for name, manifests in render_k8s(validation.profile, K8sOptions(image="vllm/vllm-openai:latest")).items():
        text = manifests_text(manifests)
        for secret in ALL:
            assert secret not in text, (name, secret)


def test_argv_field_masks_secrets_by_value_and_puts_them_back():
    from pdtui.model.fields import format_field, read_field

    stored = ["--api-key", SK, "--hf-token=" + HF, "--lora", f"https://u:pw@{'h' * 3}/x", "--max-loras", "2"]
    shown = format_field("argv", stored)
    assert SK not in shown and HF not in shown and "pw@" not in shown
    assert shown.startswith("--api-key *** ")
    assert read_field("argv", shown, stored).value == stored  # untouched: every value back
    # Edited around (a flag removed before them): each mask still finds its own value.
    edited = shown.replace("--api-key *** ", "")
    assert read_field("argv", edited, stored).value == stored[2:]
    # Two bare masks told apart by the flag before them.
    two = ["--api-key", SK, "--my-token", HF]
    assert read_field("argv", "--my-token *** --api-key ***", two).value == ["--my-token", HF, "--api-key", SK]
    # A mask with nothing behind it is an error, never stored.
    result = read_field("argv", "--api-key ***", ["--max-loras", "2"])
    assert result.error and result.value == ["--max-loras", "2"]
    # A declared name is masked as well.
    assert format_field("argv", ["--my-flag", "plain-value"], declared=["--my-flag"]) == "--my-flag ***"


def test_the_proxy_gets_the_engines_api_key_by_environment_and_two_keys_are_refused(tmp_path):
    doc = demo_with_free_ports()
    doc["vllm"] = {"extra_args": ["--api-key", SK]}
    plan = render_plan(validate_text(yaml.safe_dump(doc)).profile, tmp_path)
    assert plan.proxy.env["VLLM_API_KEY"] == SK and "VLLM_API_KEY" in plan.proxy.secret_keys
    assert SK not in " ".join(plan.proxy.argv)
    doc["decoders"][0]["vllm"] = {"extra_args": ["--api-key", "another-key-for-one-decoder"]}
    validation = validate_text(yaml.safe_dump(doc))
    (problem,) = [p for p in validation.errors if "API key differs" in p.message]
    assert problem.path == "decoders[0].vllm.extra_args" and SK not in problem.format()


def test_a_stored_literal_mask_is_not_taken_for_a_hidden_value():
    from pdtui.model.fields import format_field, read_field

    stored = ["--glob", "***", "--api-key", SK]
    shown = format_field("argv", stored)
    assert shown == "--glob *** --api-key ***"
    assert read_field("argv", shown, stored).value == stored
