"""The proxy's own flags in the profile's `proxy:` section: defaults from one source,
rendered only when set, understood by the proxy's real command line, validated."""

from __future__ import annotations

import argparse
import copy

import pytest
import yaml

import pdtui.constants as C
from pdtui.model import render_plan, validate_text
from pdtui.model.schema import ProxySpec
from pdtui.proxy.cli import add_arguments
from pdtui.proxy.config import ClientLimits, ProxyConfig, from_args
from tests.conftest import REPO_ROOT

BASE = yaml.safe_load((REPO_ROOT / "configs" / "xpyd.yaml").read_text())
NEW_FLAGS = ("--client-header-timeout", "--client-body-timeout", "--client-idle-timeout", "--max-connections",
             "--max-body-bytes", "--first-token-from-prefiller", "--kv-timeouts-to-degrade", "--degraded-probe-interval")


def proxy_argv(proxy_section: dict, tmp_path) -> list[str]:
    doc = copy.deepcopy(BASE)
    doc["proxy"].update(proxy_section)
    validation = validate_text(yaml.safe_dump(doc), "test.yaml")
    assert validation.ok, [p.format() for p in validation.problems]
    return list(render_plan(validation.profile, tmp_path).proxy.argv)


def parsed(argv: list[str]) -> ProxyConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(argv[3:]))  # past `python -m pdtui.proxy`


def test_unset_options_render_nothing_and_the_proxy_uses_the_same_defaults(tmp_path):
    argv = proxy_argv({}, tmp_path)
    assert not [a for a in argv if a in NEW_FLAGS]
    config = parsed(argv)
    spec = ProxySpec()
    assert config.client == ClientLimits(
        header_timeout_s=spec.client.header_timeout, body_timeout_s=spec.client.body_timeout,
        idle_timeout_s=spec.client.idle_timeout, max_connections=spec.client.max_connections,
        max_body_bytes=spec.client.max_body_bytes)
    assert (config.first_token_from_prefiller, config.kv_timeouts_to_degrade, config.degraded_probe_s) == (
        spec.first_token_from_prefiller, spec.kv_timeouts_to_degrade, spec.degraded_probe_interval)
    assert config.client.max_body_bytes == C.PROXY_MAX_BODY_BYTES


def test_set_options_reach_the_proxy(tmp_path):
    argv = proxy_argv({
        "client": {"header_timeout": 5, "body_timeout": 30.5, "idle_timeout": 7, "max_connections": 200,
                   "max_body_bytes": "1MiB"},
        "first_token_from_prefiller": True, "kv_timeouts_to_degrade": 2, "degraded_probe_interval": 1.5,
    }, tmp_path)
    assert set(NEW_FLAGS) <= set(argv)
    config = parsed(argv)
    assert config.client == ClientLimits(5.0, 30.5, 7.0, 200, 1024 * 1024)
    assert config.first_token_from_prefiller is True
    assert (config.kv_timeouts_to_degrade, config.degraded_probe_s) == (2, 1.5)


def test_only_what_is_set_is_rendered(tmp_path):
    argv = proxy_argv({"client": {"max_body_bytes": 2048}, "first_token_from_prefiller": False}, tmp_path)
    assert argv[argv.index("--max-body-bytes") + 1] == "2048"
    assert not [a for a in argv if a in NEW_FLAGS and a != "--max-body-bytes"]


@pytest.mark.parametrize("section, path, words", [
    ({"client": {"header_timeout": 0}}, "proxy.client.header_timeout", "greater than 0"),
    ({"client": {"max_connections": 0}}, "proxy.client.max_connections", "greater than or equal to 1"),
    ({"client": {"max_body_bytes": "lots"}}, "proxy.client.max_body_bytes", "lots"),
    ({"client": {"header_timout": 3}}, "proxy.client.header_timout", ""),
    ({"kv_timeouts_to_degrade": 0}, "proxy.kv_timeouts_to_degrade", "greater than or equal to 1"),
    ({"degraded_probe_interval": -1}, "proxy.degraded_probe_interval", "greater than 0"),
    ({"first_token_from_prefiller": "sometimes"}, "proxy.first_token_from_prefiller", "sometimes"),
])
def test_bad_values_are_reported_at_their_path(section, path, words):
    doc = copy.deepcopy(BASE)
    doc["proxy"].update(section)
    validation = validate_text(yaml.safe_dump(doc), "test.yaml")
    assert not validation.ok
    found = [p for p in validation.problems if p.path == path]
    assert found, [(p.path, p.format()) for p in validation.problems]
    assert words in found[0].format()
