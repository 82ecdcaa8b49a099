"""Dotted paths into a profile (`decoders[1].vllm.max_model_len`): read plain data, and edit
ruamel's round-trip tree in place so that everything around the edit keeps its form.

In-place means: a flow list `[0, 1]` stays a flow list, a quoted string stays quoted, an
env mapping keeps its order and comments, and a key added at the end of a block takes the
blank line / comment that followed the block along, so the new key sits inside it.
"""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import ScalarString
from ruamel.yaml.tokens import CommentToken

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def split_path(path: str) -> list[str | int]:
    return [int(index) if index else name for name, index in _PART.findall(path)]


def join_path(parts: tuple | list) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
    return text


def get_path(data: Any, path: str, default: Any = None) -> Any:
    node = data
    for part in split_path(path):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return default
    return node


def has_path(data: Any, path: str) -> bool:
    missing = object()
    return get_path(data, path, missing) is not missing


def set_in_tree(tree: CommentedMap, path: str, value: Any) -> None:
    """Set the value at `path` in the round-trip tree, creating mappings on the way; None
    removes the key (and the mappings that removing it leaves empty: `kv: {}` means nothing)."""
    parts = split_path(path)
    _unshare(tree, parts)
    if value is None:
        _remove(tree, parts)
        return
    node: Any = tree
    for depth, part in enumerate(parts[:-1]):
        if isinstance(part, int):
            if not isinstance(node, CommentedSeq) or not 0 <= part < len(node):
                raise LookupError(f"{path}: there is no item {part} here")
            node = node[part]
            continue
        if not isinstance(node.get(part), (CommentedMap, CommentedSeq)):
            # Build the missing mappings whole, then add them in one go, so that what
            # followed the block (a blank line) ends up after the new lines, not among them.
            for key in reversed(parts[depth + 1:]):
                value = {key: value}
            _put(node, part, value)
            return
        node = node[part]
    _put(node, parts[-1], value)


def _unshare(tree: Any, parts: list[str | int]) -> None:
    """A mapping or list reached through an alias (`sim: *fast`, or a key merged in with
    `<<: *defaults`) is the anchor's own object: editing it there would change every place
    that uses the anchor. Such a step gets a copy of its own first (the alias line becomes
    the value), so the edit changes only the path it names. At the anchor itself the edit
    stays in place: that is the definition the aliases share."""
    first = _first_paths(tree)
    node: Any = tree
    here: tuple = ()
    for part in parts:
        try:
            child = node[part]
        except (KeyError, IndexError, TypeError):
            return
        here += (part,)
        if isinstance(child, (CommentedMap, CommentedSeq)) and first.get(id(child), here) != here:
            anchor = getattr(child, "anchor", None)
            if anchor is not None and anchor.value:
                anchor.always_dump = True  # keep `&name` on the definition even if now unused
            child = _shallow_copy(child)
            if isinstance(node, CommentedMap) and part not in node.keys():  # noqa: SIM118
                _append_key(node, part, child)  # a merged key becomes the instance's own
            else:
                node[part] = child
        node = child


def _first_paths(tree: Any) -> dict[int, tuple]:
    """id -> path of the first place (in file order) of every mapping or list that is also
    reached from somewhere else. Each object is walked once, so this stays small."""
    seen: dict[int, tuple] = {}
    shared: set[int] = set()

    def walk(node: Any, path: tuple) -> None:
        if not isinstance(node, (CommentedMap, CommentedSeq)):
            return
        if id(node) in seen:
            shared.add(id(node))
            return
        seen[id(node)] = path
        items = node.items() if isinstance(node, CommentedMap) else enumerate(node)
        for key, value in items:
            walk(value, path + (key,))

    walk(tree, ())
    return {key: path for key, path in seen.items() if key in shared}


def _shallow_copy(node: Any) -> Any:
    """The same entries in a new container of the same style (no anchor, no comments: those
    stay with the definition); nested shared values stay shared."""
    if isinstance(node, CommentedMap):
        copy: Any = CommentedMap()
        for key, value in node.items():
            copy[key] = value
    else:
        copy = CommentedSeq(list(node))
    if node.fa.flow_style():
        copy.fa.set_flow_style()
    else:
        copy.fa.set_block_style()
    return copy


def _put(node: Any, key: str | int, value: Any) -> None:
    if isinstance(node, CommentedSeq):
        if key == len(node):
            node.append(_fresh(value))
        else:
            node[key] = _fresh(value)
        return
    old = node.get(key) if key in node else None
    if key in node and _same(old, value):
        return
    if isinstance(old, CommentedSeq) and isinstance(value, list):
        old[:] = [_fresh(v) for v in value]  # keeps flow/block style and the comments around it
        return
    if isinstance(old, CommentedMap) and isinstance(value, dict):
        for gone in [k for k in old if k not in value]:
            _remove_key(old, gone)
        for k, v in value.items():
            _put(old, k, v)
        return
    if isinstance(old, ScalarString) and isinstance(value, str):
        value = type(old)(value)  # keep the operator's quoting
    if key in node:
        node[key] = _fresh(value)
    else:
        _append_key(node, key, _fresh(value))


