"""The profile being edited: the YAML data, the file it came from, and its validation.

The editor keeps the profile as the plain data the YAML file holds (not a `Profile`),
so that a half-typed value ("71x0" in a port) is kept exactly as typed and reported by
the model's own validation at its dotted path (`prefillers[0].port`), which is where the
form shows it. No textual here: this is tested like any other model code.
"""

from __future__ import annotations

import copy
import re
import shlex
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from pdtui.model import validate_text
from pdtui.model.checks import is_secret_name
from pdtui.model.files import atomic_write
from pdtui.model.problems import Problem
from pdtui.model.render import MASK
from pdtui.model.validate import Validation

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
ROLE_LISTS = {"prefiller": "prefillers", "decoder": "decoders"}


@dataclass(frozen=True)
class FieldSpec:
    """One form field: where it lives in the profile and how typed text becomes data."""

    key: str  # path relative to its section ("port", "proxy.port")
    label: str
    # "str" | "int" | "float" | "ints" | "size" | "choice" | "bool" (a switch; off = not set)
    # | "tristate" (true / false / not set) | "argv" (shell-like string) | "env" (KEY=VALUE lines)
    kind: str = "str"
    choices: tuple[str, ...] = ()
    help: str = ""
    placeholder: str = ""  # shown when the field is not set (the default that applies)
    group: str = ""  # the collapsible section the field sits in ("" = always shown)
    inherit: str = ""  # the deployment-wide path whose value applies when this one is not set
    optional: bool = False  # a choice that may be left unset


DEPLOYMENT_FIELDS = (
    FieldSpec("name", "Name"),
    FieldSpec("model", "Model"),
    FieldSpec("mode", "PD mode", "choice", ("lmcache-pd", "nixl")),
    FieldSpec("engine", "Engine", "choice", ("vllm", "sim")),
    FieldSpec("host", "Host", placeholder="127.0.0.1 (default)"),
    FieldSpec("proxy.port", "Proxy port", "int"),
    FieldSpec("proxy.zmq_port", "Proxy ZMQ port", "int"),
    FieldSpec("served_model_name", "Served name", placeholder="the model (default)"),
    FieldSpec("vllm_command", "vLLM command", "argv", placeholder="vllm (default)",
              help="shell-like, e.g. /opt/venv/bin/python -m vllm.entrypoints.cli.main"),
    FieldSpec("vllm_version", "vLLM version", placeholder="unknown (e.g. 0.11.0)"),
    FieldSpec("proxy.host", "Host", placeholder="127.0.0.1 (default)", group="Proxy"),
    FieldSpec("proxy.routing", "Routing", "choice", ("round-robin", "least-outstanding"),
              placeholder="round-robin (default)", group="Proxy", optional=True),
    FieldSpec("proxy.sticky_header", "Sticky header", placeholder="none (e.g. x-session-id)", group="Proxy"),
    FieldSpec("proxy.timeouts.tokenize", "Tokenize timeout", "float", placeholder="10 s (default)", group="Proxy"),
    FieldSpec("proxy.timeouts.prefill", "Prefill timeout", "float", placeholder="300 s (default)", group="Proxy"),
    FieldSpec("proxy.timeouts.kv", "KV timeout", "float", placeholder="30 s (default)", group="Proxy"),
    FieldSpec("proxy.timeouts.decode", "Decode timeout", "float", placeholder="300 s (default)", group="Proxy"),
    FieldSpec("env", "Variables", "env", placeholder="KEY=VALUE, one per line",
              help="every instance; secrets shown as *** (leave *** to keep the value)", group="Environment"),
)
INSTANCE_FIELDS = (
    FieldSpec("name", "Name"),
    FieldSpec("gpus", "GPUs", "ints", help="comma-separated GPU indices (ctrl+g: pick)"),
    FieldSpec("port", "Port", "int"),
    FieldSpec("tensor_parallel_size", "TP size", "int", placeholder="1 (default)"),
)
DECODER_ONLY_FIELDS = (
    FieldSpec("nixl_init_ports", "NIXL init ports", "ints", help="one per TP rank"),
    FieldSpec("nixl_alloc_ports", "NIXL alloc ports", "ints", help="one per TP rank"),
)
# After the fields above, so the widget ids of those (field-0, field-1, ...) stay put.
INSTANCE_MORE_FIELDS = (
    FieldSpec("shared_gpus", "Shared GPUs", "bool", help="on: sharing a GPU with another instance is intended"),
    FieldSpec("startup_timeout_s", "Start timeout", "float", placeholder="900 s (default)"),
    FieldSpec("vllm.gpu_memory_utilization", "GPU memory", "float", placeholder="vLLM default (0.9)",
              group="vLLM", inherit="vllm.gpu_memory_utilization", help="fraction of the GPU, 0 < x <= 1"),
    FieldSpec("vllm.max_model_len", "Max model len", "int", placeholder="from the model", group="vLLM",
              inherit="vllm.max_model_len"),
    FieldSpec("vllm.enforce_eager", "Enforce eager", "tristate", placeholder="not set", group="vLLM",
              inherit="vllm.enforce_eager"),
    FieldSpec("vllm.enable_prefix_caching", "Prefix caching", "tristate", placeholder="not set", group="vLLM",
              inherit="vllm.enable_prefix_caching"),
    FieldSpec("vllm.extra_args", "Extra args", "argv", placeholder="none (shell-like)", group="vLLM",
              inherit="vllm.extra_args"),
    FieldSpec("lmcache.chunk_size", "Chunk size", "int", placeholder="256 (LMCache default)", group="LMCache",
              inherit="lmcache.chunk_size"),
    FieldSpec("lmcache.pd_buffer_size", "PD buffer size", "size", placeholder="bytes or 1GiB, 512MiB",
              group="LMCache", inherit="lmcache.pd_buffer_size"),
    FieldSpec("lmcache.pd_buffer_device", "PD buffer device", "choice", ("cuda", "cpu"), placeholder="not set",
              group="LMCache", inherit="lmcache.pd_buffer_device", optional=True),
    FieldSpec("lmcache.local_cpu", "Local CPU cache", "tristate", placeholder="not set", group="LMCache",
              inherit="lmcache.local_cpu"),
    FieldSpec("lmcache.save_unfull_chunk", "Save unfull chunk", "tristate", placeholder="not set", group="LMCache",
              inherit="lmcache.save_unfull_chunk"),
    FieldSpec("lmcache.max_local_cpu_size", "Max local CPU", "float", placeholder="GB", group="LMCache",
              inherit="lmcache.max_local_cpu_size"),
    FieldSpec("kv.lmcache_rpc_port", "LMCache RPC port", placeholder="producerN / consumerN (default)",
              group="KV transfer"),
    FieldSpec("kv.skip_last_n_tokens", "Skip last N", "int", placeholder="1 on decoders (default)",
              group="KV transfer"),
    FieldSpec("kv.discard_partial_chunks", "Discard partial", "tristate", placeholder="false (default)",
              group="KV transfer", help="true makes short prompts hang"),
    FieldSpec("env", "Variables", "env", placeholder="KEY=VALUE, one per line",
              help="on top of the deployment's; secrets shown as *** (leave *** to keep the value)",
              group="Environment"),
)
PREFILLER_FIELDS = INSTANCE_FIELDS + INSTANCE_MORE_FIELDS
DECODER_FIELDS = INSTANCE_FIELDS + DECODER_ONLY_FIELDS + INSTANCE_MORE_FIELDS

