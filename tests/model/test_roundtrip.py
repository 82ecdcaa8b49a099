"""The operator's file is kept: load + save is byte-identical, an edit changes only its own
lines, backups are numbered, and hostile YAML (alias bombs, duplicate keys) is refused fast."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdtui.model.document import KEEP_BACKUPS, ProfileDocument
from pdtui.model.fields import DECODER_FIELDS, DEPLOYMENT_FIELDS, PREFILLER_FIELDS
from pdtui.model.files import numbered_backups
from pdtui.model.hostchecks import GpuFact
from pdtui.model.loader import load_profile_text
from pdtui.model.validate import validate_text
from tests.conftest import REPO_ROOT

PRESETS = sorted((REPO_ROOT / "configs").glob("*.yaml"))
COMMENTED = Path(__file__).parent / "profiles" / "commented.yaml"
ALL = PRESETS + [COMMENTED]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_load_and_save_without_edits_is_byte_identical(path, tmp_path):
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    doc = ProfileDocument.open(copy)
    assert doc.load_error is None and doc.text() == path.read_text()
    assert not doc.dirty and doc.diff() == []
    doc.save()
    assert copy.read_bytes() == path.read_bytes()


def test_binary_or_non_utf8_files_are_not_opened_for_editing(tmp_path):
    for name, raw in (("latin1.yaml", "name: caf\xe9\n".encode("latin-1")), ("nul.yaml", b"name: a\x00\n")):
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(OSError, match="UTF-8|NUL"):
            ProfileDocument.open(path)
        assert path.read_bytes() == raw


def test_crlf_file_stays_crlf(tmp_path):
    path = tmp_path / "crlf.yaml"
    path.write_bytes(COMMENTED.read_bytes().replace(b"\n", b"\r\n"))
    original = path.read_bytes()
    doc = ProfileDocument.open(path)
    assert not doc.dirty
    doc.set_text("decoders[0].port", "int", "7299")
    doc.save()
    assert path.read_bytes() == original.replace(b"    port: 7200\r\n", b"    port: 7299\r\n")


def test_the_hand_written_profile_is_valid_and_its_anchors_are_used():
    doc = ProfileDocument.open(COMMENTED)
    assert doc.validation.ok, [p.format() for p in doc.validation.problems]
    assert doc.get("prefillers[1].sim") == {"startup_s": 3}  # through the alias *fast
    assert doc.get("decoders[1].lmcache.pd_buffer_size") == "2GiB"


def _changed_lines(doc: ProfileDocument) -> list[str]:
    return [line for line in doc.diff(0) if line[:1] in "+-" and not line.startswith(("+++", "---"))]


# Fields whose text is one plain value (a choice or a list of ints too), per section.
SIMPLE = ("int", "float", "str", "ints", "size", "choice")
EDITS = st.one_of(
    st.tuples(st.just(""), st.sampled_from([f for f in DEPLOYMENT_FIELDS if f.kind in SIMPLE])),
    st.tuples(st.sampled_from(["prefillers[0].", "prefillers[-1]."]),
              st.sampled_from([f for f in PREFILLER_FIELDS if f.kind in SIMPLE])),
    st.tuples(st.sampled_from(["decoders[0].", "decoders[-1]."]), st.sampled_from([f for f in DECODER_FIELDS if f.kind in SIMPLE])),
)


def _value_text(spec, n: int) -> str:
    if spec.kind == "choice":
        return spec.choices[n % len(spec.choices)]
    if spec.kind == "ints":
        return ",".join(str(7000 + n + i) for i in range(1 + n % 2))
    if spec.kind in ("float",):
        return f"{(n % 9) / 10 + 0.05:g}"
    if spec.kind == "size":
        return f"{1 + n % 4}GiB"
    if spec.kind == "int":
        return str(8000 + n)
    return f"value{n}"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(ALL), edit=EDITS, n=st.integers(0, 50))
def test_a_single_field_edit_changes_only_that_fields_lines(path, edit, n):
    doc = ProfileDocument.open(path)
    prefix, spec = edit
    if "[-1]" in prefix:
        key = prefix.split("[")[0]
        prefix = f"{key}[{len(doc.data[key]) - 1}]."
    field = prefix + spec.key
    text = _value_text(spec, n)
    before = doc.get(field)
    doc.set_text(field, spec.kind, text)
    changed = _changed_lines(doc)
    if doc.get(field) == before:
        assert changed == []
        return
    names = [part for part in spec.key.split(".")]
    assert changed, (field, text)
    removed = [line for line in changed if line.startswith("-")]
    if len(removed) == 1 and re.search(r":\s*\*[\w-]+\s*$", removed[0]):
        # Reached through an alias (`lmcache: *decoder_cache`): that one line becomes this
        # instance's own copy, with the edit in it; the anchor's other users keep theirs.
        assert all(line.startswith("+") for line in changed[1:]), changed
        assert doc.undo() and doc.text() == path.read_text()
        return
    for line in changed:
        body = line[1:]
        # Every changed line is the field's own line (an item of it, for a block list), or a
        # mapping it had to create.
        list_item = spec.kind == "ints" and body.lstrip().startswith("- ")
        assert list_item or any(body.lstrip().startswith(f"{name}:") or f" {name}: " in body or f"{{{name}: " in body
                                for name in names), (field, changed)
    # Only added lines, or the value's own line(s) replaced.
    removed = [line for line in changed if line.startswith("-")]
    assert len(removed) <= (len(before) if isinstance(before, list) else 1), changed
    assert doc.undo() and not doc.dirty and doc.text() == path.read_text()


def test_an_edit_through_an_alias_changes_only_that_instance():
    doc = ProfileDocument.open(COMMENTED)
    doc.set_text("decoders[1].lmcache.pd_buffer_size", "size", "3GiB")
    assert doc.get("decoders[0].lmcache.pd_buffer_size") == "2GiB"  # the anchor's own user keeps it
    assert doc.get("decoders[1].lmcache") == {"max_local_cpu_size": 0, "pd_buffer_size": "3GiB"}
    changed = _changed_lines(doc)
    assert changed == ["-    lmcache: *decoder_cache", "+    lmcache:", "+      max_local_cpu_size: 0", "+      pd_buffer_size: 3GiB"]
    doc.set_text("prefillers[0].sim.startup_s", "float", "7")  # at the anchor: its users follow
    assert doc.get("prefillers[1].sim.startup_s") == 7
    assert "+    sim: &fast {startup_s: 7}" in _changed_lines(doc)


def test_undo_and_redo_walk_through_edits(tmp_path):
    doc = ProfileDocument.open(COMMENTED)
    doc.set_text("proxy.port", "int", "9")
    doc.set_text("proxy.port", "int", "91")  # typing into one field is one step
    doc.set_text("decoders[0].port", "int", "7299")
    assert doc.get("proxy.port") == 91
    assert doc.undo() and doc.get("decoders[0].port") == 7200 and doc.get("proxy.port") == 91
    assert doc.undo() and doc.get("proxy.port") == 9100 and not doc.dirty
    assert not doc.undo()
    assert doc.redo() and doc.get("proxy.port") == 91
    assert doc.redo() and doc.get("decoders[0].port") == 7299
    assert not doc.redo()


def test_numbered_backups_keep_the_last_five(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(COMMENTED.read_text())
    doc = ProfileDocument.open(path)
    versions = []
    for port in range(9101, 9101 + KEEP_BACKUPS + 2):
        versions.append(path.read_text())
        doc.set_text("proxy.port", "int", str(port))
        backup = doc.save()
        assert backup is not None and backup.read_text() == versions[-1]
    backups = numbered_backups(path)
    assert [b.read_text() for b in backups] == versions[-KEEP_BACKUPS:]
    assert "port: 9107      # the front door" in path.read_text()
    assert not list(tmp_path.glob(".p.yaml.*.tmp"))  # the atomic write left no temporary file


def test_host_facts_in_the_editor_validation():
    doc = ProfileDocument.open(COMMENTED, gpus=[GpuFact(i, 8 * 2**30) for i in range(8)])
    assert doc.validation.ok
    doc.set_text("decoders[0].gpus", "ints", "9")
    [problem] = doc.problems_at("decoders[0].gpus")
    assert problem.message == "GPU 9 does not exist on this machine" and problem.hint == "this machine has 8 GPUs: 0..7"
    assert problem.format().count("9") == 1  # the value once
    doc.set_text("decoders[0].gpus", "ints", "1")
    [problem] = doc.problems_at("decoders[0].gpus")
    assert problem.is_error and "GPU 1 is given to several instances (prefiller2, decoder1)" in problem.message
    doc.set_text("decoders[0].gpus", "ints", "")
    [problem] = doc.problems_at("decoders[0].gpus")
    assert problem.message == "is empty" and "at least one GPU index" in problem.hint
    doc.set_text("decoders[0].gpus", "ints", "2")
    doc.set_text("decoders[0].lmcache.pd_buffer_size", "size", "9GiB")
    [problem] = doc.problems_at("decoders[0].lmcache.pd_buffer_size")
    assert "9GiB does not fit on GPU 2 (8GiB)" in problem.message


def bomb(levels: int) -> str:
    """The 1.5 KB profile of issue 15: a 9-way anchor chain under an unknown key."""
    lines = ["name: bomb", "model: m", "prefillers: []", "decoders: []", "junk:", "  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _cost(call):
    """(result, CPU seconds, peak traced bytes) of call(): the time from a run without
    tracemalloc (which makes the pure-Python parser several times slower, more so on a
    loaded machine), the memory from a second run with it."""
    started = time.process_time()
    result = call()
    cpu_s = time.process_time() - started
    tracemalloc.start()
    try:
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, cpu_s, peak


@pytest.mark.parametrize("levels", [7, 8])
def test_alias_bomb_is_refused_quickly_in_little_memory(levels):
    validation, cpu_s, peak = _cost(lambda: validate_text(bomb(levels), "bomb.yaml"))
    [problem] = validation.problems
    assert "expands to more than" in problem.message and problem.line is not None
    assert cpu_s < 1.0 and peak < 100 * 2**20, (cpu_s, peak)


@pytest.mark.parametrize("raw", [
    b"a: [" + b"1," * 500_000 + b"1]\n",             # a 1 MB one-line flow list
    b"".join(b"k%d: 1\n" % i for i in range(90_000)),  # 90,000 keys
    b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",  # nesting 100,000 deep
    b"a: [" + b"1," * 19_990 + b"1]\n",               # just under the separator bound
])
def test_huge_documents_are_refused_quickly_in_little_memory(raw):
    result, cpu_s, peak = _cost(lambda: load_profile_text(raw.decode(), "huge.yaml"))
    [problem] = result.problems
    assert "too large" in problem.message or "more than" in problem.message or "too deep" in problem.message
    assert cpu_s < 5.0 and peak < 100 * 2**20, (cpu_s, peak)


def test_small_anchors_are_fine_and_duplicate_keys_are_refused_with_the_line():
    assert load_profile_text(COMMENTED.read_text()).ok
    text = COMMENTED.read_text().replace("    port: 7201\n", "    port: 7201\n    port: 7202\n")
    [problem] = load_profile_text(text, "dup.yaml").problems
    assert 'duplicate key "port"' in problem.message
    assert problem.format("dup.yaml").startswith(f"dup.yaml:{text.splitlines().index('    port: 7202') + 1}:")


def test_python_tags_are_refused():
    [problem] = load_profile_text("name: !!python/object/apply:os.system ['true']\n").problems
    assert "not allowed" in problem.message and problem.line == 1
