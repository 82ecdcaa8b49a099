"""What the supervisor needs to (re)start one process, from a plan or from state.json."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pdtui.constants as C
from pdtui.model.render import MASK, DeploymentPlan, mask_env


@dataclass(frozen=True)
class LaunchSpec:
    name: str
    kind: str  # "proxy" | "prefiller" | "decoder"
    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)  # on top of os.environ; may hold MASK for secrets after re-attach
    health_url: str = ""
    startup_timeout_s: float = C.ENGINE_STARTUP_TIMEOUT_S
    port: int | None = None
    gpus: tuple[int, ...] = ()
    prometheus_dir: str | None = None
    log_path: str = ""
    secret_keys: frozenset[str] = field(default=frozenset(), repr=False)  # env keys masked when written

    @property
    def is_proxy(self) -> bool:
        return self.kind == "proxy"

    def to_record(self) -> dict:
        """For state.json: secrets masked."""
        return {
            "kind": self.kind,
            "argv": list(self.argv),
            "env": mask_env(self.env, self.secret_keys),
            "health_url": self.health_url,
            "startup_timeout_s": self.startup_timeout_s,
            "port": self.port,
            "gpus": list(self.gpus),
            "prometheus_dir": self.prometheus_dir,
            "log": self.log_path,
        }

    @classmethod
    def from_record(cls, name: str, rec: dict) -> LaunchSpec:
        return cls(
            name=name,
            kind=str(rec.get("kind", "decoder")),
            argv=tuple(rec.get("argv") or ()),
            env=dict(rec.get("env") or {}),
            health_url=str(rec.get("health_url", "")),
            startup_timeout_s=float(rec.get("startup_timeout_s") or C.ENGINE_STARTUP_TIMEOUT_S),
            port=rec.get("port"),
            gpus=tuple(rec.get("gpus") or ()),
            prometheus_dir=rec.get("prometheus_dir"),
            log_path=str(rec.get("log", "")),
        )

    def full_environment(self) -> dict[str, str]:
        """os.environ with the spec's values on top; masked secrets come from os.environ
        (they are never written to disk). Raises LookupError naming a missing one."""
        env = dict(os.environ)
        for key, value in self.env.items():
            if value == MASK:
                if key not in os.environ:
                    raise LookupError(f"{key} is a secret that pdtui does not store: export it before restarting {self.name}")
                continue
            env[key] = value
        return env


def specs_from_plan(plan: DeploymentPlan, run_dir: str | Path) -> list[LaunchSpec]:
    """Proxy first, then the plan's start order (decoders, then prefillers)."""
    run_dir = Path(run_dir)
    sim_gpu_dir = str(run_dir / "sim-gpus")
    specs = [
        LaunchSpec(
            name="proxy",
            kind="proxy",
            argv=tuple(plan.proxy.argv),
            env=dict(plan.proxy.env),
            health_url=plan.proxy.health_url,
            startup_timeout_s=plan.proxy.startup_timeout_s,
            port=plan.proxy.port,
            log_path=str(run_dir / "proxy.log"),
            secret_keys=plan.proxy.secret_keys,
        )
    ]
    for inst in plan.start_order():
        env = dict(inst.env)
        if plan.engine == "sim":
            # The simulated GPU view overlays what the engines of this run report here.
            env["PDTUI_SIM_GPU_DIR"] = sim_gpu_dir
        specs.append(
            LaunchSpec(
                name=inst.name,
                kind=inst.role,
                argv=tuple(inst.argv),
                env=env,
                health_url=inst.health_url,
                startup_timeout_s=inst.startup_timeout_s,
                port=inst.port,
                gpus=tuple(inst.gpus),
                prometheus_dir=inst.prometheus_dir,
                log_path=str(run_dir / f"{inst.name}.log"),
                secret_keys=inst.secret_keys,
            )
        )
    return specs
