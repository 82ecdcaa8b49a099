"""One editor form (the deployment, a prefiller or a decoder), built once and re-bound.

Switching to another instance does not rebuild anything: `bind()` points the same widgets
at another instance's paths and puts its values in. Each control belongs to the field
`prefix + spec.key`; the document model does the reading and writing. A change event is
only honoured when it was sent after the current binding (see `accepts`), so an event
from a form that was re-bound or hidden can never write anywhere.
"""

from __future__ import annotations

from textual import _time
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Collapsible, Input, Label, Select, Static, Switch, TextArea

from pdtui.model.document import ProfileDocument
from pdtui.model.fields import FieldSpec, format_field
from pdtui.model.secret import MASK


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


def slug(text: str) -> str:
    return "-".join(text.lower().replace(".", "-").replace("_", "-").split())


def control_text(control: Widget) -> str:
    """What a control holds, as the text the document reads (`read_field`)."""
    if isinstance(control, Input):
        return control.value
    if isinstance(control, TextArea):
        return control.text
    if isinstance(control, Switch):
        return "true" if control.value else ""
    if isinstance(control, Select):
        return "" if control.value is Select.NULL else str(control.value)
    return ""


class ProfileForm(Vertical):
    """The fields of one layout ("deployment", "prefiller", "decoder")."""

    DEFAULT_CSS = """
    ProfileForm { height: auto; }
    ProfileForm Collapsible { padding: 0; border-top: none; }
    ProfileForm Collapsible > Contents { padding: 0 0 0 1; }
    """

    def __init__(self, layout: str, specs: tuple[FieldSpec, ...]) -> None:
        super().__init__(id=f"form-{layout}")
        self.form_layout = layout
        self.specs = {spec.key: spec for spec in specs}
        self.prefix = ""  # "" for the deployment, "decoders[1]." for an instance
        self.bound_at = _time.get_time()
        self._known: dict[str, str] = {}  # key -> the text last put in or handled
        self._controls: dict[str, Widget] = {}
        self._keys: dict[int, str] = {}  # id(control) -> key
        self._groups: dict[str, Collapsible] = {}
        self._error_lines: dict[str, Static] = {}
        self._shown_problems: dict[str, tuple[str, bool]] = {}

    def control_id(self, key: str) -> str:
        return f"field-{self.form_layout}-{slug(key)}"

    def compose(self):
        groups: dict[str, list[Widget]] = {}
        for spec in self.specs.values():
            row = self._row(spec)
            if spec.group:
                groups.setdefault(spec.group, []).append(row)
            else:
                yield row
        for group, rows in groups.items():
            collapsible = Collapsible(*rows, title=group, collapsed=True, classes=f"group-{slug(group)}")
            self._groups[group] = collapsible
            yield collapsible

    def _row(self, spec: FieldSpec) -> FieldRow:
        widget_id = self.control_id(spec.key)
        control: Widget
        if spec.kind in ("choice", "tristate"):
            choices = spec.choices if spec.kind == "choice" else ("true", "false")
            control = Select([(c, c) for c in choices], id=widget_id, allow_blank=True, compact=True,
                             prompt=spec.placeholder or "not set")
        elif spec.kind == "bool":
            control = Switch(False, id=widget_id, animate=False)
        elif spec.kind == "env":
            control = TextArea("", id=widget_id, compact=True, placeholder=spec.placeholder, soft_wrap=False,
                               show_cursor=True, highlight_cursor_line=False)
        else:
            control = Input("", id=widget_id, compact=True, placeholder=spec.placeholder)
        self._controls[spec.key] = control
        self._keys[id(control)] = spec.key
        parts: list[Widget] = [Horizontal(Label(spec.label), control)]
        if spec.help:
            parts.append(Static(spec.help, classes="field-help", markup=False))
        error_line = Static("", classes="field-error", id=f"{widget_id}-error", markup=False)
        error_line.display = False
        parts.append(error_line)
        return FieldRow(*parts)

    # -- binding ---------------------------------------------------------------------

    def bind(self, doc: ProfileDocument, prefix: str) -> None:
        """Show the values at `prefix` in the same widgets. Writes nothing to the document:
        the change events this sends are older than `bound_at` and so ignored."""
        self.prefix = prefix
        declared = doc.declared_secrets
        for key, control in self._controls.items():
            spec = self.specs[key]
            value = doc.get(prefix + key)
            text = format_field(spec.kind, value, declared)
            self._known[key] = text
            self._put(control, spec, text, self._placeholder(doc, spec))
        for group, collapsible in self._groups.items():
            paths = [prefix + k for k, s in self.specs.items() if s.group == group]
            collapsible.collapsed = not any(doc.problems_at(path) for path in paths)
        self.bound_at = _time.get_time()

    def _placeholder(self, doc: ProfileDocument, spec: FieldSpec) -> str:
        if self.prefix and spec.inherit and doc.get(spec.inherit) is not None:
            return f"inherits {format_field(spec.kind, doc.get(spec.inherit), doc.declared_secrets)}"
        return spec.placeholder

    def remask(self, doc: ProfileDocument, control: Widget) -> bool:
        """Show the field's stored value again, its secrets masked (the operator has left
        the field: a token typed or pasted into it stays on screen no longer than that).
        Only when the field holds what is stored: text still in error is left as typed."""
        key = self._keys.get(id(control))
        if key is None:
            return False
        spec = self.specs[key]
        path = self.prefix + key
        if path in doc.field_problems:
            return False
        text = format_field(spec.kind, doc.get(path), doc.declared_secrets)
        if MASK not in text or control_text(control) == text:
            return False  # nothing hidden: the operator's own spelling stays
        self._known[key] = text
        self._put(control, spec, text, self._placeholder(doc, spec))
        return True

    def _put(self, control: Widget, spec: FieldSpec, text: str, placeholder: str) -> None:
        if isinstance(control, Input):
            control.placeholder = placeholder
            if control.value != text:
                control.value = text
                control.cursor_position = len(text)
        elif isinstance(control, TextArea):
            control.placeholder = placeholder
            if control.text != text:
                control.load_text(text)
        elif isinstance(control, Switch):
            control.value = text == "true"
        elif isinstance(control, Select):
            control.prompt = placeholder or "not set"
            options = spec.choices if spec.kind == "choice" else ("true", "false")
            control.value = text if text in options else Select.NULL

    def accepts(self, message: Message) -> bool:
        """Only events sent after the current binding may write."""
        return self.display and message.time > self.bound_at

    def field_of(self, control: Widget) -> tuple[str, FieldSpec] | None:
        key = self._keys.get(id(control))
        if key is None:
            return None
        return self.prefix + key, self.specs[key]

    def handled(self, control: Widget, text: str) -> None:
        key = self._keys.get(id(control))
        if key is not None:
            self._known[key] = text

    def handled_key(self, path: str, text: str) -> None:
        if path.startswith(self.prefix) and path[len(self.prefix):] in self._controls:
            self._known[path[len(self.prefix):]] = text

    def pending(self) -> list[tuple[str, FieldSpec, str]]:
        """Fields whose widget holds text whose change event has not been handled yet
        (typed just before a switch): written before the form is re-bound, so no keystroke
        is lost."""
        out = []
        for key, control in self._controls.items():
            text = control_text(control)
            if text != self._known.get(key, text):
                out.append((self.prefix + key, self.specs[key], text))
        return out

    def paths(self) -> dict[str, str]:
        """widget id -> field path, for everything in this form."""
        return {self.control_id(key): self.prefix + key for key in self._controls}

    def show_problems(self, doc: ProfileDocument) -> None:
        """Each field's problems under it. Only lines whose text changed are touched: a
        class or display change restyles and re-lays out the form."""
        for key in self._controls:
            found = doc.problems_at(self.prefix + key)
            text = "\n".join(inline(p) for p in found)
            error = any(p.is_error for p in found)
            if self._shown_problems.get(key) == (text, error):
                continue
            self._shown_problems[key] = (text, error)
            line = self._error_lines.get(key)
            if line is None:
                try:
                    line = self._error_lines[key] = self.query_one(f"#{self.control_id(key)}-error", Static)
                except Exception:  # noqa: BLE001 - not mounted yet
                    self._shown_problems.pop(key, None)
                    continue
            line.set_class(bool(found) and not error, "field-warning")
            line.set_class(error, "field-error")
            line.update(text)
            line.display = bool(found)


def inline(problem) -> str:
    text = ("⚠ " if not problem.is_error else "✖ ") + problem.message
    if problem.value is not None and str(problem.value) not in problem.message:
        text += f" ({problem.value!r})" if isinstance(problem.value, str) else f" ({problem.value})"
    if problem.hint:
        text += f" — {problem.hint}"
    return text
