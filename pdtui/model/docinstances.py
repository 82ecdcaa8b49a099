"""Adding, duplicating and removing instances in the profile being edited.

Part of ProfileDocument (pdtui.model.document), kept apart: these edits pick fresh names
and free ports and build new YAML nodes that look like their neighbours, while the
document itself is about text, undo and validation.
"""

from __future__ import annotations

import builtins  # `set` is a method of ProfileDocument
import copy
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pdtui.model.problems import Problem

if TYPE_CHECKING:
    from pdtui.model.validate import Validation

ROLE_LISTS = {"prefiller": "prefillers", "decoder": "decoders"}


class InstanceEdits:
    """The instance edits of ProfileDocument; what they use of it is declared here."""

    data: dict[str, Any]
    field_problems: dict[str, Problem]
    _last_edit: str | None

    if TYPE_CHECKING:  # declarations only: ProfileDocument implements them
        def _edit(self, change: Callable[[Any], Any], path: str | None = None) -> bool: ...
        def set(self, path: str, value: Any) -> Validation: ...
        def revalidate(self) -> Validation: ...

    def instances(self) -> list[tuple[str, int, str]]:
        """(role, index, name) of every instance, prefillers first."""
        result = []
        for role, key in ROLE_LISTS.items():
            items = self.data.get(key)
            if isinstance(items, list):
                for index, item in enumerate(items):
                    name = item.get("name") if isinstance(item, dict) else None
                    result.append((role, index, str(name) if name else f"{key}[{index}]"))
        return result

    def _used_ports(self) -> builtins.set[int]:
        used: builtins.set[int] = builtins.set()

        def walk(node: Any, key: str = "") -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(v, str(k))
            elif isinstance(node, list):
                for v in node:
                    walk(v, key)
            elif isinstance(node, int) and "port" in key:
                used.add(node)

        walk(self.data)
        return used

    def _free_port(self, start: int, also_used: Iterable[int] = ()) -> int:
        used = self._used_ports() | builtins.set(also_used)
        port = max(1024, start)
        while port in used and port < 65535:
            port += 1
        return port

    def _fresh_name(self, base: str) -> str:
        names = {name for _, _, name in self.instances()}
        stem = re.sub(r"\d+$", "", base) or base
        n = 1
        while f"{stem}{n}" in names:
            n += 1
        return f"{stem}{n}"

    def add_instance(self, role: str) -> tuple[str, int]:
        key = ROLE_LISTS[role]
        items = self.data.get(key)
        count = len(items) if isinstance(items, list) else 0
        taken: builtins.set[int] = builtins.set()
        item: dict[str, Any] = {"name": self._fresh_name(role), "gpus": []}
        item["port"] = self._free_port(7100 if role == "prefiller" else 7200)
        taken.add(item["port"])
        if role == "decoder" and self.data.get("mode", "lmcache-pd") == "lmcache-pd":
            init = self._free_port(7300, taken)
            taken.add(init)
            item["nixl_init_ports"] = [init]
            item["nixl_alloc_ports"] = [self._free_port(max(7400, init + 1), taken)]
        self.set(f"{key}[{count}]" if isinstance(items, list) else key, item if isinstance(items, list) else [item])
        self.field_problems = {}
        self.revalidate()
        return key, count

    def duplicate_instance(self, key: str, index: int) -> tuple[str, int]:
        original = self.data[key][index]
        clone = copy.deepcopy(original)
        clone["name"] = self._fresh_name(str(clone.get("name", key[:-1])))
        clone["gpus"] = []  # two instances on the same GPUs is almost never what is meant
        # Fresh ports, each differing from every port in the profile and from each other.
        taken: builtins.set[int] = builtins.set()
        start = original.get("port") if isinstance(original.get("port"), int) else 7100
        clone["port"] = self._free_port(start + 1)
        taken.add(clone["port"])
        for ports_key in ("nixl_init_ports", "nixl_alloc_ports"):
            old = clone.get(ports_key)
            if isinstance(old, list):
                clone[ports_key] = []
                for port in old:
                    fresh = self._free_port(port + 1 if isinstance(port, int) else 7300, taken)
                    taken.add(fresh)
                    clone[ports_key].append(fresh)

        def insert(tree: Any) -> None:
            tree[key].insert(index + 1, _as_tree(clone, like=tree[key][index]))

        self._edit(insert)
        self._last_edit = None
        self.field_problems = {}
        self.revalidate()
        return key, index + 1

    def remove_instance(self, key: str, index: int) -> None:
        self._edit(lambda tree: tree[key].pop(index))
        self._last_edit = None
        self.field_problems = {}  # the paths after it have moved
        self.revalidate()


def _as_tree(value: Any, like: Any = None) -> Any:
    """A plain copy as ruamel nodes, flow lists where `like` had them (a duplicated instance
    looks like the one it was copied from)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _as_tree(v, like.get(k) if isinstance(like, dict) else None)
        return out
    if isinstance(value, list):
        seq = CommentedSeq(_as_tree(v) for v in value)
        flow = like.fa.flow_style() if isinstance(like, CommentedSeq) else all(not isinstance(v, (dict, list)) for v in value)
        if flow:
            seq.fa.set_flow_style()
        return seq
    return value
