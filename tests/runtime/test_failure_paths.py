"""Issue 16: each numbered failure path, with the exact steps an operator took, against
simulated engines; every test ends by asserting that no process of the run is left
(found by the run marker in their environment, not by what pdtui recorded)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
import pytest

from pdtui.runtime import InstanceState, Supervisor, find_runs
from pdtui.runtime.statefile import read_state
from tests.conftest import REPO_ROOT
from tests.runtime.helpers import (
    demo_profile_dict,
    load_profile,
    marked_processes,
    pdtui_cli,
    stop_marked,
    wait_for,
    write_profile,
)

pytestmark = pytest.mark.timeout(300)
S = InstanceState


def runs_dir(tmp_path):
    return tmp_path / "state" / "pdtui" / "runs"


def up_detached(tmp_path, data, name="profile.yaml") -> str:
    up = pdtui_cli("up", str(write_profile(tmp_path, data, name)), "--detach")
    assert up.returncode == 0, up.stderr
    return up.stdout.strip().splitlines()[-1]


def popen_up(profile, *extra):
    return subprocess.Popen([sys.executable, "-m", "pdtui", "up", str(profile), *extra], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stderr_until(proc, text: str, timeout: float) -> str:
    """What `proc` wrote to stderr up to the line holding `text` (read on a thread, so a
    silent process cannot hang the test); AssertionError after `timeout` seconds."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            seen.append(line)
            if text in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"no {text!r} on stderr after {timeout}s: {''.join(seen)}"
    return "".join(seen)


def ready_in_state(run_dir) -> bool:
    try:
        state = read_state(run_dir)
    except Exception:
        return False
    return all(rec.state == "ready" for rec in state.instances.values())


def front_door_open(run_dir) -> bool:
    """The proxy answers 200: a foreground `up` has finished its start."""
    try:
        url = read_state(run_dir).instances["proxy"].health_url
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except Exception:
        return False


def only_run(tmp_path):
    assert wait_for(lambda: len(list(runs_dir(tmp_path).glob("*/state.json"))) == 1, 30)
    return next(runs_dir(tmp_path).glob("*/state.json")).parent


# 1 -------------------------------------------------------------------------------------
def test_1_detach_with_a_missed_timeout_stops_what_it_started(tmp_path):
    data = demo_profile_dict(startup_s=0.2, count=1)
    data["prefillers"][0]["sim"]["startup_s"] = 60  # an engine that needs far longer
    up = pdtui_cli("up", str(write_profile(tmp_path, data)), "--detach", "--timeout", "6")
    (run,) = find_runs(runs_dir(tmp_path))
    try:
        assert up.returncode == 1, up.stderr
        assert "stopped prefiller1" in up.stderr and "all processes stopped" in up.stderr, up.stderr
        assert wait_for(lambda: not marked_processes(run.name), 60), marked_processes(run.name)
        assert "no live runs" in pdtui_cli("status").stdout
    finally:
        stop_marked(run.name)


# 2 -------------------------------------------------------------------------------------
CORRUPTIONS = {
    "not utf-8": b'{"version": 1, "profile": "\xff\xfe"}',
    "order 5": None,  # filled from the real file below
    "restarts x": None,
    "created yesterday": None,
    "empty": b"",
    "truncated": None,
}


def _corrupt(real: dict, kind: str) -> bytes:
    if CORRUPTIONS[kind] is not None:
        return CORRUPTIONS[kind]
    data = json.loads(json.dumps(real))
    if kind == "order 5":
        data["order"] = 5
    elif kind == "restarts x":
        data["instances"]["decoder1"]["restarts"] = "x"
    elif kind == "created yesterday":
        data["created"] = "yesterday"
    elif kind == "truncated":
        return json.dumps(real).encode()[:100]
    return json.dumps(data).encode()


