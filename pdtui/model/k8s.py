"""`pdtui render --target k8s`: the same plan as Kubernetes manifests. Pure functions.

Per instance a LeaderWorkerSet (one group, `size: 1`: the engine's TP GPUs are in its one
pod) whose container runs the plan's argv with the plan's environment, per deployment a
ConfigMap with every instance's LMCache YAML, and the proxy as a Deployment + Service.

What changes from a single box, and why:
- Bind vs reach. Engines and the proxy bind 0.0.0.0 (the pod's IP); the others reach an
  engine at its leader pod's DNS name `<lws>-0.<lws>` (the LWS controller's headless
  service) and the proxy at its Service. NIXL's side channel is announced to peers, so it
  gets the pod IP from the downward API.
- GPUs come from the device plugin (`nvidia.com/gpu: TP`): no CUDA_VISIBLE_DEVICES.
- PROMETHEUS_MULTIPROC_DIR is an emptyDir per pod (private and empty at start, the rule
  the local renderer follows with a directory per instance); PYTHONHASHSEED comes from the
  profile's env as validated (one value for every instance).
- Secrets (by name, value or the profile's `secrets:` list, as everywhere in pdtui) are
  `secretKeyRef`s to one Secret, never values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from pdtui.model.secret import is_secret
from pdtui.model.render import (
    DeploymentPlan,
    InstancePlan,
    lmcache_yaml_text,
    render_plan,
)
from pdtui.model.schema import Profile

LWS_API = "leaderworkerset.x-k8s.io/v1"
DEFAULT_IMAGE = "lmcache/vllm-openai:latest"  # the image of LMCache's own k8s examples
CONFIG_DIR = "/etc/lmcache"
CONFIG_FILE = f"{CONFIG_DIR}/lmcache.yaml"
PROMETHEUS_DIR = "/var/run/pdtui/prometheus"
BIND_ALL = "0.0.0.0"
PROBE_PERIOD_S = 5
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
# Set by the device plugin, or meaningless inside a pod.
_DROPPED_ENV = {"CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "PDTUI_SIM_GPU_DIR"}


class K8sRenderError(ValueError):
    """The profile cannot be expressed as manifests (a name too long for DNS, ...)."""


@dataclass(frozen=True)
class K8sOptions:
    image: str = DEFAULT_IMAGE
    proxy_image: str | None = None  # default: image (it must have pdtui installed)
    namespace: str | None = None
    secret_name: str | None = None  # default: <profile>-secrets
    python: str = "python3"  # interpreter in the images (proxy, simulated engines)


def dns_name(*parts: str) -> str:
    name = _NOT_DNS.sub("-", "-".join(parts).lower()).strip("-")
    if name and not name[0].isalpha():
        name = "pd-" + name  # a Service name is a DNS-1035 label: it starts with a letter (1p1d -> pd-1p1d)
    # An LWS's pods are <name>-<group>[-<worker>]: leave room in the 63 characters of a label.
    if len(name) > 55 or not name:
        raise K8sRenderError(f"{name!r} cannot name a Kubernetes object: use profile and instance names "
                             "of at most 55 characters together")
    return name


def _labels(profile: Profile, component: str, role: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "pdtui",
        "app.kubernetes.io/instance": dns_name(profile.name),
        "app.kubernetes.io/component": component,
        "pdtui/role": role,
    }


def _meta(name: str, labels: dict[str, str], options: K8sOptions) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if options.namespace:
        meta["namespace"] = options.namespace
    return meta


def _env(env: dict[str, str], secret: str, pod_ip_keys: tuple[str, ...] = (),
         secret_keys: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, value in env.items():
        if key in _DROPPED_ENV:
            continue
        if key in pod_ip_keys:
            out.append({"name": key, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        elif key in secret_keys or is_secret(key, value):  # by name, value or the profile's list
            out.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        else:
            out.append({"name": key, "value": value})
    return out


def _optional_secret(key: str, secret: str) -> dict[str, Any]:
    return {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}


def _probe(port: int, startup_timeout_s: float | None = None) -> dict[str, Any]:
    probe: dict[str, Any] = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": PROBE_PERIOD_S, "timeoutSeconds": 3}
    if startup_timeout_s is not None:
        probe["failureThreshold"] = max(int(startup_timeout_s // PROBE_PERIOD_S), 1)
    return probe


def engine_address(profile: Profile, instance_name: str) -> str:
    """Where the others reach an instance: its LWS leader pod, through the LWS's headless service."""
    lws = dns_name(profile.name, instance_name)
    return f"{lws}-0.{lws}"


