"""The libyaml fast path reads exactly what ruamel reads, or leaves the text to ruamel.

Whenever fastyaml.plain_data takes a text, ruamel (yamldoc.parse, the path every message
comes from) must read it without error into the same data, types included; and a profile
that does not validate is read again by ruamel, so its messages name the lines as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdtui.model import fastyaml, yamldoc
from pdtui.model.loader import load_profile_text
from tests.conftest import REPO_ROOT


def _typed(value):
    """The data with every value's exact type (1 == 1.0 == True must not pass). ruamel
    keeps a quoted key as its own str subclass, which validation turns into str."""
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return ("str" if isinstance(value, str) else type(value).__name__, value)


def _same_as_ruamel(text: str) -> bool:
    """Asserts the rule; returns whether the fast path took the text."""
    taken, data = fastyaml.plain_data(text)
    if not taken:
        return False
    try:
        expected = yamldoc.parse(text).data
    except yamldoc.YamlProblem as exc:
        pytest.fail(f"the fast path read a text ruamel refuses ({exc.message}):\n{text}")
    assert _typed(data) == _typed(expected), text
    return True


def test_the_copied_resolvers_are_ruamels_for_yaml_1_2():
    from ruamel.yaml.resolver import implicit_resolvers

    theirs = sorted(regexp.pattern for versions, _tag, regexp, _first in implicit_resolvers
                    if (1, 2) in versions and _tag != "tag:yaml.org,2002:yaml")
    ours = sorted(pattern.pattern for pattern in fastyaml._RUAMEL_12_TYPED)
    assert ours == theirs


def test_every_shipped_profile_reads_alike_and_most_take_the_fast_path():
    files = sorted([*REPO_ROOT.glob("configs/*.yaml"), *REPO_ROOT.glob("examples/**/*.yaml"),
                    *REPO_ROOT.glob("tests/model/profiles/*.yaml")])
    taken = [path.name for path in files if _same_as_ruamel(path.read_text(encoding="utf-8"))]
    assert "demo.yaml" in taken and len(taken) >= len(files) // 2, taken


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n",  # an alias
    "a: 1\na: 2\n",  # a duplicate key
    "a: !!str 5\n",  # a tag
    "a: |\n  x\n",  # a block scalar
    "%YAML 1.1\n---\na: yes\n",  # a directive
    "<<: {a: 1}\n",  # a merge key
    "a: \"x\\ty\"\n",  # an escape
    "a: 0o17\n", "a: 1_000\n", "a: 1e3\n", "a: .5\n", "a: 2026-12-01\n", "a: -_\n", "a: .inf\n",
    "a: 0.26.0x\nb: 012\n",  # 012: ruamel's 1.2 int reads it, ours does not
    "a: [x:y]\n",  # a flow scalar beyond name-like characters
    "a: b\n  c\n",  # a plain scalar over two lines
    "1: a\n", "true: a\n", "? [a]\n: b\n",  # keys that are not strings
    "a: 1\t\n", "a: 1\r\n", "a: \u2028\n",
    "a: [" * 40 + "]" * 40 + "\n",  # nesting
])
def test_what_the_fast_path_leaves_to_ruamel(text):
    assert fastyaml.plain_data(text) == (False, None)


@pytest.mark.parametrize("text, data", [
    ("a: 1\nb: -2\nc: 0.9\nd: true\ne: ~\nf:\ng: null\nh: False\n",
     {"a": 1, "b": -2, "c": 0.9, "d": True, "e": None, "f": None, "g": None, "h": False}),
    ("a: yes\nb: on\nc: 1GiB\nd: --flag\ne: ./model\nf: 0.26.0\ng: 'quoted: 1'\nh: \"2\"\n",
     {"a": "yes", "b": "on", "c": "1GiB", "d": "--flag", "e": "./model", "f": "0.26.0", "g": "quoted: 1", "h": "2"}),
    ("l: [0, 1, a-b, \"x y\"]\nm: {k: v}\n# a comment with ` & * | > ! and — non-ASCII\n",
     {"l": [0, 1, "a-b", "x y"], "m": {"k": "v"}}),
])
def test_what_the_fast_path_reads(text, data):
    assert _same_as_ruamel(text)
    assert fastyaml.plain_data(text) == (True, data)


_SCALARS = st.sampled_from([
    "1", "-1", "+1", "0", "-0", "01", "1.5", "1.50", "-0.5", "1.", "1e3", "1E-3", ".5", "0x1F", "0o7", "0b1", "1_0",
    "yes", "no", "on", "off", "y", "n", "true", "True", "TRUE", "tRue", "false", "null", "Null", "~", "", "=",
    "<<", ".inf", "-.inf", ".nan", ".NaN", "2026-12-01", "2026-12-01 10:00:00", "1:20", "12:30:45",
    "1GiB", "0.26.0", "--flag", "-", "-x", "./x", ".x", "a:b", "http://h:1/p?q=1", "a #b", "a#b", "cuda,tcp",
    "'q'", "'it''s'", '"d"', '"a: b"', "'a #b'", "nixl", "Nixl", "NULL", "nulls", "truely", "-_", "._", "0x_",
])
_KEYS = st.sampled_from(["a", "b", "name", "port", "on", "yes", "'1'", '"x y"', "k-1", "1", "true", "null", "a b"])


def _block(depth: int):
    leaf = _SCALARS.map(lambda s: ("scalar", s))
    if depth == 0:
        return leaf
    child = _block(depth - 1)
    mapping = st.lists(st.tuples(_KEYS, child), min_size=1, max_size=4).map(lambda items: ("map", items))
    sequence = st.lists(child, min_size=1, max_size=3).map(lambda items: ("seq", items))
    flow = st.lists(_SCALARS, min_size=0, max_size=3).map(lambda items: ("flow", items))
    return st.one_of(leaf, mapping, sequence, flow)


def _render(node, indent: int) -> str:
    kind, body = node
    pad = " " * indent
    if kind == "map":
        out = []
        for key, value in body:
            if value[0] in ("scalar", "flow"):
                out.append(f"{pad}{key}: {_inline(value)}".rstrip() + "\n")
            else:
                out.append(f"{pad}{key}:\n{_render(value, indent + 2)}")
        return "".join(out)
    if kind == "seq":
        out = []
        for value in body:
            if value[0] in ("scalar", "flow"):
                out.append(f"{pad}- {_inline(value)}".rstrip() + "\n")
            else:
                out.append(f"{pad}-\n{_render(value, indent + 2)}")
        return "".join(out)
    return f"{pad}{_inline(node)}\n"


def _inline(node) -> str:
    kind, body = node
    return "[" + ", ".join(body) + "]" if kind == "flow" else body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_block(3))
def test_generated_documents_read_alike(node):
    _same_as_ruamel(_render(node, 0))


def test_a_schema_error_still_names_its_line():
    text = (REPO_ROOT / "configs" / "demo.yaml").read_text(encoding="utf-8")
    assert fastyaml.plain_data(text)[0]
    broken = text.replace("\nmode:", "\nmoed:", 1)
    assert broken != text and fastyaml.plain_data(broken)[0]
    result = load_profile_text(broken)
    (problem,) = result.problems
    assert "moed" in problem.message and "mode" in problem.hint
    assert problem.line == broken.splitlines().index(next(x for x in broken.splitlines() if x.startswith("moed:"))) + 1


def test_validating_a_good_profile_loads_no_ruamel(tmp_path: Path):
    code = ("import sys; from pdtui.model import validate_file; "
            f"assert validate_file({str(REPO_ROOT / 'configs' / 'demo.yaml')!r}).ok; "
            "print(sorted(m for m in sys.modules if m.startswith('ruamel')))")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
