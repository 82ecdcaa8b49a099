"""The profile being edited: typed text to data, validation at the field's path, files."""

from __future__ import annotations

import pytest
import yaml

from pdtui.model.document import ProfileDocument
from pdtui.model.fields import parse_field
from tests.ui.conftest import demo_profile_on_free_ports


@pytest.fixture
def free_demo_profile(tmp_path):
    return demo_profile_on_free_ports(tmp_path)


def test_parse_field_keeps_bad_text_for_validation():
    assert parse_field("int", " 7100 ") == 7100
    assert parse_field("int", "71x0") == "71x0"
    assert parse_field("int", "") is None
    assert parse_field("ints", "0, 1 2") == [0, 1, 2]
    assert parse_field("ints", "0,a") == [0, "a"]


def test_port_conflict_is_reported_at_the_field_then_fixed(free_demo_profile):
    doc = ProfileDocument.open(free_demo_profile)
    assert doc.validation.ok
    clash = doc.get("prefillers[0].port")
    doc.set("decoders[0].port", clash)
    problems = doc.problems_at("decoders[0].port")
    assert problems and "also prefiller1" in problems[0].message
    doc.set("decoders[0].port", "71x0")
    assert "whole number" in doc.problems_at("decoders[0].port")[0].hint
    doc.set("decoders[0].port", clash + 1000)
    assert doc.problems_at("decoders[0].port") == [] and doc.validation.ok


def test_add_duplicate_remove_keep_ports_unique(free_demo_profile):
    doc = ProfileDocument.open(free_demo_profile)
    key, index = doc.add_instance("decoder")
    added = doc.get(f"{key}[{index}]")
    assert added["name"] == "decoder3" and added["nixl_init_ports"] and added["nixl_alloc_ports"]
    key, index = doc.duplicate_instance("prefillers", 0)
    clone = doc.get(f"{key}[{index}]")
    assert clone["name"] == "prefiller3" and clone["gpus"] == []
    all_ports = [doc.get(f"{k}[{i}].port") for k in ("prefillers", "decoders") for i in range(len(doc.data[k]))]
    assert len(all_ports) == len(set(all_ports))
    # New instances have no GPUs yet: that is the one thing left to fix.
    assert {p.path for p in doc.validation.errors} == {"prefillers[1].gpus", "decoders[2].gpus"}
    doc.remove_instance("decoders", 2)
    doc.remove_instance("prefillers", 1)
    assert doc.validation.ok


def test_save_keeps_a_backup_and_revert_restores(free_demo_profile):
    original = free_demo_profile.read_text()
    doc = ProfileDocument.open(free_demo_profile)
    doc.set("model", "other/model")
    assert doc.dirty
    backup = doc.save()
    assert backup is not None and backup.read_text() == original
    assert yaml.safe_load(free_demo_profile.read_text())["model"] == "other/model"
    assert not doc.dirty
    doc.set("model", "third/model")
    doc.revert()
    assert doc.get("model") == "other/model" and not doc.dirty


def test_preview_masks_secrets_and_shows_lmcache(free_demo_profile):
    doc = ProfileDocument.open(free_demo_profile)
    doc.set("env.HF_TOKEN", "hf_secret_value")
    preview = doc.preview("decoder1")
    assert preview is not None
    assert "pdtui.sim" in preview["argv"] and "--port" in preview["argv"]
    assert "HF_TOKEN=***" in preview["env"] and "hf_secret_value" not in preview["env"]
    assert "CUDA_VISIBLE_DEVICES=2" in preview["env"]
    assert "pd_role" in preview["lmcache"]
    doc.set("decoders[0].port", "bad")
    assert doc.preview("decoder1") is None


def test_broken_yaml_is_a_message_not_a_crash(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    doc = ProfileDocument.open(path)
    assert doc.load_error and "broken.yaml:2: YAML syntax error" in doc.load_error
    assert not doc.validation.ok


def test_read_field_for_the_fuller_form():
    from pdtui.model.fields import format_field, read_field

    assert read_field("argv", "python -m 'vllm x'").value == ["python", "-m", "vllm x"]
    assert "cannot split" in read_field("argv", "a 'b").error
    assert format_field("argv", ["python", "-m", "vllm x"]) == "python -m 'vllm x'"
    assert read_field("size", "1GiB").value == "1GiB" and read_field("size", "42").value == 42
    assert read_field("float", "0.5").value == 0.5 and read_field("float", "").value is None
    assert read_field("tristate", "false").value is False and read_field("tristate", "").value is None
    current = {"HF_TOKEN": "hf_x", "PYTHONHASHSEED": 0}
    shown = format_field("env", current)
    assert shown == "HF_TOKEN=***\nPYTHONHASHSEED=0"
    assert read_field("env", shown, current).value == current  # untouched: same values, same types
    assert read_field("env", "", current).value is None
    assert "not KEY=VALUE" in read_field("env", "A=1\nbroken", current).error


def test_emptying_a_nested_field_removes_the_key_and_the_mapping_it_leaves_empty(free_demo_profile):
    doc = ProfileDocument.open(free_demo_profile)
    assert doc.set_text("decoders[0].kv.skip_last_n_tokens", "int", "3")
    assert doc.get("decoders[0].kv") == {"skip_last_n_tokens": 3}
    assert doc.set_text("decoders[0].kv.skip_last_n_tokens", "int", "")
    assert "kv" not in doc.data["decoders"][0]
    assert not doc.set_text("decoders[0].kv.skip_last_n_tokens", "int", "")  # nothing to remove
    assert "kv" not in doc.data["decoders"][0]
