"""Messages up: each typed request a screen posts reaches what carries it out, and the
command palette's app-wide entries run the app's actions."""

from __future__ import annotations

import inspect

import pytest

from pdtui.ui import messages
from pdtui.ui.app import PdtuiApp
from pdtui.ui.palette import APP_COMMANDS, system_commands
from pdtui.ui.screens.dialogs import ChoiceScreen
from pdtui.ui.screens.help import HelpScreen
from tests.ui.test_app import SIZE, loaded, quiet_app, wait_for


def _notes(app: PdtuiApp) -> str:
    return "\n".join(n.message for n in app._notifications)


# Nothing is running: each request says so in its own words (proof that it reached its
# command, not another one).
ANSWERS = [
    (messages.StopRequested(), "nothing is running"),
    (messages.StopInstanceRequested(None), "select a running instance to stop"),
    (messages.StartInstanceRequested(None), "select an instance of a launched deployment to start"),
    (messages.RestartRequested(None), "select a running instance to restart"),
    (messages.RestartPairRequested(None), "select a running prefiller or decoder to restart its P/D pair"),
    (messages.BackgroundLoadToggle(), "demo load off"),
    (messages.ShowObserve("kv"), "Nothing is running: launch the deployment first"),
]


def test_every_deployment_request_has_a_command():
    """A new request class without a case in `carry_out` would be dropped without a word."""
    from pdtui.ui.commands import DeploymentCommands

    source = inspect.getsource(DeploymentCommands.carry_out)
    requests = [c for _, c in inspect.getmembers(messages, inspect.isclass)
                if issubclass(c, messages.DeploymentRequest) and c is not messages.DeploymentRequest]
    assert len(requests) >= 8
    for cls in requests:
        assert f"case messages.{cls.__name__}()" in source, cls.__name__


@pytest.mark.parametrize(("request_message", "answer"), ANSWERS, ids=[type(m).__name__ for m, _ in ANSWERS])
async def test_a_request_posted_by_the_screen_reaches_its_command(free_demo_profile, request_message, answer):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        app.screen.post_message(request_message)  # as the cockpit's keys do: it bubbles up to the app
        await wait_for(pilot, lambda: answer in _notes(app), 20, answer)


async def test_a_launch_while_the_profile_loads_waits_for_it(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        if app.document is None:  # the usual case: the profile loads after the first paint
            app.screen.post_message(messages.LaunchRequested())
        await loaded(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 20, "the launch confirmation")
        assert "Launch demo-free.yaml" in str(app.screen.query_one("#question").render())
        assert "no profile loaded" not in _notes(app)


async def test_palette_lists_the_app_commands_and_runs_them(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        commands = {c.title: c for c in system_commands(app, app.screen)}
        for _action, title, _help in APP_COMMANDS:
            assert title in commands
        assert any(title.startswith("Theme: pdtui-") for title in commands)
        app.call_later(commands["Help: keys"].callback)
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 20, "the help screen")
        app.call_later(commands["Cockpit"].callback)
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen), 20, "the cockpit")
