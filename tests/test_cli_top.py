"""The top-level `pdtui` parser: typo'd subcommands, and help text for every subcommand."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pdtui import cli

REPO = Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_mistyped_subcommand_is_suggested_not_opened_as_a_profile() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pdtui", "stauts"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "unknown command 'stauts'" in done.stderr
    assert "did you mean 'status'?" in done.stderr
    assert "profile" not in done.stderr


@pytest.mark.parametrize("typo, meant", [("stauts", "status"), ("dwon", "down"), ("gpu", "gpus"), ("lgos", "logs")])
def test_close_typos_name_the_command(typo: str, meant: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([typo]) == 2
    assert f"did you mean {meant!r}?" in capsys.readouterr().err


def test_an_existing_file_with_a_command_like_name_still_opens_as_a_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "stauts").write_text("name: x\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    assert cli.main(["stauts"]) == 2  # reached the TUI path, which needs a terminal here
    err = capsys.readouterr().err
    assert "unknown command" not in err
    assert "needs a terminal" in err


def test_presets_paths_and_unrelated_words_are_not_taken_for_commands() -> None:
    commands = cli._subcommand_names(cli.build_parser())
    assert cli.unknown_command("demo", commands) is None  # a shipped preset
    assert cli.unknown_command("configs/stauts.yaml", commands) is None
    assert cli.unknown_command("stauts.yaml", commands) is None
    assert cli.unknown_command("my-profile-zz", commands) is None


def test_every_subcommand_has_help_and_a_description() -> None:
    parser = cli.build_parser()
    subparsers = _subparsers(parser)
    helps = {a.dest: a.help for a in subparsers._choices_actions}
    assert {"up", "down", "status", "logs", "restart", "logscan", "gpus", "validate"} <= set(subparsers.choices)
    for name, sub in subparsers.choices.items():
        assert helps.get(name), f"`pdtui --help` shows no help for {name}"
        assert "\n" not in helps[name], f"{name}: help must be one line"
        assert sub.description, f"`pdtui {name} --help` has no description"
    top = parser.format_help()
    for name, text in helps.items():
        assert name in top and text.split()[0] in top


def test_profile_after_top_level_options_opens_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text("name: x\n", encoding="utf-8")
    seen: list[argparse.Namespace] = []
    import pdtui.ui.cli as ui_cli

    monkeypatch.setattr(ui_cli, "run_tui", lambda args: seen.append(args) or 0)
    assert cli.main(["--demo", str(profile)]) == 0
    assert cli.main(["--attach", "run-1", str(profile)]) == 0
    assert [(a.demo, a.profile, a.attach) for a in seen] == [(True, str(profile), None), (False, str(profile), "run-1")]
    assert cli.main(["--demo", "stauts"]) == 2
    assert "did you mean 'status'?" in capsys.readouterr().err
    assert cli.main(["--attach", "stauts"]) == 0  # a run name, not a command


def test_a_mistyped_preset_names_the_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dmeo"]) == 2
    err = capsys.readouterr().err
    assert "profile 'dmeo' not found" in err and "did you mean the preset 'demo'?" in err


def test_the_tui_options_alone_build_no_subcommand_parser() -> None:
    """`pdtui --demo` starts the TUI without importing the seven layers' subcommand
    modules (issue 17: the first frame); --help still lists every subcommand."""
    code = ("import sys, pdtui.ui.cli as u; u.run_tui = lambda args: print(args.demo, args.profile); "
            "from pdtui import cli; cli.main(['--demo', '-p', 'demo']); "
            "print(sorted(m for m in sys.modules if m.endswith('.cli') and m != 'pdtui.ui.cli'))")
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["True demo", "['pdtui.cli']"], done.stdout
    helped = subprocess.run([sys.executable, "-m", "pdtui", "--demo", "--help"], env=dict(os.environ, PYTHONPATH=str(REPO)),
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "validate" in helped.stdout and "sim-engine" in helped.stdout, helped.stdout


def test_each_subcommand_is_built_from_the_module_that_registers_it() -> None:
    """`pdtui up` builds only pdtui.deploy.cli's parsers: the static map of which module
    owns which subcommand must say what the modules really register."""
    registered = {}
    for module_name in cli._COMMAND_MODULES:
        names = cli._subcommand_names(cli.build_parser(only=module_name))
        registered.update(dict.fromkeys(names, module_name))
    assert registered == cli._COMMAND_OWNERS


def test_a_subcommand_parses_alike_with_only_its_own_layer() -> None:
    argv = ["up", "demo", "--detach", "--timeout", "30"]
    full = vars(cli.build_parser().parse_args(argv))
    alone = vars(cli.build_parser(only=cli._COMMAND_OWNERS["up"]).parse_args(argv))
    assert full == alone