_INT = re.compile(r"-?\d+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class FieldText(NamedTuple):
    """What typed text means: the value to store, or why it cannot be stored."""

    value: Any
    error: str = ""  # set when the text cannot be turned into data at all
    hint: str = ""


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
    """Set the value at `path`, creating mappings on the way; None removes the key (and
    the mappings that removing it leaves empty: `kv: {}` means nothing)."""
    parts = split_path(path)
    if value is None:
        _remove_path(data, parts)
        return
    node: Any = data
    for part, following in zip(parts, parts[1:]):
        if isinstance(part, int):
            node = node[part]
        else:
            if not isinstance(node.get(part), (dict, list)):
                node[part] = [] if isinstance(following, int) else {}
            node = node[part]
    node[parts[-1]] = value


def _remove_path(data: dict, parts: list[str | int]) -> None:
    chain: list[tuple[Any, str | int]] = []
    node: Any = data
    for part in parts:
        try:
            child = node[part]
        except (KeyError, IndexError, TypeError):
            return  # not there: nothing to remove
        chain.append((node, part))
        node = child
    parent, last = chain.pop()
    if isinstance(parent, dict):
        parent.pop(last, None)
    else:
        parent[last] = None
    while chain and isinstance(parent, dict) and not parent:
        grand, key = chain.pop()
        if not isinstance(key, str):
            break
        grand.pop(key, None)
        parent = grand


def parse_field(kind: str, text: str, current: Any = None) -> Any:
    """Typed text -> data (see `read_field`); text that cannot be read is returned as typed."""
    return read_field(kind, text, current).value


def read_field(kind: str, text: str, current: Any = None) -> FieldText:
    """Typed text -> data. Text that is not what the field wants is kept as typed, so the
    model's validation reports it (with the path, the value and what is valid); only text
    that has no data form at all (an unclosed quote, an env line without `=`) is an error
    here. Empty text means "not set": None, so the key is removed rather than written empty.
    `current` is the value stored now: env secrets shown masked keep it."""
    if kind == "env":
        return _read_env(text, current)
    if kind == "argv":
        if not text.strip():
            return FieldText(None)
        try:
            return FieldText(shlex.split(text))
        except ValueError as exc:
            return FieldText(text, f"cannot split it like a shell command line: {exc}",
                             "close the quote, or escape it with a backslash")
    text = text.strip()
    if kind == "int":
        if text == "":
            return FieldText(None)
        return FieldText(int(text) if _INT.fullmatch(text) else text)
    if kind in ("float", "size"):
        if text == "":
            return FieldText(None)
        if _INT.fullmatch(text):
            return FieldText(int(text))
        if kind == "float":
            try:
                return FieldText(float(text))
            except ValueError:
                return FieldText(text)
        return FieldText(text)  # "1GiB": the model reads units and explains bad ones
    if kind == "ints":
        if text == "":
            return FieldText([])
        items = [t.strip() for t in re.split(r"[,\s]+", text) if t.strip()]
        return FieldText([int(t) if _INT.fullmatch(t) else t for t in items])
    if kind == "bool":
        return FieldText(True if text == "true" else None)  # off is the default: not written
    if kind == "tristate":
        return FieldText({"true": True, "false": False}.get(text))
    return FieldText(text if text else None)


def _read_env(text: str, current: Any) -> FieldText:
    current = current if isinstance(current, dict) else {}
    env: dict[str, Any] = {}
    bad: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _ENV_NAME.fullmatch(key):
            bad.append(line.strip())
            continue
        old = current.get(key)
        if old is not None and (value == str(old) or (value == MASK and is_secret_name(key))):
            value = old  # untouched: keep it exactly (a masked secret, or 0 that YAML made an int)
        env[key] = value
    if bad:
        return FieldText(env or None, f"not KEY=VALUE: {', '.join(repr(b) for b in bad[:3])}",
                         "one variable per line, e.g. HF_HOME=/data/hf")
    return FieldText(env or None)


def format_field(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "ints" and isinstance(value, list):
        return ",".join(str(v) for v in value)
    if kind == "argv" and isinstance(value, list):
        return shlex.join(str(v) for v in value)
    if kind in ("bool", "tristate") and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "env" and isinstance(value, dict):
        # Secrets never reach the screen; `_read_env` puts the stored value back.
        return "\n".join(
            f"{k}={MASK if is_secret_name(str(k)) and v not in (None, '') else ('' if v is None else v)}"
            for k, v in value.items()
        )
    return str(value)


MISSING = object()


def _under(problem_path: str, path: str) -> bool:
    return problem_path == path or problem_path.startswith(path + ".") or problem_path.startswith(path + "[")


class ProfileDocument:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self._saved_text = text
        self.data: dict[str, Any] = {}
        self.load_error: str | None = None
        # Text typed into a field that has no data form (an unclosed quote): reported at the
        # field's path and counted as an error, while the data keeps its last good value.
        self.field_problems: dict[str, Problem] = {}
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
        self.field_problems = {}

    # -- editing -------------------------------------------------------------------

    def text(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True, default_flow_style=None)

    @property
    def dirty(self) -> bool:
        return self.data != self._saved_data

    def set(self, path: str, value: Any) -> Validation:
        set_path(self.data, path, value)
        return self.revalidate()

    def set_text(self, path: str, kind: str, text: str) -> bool:
        """Store what was typed into the field at `path`; False when nothing changed."""
        result = read_field(kind, text, self.get(path))
        if result.error:
            problem = Problem(path, result.error, text, result.hint)
            if self.field_problems.get(path) == problem:
                return False
            self.field_problems[path] = problem
            self.revalidate()
            return True
        had_problem = self.field_problems.pop(path, None) is not None
        if self.get(path) == result.value and (result.value is not None or self.get(path, MISSING) is MISSING):
            if had_problem:
                self.revalidate()
            return had_problem
        self.set(path, result.value)
        return True

    def clear_field_problems(self) -> None:
        """The form was rebuilt from the data: text that could not be stored is gone."""
        if self.field_problems:
            self.field_problems = {}
            self.revalidate()

    def get(self, path: str, default: Any = None) -> Any:
        return get_path(self.data, path, default)

    def revalidate(self) -> Validation:
        self.validation = self.validate()
        return self.validation

    def validate(self) -> Validation:
        validation = validate_text(self.text(), source=str(self.path), profile_dir=self.path.parent)
        if not self.field_problems:
            return validation
        # The field's own message replaces what the model says about the stale value there.
        kept = [p for p in validation.problems if not any(_under(p.path, path) for path in self.field_problems)]
        return replace(validation, problems=list(self.field_problems.values()) + kept)

    def problems_at(self, path: str) -> list[Problem]:
        """Problems about the field at `path` or anything inside it (`gpus[1]`)."""
        return [p for p in self.validation.problems if _under(p.path, path)]

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
        self.field_problems = {}
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
        self.field_problems = {}
        self.revalidate()
        return key, index + 1

    def remove_instance(self, key: str, index: int) -> None:
        del self.data[key][index]
        self.field_problems = {}  # the paths after it have moved
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