def _same(old: Any, new: Any) -> bool:
    if isinstance(new, bool) or isinstance(old, bool):
        return type(bool(old) if _is_bool(old) else old) is type(new) and old == new
    if isinstance(new, (dict, list)) or isinstance(old, (dict, list)):
        return _plain(old) == _plain(new)
    return type(_plain(old)) is type(_plain(new)) and old == new


def _is_bool(value: Any) -> bool:
    return type(value).__name__ == "ScalarBoolean" or isinstance(value, bool)


def _plain(value: Any) -> Any:
    from pdtui.model.yamldoc import scalar

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return scalar(value)


def _fresh(value: Any) -> Any:
    """Plain containers as ruamel ones (block style, like the rest of a preset)."""
    if isinstance(value, dict) and not isinstance(value, CommentedMap):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _fresh(v)
        return out
    if isinstance(value, list) and not isinstance(value, CommentedSeq):
        seq = CommentedSeq(_fresh(v) for v in value)
        if all(not isinstance(v, (dict, list)) for v in value):
            seq.fa.set_flow_style()  # `gpus: [0, 1]`, as the presets write short lists
        return seq
    return value


def _append_key(node: CommentedMap, key: Any, value: Any) -> None:
    """A new key at the end of a mapping takes over what followed the old last entry (a
    blank line, the next section's comment), so it lands inside the block, not after it."""
    moved = _split_trailing(*_last_entry(node)) if len(node) else None
    node[key] = value
    if moved:
        _add_trailing(*_last_entry(node), moved)


def _slot(container: Any) -> int:
    return 2 if isinstance(container, CommentedMap) else 0


def _split_trailing(container: Any, key: Any) -> str | None:
    """Take the lines that follow an entry (not its own end-of-line comment) off it, as
    "\n" + those lines; None when nothing follows."""
    if container is None:
        return None
    entry = container.ca.items.get(key)
    slot = _slot(container)
    if not entry or len(entry) <= slot or entry[slot] is None:
        return None
    token = entry[slot]
    text = token.value
    if text.startswith("#"):  # an end-of-line comment stays with its line
        first, _, rest = text.partition("\n")
        if not rest:
            return None
        token.value = first + "\n"
        return "\n" + rest
    entry[slot] = None
    return text


def _add_trailing(container: Any, key: Any, text: str) -> None:
    """Put lines ("\n" + lines) after an entry, after what already follows it."""
    if container is None:
        return
    slot = _slot(container)
    entry = container.ca.items.setdefault(key, [None, None, None, None] if slot == 2 else [None, None])
    if entry[slot] is not None:
        entry[slot].value = entry[slot].value + text[1:]
    else:
        entry[slot] = CommentToken(text, _Mark(), None)


class _Mark:
    """The least a CommentToken needs to be dumped (its source column is unknown)."""

    line = 0
    column = 0


def _last_entry(node: Any) -> tuple[Any, Any]:
    """The innermost last key (mapping) or index (sequence): where ruamel keeps the
    comments that follow a block."""
    found: tuple[Any, Any] = (None, None)
    while isinstance(node, (CommentedMap, CommentedSeq)) and len(node) and not (found[0] is not None and _flow(node)):
        if isinstance(node, CommentedMap):
            key = list(node.keys())[-1]
            found = (node, key)
            node = node[key]
        else:
            found = (node, len(node) - 1)
            node = node[len(node) - 1]
    return found


def _flow(node: Any) -> bool:
    """`[0, 1]` / `{a: 1}`: the comments after it belong to the key that holds it."""
    return bool(node.fa.flow_style())


def _entry_end(node: Any, key: Any) -> tuple[Any, Any]:
    """Where the comments that follow the entry `key` of node are kept."""
    value = node[key]
    if isinstance(value, (CommentedMap, CommentedSeq)) and len(value) and not _flow(value):
        return _last_entry(value)
    return node, key


def _remove_key(node: CommentedMap, key: Any) -> str | None:
    """Remove a key; what followed its entry (a blank line, the next key's comment) moves
    to the entry before. Returned when there is none (the mapping is now empty)."""
    keys = list(node.keys())
    if key not in keys:
        return None  # only there through a merge (<<): nothing of its own to remove
    trailing = _split_trailing(*_entry_end(node, key))
    del node[key]
    if not trailing:
        return None
    index = keys.index(key)
    if index == 0:
        return trailing
    _add_trailing(*_entry_end(node, keys[index - 1]), trailing)
    return None


def _remove(tree: Any, parts: list[str | int]) -> None:
    chain: list[tuple[Any, str | int]] = []
    node: Any = tree
    for part in parts:
        try:
            child = node[part]
        except (KeyError, IndexError, TypeError):
            return  # not there: nothing to remove
        chain.append((node, part))
        node = child
    parent, last = chain.pop()
    if not isinstance(parent, CommentedMap):
        parent[last] = None
        return
    left = _remove_key(parent, last)
    while chain and not parent:
        grand, key = chain.pop()
        if not isinstance(key, str) or not isinstance(grand, CommentedMap):
            break
        keys = list(grand.keys())
        index = keys.index(key) if key in keys else -1
        gone = _remove_key(grand, key)
        left = left or gone
        if left and index > 0:
            _add_trailing(*_entry_end(grand, keys[index - 1]), left)
            left = None
        parent = grand
