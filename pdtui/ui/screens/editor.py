"""The deployment editor: sections on the left, a form, a preview, and every problem.

The forms are built once per layout (deployment, prefiller, decoder) and re-bound when
another section is selected: the same widgets, other values (fast, nothing blanks, no
keystroke lost). Every field is bound to its dotted path in the document; the document
(pdtui.model.document) edits the operator's YAML in place and validates it exactly as
`pdtui validate` does, plus this box's GPUs.
"""

from __future__ import annotations


from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
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

from pdtui.model.fields import DECODER_FIELDS, DEPLOYMENT_FIELDS, PREFILLER_FIELDS
from pdtui.model.hostchecks import GpuFact
from pdtui.ui.bindings import bindings_for
from pdtui.ui.messages import ProfileChanged
from pdtui.ui.screens.editor_actions import DEPLOYMENT, EditorActions
from pdtui.text import plural
from pdtui.ui.widgets.profile_form import FieldRow, ProfileForm, control_text  # noqa: F401 - FieldRow for CSS users

LAYOUTS = {"deployment": DEPLOYMENT_FIELDS, "prefiller": PREFILLER_FIELDS, "decoder": DECODER_FIELDS}


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


class EditorScreen(EditorActions):
    BINDINGS = bindings_for("editor")
    CSS_PATH = "screens.tcss"  # its styles (read when the first such screen is shown)

    def __init__(self) -> None:
        super().__init__()
        self.selection: tuple[str, int | None] = (DEPLOYMENT, None)
        self._forms: dict[str, ProfileForm] = {}
        self._building = False

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
        title.update(f"[b]Editor[/b]  {doc.path.name}  {state}  ·  {plural(n_err, 'error')}, {plural(n_warn, 'warning')}{undo}")
        form = self._form()
        if form is not None and form.display:
            form.show_problems(doc)
        problems_box.set_class(not validation.problems and not doc.load_error, "clean")
        problems_box.border_title = f"Problems ({plural(n_err, 'error')}, {plural(n_warn, 'warning')})"
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

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        """A field was left: what was typed is stored, then any secret in it masked."""
        form = self._form()
        doc = self.document
        if form is None or doc is None or not form.display:
            return
        self._flush_pending()
        form.remask(doc, event.widget)

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
