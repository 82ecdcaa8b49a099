"""The deployment profile: schema, validation, presets and renderers (pure, no processes).

Names load on first use so that `pdtui.model.cli` (imported for `pdtui --help`
and every subcommand) does not pull in pydantic until a command needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Problem": "pdtui.model.problems",
    "DeploymentPlan": "pdtui.model.render",
    "InstancePlan": "pdtui.model.render",
    "ProxyPlan": "pdtui.model.render",
    "render_plan": "pdtui.model.render",
    "write_rendered": "pdtui.model.render",
    "DecoderSpec": "pdtui.model.schema",
    "InstanceSpec": "pdtui.model.schema",
    "PrefillerSpec": "pdtui.model.schema",
    "Profile": "pdtui.model.schema",
    "ProxySpec": "pdtui.model.schema",
    "Validation": "pdtui.model.validate",
    "validate_file": "pdtui.model.validate",
    "validate_profile": "pdtui.model.validate",
    "validate_text": "pdtui.model.validate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pdtui.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
