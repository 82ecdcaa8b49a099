"""Checks on what reaches a shell or a process: environment names, NUL bytes, secrets.

Environment names must be POSIX names: anything else is either refused by the kernel's
execve (`A=B`) or is shell syntax in a generated script (`X$(touch /tmp/pwned)`).
Secrets are reported without their values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pdtui.model.problems import Problem
from pdtui.model.schema import InstanceSpec, Profile
from pdtui.model.secret import (
    API_KEY_ENV,
    MASK,
    SECRET_FLAG_ENV,
    is_secret,
    is_secret_name,
    looks_like_token,
    split_secret_args,
)

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_NAME_HINT = "an environment variable name is letters, digits and _, not starting with a digit ([A-Za-z_][A-Za-z0-9_]*)"


def _path(profile: Profile, instance: InstanceSpec, field: str) -> str:
    return f"{profile.instance_path(instance)}.{field}"


def _envs(profile: Profile) -> list[tuple[str, dict[str, str]]]:
    envs = [("env", profile.env), ("proxy.env", profile.proxy.env)]
    return envs + [(_path(profile, inst, "env"), inst.env) for inst in profile.instances()]


def env_names(profile: Profile) -> Iterable[Problem]:
    for base, env in _envs(profile):
        for key in env:
            if not ENV_NAME.fullmatch(key):
                yield Problem(f"{base}", "not a valid environment variable name", key, ENV_NAME_HINT)


def nul_bytes(profile: Profile) -> Iterable[Problem]:
    """A NUL byte cannot be passed in argv or the environment (execve cuts or refuses it)."""

    def walk(value: Any, path: str) -> Iterable[Problem]:
        if isinstance(value, str):
            if "\x00" in value:
                yield Problem(path or "<profile>", "contains a NUL character", None, "remove it: no program argument or environment value can hold one")
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from walk(str(k), f"{path}.{k}" if path else str(k))
                yield from walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                yield from walk(v, f"{path}[{i}]")

    yield from walk(profile.model_dump(), "")


# Where a secret has a way around the command line and the files (or is checked above).
_ROUTED = re.compile(r"(^|\.)(env|lmcache\.extra|vllm\.extra_args|kv\.extra_config|secrets)(\.|\[|$)|^description$")


def stray_secrets(profile: Profile) -> Iterable[Problem]:
    """A credential-shaped value in any other field would be on a command line or in a file."""

    def walk(value: Any, path: str) -> Iterable[Problem]:
        if _ROUTED.search(path):
            return
        if isinstance(value, str):
            if looks_like_token(value):
                yield Problem(path, "looks like a credential, and this field is written to a command line or a file",
                              MASK, "keep secrets in env: (or lmcache.extra) where pdtui passes them through the environment")
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                yield from walk(v, f"{path}[{i}]")

    yield from walk(profile.model_dump(), "")


def secrets(profile: Profile) -> Iterable[Problem]:
    declared = set(profile.secrets)
    for base, env in _envs(profile):
        for key, value in env.items():
            if is_secret(key, value, declared):
                how = "by its name" if is_secret_name(key, declared) else "by its value"
                yield Problem(
                    f"{base}.{key}",
                    f"a secret ({how}) is stored in the profile file",
                    MASK,
                    f"export {key} in the shell that starts pdtui instead; pdtui passes the environment through and masks it",
                    "warning",
                )
    for inst in profile.instances():
        args = profile.effective_vllm(inst).extra_args or []
        _, moved, refused = split_secret_args(args, declared)
        path = _path(profile, inst, "vllm.extra_args")
        for name in moved:
            flag = next(f for f, e in SECRET_FLAG_ENV.items() if e == name)
            yield Problem(
                path,
                f"{flag} holds a secret: pdtui passes it to vLLM as {name} in the environment, not on the command line",
                MASK,
                f"export {name} in the shell that starts pdtui instead of writing it in the profile",
                "warning",
            )
        for what in refused:
            yield Problem(
                path,
                f"a secret ({what}) would be on vLLM's command line, which every user of this machine can read",
                MASK,
                "pass it in env: under a variable the program reads ("
                + ", ".join(f"{f} → {e}" for f, e in SECRET_FLAG_ENV.items())
                + ")",
            )
        for key, value in (inst.kv.extra_config or {}).items():
            if is_secret(str(key), value, declared):
                yield Problem(
                    _path(profile, inst, f"kv.extra_config.{key}"),
                    "a secret here would be on vLLM's command line (--kv-transfer-config), which every user of this machine can read",
                    MASK,
                    "put it in lmcache.extra (LMCache reads it from the environment) or in env:",
                )
    lm_places = [("lmcache.extra", profile.lmcache.extra or {})]
    lm_places += [(_path(profile, inst, "lmcache.extra"), inst.lmcache.extra or {}) for inst in profile.instances()]
    for base, extra in lm_places:
        for key, value in extra.items():
            if is_secret(str(key), value, declared):
                yield Problem(
                    f"{base}.{key}",
                    f"a secret is stored in the profile file: pdtui passes it to LMCache as LMCACHE_{str(key).upper()} in the environment, never in the YAML it writes",
                    MASK,
                    f"export LMCACHE_{str(key).upper()} in the shell that starts pdtui instead",
                    "warning",
                )
    for i, arg in enumerate(profile.vllm_command):
        if is_secret("", arg, declared):
            yield Problem(f"vllm_command[{i}]", "a secret would be on the command line", MASK, "pass it through env:")
    for i, name in enumerate(profile.secrets):
        if not (ENV_NAME.fullmatch(name) or name.startswith("-") or re.fullmatch(r"[A-Za-z0-9_.-]+", name)):
            yield Problem(f"secrets[{i}]", "not a name", name, "list environment variable names, vLLM flags (--my-token) or lmcache.extra / kv.extra_config keys")


def api_keys(profile: Profile) -> Iterable[Problem]:
    """pdtui's proxy sends one API key to every engine (see render._proxy_api_key)."""
    declared = set(profile.secrets)
    first: tuple[str, str] | None = None
    for inst in profile.instances():
        key = split_secret_args(profile.effective_vllm(inst).extra_args or [], declared)[1].get(API_KEY_ENV)
        key = key or profile.effective_env(inst).get(API_KEY_ENV)
        if not key:
            continue
        if first is None:
            first = (inst.name, key)
        elif key != first[1]:
            yield Problem(
                _path(profile, inst, "vllm.extra_args"),
                f"its API key differs from {first[0]}'s: the proxy sends one key ({API_KEY_ENV}) to every engine",
                MASK,
                "give every instance the same --api-key (or one VLLM_API_KEY in env:)",
            )
