"""The running deployment against the saved profile: a note for the dashboard, and the
restart question ("with the new settings", showing the argv diff, or "as it runs").

The comparison itself is the model's (`pdtui.model.plandiff`); this only binds it to the
app: what runs (the supervisor's status) and what is saved (the open document).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic & the model: imported once a deployment runs, not before the first paint
    from pdtui.model.plandiff import InstanceDrift

_cache: dict[str, Any] = {"key": None, "value": ([], None)}


def running_drift(app: Any) -> tuple[list[InstanceDrift], Any]:
    """(differences, saved plan) between the running deployment and the saved profile;
    ([], None) when nothing runs, no profile is open or the saved profile has errors."""
    status = app.control.status() if app.control.active else None
    doc = app.document
    if status is None or doc is None or not status.run_dir:
        return [], None
    running = {i.name: tuple(i.argv) for i in status.instances if i.argv}
    if not running:  # the deployment reports no argv (a Slurm run's steps): nothing to compare
        return [], None
    key = (doc.saved_text, str(status.run_dir), tuple(sorted(running.items())))
    if _cache["key"] == key:
        return _cache["value"]
    plan = doc.saved_plan(status.run_dir)
    result: tuple[list[InstanceDrift], Any] = ([], None)
    if plan is not None:
        lmcache: dict[str, str] = {}
        for inst in plan.instances:
            if inst.lmcache_config_path:
                try:
                    lmcache[inst.name] = Path(inst.lmcache_config_path).read_text(encoding="utf-8")
                except OSError:
                    pass
        from pdtui.model.plandiff import drift

        result = (drift(running, plan, lmcache), plan)
    _cache["key"], _cache["value"] = key, result
    return result


def dashboard_note(app: Any) -> str:
    """A short markup note for the dashboard title when what runs is not what is saved."""
    changes, _ = running_drift(app)
    if not changes:
        return ""
    names = ", ".join(c.name for c in changes[:3]) + (" …" if len(changes) > 3 else "")
    return f"  [b $warning]running ≠ saved profile ({names}): r restarts with the new settings[/]"


def offer_restart(app: Any, name: str) -> bool:
    """When `name` runs with other settings than the saved profile's, ask how to restart it
    (the argv diff shown) and do it; False when there is nothing to ask (same settings)."""
    from pdtui.ui.screens.dialogs import ChoiceScreen

    changes, plan = running_drift(app)
    change = next((c for c in changes if c.name == name and not c.only_in), None)
    if change is None or plan is None:
        return False
    lines = [f"{name} runs with other settings than the saved profile {app.document.path.name}:", ""]
    lines += list(change.argv_diff) or ["(same command line)"]
    if change.lmcache_changed:
        lines.append("LMCache config: changed")
    lines += ["", "Requests it is serving will fail."]

    def chosen(answer: str | None) -> None:
        if answer == "new":
            app.run_worker(_restart_with(app, name, plan), group="restart", exit_on_error=False)
        elif answer == "as-is":
            app.commands.restart_now(name)

    app.push_screen(ChoiceScreen("\n".join(lines), [("new", "With the new settings"), ("as-is", "As it runs"),
                                                    ("cancel", "Cancel")], title=f"Restart {name}"), chosen)
    return True


async def _restart_with(app: Any, name: str, plan: Any) -> None:
    try:
        ok = await app.control.restart_with(name, plan)
    except Exception as exc:  # noqa: BLE001 - shown to the operator, the app goes on
        app.notify(f"restart of {name} with the new settings failed: {exc}", severity="error", timeout=10)
        return
    _cache["key"] = None
    app.notify(f"{name} {'ready again with the new settings' if ok else 'did not come back'}",
               severity="information" if ok else "error")
