"""Broken files never crash the loader: they give a message with the position."""

from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdtui.model.loader import load_profile, load_profile_bytes
from pdtui.model.validate import validate_text
from tests.conftest import REPO_ROOT


def only_problem(result):
    assert result.profile is None
    assert len(result.problems) == 1
    return result.problems[0]


def test_syntax_error_has_line_and_column():
    problem = only_problem(load_profile_bytes(b"name: x\nmodel: [a, b\nprefillers: []\n", "p.yaml"))
    assert "YAML syntax error" in problem.message
    assert problem.line == 3 and problem.column is not None
    assert problem.format("p.yaml").startswith("p.yaml:3:")


def test_tab_indentation_error():
    problem = only_problem(load_profile_bytes(b"name: x\n\tmodel: y\n"))
    assert problem.line == 2


def test_empty_and_comment_only_files():
    assert "empty" in only_problem(load_profile_bytes(b"")).message
    assert "empty" in only_problem(load_profile_bytes(b"# nothing here\n\n")).message


def test_wrong_top_level_type():
    assert "list, not a mapping" in only_problem(load_profile_bytes(b"- a\n- b\n")).message
    assert "str, not a mapping" in only_problem(load_profile_bytes(b"just text\n")).message


def test_binary_garbage():
    assert "binary" in only_problem(load_profile_bytes(bytes(range(256)) * 4)).message
    assert "UTF-8" in only_problem(load_profile_bytes(b"name: \xff\xfe\n")).message


def test_missing_file_and_directory(tmp_path):
    assert "not found" in only_problem(load_profile(tmp_path / "nope.yaml")).message
    assert "directory" in only_problem(load_profile(tmp_path)).message


def test_every_preset_loads():
    for path in sorted((REPO_ROOT / "configs").glob("*.yaml")):
        result = load_profile(path)
        assert result.ok, (path, [p.format() for p in result.problems])


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(string.printable, max_size=12),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(string.ascii_letters + "_", max_size=10), children, max_size=4),
    max_leaves=20,
)
profile_keys = st.sampled_from(
    ["name", "model", "mode", "engine", "host", "proxy", "env", "vllm", "lmcache", "prefillers", "decoders",
     "port", "gpus", "nixl_init_ports", "tensor_parallel_size", "pd_buffer_size", "extra", "kv", "sim"]
)
profile_like = st.recursive(
    yaml_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(profile_keys, children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.one_of(yaml_values, profile_like))
def test_random_documents_validate_or_return_problems(document):
    text = yaml.safe_dump(document)
    validation = validate_text(text, "random.yaml")
    if validation.profile is None:
        assert validation.problems
    for problem in validation.problems:
        problem.format("random.yaml")  # never raises


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(raw):
    result = load_profile_bytes(raw, "bytes.yaml")
    assert result.profile is not None or result.problems


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefill_port=st.integers(-5, 70000),
    decode_ports=st.lists(st.integers(-5, 70000), max_size=3),
    tp=st.integers(-1, 9),
    size=st.one_of(st.integers(-10, 2**40), st.sampled_from(["1GiB", "2 GB", "x", "0", "1.5MiB", ""])),
)
def test_mutated_preset_fields(prefill_port, decode_ports, tp, size):
    doc = yaml.safe_load((REPO_ROOT / "configs" / "1p1d.yaml").read_text())
    doc["prefillers"][0]["port"] = prefill_port
    doc["prefillers"][0]["tensor_parallel_size"] = tp
    doc["decoders"][0]["nixl_init_ports"] = decode_ports
    doc["decoders"][0]["lmcache"]["pd_buffer_size"] = size
    validation = validate_text(yaml.safe_dump(doc))
    if not (1 <= prefill_port <= 65535):
        assert any(p.path == "prefillers[0].port" for p in validation.errors)
    for problem in validation.problems:
        assert problem.format()


@pytest.mark.parametrize("text", ["-_", "._", "port: -_\n", "name: x\nproxy: {port: ._}\n", "a: [0x_]\n"])
def test_plain_scalars_ruamel_cannot_construct_are_problems_not_tracebacks(text):
    """Found by hypothesis in CI: ruamel's int/float constructors raise IndexError/ValueError on
    plain scalars its resolver took for numbers."""
    result = validate_text(text, "odd.yaml")
    assert result.profile is None and result.problems
    assert any("malformed" in p.format("odd.yaml") for p in result.problems), [p.format("odd.yaml") for p in result.problems]
