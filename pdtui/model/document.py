"""The profile being edited: the operator's YAML text, edited in place, and its validation.

The document keeps ruamel's round-trip tree of the file and the text it came from. An edit
changes the tree at a dotted path (`decoders[0].port`) and the text only on the lines that
edit touches (see `yamldoc.Writer`): comments, key order, quoting and flow/block style of
everything else are the operator's own. With no edit, `text()` is the file, byte for byte.

A half-typed value ("71x0" in a port) is kept exactly as typed and reported by the model's
own validation at its dotted path, which is where the form shows it. Adding, duplicating and
removing instances is in docinstances.py.
"""

from __future__ import annotations

import copy
import difflib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pdtui.model import yamldoc
from pdtui.model.docinstances import InstanceEdits
from pdtui.model.dotted import get_path, has_path, set_in_tree
from pdtui.model.fields import read_field
from pdtui.model.files import atomic_write
from pdtui.model.hostchecks import GpuFact, check_gpus
from pdtui.model.loader import load_data
from pdtui.model.problems import Problem
from pdtui.model.validate import Validation, validate_loaded

KEEP_BACKUPS = 5
UNDO_LIMIT = 200


def _under(problem_path: str, path: str) -> bool:
    return problem_path == path or problem_path.startswith((path + ".", path + "["))


@dataclass(frozen=True)
class _State:
    """What undo goes back to: the text, and what the field problems were."""

    text: str
    field_problems: tuple[tuple[str, Problem], ...]


