"""The deployment editor: sections on the left, a form, a preview, and every problem.

The forms are built once per layout (deployment, prefiller, decoder) and re-bound when
another section is selected: the same widgets, other values (fast, nothing blanks, no
keystroke lost). Every field is bound to its dotted path in the document; the document
(pdtui.model.document) edits the operator's YAML in place and validates it exactly as
`pdtui validate` does, plus this box's GPUs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, cast

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import (
    Footer,
    Input,
    Label,
    ListItem,
    ListView,
    Select,
    Static,
    Switch,
    TabbedContent,
    TabPane,
    TextArea,
)

from pdtui.model.document import ProfileDocument
from pdtui.model.fields import DECODER_FIELDS, DEPLOYMENT_FIELDS, PREFILLER_FIELDS
from pdtui.model.hostchecks import GpuFact
from pdtui.ui import paths
from pdtui.ui.bindings import bindings_for
from pdtui.ui.messages import ProfileChanged
from pdtui.ui.screens.dialogs import PathScreen, confirm
from pdtui.ui.widgets.profile_form import FieldRow, ProfileForm, control_text  # noqa: F401 - FieldRow for CSS users

DEPLOYMENT = "deployment"
LAYOUTS = {"deployment": DEPLOYMENT_FIELDS, "prefiller": PREFILLER_FIELDS, "decoder": DECODER_FIELDS}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def gpu_facts(reading) -> list[GpuFact] | None:
    """The GPU view's reading as the facts the document checks against."""
    inventory = getattr(reading, "inventory", None)
    gpus = getattr(inventory, "gpus", None)
    if gpus is None:
        return None
    facts = []
    for gpu in gpus:
        memory = gpu.memory_total if isinstance(gpu.memory_total, int) else None
        facts.append(GpuFact(gpu.index, memory))
    return facts


class _EditorHost(Protocol):
    """What the editor needs from the app it runs in (pdtui.ui.app.PdtuiApp, which cannot be
    imported here without a cycle): the open document, its path, and the dashboard refresh."""

    document: ProfileDocument | None
    profile_path: Path | None

    def refresh_dashboard(self) -> None: ...


