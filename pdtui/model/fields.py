"""The editor's fields: where each lives in a profile, and how typed text becomes data.

Text that is not what a field wants is kept as typed (a port "71x0"), so the model's own
validation reports it at the field's path with the value and what is valid. Headless:
the UI only binds widgets to these specs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from pdtui import constants as C
from pdtui.model.secret import MASK, is_secret, mask_argv, unmask_argv


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
    FieldSpec("proxy.timeouts.tokenize", "Tokenize timeout", "float", placeholder=f"{C.PROXY_TIMEOUT_TOKENIZE_S:g} s (default)", group="Proxy"),
    FieldSpec("proxy.timeouts.prefill", "Prefill timeout", "float", placeholder=f"{C.PROXY_TIMEOUT_PREFILL_S:g} s (default)", group="Proxy"),
    FieldSpec("proxy.timeouts.kv", "KV timeout", "float", placeholder=f"{C.PROXY_TIMEOUT_KV_S:g} s (default)", group="Proxy"),
    FieldSpec("proxy.timeouts.decode", "Decode timeout", "float", placeholder=f"{C.PROXY_TIMEOUT_DECODE_S:g} s (default)", group="Proxy"),
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
INSTANCE_MORE_FIELDS = (
    FieldSpec("shared_gpus", "Shared GPUs", "bool", help="on: sharing a GPU with another instance is intended"),
    FieldSpec("startup_timeout_s", "Start timeout", "float", placeholder=f"{C.ENGINE_STARTUP_TIMEOUT_S:g} s (default)"),
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


def parse_field(kind: str, text: str, current: Any = None) -> Any:
    """Typed text -> data (see `read_field`); text that cannot be read is returned as typed."""
    return read_field(kind, text, current).value


_HIDDEN_HINT = "*** stands for a hidden value that is not there any more: type the value itself"


def read_field(kind: str, text: str, current: Any = None, declared: Iterable[str] = ()) -> FieldText:
    """Typed text -> data. Text that is not what the field wants is kept as typed, so the
    model's validation reports it (with the path, the value and what is valid); only text
    that has no data form at all (an unclosed quote, an env line without `=`) is an error
    here. Empty text means "not set": None, so the key is removed rather than written empty.
    `current` is the value stored now: secrets shown masked (`format_field`) keep it;
    `declared` is the profile's `secrets:` list."""
    if kind == "env":
        return _read_env(text, current, declared)
    if kind == "argv":
        if not text.strip():
            return FieldText(None)
        try:
            words = shlex.split(text)
        except ValueError as exc:
            return FieldText(text, f"cannot split it like a shell command line: {exc}",
                             "close the quote, or escape it with a backslash")
        words, unknown = unmask_argv(words, current, declared)
        if unknown:
            return FieldText(current, f"a masked value no longer matches a hidden one: {', '.join(unknown[:3])}",
                             _HIDDEN_HINT)
        return FieldText(words)
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


def _read_env(text: str, current: Any, declared: Iterable[str] = ()) -> FieldText:
    current = current if isinstance(current, dict) else {}
    env: dict[str, Any] = {}
    bad: list[str] = []
    lost: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _ENV_NAME.fullmatch(key):
            bad.append(line.strip())
            continue
        old = current.get(key)
        if old is not None and (value == str(old) or (value == MASK and is_secret(key, old, declared))):
            value = old  # untouched: keep it exactly (a masked secret, or 0 that YAML made an int)
        elif value == MASK:
            lost.append(key)  # never store the mask itself as the value
        env[key] = value
    if lost:
        return FieldText(current or None, f"{', '.join(lost[:3])}=*** hides no value here", _HIDDEN_HINT)
    if bad:
        return FieldText(env or None, f"not KEY=VALUE: {', '.join(repr(b) for b in bad[:3])}",
                         "one variable per line, e.g. HF_HOME=/data/hf")
    return FieldText(env or None)


def format_field(kind: str, value: Any, declared: Iterable[str] = ()) -> str:
    """Data -> the text a field shows. Secrets (by name or by value, see model/secret.py)
    are shown as MASK; `read_field` with the stored value puts them back."""
    if value is None:
        return ""
    if kind == "ints" and isinstance(value, list):
        return ",".join(str(v) for v in value)
    if kind == "argv" and isinstance(value, list):
        # A bare mask unquoted: `--api-key ***` reads better than `'***'` and splits the same.
        return " ".join(w if w == MASK else shlex.quote(w) for w in mask_argv((str(v) for v in value), declared))
    if kind in ("bool", "tristate") and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "env" and isinstance(value, dict):
        # Secrets never reach the screen; `_read_env` puts the stored value back.
        return "\n".join(
            f"{k}={MASK if is_secret(str(k), v, declared) else ('' if v is None else v)}"
            for k, v in value.items()
        )
    return str(value)