def proxy_service_name(profile: Profile) -> str:
    return dns_name(profile.name, "proxy")


def _engine_argv(inst: InstancePlan, profile: Profile) -> list[str]:
    argv = list(inst.argv)
    argv[argv.index("--host") + 1] = BIND_ALL
    if profile.engine == "vllm" and argv[0].startswith("/"):
        # A path on the operator's machine means nothing in the image.
        argv[0] = "vllm"
    return argv


def _proxy_argv(plan: DeploymentPlan, profile: Profile) -> list[str]:
    argv = list(plan.proxy.argv)
    argv[argv.index("--host") + 1] = BIND_ALL
    if "--zmq-host" in argv:
        argv[argv.index("--zmq-host") + 1] = BIND_ALL
    # The proxy's backends, in profile order, at their pods' DNS names.
    for flag, group in (("--prefiller", profile.prefillers), ("--decoder", profile.decoders)):
        positions = [i for i, a in enumerate(argv) if a == flag]
        for pos, spec in zip(positions, group):
            argv[pos + 1] = f"http://{engine_address(profile, spec.name)}:{spec.port}"
    return argv


def _lmcache_config(inst: InstancePlan, profile: Profile) -> dict[str, Any] | None:
    if inst.lmcache_config is None:
        return None
    config = dict(inst.lmcache_config)
    if inst.role == "decoder":
        config["pd_peer_host"] = BIND_ALL  # the receiver binds its init/alloc sockets here
    else:
        config["pd_proxy_host"] = proxy_service_name(profile)
    return config


def lws_manifest(inst: InstancePlan, profile: Profile, options: K8sOptions) -> dict[str, Any]:
    name = dns_name(profile.name, inst.name)
    secret = options.secret_name or dns_name(profile.name, "secrets")
    labels = {**_labels(profile, "engine", inst.role), "pdtui/instance": dns_name(inst.name)}
    env = dict(inst.env)
    env["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_DIR
    if "LMCACHE_CONFIG_FILE" in env:
        env["LMCACHE_CONFIG_FILE"] = CONFIG_FILE
    env_list = _env(env, secret, pod_ip_keys=("VLLM_NIXL_SIDE_CHANNEL_HOST",), secret_keys=inst.secret_keys)
    if "HF_TOKEN" not in env:
        env_list.append(_optional_secret("HF_TOKEN", secret))  # gated models; absent = not needed
    ports = _container_ports(inst)
    mounts: list[dict[str, Any]] = [{"name": "prometheus", "mountPath": PROMETHEUS_DIR}, {"name": "dshm", "mountPath": "/dev/shm"}]
    volumes: list[dict[str, Any]] = [
        {"name": "prometheus", "emptyDir": {}},
        # vLLM's workers exchange tensors through /dev/shm; a pod's default is 64 MiB.
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]
    if inst.lmcache_config is not None:
        mounts.append({"name": "lmcache-config", "mountPath": CONFIG_DIR, "readOnly": True})
        volumes.append({"name": "lmcache-config", "configMap": {
            "name": dns_name(profile.name, "lmcache"), "items": [{"key": _config_key(inst), "path": "lmcache.yaml"}]}})
    container = {
        "name": "engine",
        "image": options.image,
        "command": _engine_argv(inst, profile),
        "env": env_list,
        "ports": ports,
        "resources": {"limits": {"nvidia.com/gpu": str(inst.tensor_parallel_size)}},
        "readinessProbe": _probe(inst.port),
        "startupProbe": _probe(inst.port, inst.startup_timeout_s),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": LWS_API,
        "kind": "LeaderWorkerSet",
        "metadata": _meta(name, labels, options),
        "spec": {
            "replicas": 1,
            "startupPolicy": "LeaderCreated",
            "leaderWorkerTemplate": {
                "size": 1,  # one pod holds the instance's TP GPUs
                "restartPolicy": "RecreateGroupOnPodRestart",
                "workerTemplate": {"metadata": {"labels": labels}, "spec": {"containers": [container], "volumes": volumes}},
            },
        },
    }


def _container_ports(inst: InstancePlan) -> list[dict[str, Any]]:
    """Named ports (a name is at most 15 characters): http, nixl-init-0, nixl-alloc-0, ..."""
    seen: dict[str, int] = {}
    ports = []
    for port, what in inst.ports:
        rank = seen.get(what, 0)
        seen[what] = rank + 1
        name = "http" if what == "http" else f"{what}-{rank}"[:15]
        ports.append({"containerPort": port, "name": name})
    side = inst.env.get("VLLM_NIXL_SIDE_CHANNEL_PORT")
    if side and side.isdigit():  # nixl mode: one side-channel port per TP rank
        ports += [{"containerPort": int(side) + r, "name": f"nixl-side-{r}"} for r in range(inst.tensor_parallel_size)]
    return ports


def _config_key(inst: InstancePlan) -> str:
    return f"lmcache-{dns_name(inst.name)}.yaml"


def configmap_manifest(plan: DeploymentPlan, profile: Profile, options: K8sOptions) -> dict[str, Any] | None:
    data = {}
    for inst in plan.instances:
        config = _lmcache_config(inst, profile)
        if config is not None:
            data[_config_key(inst)] = lmcache_yaml_text(config)
    if not data:
        return None
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(dns_name(profile.name, "lmcache"), _labels(profile, "lmcache-config", "config"), options),
            "data": data}


