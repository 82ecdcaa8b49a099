"""The editor's actions (save, undo, open, add/remove instances, pick GPUs) and what they
need from the app: the base of EditorScreen (pdtui.ui.screens.editor), which builds the
form, binds it and shows the feedback. Split so each file is about one thing."""

from __future__ import annotations

from pathlib import Path

from pdtui.clipaths import expand_user
from typing import TYPE_CHECKING, Protocol, cast

from textual.screen import Screen

from pdtui.model.document import ProfileDocument
from pdtui.ui import paths
from pdtui.ui.screens.dialogs import PathScreen, confirm

DEPLOYMENT = "deployment"


class _EditorHost(Protocol):
    """What the editor needs from the app it runs in (pdtui.ui.app.PdtuiApp, which cannot be
    imported here without a cycle): the open document, its path, and the dashboard refresh."""

    document: ProfileDocument | None
    profile_path: Path | None

    def refresh_dashboard(self) -> None: ...


class EditorActions(Screen):
    """Actions of the editor screen; the screen itself (editor.py) implements what is declared."""

    selection: tuple[str, int | None]

    if TYPE_CHECKING:
        def reload(self) -> None: ...
        def _show_selection(self) -> None: ...
        def _flush_pending(self) -> None: ...
        def _refresh_feedback(self) -> None: ...

    @property
    def host(self) -> _EditorHost:
        # A cast: textual types `self.app` as a plain App; the editor is installed only by PdtuiApp.
        return cast(_EditorHost, self.app)

    @property
    def document(self) -> ProfileDocument | None:
        return self.host.document

    def _selected_instance(self) -> tuple[str, int] | None:
        key, index = self.selection
        if key == DEPLOYMENT or index is None:
            self.notify("select an instance first (left list)", severity="warning")
            return None
        return key, index

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_save(self) -> None:
        doc = self.document
        if doc is None:
            return
        self._save_to(doc.path)

    def _save_to(self, path: Path) -> None:
        """Show exactly what changes on disk, then write (errors need "save with errors")."""
        from pdtui.ui.screens.save_dialog import ask_and_save

        self._flush_pending()
        ask_and_save(self, self.document, path)

    def saved(self) -> None:
        """Called once the file is written."""
        self._refresh_feedback()
        self.host.refresh_dashboard()

    def action_undo(self) -> None:
        self._history("undo")

    def action_redo(self) -> None:
        self._history("redo")

    def _history(self, which: str) -> None:
        doc = self.document
        if doc is None:
            return
        self._flush_pending()
        if not getattr(doc, which)():
            self.notify(f"nothing to {which}")
            return
        self.reload()
        self.host.refresh_dashboard()

    def action_save_as(self) -> None:
        doc = self.document
        if doc is None:
            return
        suggestion = str(paths.user_profiles_dir() / doc.path.name)

        def chosen(path: str | None) -> None:
            if path:
                self._save_to(expand_user(path))

        self.app.push_screen(PathScreen("Save the profile as:", suggestion), chosen)

    def action_revert(self) -> None:
        doc = self.document
        if doc is None or not doc.dirty:
            self.notify("nothing to revert")
            return

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                doc.revert()
                self.reload()
                self.host.refresh_dashboard()
                self.notify(f"reverted to {doc.path}")

        self.app.push_screen(confirm(f"Throw away the changes to {doc.path.name}?", "Revert", "Revert"), chosen)

    def action_open_profile(self) -> None:
        def opened(path: str | None) -> None:
            if not path:
                return
            try:
                document = ProfileDocument.open(path)
            except OSError as exc:
                self.notify(f"cannot open {path}: {exc.strerror or exc}", severity="error")
                return
            self.host.document = document
            self.host.profile_path = document.path
            self.selection = (DEPLOYMENT, None)
            self.reload()
            self.host.refresh_dashboard()

        def ask() -> None:
            self.app.push_screen(PathScreen("Open a profile (a path, or a preset: demo, 1p1d, xp1d, xpyd, nixl-1p1d):", must_exist=True), opened)

        doc = self.document
        if doc is not None and doc.dirty:
            self.app.push_screen(
                confirm(f"{doc.path.name} has unsaved changes. Open another profile anyway?", "Discard", "Unsaved changes"),
                lambda answer: ask() if answer == "yes" else None,
            )
        else:
            ask()

    def action_add_instance(self, role: str) -> None:
        doc = self.document
        if doc is None:
            return
        key, index = doc.add_instance(role)
        self.selection = (key, index)
        self.reload()

    def action_duplicate_instance(self) -> None:
        selected = self._selected_instance()
        doc = self.document
        if selected is None or doc is None:
            return
        self.selection = doc.duplicate_instance(*selected)
        self.reload()

    def action_remove_instance(self) -> None:
        selected = self._selected_instance()
        doc = self.document
        if selected is None or doc is None:
            return
        key, index = selected
        name = doc.get(f"{key}[{index}].name")

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                doc.remove_instance(key, index)
                self.selection = (DEPLOYMENT, None)
                self.reload()
                self.host.refresh_dashboard()

        self.app.push_screen(confirm(f"Remove {name} from the profile?", "Remove", "Remove instance"), chosen)

    def action_pick_gpus(self) -> None:
        from pdtui.ui.screens.picker import GpuPickerScreen

        selected = self._selected_instance()
        doc = self.document
        if selected is None or doc is None:
            return
        key, index = selected

        def picked(gpus: list[int] | None) -> None:
            if gpus is None:
                return
            doc.set(f"{key}[{index}].gpus", gpus)
            self._show_selection()
            self.host.refresh_dashboard()

        self.app.push_screen(GpuPickerScreen(doc, key, index), picked)

    def palette_commands(self):
        from textual.app import SystemCommand

        yield SystemCommand("Editor: save", "Show the changes, then save (keeps the last 5 versions)", self.action_save)
        yield SystemCommand("Editor: undo", "Undo the last edit", self.action_undo)
        yield SystemCommand("Editor: redo", "Redo what was undone", self.action_redo)
        yield SystemCommand("Editor: save as", "Save the profile under a new name", self.action_save_as)
        yield SystemCommand("Editor: revert", "Back to the file on disk", self.action_revert)
        yield SystemCommand("Editor: open profile", "Open a file or a preset", self.action_open_profile)
        yield SystemCommand("Editor: add prefiller", "A new prefiller with free ports", lambda: self.action_add_instance("prefiller"))
        yield SystemCommand("Editor: add decoder", "A new decoder with free ports", lambda: self.action_add_instance("decoder"))
        yield SystemCommand("Editor: duplicate instance", "Copy the selected instance", self.action_duplicate_instance)
        yield SystemCommand("Editor: remove instance", "Remove the selected instance", self.action_remove_instance)
        yield SystemCommand("Editor: pick GPUs", "Choose the selected instance's GPUs", self.action_pick_gpus)
