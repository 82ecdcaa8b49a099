"""Every rendered argv goes through vLLM's own `vllm serve` argument parser.

Optional: skipped where vLLM is not installed (it is a multi-GB CUDA install that lives
on GPU hosts). On a CPU machine vLLM needs VLLM_TARGET_DEVICE=cpu even to parse.
Run it with: `pip install vllm && python -m pytest -m vllm tests/model/test_vllm_parser.py`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pdtui.model import render_plan, validate_file
from tests.conftest import REPO_ROOT

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed"),
]

# Runs in a child process: importing vLLM is slow and changes global state.
PARSE_WITH_VLLM = r"""
import json, sys
from vllm.entrypoints.cli import serve as serve_cli
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils import FlexibleArgumentParser

results = []
for argv in json.load(sys.stdin):
    parser = FlexibleArgumentParser(prog="vllm")
    subparsers = parser.add_subparsers(dest="subparser")
    for cmd in serve_cli.cmd_init():
        cmd.subparser_init(subparsers).set_defaults(dispatch_function=cmd.cmd)
    args = parser.parse_args(argv)
    cmd.validate(args)
    kv = args.kv_transfer_config
    results.append({
        "model": args.model_tag or args.model,
        "port": args.port,
        "host": args.host,
        "tp": args.tensor_parallel_size,
        "kv_connector": getattr(kv, "kv_connector", None),
        "kv_role": getattr(kv, "kv_role", None),
        "extra": getattr(kv, "kv_connector_extra_config", None),
        "enforce_eager": args.enforce_eager,
    })
print(json.dumps(results))
"""


def _serve_args(argv: tuple[str, ...]) -> list[str]:
    # Drop the command that starts vLLM (`vllm`, or an interpreter and its flags).
    return list(argv[argv.index("serve"):])


@pytest.mark.parametrize("preset", ["1p1d", "xp1d", "xpyd", "nixl-1p1d", "h200-tiny-1p1d", "h200-tiny-nixl"])
def test_vllm_accepts_every_rendered_command_line(preset, tmp_path: Path):
    validation = validate_file(REPO_ROOT / "configs" / f"{preset}.yaml")
    assert validation.ok
    plan = render_plan(validation.profile, tmp_path)
    argvs = [_serve_args(i.argv) for i in plan.instances]
    env = {**os.environ, "VLLM_TARGET_DEVICE": os.environ.get("VLLM_TARGET_DEVICE", "cpu")}
    result = subprocess.run(
        [sys.executable, "-c", PARSE_WITH_VLLM], input=json.dumps(argvs), capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    for inst, seen in zip(plan.instances, parsed):
        assert seen["port"] == inst.port
        assert seen["model"] == plan.model
        assert seen["tp"] == inst.tensor_parallel_size
        expected_kv = json.loads(inst.argv[inst.argv.index("--kv-transfer-config") + 1])
        assert seen["kv_connector"] == expected_kv["kv_connector"]
        assert seen["kv_role"] == expected_kv["kv_role"]
        assert (seen["extra"] or {}) == expected_kv.get("kv_connector_extra_config", {})