class EditorScreen(Screen):
    BINDINGS = bindings_for("editor")
    CSS_PATH = "screens.tcss"  # its styles (read when the first such screen is shown)

    def __init__(self) -> None:
        super().__init__()
        self.selection: tuple[str, int | None] = (DEPLOYMENT, None)
        self._forms: dict[str, ProfileForm] = {}
        self._building = False

    @property
    def host(self) -> _EditorHost:
        # A cast: textual types `self.app` as a plain App; the editor is installed only by PdtuiApp.
        return cast(_EditorHost, self.app)

    @property
    def document(self) -> ProfileDocument | None:
        return self.host.document

    @property
    def _field_paths(self) -> dict[str, tuple[str, object]]:
        """widget id -> (path, spec) of the form shown now."""
        form = self._form()
        if form is None:
            return {}
        return {form.control_id(key): (form.prefix + key, spec) for key, spec in form.specs.items()}

    def compose(self) -> ComposeResult:
        yield Static("", id="editor-title")
        with Horizontal(id="editor-body"):
            yield ListView(id="sections")
            with TabbedContent(id="editor-tabs"):
                with TabPane("Form", id="tab-form"):
                    with VerticalScroll(id="form"):
                        yield Static("", id="form-empty")
                        # Built once, with the screen; switching sections only re-binds them.
                        for layout, specs in LAYOUTS.items():
                            form = self._forms[layout] = ProfileForm(layout, specs)
                            form.display = False
                            yield form
                with TabPane("Preview", id="tab-preview"):
                    with VerticalScroll():
                        yield Static("", id="preview-argv", classes="preview", markup=False)
                        yield Static("", id="preview-env", classes="preview", markup=False)
                        yield Static("", id="preview-lmcache", classes="preview", markup=False)
        with VerticalScroll(id="problems"):
            yield Static("", id="problem-list", classes="problem", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._sync_gpu_facts(getattr(self.app, "gpu_reading", None))  # the list and form: on resume

    def on_screen_resume(self) -> None:
        self._flush_pending()
        self.reload()

    def on_profile_changed(self, _message: ProfileChanged) -> None:
        """The profile finished loading after this screen opened (it loads after the first
        paint, so a quick `2` can open the editor before it)."""
        self.reload()
        self._refresh_feedback()

    def on_gpu_reading(self, reading) -> None:
        """Called by the app on each GPU poll: GPU indices and memory for the checks."""
        if self._sync_gpu_facts(reading):
            self._refresh_feedback()

    def _sync_gpu_facts(self, reading) -> bool:
        doc = self.document
        facts = gpu_facts(reading) if reading is not None else None
        return doc is not None and facts is not None and doc.set_gpus(facts)

    # -- building ------------------------------------------------------------------------

    def reload(self) -> None:
        """Rebuild the section list and re-bind the form (after open, revert, add/remove, undo)."""
        self._rebuild_sections()
        self._show_selection()

    def _sections(self) -> list[tuple[str, int | None, str]]:
        doc = self.document
        items: list[tuple[str, int | None, str]] = [(DEPLOYMENT, None, "Deployment")]
        if doc is not None:
            for role, index, name in doc.instances():
                key = "prefillers" if role == "prefiller" else "decoders"
                items.append((key, index, f"{'P' if role == 'prefiller' else 'D'} {name}"))
        return items

    def _rebuild_sections(self) -> None:
        view = self.query_one("#sections", ListView)
        sections = self._sections()
        if (self.selection[0], self.selection[1]) not in [(k, i) for k, i, _ in sections]:
            self.selection = (DEPLOYMENT, None)
        self._building = True
        view.clear()
        for key, index, label in sections:
            view.append(ListItem(Label(label), name=f"{key}:{'' if index is None else index}"))
        view.index = [(k, i) for k, i, _ in sections].index(self.selection)
        self.call_after_refresh(self._end_building)

    def _end_building(self) -> None:
        """The list is rebuilt: a key that moved its highlight meanwhile still counts."""
        self._building = False
        item = self.query_one("#sections", ListView).highlighted_child
        if item is not None and item.name:
            key, _, index = item.name.partition(":")
            selection = (key, int(index) if index else None)
            if selection != self.selection:
                self._switch(selection)

    def _layout(self) -> tuple[str, str]:
        key, index = self.selection
        if key == DEPLOYMENT:
            return "deployment", ""
        return ("decoder" if key == "decoders" else "prefiller"), f"{key}[{index}]."

    def _form(self) -> ProfileForm | None:
        layout, _ = self._layout()
        return self._forms.get(layout)

    def _show_selection(self) -> None:
        """Show the selected section: its layout's form (built the first time), re-bound."""
        doc = self.document
        empty = self.query_one("#form-empty", Static)
        if doc is None:
            empty.update("No profile loaded. ctrl+o opens one (a path or a preset such as 1p1d).")
            empty.display = True
            for form in self._forms.values():
                form.display = False
            self._refresh_feedback()
            return
        empty.display = False
        doc.clear_field_problems()  # the fields are re-bound from the data, typed text is gone
        layout, prefix = self._layout()
        form = self._forms[layout]
        for other in self._forms.values():
            if other is not form:
                other.display = False
        form.bind(doc, prefix)
        form.display = True
        self._refresh_feedback()

    def _switch(self, selection: tuple[str, int | None]) -> None:
        """Another section: what was typed and not yet handled is written first (to where it
        was typed), then the form is re-bound to the new section."""
        self._flush_pending()
        self.selection = selection
        self._show_selection()

    def _flush_pending(self) -> None:
        form = self._form()
        doc = self.document
        if form is not None and doc is not None and form.display:
            for path, spec, text in form.pending():
                form.handled_key(path, text)
                doc.set_text(path, spec.kind, text)

    # -- feedback ------------------------------------------------------------------------

    def _refresh_feedback(self) -> None:
        doc = self.document
        title = self.query_one("#editor-title", Static)
        problems_box = self.query_one("#problems", VerticalScroll)
        problem_list = self.query_one("#problem-list", Static)
        if doc is None:
            title.update("[b]Editor[/b]  no profile")
            problem_list.update("")
            return
        validation = doc.validation
        n_err, n_warn = len(validation.errors), len(validation.warnings)
        state = "[b $warning]modified[/]" if doc.dirty else "saved"
        undo = "  ·  ctrl+z undo" if doc.can_undo else ""
        title.update(f"[b]Editor[/b]  {doc.path.name}  {state}  ·  {_plural(n_err, 'error')}, {_plural(n_warn, 'warning')}{undo}")
        form = self._form()
        if form is not None and form.display:
            form.show_problems(doc)
        problems_box.set_class(not validation.problems and not doc.load_error, "clean")
        problems_box.border_title = f"Problems ({_plural(n_err, 'error')}, {_plural(n_warn, 'warning')})"
        lines = [doc.load_error] if doc.load_error else []
        if not validation.problems and not doc.load_error:
            lines.append("No problems: ready to launch.")
        lines += [problem.format() for problem in validation.problems]
        problem_list.update("\n".join(lines))
        self._refresh_preview()

    def _refresh_preview(self) -> None:
        doc = self.document
        argv = self.query_one("#preview-argv", Static)
        env = self.query_one("#preview-env", Static)
        lmcache = self.query_one("#preview-lmcache", Static)
        key, index = self.selection
        if doc is None or key == DEPLOYMENT:
            argv.update("Select an instance to see its exact command line, environment and LMCache YAML.")
            env.update("")
            lmcache.update("")
            return
        name = doc.get(f"{key}[{index}].name")
        preview = doc.preview(str(name)) if name else None
        if preview is None:
            argv.update("No preview while the profile has errors (see Problems).")
            env.update("")
            lmcache.update("")
            return
        argv.update("# command line\n" + preview["argv"])
        env.update("\n# environment (on top of yours; secrets masked)\n" + preview["env"])
        lmcache.update("\n# LMCache YAML\n" + preview["lmcache"])

    # -- events --------------------------------------------------------------------------

    def on_list_view_highlighted(self, event: ListView.Highlighted) -> None:
        if self._building or event.item is None or not event.item.name:
            return
        key, _, index = event.item.name.partition(":")
        selection = (key, int(index) if index else None)
        if selection != self.selection:
            self._switch(selection)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._field_changed(event.input, event.value, event)

    def on_select_changed(self, event: Select.Changed) -> None:
        self._field_changed(event.select, control_text(event.select), event)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self._field_changed(event.switch, "true" if event.value else "", event)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self._field_changed(event.text_area, event.text_area.text, event)

    def _field_changed(self, control: Widget, text: str, event: Message) -> None:
        doc = self.document
        form = self._form()
        if doc is None or form is None or not form.accepts(event):
            return  # sent by a form before it was re-bound (or hidden): it writes nothing
        field = form.field_of(control)
        if field is None:
            return
        path, spec = field
        form.handled(control, text)
        if not doc.set_text(path, spec.kind, text):
            return
        if spec.key == "name" and self.selection[0] != DEPLOYMENT:
            label = self.query_one("#sections", ListView).highlighted_child
            if label is not None:
                role = "P" if self.selection[0] == "prefillers" else "D"
                label.query_one(Label).update(f"{role} {text}")
        self._refresh_feedback()
        self.host.refresh_dashboard()

    # -- actions -------------------------------------------------------------------------

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
                self._save_to(Path(path).expanduser())

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
