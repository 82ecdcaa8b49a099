"""The profile being edited: the YAML data, the file it came from, and its validation.

The editor keeps the profile as the plain data the YAML file holds (not a `Profile`),
so that a half-typed value ("71x0" in a port) is kept exactly as typed and reported by
the model's own validation at its dotted path (`prefillers[0].port`), which is where the
form shows it. No textual here: this is tested like any other model code.
"""

from __future__ import annotations

import copy
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pdtui.model import validate_text
from pdtui.model.files import atomic_write
from pdtui.model.problems import Problem
from pdtui.model.validate import Validation

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
ROLE_LISTS = {"prefiller": "prefillers", "decoder": "decoders"}


@dataclass(frozen=True)
class FieldSpec:
    """One form field: where it lives in the profile and how typed text becomes data."""

    key: str  # path relative to its section ("port", "proxy.port")
    label: str
    kind: str = "str"  # "str" | "int" | "ints" | "choice"
    choices: tuple[str, ...] = ()
    help: str = ""
    placeholder: str = ""  # shown when the field is not set (the default that applies)


DEPLOYMENT_FIELDS = (
    FieldSpec("name", "Name"),
    FieldSpec("model", "Model"),
    FieldSpec("mode", "PD mode", "choice", ("lmcache-pd", "nixl")),
    FieldSpec("engine", "Engine", "choice", ("vllm", "sim")),
    FieldSpec("host", "Host", placeholder="127.0.0.1 (default)"),
    FieldSpec("proxy.port", "Proxy port", "int"),
    FieldSpec("proxy.zmq_port", "Proxy ZMQ port", "int"),
)
INSTANCE_FIELDS = (
    FieldSpec("name", "Name"),
    FieldSpec("gpus", "GPUs", "ints", help="comma-separated GPU indices (ctrl+g: pick)"),
    FieldSpec("port", "Port", "int"),
    FieldSpec("tensor_parallel_size", "TP size", "int", placeholder="1 (default)"),
)
DECODER_FIELDS = INSTANCE_FIELDS + (
    FieldSpec("nixl_init_ports", "NIXL init ports", "ints", help="one per TP rank"),
    FieldSpec("nixl_alloc_ports", "NIXL alloc ports", "ints", help="one per TP rank"),
)


def split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for name, index in _PART.findall(path):
        parts.append(int(index) if index else name)
    return parts


def get_path(data: Any, path: str, default: Any = None) -> Any:
    node = data
    for part in split_path(path):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return default
    return node


def set_path(data: dict, path: str, value: Any) -> None:
    parts = split_path(path)
    node: Any = data
    for part, following in zip(parts, parts[1:]):
        if isinstance(part, int):
            node = node[part]
        else:
            if not isinstance(node.get(part), (dict, list)):
                node[part] = [] if isinstance(following, int) else {}
            node = node[part]
    last = parts[-1]
    if value is None and isinstance(node, dict):
        node.pop(last, None)
    else:
        node[last] = value


def parse_field(kind: str, text: str) -> Any:
    """Typed text -> data. Text that is not what the field wants is kept as typed, so the
    model's validation reports it (with the path, the value and what is valid)."""
    text = text.strip()
    if kind == "int":
        if text == "":
            return None
        return int(text) if re.fullmatch(r"-?\d+", text) else text
    if kind == "ints":
        if text == "":
            return []
        items = [t.strip() for t in re.split(r"[,\s]+", text) if t.strip()]
        return [int(t) if re.fullmatch(r"-?\d+", t) else t for t in items]
    return text if text else None


