from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_state_home(tmp_path, monkeypatch):
    """Run directories of the tests never land in the user's ~/.local/state."""
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


@pytest.fixture
def supervisors():
    """Supervisors a test creates; every one is closed (processes stopped) at the end."""
    created = []
    yield created
    for sup in created:
        try:
            sup.close()
        except Exception:
            pass
