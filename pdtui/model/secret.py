"""What is a secret, by name or by value, and how it is masked: one source for every layer.

A value is secret when its name says so (HF_TOKEN, OPENAI_API_KEY, `--api-key`), when the
profile lists the name under `secrets:`, or when the value itself looks like a credential
(hf_…, sk-…, AKIA…, ghp_…, a password in a URL). Secrets never reach a file or a command
line pdtui writes: `render` moves them into the processes' environment (see
`secret_flag_env` and `lmcache_secret_env`) and every written text goes through `scrub`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
# The LMCache keys pdtui's simulator must mask when it echoes its config (names only).
SIM_SECRET_KEYS = "PDTUI_SIM_SECRET_KEYS"
SCRUB_MIN_LEN = 8

_SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?)(_|$)")
# Names that contain a marker word but hold no secret (a per-token timing, a token count).
_NOT_SECRET = re.compile(r"_PER_TOKEN$|_TOKENS?_(COUNT|LIMIT|US|MS|S)$")

# Credentials recognisable by their shape. Prefixes are the issuers' documented ones; the
# minimum lengths keep ordinary words (hf_transfer, sk-learn) out.
_TOKEN_VALUE = re.compile(
    r"""
    (?<![A-Za-z0-9])(?:
        hf_[A-Za-z0-9]{20,}                      # Hugging Face
      | sk-(?:proj-|ant-|svcacct-)?[A-Za-z0-9_-]{20,}  # OpenAI, Anthropic
      | (?:AKIA|ASIA)[A-Z0-9]{16}                # AWS access key id
      | gh[pousr]_[A-Za-z0-9]{30,}               # GitHub
      | github_pat_[A-Za-z0-9_]{30,}
      | glpat-[A-Za-z0-9_-]{20,}                 # GitLab
      | xox[abposr]-[A-Za-z0-9-]{10,}            # Slack
    )
    | [A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@  # scheme://user:password@host
    """,
    re.VERBOSE,
)

# vLLM flags that take a secret, and the environment variable vLLM reads instead: the
# secret then never shows in the process list (anyone on the host can read /proc/*/cmdline).
API_KEY_ENV = "VLLM_API_KEY"  # vLLM's; pdtui's proxy reads it too, to authenticate to the engines
SECRET_FLAG_ENV = {
    "--api-key": API_KEY_ENV,
    "--hf-token": "HF_TOKEN",
}


def _name_key(name: str) -> str:
    return name.lstrip("-").replace("-", "_").replace(".", "_").upper()


def is_secret_name(name: str, declared: Iterable[str] = ()) -> bool:
    """HF_TOKEN, OPENAI_API_KEY, --api-key, or a name the profile lists under `secrets:`."""
    if name in declared:
        return True
    upper = _name_key(name)
    return bool(_SECRET_NAME.search(upper)) and not _NOT_SECRET.search(upper)


def looks_like_token(value: Any) -> bool:
    """A string (or a structure holding one) shaped like a credential."""
    if isinstance(value, str):
        return bool(_TOKEN_VALUE.search(value))
    if isinstance(value, Mapping):
        return any(looks_like_token(k) or looks_like_token(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(looks_like_token(v) for v in value)
    return False


def is_secret(name: str, value: Any, declared: Iterable[str] = ()) -> bool:
    """Secret by its name or by its value. Empty values hide nothing."""
    if value is None or value == "":
        return False
    if is_secret_name(name, declared):
        return True
    if isinstance(value, Mapping):
        return any(is_secret(str(k), v, declared) for k, v in value.items())
    return looks_like_token(value)


def mask_env(env: Mapping[str, str], secret_keys: Iterable[str] = ()) -> dict[str, str]:
    """env with every secret value (by name, value, or listed in secret_keys) as MASK."""
    keys = set(secret_keys)
    return {k: (MASK if (k in keys and v) or is_secret(k, v) else v) for k, v in env.items()}


def secret_values_in(env: Mapping[str, str], secret_keys: Iterable[str] = ()) -> set[str]:
    keys = set(secret_keys)
    return {v for k, v in env.items() if v and (k in keys or is_secret(k, v))}


def scrub(text: str, secret_values: Iterable[str]) -> str:
    """text with every known secret value and every credential-shaped string masked."""
    for value in sorted(set(secret_values), key=len, reverse=True):
        # A short value ("1", "true") would mask ordinary text; the fields that hold it are
        # masked by their key instead.
        if len(value) >= SCRUB_MIN_LEN:
            text = text.replace(value, MASK)
    return _TOKEN_VALUE.sub(MASK, text)


def mask_argv(argv: Iterable[str], declared: Iterable[str] = ()) -> list[str]:
    """argv for display: the value of a secret flag and credential-shaped words masked."""
    declared = set(declared)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if arg.startswith("-") and is_secret_name(flag, declared):
            if eq:
                out.append(f"{flag}={MASK}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(scrub(arg, ()))
    return out


def unmask_argv(typed: Iterable[str], current: Any, declared: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """typed args (as an editor shows `mask_argv(current)`) with each masked word put back
    to the value it stands for; and the masked words that stand for nothing any more.

    A masked word is matched to the stored word shown the same way at the same place: a
    bare MASK by the word before it (`--api-key ***`), any other (`--api-key=***`) by
    itself, in order. So an operator may edit around a hidden value, delete it or type a new
    one in its place; a MASK that matches nothing is reported, never stored as text.
    """
    typed = list(typed)
    stored = [str(a) for a in current] if isinstance(current, (list, tuple)) else []
    shown = mask_argv(stored, declared)
    hidden: dict[tuple[str, str], list[str]] = {}
    literal = set()  # stored words that hold "***" themselves: not a mask
    for i, (word, seen) in enumerate(zip(stored, shown)):
        if word != seen:
            hidden.setdefault(_mask_key(shown, i), []).append(word)
        elif MASK in word:
            literal.add(word)
    out: list[str] = []
    unknown: list[str] = []
    used: dict[tuple[str, str], int] = {}
    for i, word in enumerate(typed):
        if MASK in word:
            key = _mask_key(typed, i)
            n = used.get(key, 0)
            candidates = hidden.get(key, [])
            if n < len(candidates):
                out.append(candidates[n])
                used[key] = n + 1
                continue
            if word not in literal:
                unknown.append(word)
        out.append(word)
    return out, unknown


def _mask_key(words: list[str], i: int) -> tuple[str, str]:
    word = words[i]
    return (words[i - 1] if word == MASK and i > 0 else "", word)


def split_secret_args(args: Iterable[str], declared: Iterable[str] = ()) -> tuple[list[str], dict[str, str], list[str]]:
    """(args without secrets, env carrying them instead, secret flags with no env route).

    `--api-key X` and `--api-key=X` become VLLM_API_KEY=X (likewise `--hf-token`). A secret
    flag vLLM cannot read from the environment, or a credential-shaped value after any
    other flag, is left out of the args and reported in the third list (validate refuses it).
    """
    declared = set(declared)
    args = list(args)
    kept: list[str] = []
    env: dict[str, str] = {}
    refused: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, inline = arg.partition("=")
        secret_flag = arg.startswith("-") and is_secret_name(flag, declared)
        if secret_flag:
            if eq:
                value, i = inline, i + 1
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 2
            else:
                kept.append(arg)  # a bare switch such as `--hf-token` (use the login's token)
                i += 1
                continue
            if flag in SECRET_FLAG_ENV:
                env[SECRET_FLAG_ENV[flag]] = value
            else:
                refused.append(flag)
            continue
        if looks_like_token(arg) or arg in declared:
            refused.append(f"{flag} (argument {i})" if arg.startswith("-") else f"argument {i}")
            i += 1
            continue
        kept.append(arg)
        i += 1
    return kept, env, refused


def lmcache_secret_env(config: dict[str, Any], declared: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """(LMCache YAML data without secrets, LMCACHE_<KEY> environment carrying them).

    LMCache applies LMCACHE_<KEY> on top of the file (extra_config as JSON), so a secret
    key moves out of the YAML written to disk without changing what LMCache sees.
    """
    declared = set(declared)
    kept: dict[str, Any] = {}
    env: dict[str, str] = {}
    for key, value in config.items():
        if is_secret(str(key), value, declared):
            env[f"LMCACHE_{str(key).upper()}"] = value if isinstance(value, str) else json.dumps(value)
        else:
            kept[key] = value
    return kept, env
