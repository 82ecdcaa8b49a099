"""A profile's plain data through libyaml (PyYAML's C parser), for the common simple case.

The round-trip parse (yamldoc, pure-Python ruamel.yaml) is what edits and error messages
need: the tree, comments, every line and column. Reading a profile to start it (`pdtui up`,
`validate`) needs only the data, and the C parser gives it in a fraction of the time, on
the way to the first spawn. So that both give the same data (the same validation results,
to the message), this path takes only text whose meaning it can tell for sure, and says
"ask ruamel" (None) for anything else:

- no tags, aliases, block scalars, directives, merge keys, escapes, tabs, CRs or
  characters outside YAML's printable set; no scalar over several lines; no duplicate or
  non-string key;
- plain scalars resolved as ruamel resolves them under YAML 1.2 (its default): null,
  booleans, decimal integers and simple decimals here; any other plain scalar that one
  of ruamel's 1.2 implicit resolvers (copied below; a test holds them to ruamel's own)
  would type goes to ruamel;
- plain scalars inside flow collections only of name-like characters.

Hostile input stays bounded: the size check (`check_size`) runs first on either path, and
the shape gates above keep nesting shallow.
"""

from __future__ import annotations

import re
from typing import Any


class YamlProblem(Exception):
    """The text cannot be a profile document: what, and where (1-based) when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


# Every YAML value needs at least one of these characters (a line break, a flow separator,
# a key's colon, a list dash), so their count bounds what the parser would build, and is
# taken before parsing: a 1 MB one-line flow list would otherwise keep the pure-Python
# parser busy for half a minute.
_STRUCTURE = ("\n", ",", ":", "-", "[", "{")
MAX_STRUCTURE_MARKS = 20_000
# A profile has a few hundred values; 10,000 leaves room for any real one while an alias
# bomb is stopped after a few milliseconds and a few MB (yamldoc.plain counts them).
MAX_EXPANDED_VALUES = 10_000


def check_size(text: str) -> None:
    marks = sum(text.count(mark) for mark in _STRUCTURE)
    if marks > MAX_STRUCTURE_MARKS:
        raise YamlProblem(
            f"too large for a profile: {marks} lines and separators (at most {MAX_STRUCTURE_MARKS}; "
            "a profile has a few hundred)"
        )


# Text this path leaves to ruamel: escapes (backslashes), directives (a line starting with
# %), tabs and CRs, characters outside YAML's printable set, and the ones 1.1 and 1.2 read
# differently (NEL, LS, PS) or that only open a file (BOM).
_RUAMEL_ONLY = re.compile(r"[^\n\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\\\u2028\u2029\ufeff]|^%", re.M)
# Deeper nesting than a profile has (a few levels) goes to ruamel, which counts it.
MAX_FAST_DEPTH = 32
MAX_FAST_INDENT = 64

# ruamel.yaml's implicit resolvers for YAML 1.2 (ruamel/yaml/resolver.py), verbatim:
# a plain scalar matching one of them is not a string there.
_RUAMEL_12_TYPED = [
    re.compile("""^(?:true|True|TRUE|false|False|FALSE)$""", re.X),
    re.compile("""^(?:
         [-+]?(?:[0-9][0-9_]*)\\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\\.(?:inf|Inf|INF)
        |\\.(?:nan|NaN|NAN))$""", re.X),
    re.compile("""^(?:[-+]?0b[0-1_]+
        |[-+]?0o?[0-7_]+
        |[-+]?[0-9_]+
        |[-+]?0x[0-9a-fA-F_]+)$""", re.X),
    re.compile("^(?:<<)$"),
    re.compile("""^(?: ~
        |null|Null|NULL
        | )$""", re.X),
    re.compile("""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
        (?:[Tt]|[ \\t]+)[0-9][0-9]?
        :[0-9][0-9] :[0-9][0-9] (?:\\.[0-9]*)?
        (?:[ \\t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""", re.X),
    re.compile("^(?:=)$"),
]
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\.[0-9]+\Z")
_FLOW_PLAIN = re.compile(r"[A-Za-z0-9_./+-]*\Z")


class _AskRuamel(Exception):
    """This text is beyond what the fast path tells for sure."""


def plain_data(text: str) -> tuple[bool, Any]:
    """(True, data) when the text was read here; (False, None) when ruamel must read it
    (libyaml missing, a shape this path leaves to ruamel, or any syntax error: ruamel's
    message says it). Call check_size first."""
    if _RUAMEL_ONLY.search(text):
        return False, None
    if any(len(line) - len(line.lstrip(" ")) > MAX_FAST_INDENT for line in text.split("\n")):
        return False, None
    try:
        from yaml import YAMLError
        from yaml._yaml import CParser
        from yaml.nodes import MappingNode, ScalarNode, SequenceNode
    except ImportError:
        return False, None

    class _Composer(CParser):
        # Tags say only how each node was written: the resolution is ours, below.
        def resolve(self, kind, value, implicit):
            if kind is ScalarNode:
                return "plain" if implicit[0] else "quoted"
            return "collection"

        def descend_resolver(self, *args):
            pass

        def ascend_resolver(self, *args):
            pass

    composer = _Composer(text)
    try:
        root = composer.get_single_node()
    except (YAMLError, ValueError, TypeError):
        return False, None
    finally:
        composer.dispose()
    seen: set[int] = set()

    def convert(node, depth: int, in_flow: bool) -> Any:
        if id(node) in seen or depth > MAX_FAST_DEPTH or len(seen) >= MAX_EXPANDED_VALUES:
            raise _AskRuamel  # an alias (the same node twice), deep nesting, too many values
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            return scalar(node, in_flow)
        if node.tag != "collection":
            raise _AskRuamel
        flow = in_flow or bool(node.flow_style)
        if isinstance(node, SequenceNode):
            return [convert(item, depth + 1, flow) for item in node.value]
        if isinstance(node, MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise _AskRuamel
                key = convert(key_node, depth + 1, flow)
                if not isinstance(key, str) or key in out:
                    raise _AskRuamel  # ruamel refuses a duplicate with its line
                out[key] = convert(value_node, depth + 1, flow)
            return out
        raise _AskRuamel

    try:
        return True, convert(root, 0, False) if root is not None else None
    except (_AskRuamel, RecursionError):
        return False, None


def scalar(node, in_flow: bool) -> Any:
    value = node.value
    if node.start_mark.line != node.end_mark.line or node.tag not in ("plain", "quoted") or node.style in ("|", ">"):
        raise _AskRuamel  # folded over lines, tagged, or a block scalar
    if node.tag == "quoted":
        return value
    if in_flow and not _FLOW_PLAIN.match(value):
        raise _AskRuamel
    if value in _NULLS:
        return None
    if value in _BOOLS:
        return _BOOLS[value]
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if any(pattern.match(value) for pattern in _RUAMEL_12_TYPED):
        raise _AskRuamel
    return value
