"""`~name` of no such user never raises (pathlib's expanduser does): found by the profile fuzz."""

from __future__ import annotations

import os

import yaml

from pdtui.clipaths import expand_user
from pdtui.model import validate_text
from tests.conftest import REPO_ROOT


def test_expand_user_keeps_an_unknown_users_tilde_and_expands_home():
    assert str(expand_user("~no-such-user-pdtui/x")) == "~no-such-user-pdtui/x"
    assert str(expand_user("~/x")) == os.path.expanduser("~/x")


def test_a_model_named_like_an_unknown_users_home_validates_without_a_traceback():
    doc = yaml.safe_load((REPO_ROOT / "configs" / "1p1d.yaml").read_text())
    doc["model"] = "~0"
    validation = validate_text(yaml.safe_dump(doc))
    assert validation.profile is not None, [p.format() for p in validation.problems]