class ProfileDocument(InstanceEdits):
    def __init__(self, path: Path, text: str, gpus: Sequence[GpuFact] | None = None) -> None:
        self.path = Path(path)
        self.gpus: tuple[GpuFact, ...] | None = tuple(gpus) if gpus is not None else None
        text = self._newlines(text)
        self._saved_text = text
        self.load_error: str | None = None
        self.load_problems: list[Problem] = []
        # Text typed into a field that has no data form (an unclosed quote): reported at the
        # field's path and counted as an error, while the data keeps its last good value.
        self.field_problems: dict[str, Problem] = {}
        self._undo: list[_State] = []
        self._redo: list[_State] = []
        self._last_edit: str | None = None  # keystrokes in one field are one undo step
        self._load(text)
        self.validation: Validation = self.validate()

    @classmethod
    def open(cls, path: str | Path, gpus: Sequence[GpuFact] | None = None) -> ProfileDocument:
        path = Path(path)
        return cls(path, _read(path), gpus)

    def _load(self, text: str) -> None:
        """Parse text into the tree; the text itself is kept as the truth for every line."""
        self._text = text
        self._writer = yamldoc.Writer(text)
        self.load_error = None
        self.load_problems = []
        try:
            parsed = yamldoc.parse(text)
        except yamldoc.YamlProblem as exc:
            where = f":{exc.line}" if exc.line else ""
            self.load_error = f"{self.path}{where}: {exc.message}"
            self.load_problems = [Problem("", exc.message, line=exc.line, column=exc.column)]
            parsed = None
        if parsed is not None and parsed.tree is None:
            parsed = yamldoc.parse("{}\n")  # an empty file: a profile still to be written
            parsed.tree.fa.set_block_style()
        if parsed is not None and not isinstance(parsed.tree, dict):
            self.load_error = f"{self.path}: a profile must be a YAML mapping"
            parsed = None
        if parsed is None:
            parsed = yamldoc.parse("{}\n")
            self._editable = False
        else:
            self._editable = True
        self.tree = parsed.tree
        self.data: dict[str, Any] = parsed.data
        self._positions = parsed.positions
        self._dump = self._writer.dump(self.tree) if self._editable else text

    # -- reading -------------------------------------------------------------------

    def text(self) -> str:
        """What saving would write: the file with exactly the edited lines changed."""
        return self._text.replace("\n", "\r\n") if self._crlf else self._text

    def _newlines(self, text: str) -> str:
        """Work on "\n" lines; a file whose every line ends in CRLF gets CRLF back."""
        self._crlf = "\n" in text and text.count("\r\n") == text.count("\n")
        return text.replace("\r\n", "\n") if self._crlf else text

    @property
    def saved_text(self) -> str:
        return self._saved_text

    @property
    def dirty(self) -> bool:
        return self._text != self._saved_text

    def get(self, path: str, default: Any = None) -> Any:
        return get_path(self.data, path, default)

    @property
    def declared_secrets(self) -> tuple[str, ...]:
        """The names the profile lists under `secrets:` (masked on screen like the rest)."""
        names = self.data.get("secrets")
        return tuple(str(n) for n in names) if isinstance(names, list) else ()

    def diff(self, context: int = 1) -> list[str]:
        """What saving changes on disk: a unified diff of the saved text and the new one."""
        return list(
            difflib.unified_diff(
                self._saved_text.splitlines(), self._text.splitlines(), f"{self.path.name} (on disk)",
                f"{self.path.name} (new)", n=context, lineterm="",
            )
        )

    # -- editing -------------------------------------------------------------------

    def _edit(self, change, path: str | None = None) -> bool:
        """Apply change(tree) and rewrite only the lines it changed. False when nothing did.

        Keystrokes in one field (`path` as in the last edit) are one edit: each is applied
        to the document as it was before the first of them, so emptying a field on the way
        to a new value ("7201" → "" → "7209") never moves the key or drops its comment."""
        if not self._editable:
            return False
        previous = self._text
        session = path is not None and path == self._last_edit and bool(self._undo)
        if session:
            self._restore(self._undo[-1].text)
        before = self._undo[-1] if session else _State(self._text, tuple(self.field_problems.items()))
        try:
            change(self.tree)
        except LookupError:
            if session:
                self._restore(previous)
            return False  # a path into an instance that is not there (any more): write nothing
        new_dump = self._writer.dump(self.tree)
        new_text = self._writer.rewrite(self._dump, new_dump, self._text)
        self._dump = new_dump
        self._text = new_text
        self.data, self._positions = yamldoc.plain(self.tree)
        if not session:
            if new_text == before.text:
                return False
            self._undo.append(before)
            del self._undo[:-UNDO_LIMIT]
        elif new_text == before.text and not before.field_problems:
            self._undo.pop()  # typed back to what it was: nothing to undo
            path = None
        self._redo.clear()
        self._last_edit = path
        return new_text != previous

    def set(self, path: str, value: Any) -> Validation:
        self.field_problems.pop(path, None)
        self._edit(lambda tree: set_in_tree(tree, path, copy.deepcopy(value)))
        self._last_edit = None
        return self.revalidate()

    def set_text(self, path: str, kind: str, text: str) -> bool:
        """Store what was typed into the field at `path`; False when nothing changed."""
        result = read_field(kind, text, self.get(path), self.declared_secrets)
        if result.error:
            problem = Problem(path, result.error, None, result.hint)
            if self.field_problems.get(path) == problem:
                return False
            if not self._undo or self._last_edit != path:
                self._undo.append(_State(self._text, tuple(self.field_problems.items())))
            self._last_edit = path
            self.field_problems[path] = problem
            self.revalidate()
            return True
        had_problem = self.field_problems.pop(path, None) is not None
        unchanged = self.get(path) == result.value and (result.value is not None or not has_path(self.data, path))
        if unchanged and type(self.get(path)) is type(result.value):
            if had_problem:
                self.revalidate()
            return had_problem
        self._edit(lambda tree: set_in_tree(tree, path, result.value), path)
        self.revalidate()
        return True

    def clear_field_problems(self) -> None:
        """The form was rebuilt from the data: text that could not be stored is gone."""
        if self.field_problems:
            self.field_problems = {}
            self.revalidate()

    # -- undo ------------------------------------------------------------------------

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        return self._step(self._undo, self._redo)

    def redo(self) -> bool:
        return self._step(self._redo, self._undo)

    def _step(self, source: list[_State], target: list[_State]) -> bool:
        if not source:
            return False
        target.append(_State(self._text, tuple(self.field_problems.items())))
        state = source.pop()
        self._restore(state.text)
        self.field_problems = dict(state.field_problems)
        self._last_edit = None
        self.revalidate()
        return True

    def _restore(self, text: str) -> None:
        """Back to a text this document had: parse it, keep the writer of the file."""
        parsed = yamldoc.parse(text)
        self._text = text
        self.tree, self.data, self._positions = parsed.tree, parsed.data, parsed.positions
        self._dump = self._writer.dump(self.tree)

    # -- validation --------------------------------------------------------------------

    def revalidate(self) -> Validation:
        self.validation = self.validate()
        return self.validation

    def validate(self) -> Validation:
        """The checks of `pdtui validate` (one code path) plus this box's GPUs when known."""
        if self.load_error:
            return Validation(str(self.path), None, list(self.load_problems))
        validation = validate_loaded(load_data(self.data, self._positions, str(self.path)), self.path.parent)
        if validation.profile is not None and self.gpus is not None:
            validation.problems.extend(check_gpus(validation.profile, self.gpus))
        if not self.field_problems:
            return validation
        # The field's own message replaces what the model says about the stale value there.
        kept = [p for p in validation.problems if not any(_under(p.path, path) for path in self.field_problems)]
        return replace(validation, problems=list(self.field_problems.values()) + kept)

    def set_gpus(self, gpus: Sequence[GpuFact] | None) -> bool:
        """This box's GPUs (from the GPU view); True when that changed the problems."""
        new = tuple(gpus) if gpus is not None else None
        if new == self.gpus:
            return False
        self.gpus = new
        before = self.validation.problems
        return self.revalidate().problems != before

    def problems_at(self, path: str) -> list[Problem]:
        """Problems about the field at `path` or anything inside it (`gpus[1]`)."""
        return [p for p in self.validation.problems if _under(p.path, path)]

    # -- files ---------------------------------------------------------------------

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write atomically, keeping the last KEEP_BACKUPS versions as `<file>.bak.<n>`;
        returns the new backup (None when there was no file to back up)."""
        target = Path(path) if path is not None else self.path
        backup = atomic_write(target, self.text(), keep_backups=KEEP_BACKUPS)
        self.path = target
        self._saved_text = self._text
        self.revalidate()
        return backup

    def revert(self) -> None:
        """Back to the file on disk (or to what was last saved when the file is gone)."""
        try:
            text = self._newlines(_read(self.path))
        except OSError:
            text = self._saved_text
        self._load(text)
        self._saved_text = text
        self.field_problems = {}
        self._undo.clear()
        self._redo.clear()
        self.revalidate()

    # -- preview ---------------------------------------------------------------------

    def plan(self):
        """The plan this profile renders to (None while it has errors)."""
        from pdtui.model import render_plan

        validation = self.validation
        if not validation.ok or validation.profile is None:
            return None
        run_dir = Path(tempfile.gettempdir()) / "pdtui-preview" / (validation.profile.name or "profile")
        return render_plan(validation.profile, run_dir)

    def saved_plan(self, output_dir: str | Path):
        """The plan of the profile as saved on disk (not the edits since), rendered for
        `output_dir` (a running deployment's run directory); None when it has errors."""
        from pdtui.model import render_plan
        from pdtui.model.validate import validate_text

        validation = validate_text(self._saved_text, str(self.path), self.path.parent)
        if not validation.ok or validation.profile is None:
            return None
        return render_plan(validation.profile, Path(output_dir))

    def preview(self, instance_name: str) -> dict[str, str] | None:
        """The exact argv, environment (secrets masked) and LMCache YAML the instance would
        get; None while the profile has errors (there is no plan to show)."""
        import shlex

        from pdtui.model.render import mask_env

        plan = self.plan()
        if plan is None:
            return None
        try:
            inst = plan.instance(instance_name)
        except KeyError:
            return None
        env = mask_env(inst.env)
        return {
            "argv": " \\\n  ".join(shlex.quote(a) for a in inst.argv),
            "env": "\n".join(f"{k}={v}" for k, v in sorted(env.items())),
            "lmcache": inst.lmcache_yaml or "(no LMCache config in this mode)",
        }


def _read(path: Path) -> str:
    """The file's text exactly (no newline translation: a CRLF file stays CRLF). Raises
    OSError for what cannot be edited as text, as for a file that cannot be read."""
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise OSError("contains NUL bytes: binary data, not a YAML profile")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OSError(f"not UTF-8 text (bad byte at offset {exc.start})") from None
