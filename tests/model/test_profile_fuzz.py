"""Fuzz over profile documents (issue 15): presets with random hostile mutations.

Thousands of examples: validate never raises and never hangs; a profile it accepts renders
a plan whose launch.sh quotes every word exactly (shlex reads back the very argv and
environment of each process), and no secret it holds reaches a rendered text.
"""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pdtui.model import render_plan, validate_text
from pdtui.model.envchecks import ENV_NAME
from pdtui.model.launch_script import launch_script
from pdtui.model.secret import MASK, looks_like_token, scrub
from tests.conftest import REPO_ROOT

PRESETS = [yaml.safe_load(p.read_text()) for p in sorted((REPO_ROOT / "configs").glob("*.yaml"))]
OUT = "/tmp/pdtui-fuzz-out"

hostile_text = st.one_of(
    st.sampled_from([
        "$(touch /tmp/pwned)", "`id`", "'; rm -rf ~; '", '"; id; "', "x\ny", "${HOME:?$(id)}", "\\'", "a=b",
        "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "sk-proj-Qw3rTy7UiOp1AsDfGhJkLzXcVbNm4567",
        "AKIAIOSFODNN7EXAMPLE", "ghp_0123456789abcdefghijABCDEFGHIJ012345", "redis://u:pw@h:1",
        "--api-key", "--token", "--hf-token", "\x00", "é✓", "", " ", "-", "--", "*", "~", "!", "#",
    ]),
    st.text(max_size=30),
)
leaf = st.one_of(hostile_text, st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.booleans(), st.none())
value = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)), max_leaves=8)


def _containers(doc, path=()):
    """Every dict/list inside doc with its path."""
    yield path, doc
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, child in items:
        if isinstance(child, (dict, list)):
            yield from _containers(child, (*path, key))


@st.composite
def mutated_profiles(draw):
    doc = copy.deepcopy(draw(st.sampled_from(PRESETS)))
    for _ in range(draw(st.integers(1, 4))):
        containers = list(_containers(doc))
        _, target = draw(st.sampled_from(containers))
        # Mostly mutations a schema-valid profile survives (so that rendering is exercised),
        # some that break anything.
        kind = draw(st.sampled_from(["set", "delete", "text", "text", "env", "env", "env", "args", "args", "secrets"]))
        instances = [i for key in ("prefillers", "decoders") if isinstance(doc.get(key), list)
                     for i in doc[key] if isinstance(i, dict)]
        if kind == "env" and isinstance(doc.get("env", {}), dict):
            doc.setdefault("env", {})[draw(hostile_text)] = draw(hostile_text)
        elif kind == "args" and instances:
            inst = draw(st.sampled_from(instances))
            if isinstance(inst.setdefault("vllm", {}), dict):
                inst["vllm"]["extra_args"] = draw(st.lists(hostile_text, max_size=5))
        elif kind == "secrets":
            doc["secrets"] = draw(st.lists(hostile_text, max_size=3))
        elif kind == "text":
            strings = [(c, k) for _, c in containers if isinstance(c, dict) for k, v in c.items() if isinstance(v, str)]
            if strings:
                container, key = draw(st.sampled_from(strings))
                container[key] = draw(hostile_text)
        elif isinstance(target, dict) and target:
            key = draw(st.sampled_from(sorted(target, key=str)))
            if kind == "delete":
                del target[key]
            else:
                target[key] = draw(value)
        elif isinstance(target, list) and target:
            target[draw(st.integers(0, len(target) - 1))] = draw(value)
    return doc


def _start_commands(script: str) -> list[list[str]]:
    """The words of every `start ...` command as bash reads them (each is followed by a
    `wait_healthy` line; continuation lines are joined with exactly " \\\n  ")."""
    commands = []
    for chunk in script.split("\nstart ")[1:]:
        command = chunk.split("\nwait_healthy ", 1)[0].replace(" \\\n  ", " ")
        commands.append(["start", *shlex.split(command)])
    return commands


def _check_rendered(profile) -> None:
    plan = render_plan(profile, OUT)
    script = launch_script(plan)
    texts = [script, json.dumps(plan.to_dict(mask_secrets=True))] + [i.lmcache_yaml or "" for i in plan.instances]
    starts = {}
    for words in _start_commands(script):
        starts[words[1]] = words[3:]
    for name, env, secret_keys, argv in [("proxy", plan.proxy.env, plan.proxy.secret_keys, plan.proxy.argv)] + [
        (i.name, i.env, i.secret_keys, i.argv) for i in plan.instances
    ]:
        assert all(ENV_NAME.fullmatch(k) for k in env)
        expected = [
            f"{k}={v.replace(OUT, '$HERE', 1) if v.startswith(OUT) else v}" for k, v in env.items() if k not in secret_keys
        ] + list(argv)
        assert starts[name] == expected, name  # bash reads back exactly these words
        for word in argv:
            assert not looks_like_token(word)
    for text in texts:
        written = scrub(text, plan.secret_values)  # what write_rendered writes
        for secret in plan.secret_values:
            if len(secret) >= 8:
                assert secret not in written
        assert not looks_like_token(written.replace(MASK, ""))


@pytest.mark.timeout(600)
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(doc=mutated_profiles())
def test_mutated_profiles_never_crash_and_render_safely(doc):
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return  # not representable as YAML: not a document anyone could write
    validation = validate_text(text, "fuzz.yaml", Path(OUT))
    if validation.profile is None:
        event("refused by the schema")
        assert validation.problems
        return
    for problem in validation.problems:
        problem.format("fuzz.yaml")
        json.dumps(problem.to_dict())
    event("valid: rendered" if validation.ok else "refused by a check")
    if validation.ok:
        _check_rendered(validation.profile)
