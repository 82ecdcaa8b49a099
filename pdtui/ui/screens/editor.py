"""The deployment editor: sections on the left, a form, a preview, and every problem.

Each keystroke updates the profile data and re-runs the model's validation; the
problems whose dotted path falls under a field are shown right under that field, and
all of them in the list at the bottom.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import (
    Collapsible,
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

from pdtui.ui import paths
from pdtui.ui.bindings import bindings_for
from pdtui.model.document import ProfileDocument
from pdtui.model.fields import DECODER_FIELDS, DEPLOYMENT_FIELDS, PREFILLER_FIELDS, FieldSpec, format_field
from pdtui.ui.screens.dialogs import PathScreen, confirm

DEPLOYMENT = "deployment"


class FieldRow(Vertical):
    DEFAULT_CSS = """
    FieldRow { height: auto; }
    FieldRow Horizontal { height: auto; }
    FieldRow Label { width: 18; padding: 0 1 0 0; }
    FieldRow Input, FieldRow Select { width: 1fr; }
    FieldRow TextArea { width: 1fr; height: auto; max-height: 6; }
    FieldRow Switch { width: auto; }
    FieldRow .field-error { color: $error; padding-left: 18; height: auto; }
    FieldRow .field-warning { color: $warning; padding-left: 18; height: auto; }
    FieldRow .field-help { color: $text-muted; padding-left: 18; height: auto; }
    """


class EditorScreen(Screen):
    BINDINGS = bindings_for("editor")
    DEFAULT_CSS = """
    EditorScreen #editor-title { height: 1; background: $panel; padding: 0 1; }
    EditorScreen #editor-body { height: 1fr; }
    EditorScreen #sections { width: 24; border: round $primary 60%; }
    EditorScreen #sections:focus-within { border: round $primary; }
    EditorScreen #editor-tabs { width: 1fr; }
    EditorScreen #form { padding: 0 1; }
    EditorScreen #form Collapsible { padding: 0; border-top: none; }
    EditorScreen #form Collapsible > Contents { padding: 0 0 0 1; }
    EditorScreen #problems { height: 6; border: round $error 60%; padding: 0 1; }
    EditorScreen #problems.clean { border: round $success 60%; }
    EditorScreen .preview { padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.selection: tuple[str, int | None] = (DEPLOYMENT, None)
        self._field_paths: dict[str, tuple[str, FieldSpec]] = {}
        self._building = False

    @property
    def document(self) -> ProfileDocument | None:
        return self.app.document  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static("", id="editor-title")
        with Horizontal(id="editor-body"):
            yield ListView(id="sections")
            with TabbedContent(id="editor-tabs"):
                with TabPane("Form", id="tab-form"):
                    yield VerticalScroll(id="form")
                with TabPane("Preview", id="tab-preview"):
                    with VerticalScroll():
                        yield Static("", id="preview-argv", classes="preview", markup=False)
                        yield Static("", id="preview-env", classes="preview", markup=False)
                        yield Static("", id="preview-lmcache", classes="preview", markup=False)
        yield VerticalScroll(id="problems")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    # -- building ------------------------------------------------------------------------

    def reload(self) -> None:
        """Rebuild everything from the document (after open, revert, add/remove)."""
        self._rebuild_sections()
        self._rebuild_form()
        self._refresh_feedback()

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
        selected = [(k, i) for k, i, _ in sections].index(self.selection)
        view.index = selected
        self.call_after_refresh(self._end_building)

    def _end_building(self) -> None:
        self._building = False

    def _fields(self) -> tuple[str, tuple[FieldSpec, ...]]:
        key, index = self.selection
        if key == DEPLOYMENT:
            return "", DEPLOYMENT_FIELDS
        return f"{key}[{index}].", DECODER_FIELDS if key == "decoders" else PREFILLER_FIELDS

    def _rebuild_form(self) -> None:
        form = self.query_one("#form", VerticalScroll)
        form.remove_children()
        doc = self.document
        self._field_paths = {}
        if doc is None:
            form.mount(Static("No profile loaded. ctrl+o opens one (a path or a preset such as 1p1d)."))
            return
        doc.clear_field_problems()  # the fields are rebuilt from the data, typed text is gone
        prefix, fields = self._fields()
        rows: list[Widget] = []
        groups: dict[str, list[Widget]] = {}
        group_paths: dict[str, list[str]] = {}
        for n, spec in enumerate(fields):
            path = prefix + spec.key
            widget_id = f"field-{n}"
            self._field_paths[widget_id] = (path, spec)
            row = self._field_row(doc, spec, path, widget_id, inherited=bool(prefix))
            if spec.group:
                groups.setdefault(spec.group, []).append(row)
                group_paths.setdefault(spec.group, []).append(path)
            else:
                rows.append(row)
        for group, members in groups.items():
            # Closed so the form fits 80x24; open where something in it needs fixing.
            has_problems = any(doc.problems_at(path) for path in group_paths[group])
            rows.append(Collapsible(*members, title=group, collapsed=not has_problems, classes=f"group-{_slug(group)}"))
        form.mount_all(rows)

    def _field_row(self, doc: ProfileDocument, spec: FieldSpec, path: str, widget_id: str, inherited: bool) -> FieldRow:
        value = doc.get(path)
        placeholder = spec.placeholder
        if inherited and spec.inherit and doc.get(spec.inherit) is not None:
            placeholder = f"inherits {format_field(spec.kind, doc.get(spec.inherit))}"
        control: Widget
        if spec.kind in ("choice", "tristate"):
            choices = spec.choices if spec.kind == "choice" else ("true", "false")
            current_text = format_field(spec.kind, value)
            options = [(c, c) for c in choices]
            current = current_text if current_text in choices else Select.NULL
            allow_blank = spec.optional or spec.kind == "tristate" or current_text not in choices
            control = Select(options, value=current, id=widget_id, allow_blank=allow_blank, compact=True,
                             prompt=placeholder or "Select")
        elif spec.kind == "bool":
            control = Switch(value is True, id=widget_id, animate=False)
        elif spec.kind == "env":
            control = TextArea(format_field(spec.kind, value), id=widget_id, compact=True, placeholder=placeholder,
                               soft_wrap=False, show_cursor=True, highlight_cursor_line=False)
        else:
            control = Input(format_field(spec.kind, value), id=widget_id, compact=True, placeholder=placeholder)
        parts: list[Widget] = [
            Horizontal(Label(spec.label), control),
            Static("", classes="field-error", id=f"{widget_id}-error", markup=False),
        ]
        if spec.help:
            parts.insert(1, Static(spec.help, classes="field-help", markup=False))
        return FieldRow(*parts)

    # -- feedback ------------------------------------------------------------------------

    def _refresh_feedback(self) -> None:
        doc = self.document
        title = self.query_one("#editor-title", Static)
        problems_box = self.query_one("#problems", VerticalScroll)
        if doc is None:
            title.update("[b]Editor[/b]  no profile")
            problems_box.remove_children()
            return
        validation = doc.validation
        n_err, n_warn = len(validation.errors), len(validation.warnings)
        state = "[b $warning]modified[/]" if doc.dirty else "saved"
        title.update(f"[b]Editor[/b]  {doc.path.name}  {state}  ·  {n_err} error(s), {n_warn} warning(s)")
        for widget_id, (path, _spec) in self._field_paths.items():
            try:
                line = self.query_one(f"#{widget_id}-error", Static)
            except Exception:
                continue
            found = doc.problems_at(path)
            if found:
                line.set_class(not any(p.is_error for p in found), "field-warning")
                line.set_class(any(p.is_error for p in found), "field-error")
                line.update("\n".join(_inline(p) for p in found))
                line.display = True
            else:
                line.update("")
                line.display = False
        problems_box.remove_children()
        problems_box.set_class(not validation.problems, "clean")
        problems_box.border_title = f"Problems ({n_err} errors, {n_warn} warnings)"
        if doc.load_error:
            problems_box.mount(Static(doc.load_error, markup=False))
        if not validation.problems and not doc.load_error:
            problems_box.mount(Static("No problems: ready to launch.", markup=False))
        for problem in validation.problems:
            problems_box.mount(Static(problem.format(), markup=False, classes="problem"))
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
            self.selection = selection
            self._rebuild_form()
            self.call_after_refresh(self._refresh_feedback)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._field_changed(event.input.id, event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        value = event.value
        self._field_changed(event.select.id, "" if value is Select.NULL else str(value))

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self._field_changed(event.switch.id, "true" if event.value else "")

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self._field_changed(event.text_area.id, event.text_area.text)

    def _field_changed(self, widget_id: str | None, text: str) -> None:
        doc = self.document
        if doc is None or widget_id not in self._field_paths:
            return
        path, spec = self._field_paths[widget_id]
        if not doc.set_text(path, spec.kind, text):
            return
        if spec.key == "name" and self.selection[0] != DEPLOYMENT:
            label = self.query_one("#sections", ListView).highlighted_child
            if label is not None:
                role = "P" if self.selection[0] == "prefillers" else "D"
                label.query_one(Label).update(f"{role} {text}")
        self._refresh_feedback()
        self.app.refresh_dashboard()  # type: ignore[attr-defined]

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
        doc = self.document
        try:
            backup = doc.save(path)
        except OSError as exc:
            self.notify(f"cannot save {path}: {exc.strerror or exc}", severity="error", timeout=10)
            return
        note = f" (previous version kept as {backup.name})" if backup else ""
        errors = len(doc.validation.errors)
        self.notify(f"saved {path}{note}" + (f"; it still has {errors} error(s)" if errors else ""), severity="warning" if errors else "information")
        self._refresh_feedback()
        self.app.refresh_dashboard()  # type: ignore[attr-defined]

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
                self.app.refresh_dashboard()  # type: ignore[attr-defined]
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
            self.app.document = document  # type: ignore[attr-defined]
            self.app.profile_path = document.path  # type: ignore[attr-defined]
            self.selection = (DEPLOYMENT, None)
            self.reload()
            self.app.refresh_dashboard()  # type: ignore[attr-defined]

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
        if selected is None:
            return
        self.selection = self.document.duplicate_instance(*selected)
        self.reload()

    def action_remove_instance(self) -> None:
        selected = self._selected_instance()
        if selected is None:
            return
        key, index = selected
        name = self.document.get(f"{key}[{index}].name")

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                self.document.remove_instance(key, index)
                self.selection = (DEPLOYMENT, None)
                self.reload()
                self.app.refresh_dashboard()  # type: ignore[attr-defined]

        self.app.push_screen(confirm(f"Remove {name} from the profile?", "Remove", "Remove instance"), chosen)

    def action_pick_gpus(self) -> None:
        from pdtui.ui.screens.picker import GpuPickerScreen

        selected = self._selected_instance()
        if selected is None:
            return
        key, index = selected
        doc = self.document

        def picked(gpus: list[int] | None) -> None:
            if gpus is None:
                return
            doc.set(f"{key}[{index}].gpus", gpus)
            self._rebuild_form()
            self.call_after_refresh(self._refresh_feedback)
            self.app.refresh_dashboard()  # type: ignore[attr-defined]

        self.app.push_screen(GpuPickerScreen(doc, key, index), picked)

    def palette_commands(self):
        from textual.app import SystemCommand

        yield SystemCommand("Editor: save", "Save the profile (keeps a .bak)", self.action_save)
        yield SystemCommand("Editor: save as", "Save the profile under a new name", self.action_save_as)
        yield SystemCommand("Editor: revert", "Back to the file on disk", self.action_revert)
        yield SystemCommand("Editor: open profile", "Open a file or a preset", self.action_open_profile)
        yield SystemCommand("Editor: add prefiller", "A new prefiller with free ports", lambda: self.action_add_instance("prefiller"))
        yield SystemCommand("Editor: add decoder", "A new decoder with free ports", lambda: self.action_add_instance("decoder"))
        yield SystemCommand("Editor: duplicate instance", "Copy the selected instance", self.action_duplicate_instance)
        yield SystemCommand("Editor: remove instance", "Remove the selected instance", self.action_remove_instance)
        yield SystemCommand("Editor: pick GPUs", "Choose the selected instance's GPUs", self.action_pick_gpus)


def _slug(text: str) -> str:
    return "-".join(text.lower().split())


def _inline(problem) -> str:
    text = ("⚠ " if not problem.is_error else "✖ ") + problem.message
    if problem.hint:
        text += f" — {problem.hint}"
    return text
