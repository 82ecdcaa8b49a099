"""The deployment profile: schema, validation, presets and renderers (pure, no processes)."""

from pdtui.model.problems import Problem
from pdtui.model.render import DeploymentPlan, InstancePlan, ProxyPlan, render_plan, write_rendered
from pdtui.model.schema import DecoderSpec, InstanceSpec, PrefillerSpec, Profile, ProxySpec
from pdtui.model.validate import Validation, validate_file, validate_profile, validate_text

__all__ = [
    "DecoderSpec",
    "DeploymentPlan",
    "InstancePlan",
    "InstanceSpec",
    "PrefillerSpec",
    "Problem",
    "Profile",
    "ProxyPlan",
    "ProxySpec",
    "Validation",
    "render_plan",
    "validate_file",
    "validate_profile",
    "validate_text",
    "write_rendered",
]
