"""`pdtui render --target k8s`: manifests for every preset pass the Kubernetes schemas
(kubernetes-validate, bundled schemas, offline), the LeaderWorkerSet fields pdtui sets are
as intended, and the deployment matches LMCache's own k8s examples where they overlap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pdtui.model.k8s import (
    K8sOptions,
    K8sRenderError,
    dns_name,
    engine_address,
    render_k8s,
)
from pdtui.model.presets import list_presets
from pdtui.model.validate import validate_file, validate_text
from tests.conftest import REPO_ROOT

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S_VERSION = "1.37.0"  # pinned with the package (kubernetes-validate==1.37.0 bundles its schemas)
FACTS = yaml.safe_load((Path(__file__).parent / "data" / "lmcache_k8s_facts.yaml").read_text())
PRESETS = list_presets()


def _profile(path):
    validation = validate_file(path)
    assert validation.ok, [p.format() for p in validation.problems]
    return validation.profile


def _all(files):
    return [m for manifests in files.values() for m in manifests]


def _by_kind(files, kind):
    return [m for m in _all(files) if m["kind"] == kind]


def _container(lws):
    return lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]


def _env(container):
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_core_kinds_pass_the_kubernetes_schemas(preset):
    files = render_k8s(_profile(preset), K8sOptions(namespace="serving"))
    for manifest in _all(files):
        if manifest["kind"] == "LeaderWorkerSet":
            # Not a core kind (a CRD): its pod template is, and it is what Kubernetes runs.
            template = manifest["spec"]["leaderWorkerTemplate"]["workerTemplate"]
            manifest = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": manifest["metadata"]["name"]}, "template": template}
        # Raises ValidationError with the path of the first wrong field.
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_a_broken_manifest_fails_the_schema_check():
    files = render_k8s(_profile(PRESETS[0]))
    deployment = _by_kind(files, "Deployment")[0]
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_leaderworkerset_fields(preset):
    profile = _profile(preset)
    files = render_k8s(profile)
    sets = {m["metadata"]["name"]: m for m in _by_kind(files, "LeaderWorkerSet")}
    assert len(sets) == len(profile.instances())
    for inst in profile.instances():
        lws = sets[dns_name(profile.name, inst.name)]
        assert lws["apiVersion"] == FACTS["lws"]["apiVersion"]
        spec = lws["spec"]
        assert spec["replicas"] == 1 and spec["startupPolicy"] == "LeaderCreated"
        template = spec["leaderWorkerTemplate"]
        assert template["size"] == 1 and template["restartPolicy"] == FACTS["lws"]["restartPolicy"]
        assert set(template) == {"size", "restartPolicy", "workerTemplate"}
        labels = template["workerTemplate"]["metadata"]["labels"]
        assert labels["pdtui/role"] in ("prefiller", "decoder") and labels == lws["metadata"]["labels"]
        container = _container(lws)
        # The plan's argv, bound to the pod's address.
        argv = container["command"]
        assert argv[argv.index("--port") + 1] == str(inst.port) and argv[argv.index("--host") + 1] == "0.0.0.0"
        assert container["resources"]["limits"] == {FACTS["lws"]["gpu_resource"]: str(inst.tensor_parallel_size)}
        for probe in ("readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": inst.port}
        env = _env(container)
        assert "CUDA_VISIBLE_DEVICES" not in env  # the device plugin picks the GPUs
        # A private, empty Prometheus directory per pod; one hash seed for all.
        prom = env["PROMETHEUS_MULTIPROC_DIR"]["value"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in template["workerTemplate"]["spec"]["volumes"]}
        assert volumes[mounts[prom]] == {"name": mounts[prom], "emptyDir": {}}
        if profile.mode == "lmcache-pd":
            assert env["PYTHONHASHSEED"]["value"] == profile.effective_env(inst)["PYTHONHASHSEED"]
            config = env["LMCACHE_CONFIG_FILE"]["value"]
            volume = volumes[mounts[str(Path(config).parent)]]
            assert volume["configMap"]["items"][0]["path"] == Path(config).name


def test_addresses_between_pods(tmp_path):
    profile = _profile(REPO_ROOT / "configs" / "xpyd.yaml")
    files = render_k8s(profile)
    proxy = _by_kind(files, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    for inst in profile.prefillers:
        assert f"http://{engine_address(profile, inst.name)}:{inst.port}" in proxy
    assert engine_address(profile, "decoder1") == "xpyd-decoder1-0.xpyd-decoder1"
    service = _by_kind(files, "Service")[0]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": profile.proxy.port, "zmq": profile.proxy.zmq_port}
    configs = {k: yaml.safe_load(v) for k, v in _by_kind(files, "ConfigMap")[0]["data"].items()}
    assert configs["lmcache-prefiller1.yaml"]["pd_proxy_host"] == service["metadata"]["name"]
    assert configs["lmcache-decoder2.yaml"]["pd_peer_host"] == "0.0.0.0"
    assert configs["lmcache-decoder2.yaml"]["pd_peer_init_port"] == profile.decoders[1].nixl_init_ports[0]


def test_nixl_side_channel_is_the_pod_ip():
    files = render_k8s(_profile(REPO_ROOT / "configs" / "nixl-1p1d.yaml"))
    for lws in _by_kind(files, "LeaderWorkerSet"):
        env = _env(_container(lws))
        assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        side = int(env["VLLM_NIXL_SIDE_CHANNEL_PORT"]["value"])
        assert {"containerPort": side, "name": "nixl-side-0"} in _container(lws)["ports"]
    assert not _by_kind(files, "ConfigMap")  # no LMCache in nixl mode


def test_secrets_are_secret_key_refs_never_values():
    text = (REPO_ROOT / "configs" / "demo.yaml").read_text().replace(
        "  PYTHONHASHSEED: 0\n", "  PYTHONHASHSEED: 0\n  HF_TOKEN: hf_inline_value\n", 1)
    profile = validate_text(text).profile
    files = render_k8s(profile, K8sOptions(secret_name="my-secrets"))
    dumped = json.dumps(files)
    assert "hf_inline_value" not in dumped
    env = _env(_container(_by_kind(files, "LeaderWorkerSet")[0]))
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "my-secrets", "key": "HF_TOKEN"}}}
    proxy_env = _env(_by_kind(files, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0])
    assert proxy_env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_golden_against_lmcaches_1p1d_example():
    """pdtui's 1p1d preset and LMCache's 1p1d LWS example describe the same deployment:
    compare the fields both set (LMCache's uses a shell script per pod; pdtui an argv)."""
    profile = _profile(REPO_ROOT / "configs" / "1p1d.yaml")
    files = render_k8s(profile)
    sets = {m["metadata"]["labels"]["pdtui/role"]: m for m in _by_kind(files, "LeaderWorkerSet")}
    engine = FACTS["engine"]
    for role in ("prefiller", "decoder"):
        lws = sets[role]
        assert lws["kind"] == FACTS["lws"]["kind"]
        container = _container(lws)
        assert container["image"] == FACTS["lws"]["image"]
        assert container["resources"]["limits"][FACTS["lws"]["gpu_resource"]] == FACTS["lws"]["gpus_per_engine_pod"]
        argv = container["command"]
        assert argv[:2] == engine["command"]
        assert argv[argv.index("--host") + 1] == engine["host"]
        assert all(flag in argv for flag in engine["flags"])
        kv = json.loads(argv[argv.index("--kv-transfer-config") + 1])
        want = engine["kv_transfer"][role]
        assert (kv["kv_connector"], kv["kv_role"]) == (want["kv_connector"], want["kv_role"])
        extra = kv["kv_connector_extra_config"]
        assert (extra["discard_partial_chunks"], extra["lmcache_rpc_port"]) == (want["discard_partial_chunks"], want["lmcache_rpc_port"])
        env = _env(container)
        for key, value in engine["env"].items():
            assert env[key]["value"] == value, key
        volumes = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["volumes"]
        assert any(engine["lmcache_config_from"] in v for v in volumes)
    decoder_dns = FACTS["lws"]["pod_dns"].format(lws=sets["decoder"]["metadata"]["name"])
    proxy = _by_kind(files, "Deployment")[0]["spec"]
    assert proxy["replicas"] == FACTS["proxy"]["replicas"]
    argv = proxy["template"]["spec"]["containers"][0]["command"]
    assert argv[argv.index("--host") + 1] == FACTS["proxy"]["host"]
    assert f"http://{decoder_dns}:{profile.decoders[0].port}" in argv  # the prefiller learns it from the proxy
    configs = {k: yaml.safe_load(v) for k, v in _by_kind(files, "ConfigMap")[0]["data"].items()}
    assert configs["lmcache-decoder1.yaml"]["pd_peer_host"] == engine["decoder_lmcache_bind_host"]
    assert sorted({m["kind"] for m in _all(files)} - {"LeaderWorkerSet", "ConfigMap"}) == sorted(FACTS["proxy"]["kinds"])


def test_names_too_long_for_dns_are_refused():
    text = (REPO_ROOT / "configs" / "demo.yaml").read_text().replace("name: demo\n", "name: " + "d" * 50 + "\n", 1)
    with pytest.raises(K8sRenderError, match="55 characters"):
        render_k8s(validate_text(text).profile)


def test_cli_writes_files_for_kubectl_apply(tmp_path):
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "pdtui", "render", "--target", "k8s", "xpyd", "-o", str(tmp_path),
                           "--image", "registry.example/vllm-lmcache:1", "--namespace", "pd"],
                          check=False, capture_output=True, text=True, timeout=120, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(["lmcache-configmap.yaml", "proxy.yaml", "prefiller1-lws.yaml", "prefiller2-lws.yaml",
                              "decoder1-lws.yaml", "decoder2-lws.yaml"])
    docs = [d for p in tmp_path.iterdir() for d in yaml.safe_load_all(p.read_text())]
    assert all(d["metadata"]["namespace"] == "pd" for d in docs)
    assert {_container(d)["image"] for d in docs if d["kind"] == "LeaderWorkerSet"} == {"registry.example/vllm-lmcache:1"}
