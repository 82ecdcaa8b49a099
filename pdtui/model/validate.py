"""Load a profile file and run every check on it: the one call the CLI and UI use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pdtui.model.checks import check_profile
from pdtui.model.loader import LoadResult, load_profile, load_profile_text
from pdtui.model.problems import Problem
from pdtui.model.schema import Profile


@dataclass
class Validation:
    source: str
    profile: Profile | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]

    @property
    def ok(self) -> bool:
        return self.profile is not None and not self.errors


def validate_loaded(result: LoadResult, profile_dir: Path | None = None) -> Validation:
    if result.profile is None:
        return Validation(result.source, None, list(result.problems))
    problems = list(result.problems) + check_profile(result.profile, profile_dir)
    return Validation(result.source, result.profile, problems)


def validate_file(path: str | Path) -> Validation:
    path = Path(path)
    return validate_loaded(load_profile(path), path.parent)


def validate_text(text: str, source: str = "<string>", profile_dir: Path | None = None) -> Validation:
    return validate_loaded(load_profile_text(text, source), profile_dir)


def validate_profile(profile: Profile, source: str = "<profile>", profile_dir: Path | None = None) -> Validation:
    return Validation(source, profile, check_profile(profile, profile_dir))
