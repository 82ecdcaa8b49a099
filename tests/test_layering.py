"""The layering rules (checked by import-linter, contracts in pyproject.toml): nothing outside
pdtui/ui imports textual; the floors ui > deploy > cluster > runtime > sim | loadgen > model >
proxy | telemetry | gpus > constants | clipaths, never an import back up; no import cycle
between the modules of any package."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_import_linter_contracts_hold():
    lint = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]
    result = subprocess.run(lint, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in ("textual only in pdtui.ui", "layers", "no cycles inside a layer"):
        assert f"{contract} KEPT" in result.stdout, result.stdout


def test_headless_commands_do_not_load_textual():
    code = "import sys, pdtui.cli; pdtui.cli.build_parser(); print('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