def test_2_a_corrupt_state_file_is_reported_for_its_run_only(tmp_path):
    bad = up_detached(tmp_path, demo_profile_dict(startup_s=0.2, count=1), "bad.yaml")
    other = demo_profile_dict(startup_s=0.2, count=1)
    other["name"] = "other"
    good = up_detached(tmp_path, other, "good.yaml")
    try:
        state_path = runs_dir(tmp_path) / bad / "state.json"
        real = json.loads(state_path.read_text())
        for kind in CORRUPTIONS:
            state_path.write_bytes(_corrupt(real, kind))
            for args in (["status"], ["status", "--all"], ["status", "--json"]):
                out = pdtui_cli(*args)
                assert out.returncode == 0 and "Traceback" not in out.stderr, (kind, args, out.stderr)
                assert good in out.stdout and bad in out.stdout, (kind, out.stdout)
            text = pdtui_cli("status").stdout
            assert f"{bad}  unreadable: " in text and "live processes carrying its run marker" in text, (kind, text)
            logs = pdtui_cli("logs", "decoder1", "--run", bad)
            assert logs.returncode == 1 and "Traceback" not in logs.stderr and "state.json" in logs.stderr, (kind, logs.stderr)
        # Bare `down` with two live runs does not guess.
        down = pdtui_cli("down")
        assert down.returncode == 1 and "2 live runs" in down.stderr
        # `down RUN` of the unreadable run stops its processes through their marker.
        down = pdtui_cli("down", bad)
        assert down.returncode == 0, down.stderr
        assert wait_for(lambda: not marked_processes(bad), 60), marked_processes(bad)
        assert len(marked_processes(good)) >= 5  # the other run was never touched
        assert wait_for(lambda: json.loads(pdtui_cli("status", "--json", good).stdout)[0]["phase"] == "ready", 60)
        assert pdtui_cli("down", good).returncode == 0
        assert wait_for(lambda: not marked_processes(good), 60)
    finally:
        stop_marked(bad)
        stop_marked(good)


# 3 -------------------------------------------------------------------------------------
def test_3_run_directory_deleted_under_a_live_run(tmp_path):
    name = up_detached(tmp_path, demo_profile_dict(startup_s=0.2, count=1))
    try:
        shutil.rmtree(runs_dir(tmp_path) / name)
        status = pdtui_cli("status")
        assert name in status.stdout and "run directory is gone" in status.stdout, status.stdout
        down = pdtui_cli("down", name)
        assert down.returncode == 0, down.stderr
        assert wait_for(lambda: not marked_processes(name), 60), marked_processes(name)
    finally:
        stop_marked(name)


def test_3_kill9_of_the_owner_after_its_run_directory_was_deleted(tmp_path):
    up = popen_up(write_profile(tmp_path, demo_profile_dict(startup_s=0.2, count=1)))
    run_dir = None
    try:
        run_dir = only_run(tmp_path)
        assert wait_for(lambda: ready_in_state(run_dir), 90)
        assert len(marked_processes(run_dir.name)) >= 5
        # The live run keeps writing logs into it, so one rmtree can meet a file created after it
        # listed a folder ("Directory not empty"); delete until it is gone, as `rm -rf` twice would.
        assert wait_for(lambda: shutil.rmtree(run_dir, ignore_errors=True) or not run_dir.exists(), 30)
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        # The watchdog finds them by their run marker.
        assert wait_for(lambda: not marked_processes(run_dir.name), 40), marked_processes(run_dir.name)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if run_dir is not None:
            stop_marked(run_dir.name)


# 4 -------------------------------------------------------------------------------------
def test_4_foreground_up_returns_after_down_when_an_instance_had_crashed(tmp_path):
    up = popen_up(write_profile(tmp_path, demo_profile_dict(startup_s=0.2, count=1)))
    run_dir = None
    try:
        run_dir = only_run(tmp_path)
        # `up` itself has seen the start end: it says so before it waits in the foreground.
        stderr_until(up, "Ctrl-C stops everything", 90)
        os.kill(read_state(run_dir).instances["prefiller1"].pid, signal.SIGKILL)
        assert wait_for(lambda: read_state(run_dir).instances["prefiller1"].state == "failed", 30)
        down = pdtui_cli("down", run_dir.name)
        assert down.returncode == 0, down.stderr
        assert up.wait(30) == 0, up.stderr.read()
        assert not marked_processes(run_dir.name)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if run_dir is not None:
            stop_marked(run_dir.name)


