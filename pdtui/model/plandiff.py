"""What differs between what runs and what the saved profile would start.

The running deployment was started from a plan; the operator may have saved another
profile since. `drift()` compares, per instance, the argv that runs with the argv the
saved profile renders for the same run directory, as readable `--flag value` lines, and
the LMCache YAML. Environment values are never compared here: they may be secrets.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pdtui.model.render import DeploymentPlan
from pdtui.text import plural


@dataclass(frozen=True)
class InstanceDrift:
    name: str
    argv_diff: tuple[str, ...]  # "- --port 7200" / "+ --port 7299"; empty when argv is the same
    lmcache_changed: bool = False
    only_in: str = ""  # "running" or "saved" when the instance exists on one side only

    def summary(self) -> str:
        if self.only_in == "running":
            return f"{self.name}: not in the saved profile"
        if self.only_in == "saved":
            return f"{self.name}: new in the saved profile (not running)"
        parts = []
        if self.argv_diff:
            parts.append(f"{plural(sum(1 for line in self.argv_diff if line.startswith('+')), 'argument')} changed")
        if self.lmcache_changed:
            parts.append("LMCache config changed")
        return f"{self.name}: " + ", ".join(parts)


def argv_lines(argv: Iterable[str]) -> list[str]:
    """argv as one line per option with its value (`--port 7200`), so a diff reads well."""
    lines: list[str] = []
    for arg in argv:
        if lines and not arg.startswith("-") and lines[-1].startswith("-") and " " not in lines[-1]:
            lines[-1] += f" {arg}"
        else:
            lines.append(arg)
    return lines


def argv_diff(old: Iterable[str], new: Iterable[str]) -> list[str]:
    """The lines that differ: "- ..." for what runs now, "+ ..." for what would run."""
    out = []
    for line in difflib.ndiff(argv_lines(old), argv_lines(new)):
        if line[:1] in "+-":
            out.append(line.rstrip("\n"))
    return out


def drift(running_argv: Mapping[str, Iterable[str]], saved: DeploymentPlan,
          running_lmcache: Mapping[str, str | None] | None = None) -> list[InstanceDrift]:
    """Instances whose running argv (or LMCache YAML, when given) differs from the saved plan's."""
    wanted = {inst.name: inst for inst in saved.instances}
    result: list[InstanceDrift] = []
    for name, argv in running_argv.items():
        if name == "proxy":
            diff = argv_diff(argv, saved.proxy.argv)
            if diff:
                result.append(InstanceDrift(name, tuple(diff)))
            continue
        inst = wanted.get(name)
        if inst is None:
            result.append(InstanceDrift(name, (), only_in="running"))
            continue
        diff = argv_diff(argv, inst.argv)
        lmcache_changed = running_lmcache is not None and name in running_lmcache and running_lmcache[name] != inst.lmcache_yaml
        if diff or lmcache_changed:
            result.append(InstanceDrift(name, tuple(diff), lmcache_changed))
    for name in wanted:
        if name not in running_argv:
            result.append(InstanceDrift(name, (), only_in="saved"))
    return result
