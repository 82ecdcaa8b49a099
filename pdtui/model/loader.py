"""Read a profile file into a Profile, or into problems that say exactly what is wrong.

Never raises for bad input: a syntax error, an empty file, binary garbage, a
list where a mapping belongs, or a schema error all come back as Problems with
the file position when YAML can tell it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pdtui.model import fastyaml
from pdtui.model.problems import Problem
from pdtui.model.schema import Profile

MAX_PROFILE_BYTES = 1024 * 1024  # a profile is a few KB; refuse to parse a disk image


@dataclass
class LoadResult:
    profile: Profile | None
    problems: list[Problem] = field(default_factory=list)
    source: str = "<string>"

    @property
    def ok(self) -> bool:
        return self.profile is not None and not any(p.is_error for p in self.problems)


def load_profile(path: str | Path) -> LoadResult:
    path = Path(path)
    source = str(path)
    try:
        if path.is_dir():
            return _fail(source, "is a directory, not a profile file", hint="give the path of a .yaml profile")
        size = path.stat().st_size
        if size > MAX_PROFILE_BYTES:
            return _fail(source, f"file is {size} bytes, too large for a profile", hint="a profile is a small YAML file")
        raw = path.read_bytes()
    except FileNotFoundError:
        return _fail(source, "file not found", hint="check the path; presets live in configs/")
    except PermissionError:
        return _fail(source, "permission denied while reading the file")
    except OSError as exc:
        return _fail(source, f"cannot read the file: {exc.strerror or exc}")
    return load_profile_bytes(raw, source=source)


def load_profile_text(text: str, source: str = "<string>") -> LoadResult:
    return load_profile_bytes(text.encode("utf-8"), source=source)


def load_profile_bytes(raw: bytes, source: str = "<string>") -> LoadResult:
    if len(raw) > MAX_PROFILE_BYTES:
        return _fail(source, f"{len(raw)} bytes, too large for a profile", hint="a profile is a small YAML file")
    if b"\x00" in raw:
        return _fail(source, "file contains NUL bytes: this is binary data, not a YAML profile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _fail(source, f"not UTF-8 text (bad byte at offset {exc.start})", hint="save the profile as UTF-8 YAML")
    if not text.strip() or all(line.lstrip().startswith("#") or not line.strip() for line in text.splitlines()):
        return _fail(source, "file is empty", hint="a profile is a YAML mapping with name, model, prefillers and decoders")
    try:
        fastyaml.check_size(text)
    except fastyaml.YamlProblem as exc:
        return LoadResult(None, [Problem("", exc.message, line=exc.line, column=exc.column)], source)
    done, data = fastyaml.plain_data(text)
    if done:
        result = load_data(data, {}, source)
        if result.profile is not None:
            return result
        # A schema problem: its message names the line, which the round-trip parse knows.
    from pdtui.model import yamldoc  # ruamel.yaml, pure Python: ~15 ms before a first spawn

    try:
        parsed = yamldoc.parse(text)
    except yamldoc.YamlProblem as exc:
        return LoadResult(None, [Problem("", exc.message, line=exc.line, column=exc.column)], source)
    return load_data(parsed.data, parsed.positions, source)


def load_data(data: Any, positions: dict[tuple, tuple[int, int]], source: str = "<string>") -> LoadResult:
    """Plain data of one parse (and its positions) into a Profile or problems."""
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "nothing"
        return LoadResult(
            None,
            [Problem("", f"the top level is a {kind}, not a mapping", hint="a profile starts with keys such as `name:` and `model:`", line=1, column=1)],
            source,
        )
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        return LoadResult(None, [_problem_from_error(err, positions) for err in exc.errors()], source)
    except RecursionError:
        return _fail(source, "profile nesting too deep")
    return LoadResult(profile, [], source)


def _fail(source: str, message: str, hint: str = "") -> LoadResult:
    return LoadResult(None, [Problem("", message, hint=hint)], source)


# --- paths ---------------------------------------------------------------------------------

def format_path(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


# --- pydantic errors into problems ---------------------------------------------------------

_TYPE_HINTS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list, e.g. [0, 1]",
    "dict_type": "a mapping of keys to values",
    "model_type": "a mapping of keys to values",
}


def _problem_from_error(err: ErrorDetails, positions: dict[tuple, tuple[int, int]]) -> Problem:
    loc = tuple(part for part in err.get("loc", ()) if not _is_union_tag(part))
    kind = err.get("type", "")
    value = err.get("input")
    path = format_path(loc)
    message = err.get("msg", "invalid value")
    hint = ""
    if kind == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}"
        hint = _suggest_key(loc, err)
        value = None
        pos = positions.get(loc + ("<key>",)) or positions.get(loc[:-1] + (loc[-1], "<key>"))
        if pos is None:
            pos = positions.get(loc)
    else:
        pos = positions.get(loc)
        if kind == "missing":
            message = "required key is missing"
            value = None
            pos = positions.get(loc[:-1])
        elif kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            message = "not one of the allowed values"
            hint = f"one of {expected}"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            hint = message[0].lower() + message[1:]
            message = "out of range"
            if path.endswith("port") or path.endswith("ports") or "_ports[" in path or path.endswith("port_start"):
                hint = "a TCP port between 1 and 65535"
        elif kind == "string_pattern_mismatch":
            message = "not a valid name"
            hint = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters"
            if loc and loc[-1] == "vllm_version":
                hint = "a version such as 0.26.0"
        elif kind == "too_short":
            message = "is empty" if not value else "too few entries"
            hint = "at least one GPU index, e.g. [0]" if loc and loc[-1] == "gpus" else "at least one entry"
            value = None
        elif kind in _TYPE_HINTS:
            message = f"wrong type ({type(value).__name__})"
            hint = _TYPE_HINTS[kind]
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
    line, column = pos if pos else (None, None)
    if value is not None and isinstance(value, (dict, list)) and len(repr(value)) > 80:
        value = None
    return Problem(path, message, value, hint, "error", line, column)


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the union member's name (e.g. 'int', 'function-before[...]') to loc.
    return isinstance(part, str) and ("[" in part and "]" in part and part.startswith("function"))


# LMCache keys pdtui writes itself, so that they can never disagree between instances.
DERIVED_LMCACHE_KEYS = {
    "enable_pd": "pdtui sets enable_pd from the profile's mode (lmcache-pd)",
    "pd_role": "pdtui sets pd_role from the instance's list (prefillers: sender, decoders: receiver)",
    "pd_proxy_host": "pdtui sets pd_proxy_host from proxy.zmq_host",
    "pd_proxy_port": "pdtui sets pd_proxy_port from proxy.zmq_port",
    "pd_peer_host": "pdtui sets pd_peer_host from the profile's host",
    "pd_peer_init_port": "set the decoder's nixl_init_ports instead (one per TP rank)",
    "pd_peer_alloc_port": "set the decoder's nixl_alloc_ports instead (one per TP rank)",
}


def _suggest_key(loc: tuple, err: ErrorDetails) -> str:
    import difflib

    from pdtui.model import schema

    key = str(loc[-1])
    if "lmcache" in loc[:-1] and key in DERIVED_LMCACHE_KEYS:
        return DERIVED_LMCACHE_KEYS[key]
    candidates = _fields_at(loc[:-1], schema.Profile)
    if not candidates:
        return ""
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "valid keys here: " + ", ".join(sorted(candidates))


def _fields_at(loc: tuple, model: type) -> list[str]:

    from pydantic import BaseModel

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(part)
        if info is None:
            return []
        annotation = info.annotation
        current = _unwrap_model(annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap_model(annotation: Any) -> Any:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None