def proxy_manifests(plan: DeploymentPlan, profile: Profile, options: K8sOptions) -> list[dict[str, Any]]:
    name = proxy_service_name(profile)
    secret = options.secret_name or dns_name(profile.name, "secrets")
    labels = _labels(profile, "proxy", "proxy")
    env_list = _env(dict(plan.proxy.env), secret, secret_keys=plan.proxy.secret_keys)
    if "OPENAI_API_KEY" not in plan.proxy.env:
        env_list.append(_optional_secret("OPENAI_API_KEY", secret))  # forwarded to the engines when set
    ports = [{"containerPort": plan.proxy.port, "name": "http"}]
    service_ports = [{"name": "http", "port": plan.proxy.port, "targetPort": plan.proxy.port, "protocol": "TCP"}]
    if plan.proxy.zmq_port is not None:
        # Prefillers push their KV-ready notifications here (LMCache ProxyNotif over ZMQ).
        ports.append({"containerPort": plan.proxy.zmq_port, "name": "zmq"})
        service_ports.append({"name": "zmq", "port": plan.proxy.zmq_port, "targetPort": plan.proxy.zmq_port, "protocol": "TCP"})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, labels, options),
        "spec": {
            "replicas": 1,  # one proxy: the ZMQ notifications of a request must reach the proxy that waits for them
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                "name": "proxy",
                "image": options.proxy_image or options.image,
                "command": _proxy_argv(plan, profile),
                "env": env_list,
                "ports": ports,
                "readinessProbe": _probe(plan.proxy.port),
            }]}},
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, labels, options),
               "spec": {"type": "ClusterIP", "selector": labels, "ports": service_ports}}
    return [deployment, service]


def render_k8s(profile: Profile, options: K8sOptions | None = None) -> dict[str, list[dict[str, Any]]]:
    """File name → the manifests it holds, for a profile that passed validation."""
    options = options or K8sOptions()
    plan = render_plan(profile, "/var/run/pdtui", python=options.python)
    files: dict[str, list[dict[str, Any]]] = {}
    configmap = configmap_manifest(plan, profile, options)
    if configmap is not None:
        files["lmcache-configmap.yaml"] = [configmap]
    for inst in plan.start_order():
        files[f"{dns_name(inst.name)}-lws.yaml"] = [lws_manifest(inst, profile, options)]
    files["proxy.yaml"] = proxy_manifests(plan, profile, options)
    return files


class _NoAliasDumper(yaml.SafeDumper):
    # The same labels dict appears in several places; kubectl users expect it written out.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_block(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # The ConfigMap's LMCache YAMLs read as YAML, not as one quoted line per line.
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_NoAliasDumper.add_representer(str, _str_block)


def manifests_text(manifests: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.dump(m, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False) for m in manifests)