# 5 -------------------------------------------------------------------------------------
def test_5_restart_runs_its_preflight_before_it_stops_anything(tmp_path, monkeypatch):
    data = demo_profile_dict(startup_s=0.2, count=1)
    data["decoders"][0].setdefault("env", {})["HF_TOKEN"] = "hf_secret_value"
    name = up_detached(tmp_path, data)
    try:
        before = read_state(runs_dir(tmp_path) / name).instances["decoder1"].pid
        env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
        out = subprocess.run([sys.executable, "-m", "pdtui", "restart", "decoder1", "--run", name], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 1
        assert "nothing was stopped" in out.stderr and "HF_TOKEN" in out.stderr and "export it" in out.stderr, out.stderr
        after = read_state(runs_dir(tmp_path) / name).instances["decoder1"]
        assert after.pid == before and after.state == "ready"
        # status probes each /health with a 1 s deadline: on a loaded machine one probe can
        # miss it ("unresponsive" -> degraded) with nothing wrong; ask again.
        assert wait_for(lambda: json.loads(pdtui_cli("status", "--json", name).stdout)[0]["phase"] == "ready", 60)
        # With the secret exported the same restart works.
        out = pdtui_cli("restart", "decoder1", "--run", name, env={"HF_TOKEN": "hf_secret_value"})
        assert out.returncode == 0, out.stderr
        assert read_state(runs_dir(tmp_path) / name).instances["decoder1"].pid != before
        # ... and "restarted" means requests through the proxy reach it again at once.
        proxy = read_state(runs_dir(tmp_path) / name).instances["proxy"]
        body = json.dumps({"model": data["model"], "prompt": "after restart", "max_tokens": 4}).encode()
        request = urllib.request.Request(proxy.health_url.rsplit("/health", 1)[0] + "/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    finally:
        pdtui_cli("down", name)
        assert wait_for(lambda: not marked_processes(name), 60)
        stop_marked(name)


# 6 -------------------------------------------------------------------------------------
def test_6_a_hung_engine_is_unresponsive_not_ready(tmp_path, supervisors):
    sup = Supervisor.launch(load_profile(write_profile(tmp_path, demo_profile_dict(startup_s=0.2, count=1))))
    supervisors.append(sup)
    try:
        assert sup.start().result(timeout=120) is True
        pid = sup.instance("decoder1").pid
        os.kill(pid, signal.SIGSTOP)
        try:
            assert wait_for(lambda: sup.instance("decoder1").health == "unresponsive", 40)
            st = sup.instance("decoder1")
            assert st.state == S.READY and "did not answer" in st.health_detail
            assert sup.status().phase == "degraded"
            # Another pdtui's (read-only) status sees it too.
            text = pdtui_cli("status", sup.run_name).stdout
            assert "ready/unresponsive" in text, text
        finally:
            os.kill(pid, signal.SIGCONT)
        assert wait_for(lambda: sup.instance("decoder1").health is None, 40)
    finally:
        sup.close()
        stop_marked(sup.run_name)


def test_6_detached_status_of_a_crashed_instance_shows_the_root_cause(tmp_path):
    data = demo_profile_dict(startup_s=0.2, count=1, faults={"decoder1": ["crash_after=1"]})
    name = up_detached(tmp_path, data)
    try:
        proxy = read_state(runs_dir(tmp_path) / name).instances["proxy"]
        body = json.dumps({"model": data["model"], "prompt": "hello", "max_tokens": 4}).encode()
        request = urllib.request.Request(proxy.health_url.rsplit("/health", 1)[0] + "/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30).read()
        except Exception:
            pass
        dec_pid = read_state(runs_dir(tmp_path) / name).instances["decoder1"].pid
        assert wait_for(lambda: not psutil.pid_exists(dec_pid) or psutil.Process(dec_pid).status() == psutil.STATUS_ZOMBIE, 30)
        text = pdtui_cli("status", name).stdout
        line = next(ln for ln in text.splitlines() if "decoder1" in ln)
        assert "failed" in line and "CUDA error: an illegal memory access" in line, text
    finally:
        pdtui_cli("down", name)
        stop_marked(name)


# 7 -------------------------------------------------------------------------------------
def test_7_two_up_of_one_profile_at_once_and_up_of_a_running_profile(tmp_path):
    profile = write_profile(tmp_path, demo_profile_dict(startup_s=0.5, count=1))
    first, second = popen_up(profile, "--detach"), popen_up(profile, "--detach")
    outs = [(p.wait(180), *p.communicate()) for p in (first, second)]
    winners = [o for o in outs if o[0] == 0]
    losers = [o for o in outs if o[0] != 0]
    assert len(winners) == 1 and len(losers) == 1, outs
    name = winners[0][1].strip().splitlines()[-1]
    try:
        assert f"already running as {name}" in losers[0][2], losers[0][2]
        assert [r.name for r in find_runs(runs_dir(tmp_path)) if r.live] == [name]
        # status probes each /health with a 1 s deadline: on a loaded machine one probe can
        # miss it ("unresponsive" -> degraded) with nothing wrong; ask again.
        assert wait_for(lambda: json.loads(pdtui_cli("status", "--json", name).stdout)[0]["phase"] == "ready", 60)
        third = pdtui_cli("up", str(profile))
        assert third.returncode == 1
        assert third.stderr.count("already running as") == 1 and "in use" not in third.stderr, third.stderr
        assert f"pdtui down {name}" in third.stderr
    finally:
        pdtui_cli("down", name)
        assert wait_for(lambda: not marked_processes(name), 60)
        stop_marked(name)


# 8 -------------------------------------------------------------------------------------
def test_8_defaults_come_from_one_place():
    import argparse

    import pdtui.constants as C
    from pdtui.model.schema import InstanceSpec, ProxySpec, ProxyTimeouts
    from pdtui.proxy.cli import add_arguments
    from pdtui.proxy.config import Timeouts
    from pdtui.runtime.members import LaunchSpec

    expected = (C.PROXY_TIMEOUT_TOKENIZE_S, C.PROXY_TIMEOUT_PREFILL_S, C.PROXY_TIMEOUT_KV_S, C.PROXY_TIMEOUT_DECODE_S)
    schema = ProxyTimeouts()
    assert (schema.tokenize, schema.prefill, schema.kv, schema.decode) == expected
    t = Timeouts()
    assert (t.tokenize_s, t.prefill_s, t.kv_s, t.decode_s) == expected
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    assert (args.timeout_tokenize, args.timeout_prefill, args.timeout_kv, args.timeout_decode) == expected
    assert InstanceSpec.model_fields["startup_timeout_s"].default == C.ENGINE_STARTUP_TIMEOUT_S
    assert LaunchSpec.__dataclass_fields__["startup_timeout_s"].default == C.ENGINE_STARTUP_TIMEOUT_S
    assert ProxySpec.model_fields["startup_timeout_s"].default == C.PROXY_STARTUP_TIMEOUT_S


def test_8_interfaces_doc_lists_every_state_field():
    """docs/interfaces.md's state.json section is checked against the models."""
    from pdtui.runtime.runstate import InstanceRecord, RunState

    doc = (REPO_ROOT / "docs" / "interfaces.md").read_text()
    section = doc[doc.index("`state.json`"):]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    for model in (RunState, InstanceRecord):
        for field in model.model_fields:
            assert f"`{field}`" in section or f'"{field}"' in section, f"{model.__name__}.{field} missing in docs/interfaces.md"


def test_7_readiness_never_counts_another_runs_processes(tmp_path, supervisors):
    """Without the CLI's profile lock (two supervisors, same ports): the second one's
    probes reach the first one's proxy and engines, and must not call them its own."""
    data = demo_profile_dict(startup_s=0.2, count=1)
    first = Supervisor.launch(load_profile(write_profile(tmp_path, data)))
    supervisors.append(first)
    assert first.start().result(timeout=120) is True
    second = Supervisor.launch(load_profile(write_profile(tmp_path, data, "again.yaml")))
    supervisors.append(second)
    try:
        assert second.start(run_preflight=False).result(timeout=120) is False
        proxy = second.instance("proxy")
        assert proxy.state != S.READY and proxy.ready_at is None
        # Its processes are stopped (on a loaded machine their exit takes a moment).
        assert wait_for(lambda: not marked_processes(second.run_name), 60), marked_processes(second.run_name)
        assert first.status().phase == "ready"
    finally:
        second.close()
        first.close()
        stop_marked(first.run_name)
        stop_marked(second.run_name)


def test_6_the_proxy_report_makes_an_instance_degraded(tmp_path):
    """The proxy's /health lists each backend with a state; one it does not route to (e.g.
    a prefiller whose KV notifications time out) is `degraded` while its own /health is fine."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pdtui.runtime.health import HealthChecker
    from pdtui.runtime.members import LaunchSpec

    report = {"prefillers": [], "decoders": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(report).encode() if self.server.is_proxy else b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = []
    for is_proxy in (True, False):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.is_proxy = is_proxy
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    proxy_url, engine_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
    specs = [LaunchSpec("proxy", "proxy", ("x",), {}, health_url=proxy_url + "/health"),
             LaunchSpec("prefiller1", "prefiller", ("x",), {}, health_url=engine_url + "/health")]
    sup = Supervisor(None, tmp_path / "run", _specs=specs)
    try:
        for name in ("proxy", "prefiller1"):
            sup._transition(sup._member(name), state=S.READY, ready_at=time.time() - 10)
        checker = HealthChecker(sup)
        report["prefillers"] = [{"url": engine_url, "state": "healthy", "last_checked": time.time()}]
        checker.check_once()
        assert sup.instance("prefiller1").health is None and sup.status().phase == "ready"
        report["prefillers"] = [{"url": engine_url, "state": "kv_timeout", "last_checked": time.time(),
                                 "last_error": "3 KV notifications timed out"}]
        checker.check_once()
        st = sup.instance("prefiller1")
        assert st.state == S.READY and st.health == "degraded"
        assert st.health_detail == "the proxy reports it kv_timeout: 3 KV notifications timed out"
        assert sup.status().phase == "degraded"
        report["prefillers"][0].update(state="healthy", last_error=None, last_checked=time.time())
        checker.check_once()
        assert sup.instance("prefiller1").health is None
    finally:
        for server in servers:
            server.shutdown()
