"""One round-trip YAML parse: the editable tree, the plain data, and where each value is.

ruamel.yaml keeps comments, key order, quoting and flow/block style, so a profile can be
edited in place. The same parse gives the loader its data and every line/column, so an
error points at the line the operator sees.

Hostile input is bounded here, before anything walks the data:
- aliases are cheap to parse (a reference), but expanding a 9-way chain of anchors
  grows as 9^levels; `plain()` stops at MAX_EXPANDED_VALUES values and names the line;
- duplicate keys are refused by the parser itself (with the line of the second one);
- only the YAML core tags are accepted (`!!python/object` and friends are refused).
"""

from __future__ import annotations

import datetime
import difflib
import io
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarfloat import ScalarFloat
from ruamel.yaml.scalarint import ScalarInt
from ruamel.yaml.scalarstring import ScalarString

from pdtui.model.fastyaml import MAX_EXPANDED_VALUES, MAX_STRUCTURE_MARKS, YamlProblem
from pdtui.model.fastyaml import check_size as _check_size

__all__ = ["MAX_EXPANDED_VALUES", "MAX_STRUCTURE_MARKS", "Parsed", "Writer", "YamlProblem", "merge_lines", "parse", "plain", "scalar"]
_CORE = "tag:yaml.org,2002:"
_PLAIN_TAGS = {f"{_CORE}{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}

Position = tuple[int, int]  # 1-based line, column


@dataclass
class Parsed:
    tree: Any  # ruamel's CommentedMap / CommentedSeq / scalar: edit this, then dump it
    data: Any  # plain dicts, lists and scalars, aliases expanded (bounded)
    positions: dict[tuple, Position]  # path -> where its value starts; path + ("<key>",) -> its key


def _yaml(mapping: int = 2, sequence: int = 4, offset: int = 2) -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the operator wrote on one line
    yaml.allow_duplicate_keys = False
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def parse(text: str) -> Parsed:
    """Parse text once into the editable tree, the plain data and the positions."""
    _check_size(text)
    try:
        tree = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or str(exc).splitlines()[0]
        if exc.context and "duplicate key" not in what:
            what = f"{what} ({exc.context})"
        if "duplicate key" in what:
            what = what.split(" with value")[0] + ": each key may appear only once in a mapping"
        else:
            what = f"YAML syntax error: {what}"
        raise YamlProblem(what, mark.line + 1 if mark else None, mark.column + 1 if mark else None) from None
    except YAMLError as exc:
        raise YamlProblem(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except RecursionError:
        raise YamlProblem("YAML nesting too deep") from None
    except (ValueError, IndexError, TypeError, ArithmeticError) as exc:
        # ruamel's scalar constructors fail on some plain scalars its resolver took for
        # numbers ("-_", "._", "0x_"): report it, never a traceback.
        raise YamlProblem(f"a plain value YAML reads as a number is malformed ({exc}); quote it to make it a string") from None
    data, positions = plain(tree)
    return Parsed(tree, data, positions)


def plain(tree: Any) -> tuple[Any, dict[tuple, Position]]:
    """The tree as plain Python data plus positions, refusing expansions past the bound."""
    positions: dict[tuple, Position] = {(): (1, 1)}
    budget = [MAX_EXPANDED_VALUES]

    def spend(where: Position) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise YamlProblem(
                f"the document expands to more than {MAX_EXPANDED_VALUES} values (a profile has a few "
                "hundred; an anchor's value counts again at each alias, so aliases of aliases multiply)",
                *where,
            )

    def convert(node: Any, path: tuple, where: Position) -> Any:
        spend(where)
        tag = _tag(node)
        if tag is not None and tag not in _PLAIN_TAGS:
            raise YamlProblem(f"the YAML tag {tag.replace(_CORE, '!!')} is not allowed in a profile", *where)
        if isinstance(node, CommentedMap):
            out: dict[Any, Any] = {}
            for key, value in node.items():
                key_at = _lc(node, "key", key, where)
                key = convert(key, path + ("<key>",), key_at) if not isinstance(key, (str, int)) else key
                if not _hashable(key):
                    raise YamlProblem("a mapping key must be a plain value, not a list or mapping", *key_at)
                child = path + (key,)
                positions.setdefault(child + ("<key>",), key_at)
                value_at = _lc(node, "value", key, key_at)
                positions.setdefault(child, value_at)
                out[key] = convert(value, child, value_at)
            return out
        if isinstance(node, CommentedSeq):
            items = []
            for index, value in enumerate(node):
                item_at = _lc(node, "item", index, where)
                positions.setdefault(path + (index,), item_at)
                items.append(convert(value, path + (index,), item_at))
            return items
        return scalar(node)

    try:
        return convert(tree, (), (1, 1)), positions
    except RecursionError:
        raise YamlProblem("YAML nesting too deep") from None


def scalar(node: Any) -> Any:
    """ruamel's formatted scalar types as the plain types they stand for."""
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, ScalarInt):
        return int(node)
    if isinstance(node, ScalarFloat):
        return float(node)
    if isinstance(node, ScalarString):
        return str(node)
    if isinstance(node, TaggedScalar):
        return str(node.value)  # !!str only (other tags were refused)
    if isinstance(node, (str, int, float, datetime.date)):
        return node
    return str(node)


def _tag(node: Any) -> str | None:
    tag = getattr(node, "tag", None)
    return getattr(tag, "value", tag) if tag is not None else None


def _lc(node: Any, kind: str, key: Any, fallback: Position) -> Position:
    try:
        line, column = getattr(node.lc, kind)(key)
    except (KeyError, IndexError, TypeError, AttributeError):
        return fallback  # a merged (<<) key or a value added after the parse
    return line + 1, column + 1


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


# --- writing it back ------------------------------------------------------------------------

class Writer:
    """Dumps edited trees so that only the edited lines differ from the operator's text.

    ruamel keeps almost everything, but it re-spaces some lines it cannot reproduce exactly
    (indentation it has to guess, a comment's column after an odd indent). So the new text
    is the original text with exactly the lines that changed between "the tree dumped before
    the edit" and "the tree dumped after it" replaced: a three-way merge in which the
    operator's own spelling of every untouched line wins.
    """

    def __init__(self, original: str) -> None:
        self.original = original
        self._yaml = _best_yaml(original)

    def dump(self, tree: Any) -> str:
        stream = io.StringIO()
        self._yaml.dump(tree, stream)
        return stream.getvalue()

    def rewrite(self, before_dump: str, after_dump: str, current: str) -> str:
        """`current` with the change from `before_dump` to `after_dump` applied line by line."""
        if before_dump == after_dump:
            return current
        if before_dump == current:
            return after_dump
        merged = merge_lines(before_dump, after_dump, current)
        return after_dump if merged is None else merged


def _best_yaml(text: str) -> YAML:
    """The indentation settings whose dump reproduces the text best (presets: 2 / 4 / 2)."""
    candidates = [(2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (2, 2, 2), (4, 4, 0)]
    try:
        from ruamel.yaml.util import load_yaml_guess_indent

        _, indent, offset = load_yaml_guess_indent(text)
        if indent is not None and offset is not None:
            candidates.insert(0, (2 if indent - (offset or 0) == 2 else indent, indent, offset))
    except Exception:  # noqa: BLE001, S110 - a guess only; the candidates below still apply
        pass
    best, best_score = None, -1.0
    for mapping, sequence, offset in candidates:
        if sequence < offset + 2 and sequence != offset:
            continue
        yaml = _yaml(mapping, sequence, offset)
        try:
            tree = yaml.load(text)
            stream = io.StringIO()
            yaml.dump(tree, stream)
        except Exception:  # noqa: BLE001, S112 - this candidate cannot dump it; try the next
            continue
        dumped = stream.getvalue()
        if dumped == text:
            return yaml
        score = difflib.SequenceMatcher(None, text.splitlines(), dumped.splitlines(), autojunk=False).ratio()
        if score > best_score:
            best, best_score = yaml, score
    return best or _yaml()


def merge_lines(before: str, after: str, current: str) -> str | None:
    """Apply the before→after line changes to `current` (which differs from `before` only in
    spelling); None when a changed line cannot be placed in `current`."""
    base = before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    cur = current.splitlines(keepends=True)
    where = _placement(base, cur)
    result = list(cur)
    for tag, i1, i2, j1, j2 in reversed(difflib.SequenceMatcher(None, base, new, autojunk=False).get_opcodes()):
        if tag == "equal":
            continue
        if i1 < i2:
            span = _span(where, i1, i2)
            if span is None:
                return None
            start, end = span
        elif i1 - 1 in where:
            start = end = where[i1 - 1] + 1
        elif i1 in where:
            start = end = where[i1]
        elif i1 == len(base):
            start = end = len(cur)
        else:
            return None
        if tag == "replace" and i2 - i1 == j2 - j1:
            # One line for one: the operator's spelling of the line, with the edit in it.
            lines = [_merge_line(base[i1 + k], new[j1 + k], cur[start + k]) for k in range(i2 - i1)]
        else:
            near_base, near_cur = (i1 - 1, start - 1) if i1 - 1 in where else (i1, start)
            shift = _indent(cur[near_cur]) - _indent(base[near_base]) if 0 <= near_cur < len(cur) and 0 <= near_base < len(base) else 0
            lines = [_reindent(line, shift) for line in new[j1:j2]]
        result[start:end] = lines
    return "".join(result)


def _span(where: dict[int, int], i1: int, i2: int) -> tuple[int, int] | None:
    """Where base items i1..i2 sit in the current text, when they sit there in one piece."""
    first = where.get(i1)
    if first is None or any(where.get(i1 + k) != first + k for k in range(i2 - i1)):
        return None
    return first, first + (i2 - i1)


def _placement(base: list, cur: list) -> dict[int, int]:
    """Where each base item sits in `cur`: equal items, and items re-spelled one for one."""
    where: dict[int, int] = {}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, base, cur, autojunk=False).get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            for k in range(i2 - i1):
                where[i1 + k] = j1 + k
    return where


def _merge_line(base: str, new: str, cur: str) -> str:
    """The same three-way merge inside one line, character by character (keeps the
    operator's indent, comment column and anchors around the edited value)."""
    if base == cur:
        return new
    where = _placement(list(base), list(cur))
    out = list(cur)
    for tag, i1, i2, j1, j2 in reversed(difflib.SequenceMatcher(None, base, new, autojunk=False).get_opcodes()):
        if tag == "equal":
            continue
        if i1 < i2:
            span = _span(where, i1, i2)
            if span is None:
                return _reindent(new, _indent(cur) - _indent(base))
            start, end = span
        elif i1 - 1 in where:
            start = end = where[i1 - 1] + 1
        elif i1 in where:
            start = end = where[i1]
        else:
            return _reindent(new, _indent(cur) - _indent(base))
        out[start:end] = new[j1:j2]
    return "".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _reindent(line: str, shift: int) -> str:
    if shift > 0 and line.strip():
        return " " * shift + line
    if shift < 0 and line[: -shift].strip() == "":
        return line[-shift:]
    return line