def format_field(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "ints" and isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


class ProfileDocument:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self._saved_text = text
        self.data: dict[str, Any] = {}
        self.load_error: str | None = None
        self._load(text)
        self.validation: Validation = self.validate()

    @classmethod
    def open(cls, path: str | Path) -> ProfileDocument:
        path = Path(path)
        return cls(path, path.read_text(encoding="utf-8"))

    def _load(self, text: str) -> None:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            data = None
            self.load_error = f"{self.path}: not valid YAML ({getattr(exc, 'problem', exc)})"
        if data is not None and not isinstance(data, dict):
            self.load_error = f"{self.path}: a profile must be a YAML mapping"
            data = None
        self.data = data or {}
        self._saved_data = copy.deepcopy(self.data)

    # -- editing -------------------------------------------------------------------

    def text(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True, default_flow_style=None)

    @property
    def dirty(self) -> bool:
        return self.data != self._saved_data

    def set(self, path: str, value: Any) -> Validation:
        set_path(self.data, path, value)
        return self.revalidate()

    def get(self, path: str, default: Any = None) -> Any:
        return get_path(self.data, path, default)

    def revalidate(self) -> Validation:
        self.validation = self.validate()
        return self.validation

    def validate(self) -> Validation:
        return validate_text(self.text(), source=str(self.path), profile_dir=self.path.parent)

    def problems_at(self, path: str) -> list[Problem]:
        """Problems about the field at `path` or anything inside it (`gpus[1]`)."""
        return [
            p for p in self.validation.problems
            if p.path == path or p.path.startswith(path + ".") or p.path.startswith(path + "[")
        ]

    # -- instances -----------------------------------------------------------------

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

    def _used_ports(self) -> set[int]:
        used: set[int] = set()

        def walk(node: Any, key: str = "") -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(v, k)
            elif isinstance(node, list):
                for v in node:
                    walk(v, key)
            elif isinstance(node, int) and "port" in key:
                used.add(node)

        walk(self.data)
        return used

    def _free_port(self, start: int) -> int:
        used = self._used_ports()
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
        items = self.data.setdefault(key, [])
        if not isinstance(items, list):
            items = self.data[key] = []
        base_port = 7100 if role == "prefiller" else 7200
        item: dict[str, Any] = {"name": self._fresh_name(role), "gpus": [], "port": self._free_port(base_port)}
        if role == "decoder" and self.data.get("mode", "lmcache-pd") == "lmcache-pd":
            item["nixl_init_ports"] = [self._free_port(7300)]
            item["nixl_alloc_ports"] = [self._free_port(max(7400, item["nixl_init_ports"][0] + 1))]
        items.append(item)
        self.revalidate()
        return key, len(items) - 1

    def duplicate_instance(self, key: str, index: int) -> tuple[str, int]:
        items = self.data[key]
        original = items[index]
        clone = copy.deepcopy(original)
        clone["name"] = self._fresh_name(str(clone.get("name", key[:-1])))
        clone["gpus"] = []  # two instances on the same GPUs is almost never what is meant
        items.insert(index + 1, clone)
        # Fresh ports one at a time, each placed before the next is chosen, so they
        # differ from every port in the profile and from each other.
        clone["port"] = None
        start = original.get("port") if isinstance(original.get("port"), int) else 7100
        clone["port"] = self._free_port(start + 1)
        for ports_key in ("nixl_init_ports", "nixl_alloc_ports"):
            old = clone.get(ports_key)
            if isinstance(old, list):
                clone[ports_key] = []
                for port in old:
                    clone[ports_key].append(self._free_port(port + 1 if isinstance(port, int) else 7300))
        self.revalidate()
        return key, index + 1

    def remove_instance(self, key: str, index: int) -> None:
        del self.data[key][index]
        self.revalidate()

    # -- files ---------------------------------------------------------------------

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write atomically, keeping `<file>.bak` of what is replaced; returns the backup."""
        target = Path(path) if path is not None else self.path
        text = self.text()
        backup = atomic_write(target, text, backup=True)
        self.path = target
        self._saved_text = text
        self._saved_data = copy.deepcopy(self.data)
        self.revalidate()
        return backup

    def revert(self) -> None:
        """Back to the file on disk (or to what was last saved when the file is gone)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:
            text = self._saved_text
        self.load_error = None
        self._load(text)
        self._saved_text = text
        self.revalidate()

    # -- preview ---------------------------------------------------------------------

    def preview(self, instance_name: str) -> dict[str, str] | None:
        """The exact argv, environment (secrets masked) and LMCache YAML the instance would
        get; None while the profile has errors (there is no plan to show)."""
        from pdtui.model import render_plan
        from pdtui.model.render import mask_env

        validation = self.validation
        if not validation.ok or validation.profile is None:
            return None
        run_dir = Path(tempfile.gettempdir()) / "pdtui-preview" / (validation.profile.name or "profile")
        plan = render_plan(validation.profile, run_dir)
        try:
            inst = plan.instance(instance_name)
        except KeyError:
            return None
        import shlex

        env = mask_env(inst.env)
        return {
            "argv": " \\\n  ".join(shlex.quote(a) for a in inst.argv),
            "env": "\n".join(f"{k}={v}" for k, v in sorted(env.items())),
            "lmcache": inst.lmcache_yaml or "(no LMCache config in this mode)",
        }
