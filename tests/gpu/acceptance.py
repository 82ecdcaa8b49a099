"""End-to-end acceptance of pdtui driving real vLLM + LMCache (or the simulator) on one box.

    python tests/gpu/acceptance.py configs/h200-tiny-1p1d.yaml --out OUT_DIR [--sim]

Steps, each recorded as a check in OUT_DIR/summary.json and printed as a report:
`pdtui up PROFILE --detach` (time to ready) -> completions and chat completions through
pdtui's proxy, stream and not -> the decoder's KV hits (lmcache-pd: LMCache's `hit tokens`
in the decoder log equal each prompt, the prefiller's first token being the skipped last
one; both modes: vllm:external_prefix_cache_hits grows) -> the proxy's stage metrics and
(lmcache-pd) the instances' lmcache:* metrics present and moving -> `pdtui logscan` on the
run's logs reports the transfers -> `pdtui down` -> nothing of ours left on the GPU (NVML)
and no port left listening.

`--sim` swaps `engine: sim` into a copy of the profile (no GPU, no vLLM, no model needed), so
everything but the real engines can be debugged on any machine. The runs live under
OUT_DIR/state (XDG_STATE_HOME), so `pdtui status/down` here never touch other runs.
Exit status 0 when every check passed, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# first: vLLM's site folder ships its own top-level `tests` package
sys.path.insert(0, str(REPO))

from tests.gpu import client, leftovers  # noqa: E402
from tests.gpu.checks import Report, check_logs, check_metrics, lmcache_deltas  # noqa: E402


def pdtui_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pdtui", *args]


def prepare_profile(path: Path, out: Path, sim: bool) -> tuple[Path, dict]:
    import yaml

    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: not a YAML mapping")
    if sim:
        data["engine"] = "sim"
        data.pop("vllm_command", None)
    copy = out / f"profile-{path.stem}{'-sim' if sim else ''}.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy, data


def load_prompts(model: str, sim: bool, count: int) -> list[str]:
    """The model dir's prompts.json (make_tiny_llama.py) or, for the simulator, made-up text
    of the same size (the simulator's tokenizer counts words)."""
    path = Path(model) / "prompts.json"
    if path.is_file():
        prompts = [p["prompt"] for p in json.loads(path.read_text())]
    elif sim:
        rng = random.Random(0)
        words = ["ka", "lomi", "neru", "sati", "voze", "padofi", "guhe", "jako", "lemonu"]
        prompts = [" ".join(rng.choice(words) for _ in range(900)) for _ in range(3)]
    else:
        raise SystemExit(f"{path} not found: build the model with make_tiny_llama.py, or pass --prompts")
    return [prompts[i % len(prompts)] for i in range(count)]


class EventsReader(threading.Thread):
    """Collects the proxy's GET /events (JSON lines, live only) while requests run."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.events: list[dict] = []
        self.error: str | None = None
        self._conn = None

    def run(self) -> None:
        try:
            conn, prefix = client._connection(self.base_url, timeout=600)
            self._conn = conn
            conn.request("GET", prefix + "/events?history=0")
            resp = conn.getresponse()
            for raw in resp:
                line = raw.strip()
                if line:
                    event = json.loads(line)
                    if event.get("type") != "heartbeat":
                        self.events.append(event)
        except Exception as exc:  # noqa: BLE001 - closing the socket ends the loop with an error
            if self._conn is not None and self._conn.sock is None:
                return
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        if self._conn is not None and self._conn.sock is not None:
            try:
                self._conn.sock.shutdown(2)
            except OSError:
                pass
            self._conn.close()


def scrape_all(urls: dict[str, str], out: Path, tag: str) -> dict[str, str]:
    texts = {}
    for name, base in urls.items():
        try:
            texts[name] = client.get_text(base, "/metrics", timeout=20)
        except (OSError, RuntimeError) as exc:
            texts[name] = ""
            print(f"  ! /metrics of {name}: {exc}", file=sys.stderr)
        (out / "metrics" / f"{name}_{tag}.txt").write_text(texts[name])
    return texts


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        print(f"--out {out}: not empty; give a new directory", file=sys.stderr)
        return 2
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    profile_path, data = prepare_profile(Path(args.profile), out, args.sim)
    mode = data.get("mode", "lmcache-pd")
    model = data.get("model", "")
    if not args.sim and not (Path(model) / "config.json").is_file():
        print(f"model {model!r} (profile field `model`) has no config.json", file=sys.stderr)
        return 2
    env_state = str(out / "state")
    os.environ["XDG_STATE_HOME"] = env_state  # our children (pdtui up/down/logscan) inherit it
    report = Report(profile=str(args.profile), mode=mode, engine="sim" if args.sim else data.get("engine", "vllm"))
    report.info["python"] = sys.version.split()[0]
    gpus = {g for side in ("prefillers", "decoders") for inst in data.get(side) or [] for g in inst.get("gpus") or []}
    gpu_args = ["--demo", str(max(gpus, default=0) + 1)] if args.sim else []

    ports_before = leftovers.listening_ports()
    ours: set[int] = set()  # pids of the run's processes and their children, seen while it was up
    inv_before = leftovers.gpu_inventory(gpu_args)
    baseline_pids = {p["pid"] for p in leftovers.gpu_processes(inv_before, gpus)}
    report.info["gpu_before"] = {"error": inv_before.get("error"), "processes": leftovers.gpu_processes(inv_before, gpus)}
    (out / "gpus_before.json").write_text(json.dumps(inv_before, indent=1))

    # 1. up
    print(f"== pdtui up {profile_path.name} --detach ({mode}, {report.engine})", flush=True)
    t0 = time.monotonic()
    with open(out / "up.log", "w") as up_log:
        try:
            done = subprocess.run(pdtui_argv("up", str(profile_path), "--detach"), stdout=subprocess.PIPE,
                                  stderr=up_log, text=True, timeout=args.up_timeout)
            up_rc, run_name = done.returncode, done.stdout.strip().splitlines()[-1:] or [""]
            run_name = run_name[0]
        except subprocess.TimeoutExpired:
            up_rc, run_name = None, ""
    up_s = time.monotonic() - t0
    report.info["up_seconds"] = round(up_s, 1)
    report.check("up", up_rc == 0 and bool(run_name), f"exit {up_rc} after {up_s:.1f}s, run {run_name or '?'}")
    runs = sorted((Path(env_state) / "pdtui" / "runs").glob("*"))
    run_dir = runs[-1] if runs else None
    try:
        if up_rc == 0 and run_dir is not None:
            ours |= leftovers.process_tree(json.loads((run_dir / "state.json").read_text()))
            exercise(args, report, run_dir, out, mode, model)
            ours |= leftovers.process_tree(json.loads((run_dir / "state.json").read_text()))
    finally:
        # 2. down, always (also after a failed up, which stops everything itself)
        t1 = time.monotonic()
        down = subprocess.run(pdtui_argv("down", *( [run_name] if run_name else [])), capture_output=True, text=True, timeout=180)
        report.info["down_seconds"] = round(time.monotonic() - t1, 1)
        (out / "down.log").write_text(down.stdout + down.stderr)
        if run_name:
            report.check("down", down.returncode == 0, f"exit {down.returncode} after {report.info['down_seconds']}s: {(down.stdout + down.stderr).strip()[-200:]}")
        check_leftovers(report, out, run_dir, gpus, baseline_pids, ports_before, gpu_args, ours)
        if run_dir is not None:
            collect(run_dir, out)
    report.write(out / "summary.json")
    print(report.text(), flush=True)
    return 0 if report.passed else 1


def exercise(args, report: Report, run_dir: Path, out: Path, mode: str, model: str) -> None:
    plan = json.loads((run_dir / "plan.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    ready = {n: (i.get("ready_at") or 0) - (i.get("started_at") or 0) for n, i in state["instances"].items()}
    report.info["ready_seconds_per_instance"] = {n: round(s, 1) for n, s in ready.items()}
    proxy = plan["proxy"]
    proxy_url = f"http://{proxy['host']}:{proxy['port']}"
    inst_urls = {i["name"]: f"http://{proxy['host']}:{i['port']}" for i in plan["instances"]}
    roles = {i["name"]: i["role"] for i in plan["instances"]}
    decoders = [n for n, r in roles.items() if r == "decoder"]
    urls = {"proxy": proxy_url, **inst_urls}

    models = client.get_json(proxy_url, "/v1/models")
    served = models["data"][0]["id"]
    report.info["served_model"] = served
    before = scrape_all(urls, out, "before")

    events = EventsReader(proxy_url)
    events.start()
    kinds = [("completions", False), ("completions", True), ("chat", False), ("chat", True)]
    plan_reqs = [kinds[i % 4] for i in range(4 * args.rounds)]
    prompts = load_prompts(model, args.sim, len(plan_reqs))
    results = []
    print(f"== {len(plan_reqs)} requests through pdtui's proxy {proxy_url}", flush=True)
    for i, ((route, stream), prompt) in enumerate(zip(plan_reqs, prompts)):
        # a distinct head per request, so no request can be served from an earlier one's cache
        res = client.send(proxy_url, i, route, stream, served, f"request {i}: {prompt}", args.max_tokens)
        results.append(res)
        print(f"  {i:2d} {route:<11} stream={str(stream):<5} HTTP {res.status} {res.seconds:.3f}s ttft {res.ttft_seconds} "
              f"prompt {res.prompt_tokens} out {res.completion_tokens} {res.error or ''}", flush=True)
    report.requests = [r.to_dict() for r in results]
    ok = [r for r in results if r.ok]
    report.check("requests", len(ok) == len(results), f"{len(ok)}/{len(results)} answered 200 with usage")
    time.sleep(1.0)
    events.stop()
    report.info["proxy_events"] = len(events.events)
    (out / "proxy_events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events.events))
    req_ids = {e.get("req_id") for e in events.events if e.get("req_id")}
    report.check("proxy /events", len(req_ids) >= len(results),
                 f"{len(events.events)} events for {len(req_ids)} requests" + (f" ({events.error})" if events.error else ""))

    # metrics after: LMCache flushes its counters every 10 s, so wait for them to move
    deadline = time.monotonic() + args.metrics_wait
    while True:
        after = scrape_all(urls, out, "after")
        if mode == "lmcache-pd":
            moving = all(lmcache_moved(before[n], after[n]) for n in roles)  # prefillers flush their counters too
        else:  # vLLM logs "KV Transfer metrics" with its periodic stats (every 10 s)
            moving = nixl_transfers_logged(run_dir, decoders) >= len(ok)
        if moving or time.monotonic() > deadline:
            break
        time.sleep(2.0)

    check_metrics(report, before, after, roles, mode, ok)
    check_logs(report, run_dir, roles, mode, ok, out)
    if args.capture_dashboard:
        argv = [sys.executable, str(Path(__file__).with_name("capture_dashboard.py")), str(run_dir), args.profile, str(out),
                "--load", "--model", model] + (["--sim"] if args.sim else [])
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            report.info["dashboard_capture"] = (done.stdout + done.stderr[-500:]).strip()
        except subprocess.TimeoutExpired:
            report.info["dashboard_capture"] = "timed out after 120 s"
        print(f"  dashboard: {report.info['dashboard_capture']}", flush=True)


def nixl_transfers_logged(run_dir: Path, decoders: list[str]) -> int:
    from tests.gpu.checks import nixl_transfer_lines

    return nixl_transfer_lines(run_dir, decoders)[1]


def lmcache_moved(before: str, after: str) -> bool:
    return any(v > 0 for v in lmcache_deltas(before, after).values())


def check_leftovers(report: Report, out: Path, run_dir: Path | None, gpus: set[int], baseline_pids: set[int],
                    ports_before: dict[int, int | None], gpu_args: list[str], ours: set[int]) -> None:
    alive = leftovers.alive(ours)
    report.check("processes stopped", not alive, f"{len(ours)} pids of the run seen; alive after down: {alive or 'none'}")
    ports: set[int] = set()
    if run_dir is not None and (run_dir / "plan.json").is_file():
        plan = json.loads((run_dir / "plan.json").read_text())
        ports = {p for i in plan["instances"] for p, _ in i["ports"]} | {plan["proxy"]["port"]}
        if plan["proxy"].get("zmq_port"):
            ports.add(plan["proxy"]["zmq_port"])
    still = leftovers.wait_ports_closed(ports, 30)
    # other programs on a shared box open ports too: count only ours (or ones nobody owns)
    new_listeners = {p: pid for p, pid in leftovers.listening_ports().items()
                     if p not in ports_before and (pid is None or pid in ours)}
    report.check("ports closed", not still and not new_listeners,
                 f"profile ports {sorted(ports)} " + (f"still listening: {still}" if still else "closed")
                 + (f"; new listeners since before up: {new_listeners}" if new_listeners else ""))
    left, inventory = leftovers.wait_gpu_empty(gpus, baseline_pids, 60, gpu_args)
    (out / "gpus_after.json").write_text(json.dumps(inventory, indent=1))
    if inventory.get("error") and not gpu_args:
        report.check("GPU empty", False, f"NVML not readable: {inventory['error']}")
    else:
        used = {g["index"]: g.get("memory_used") for g in inventory.get("gpus") or [] if g.get("index") in gpus}
        report.check("GPU empty", not left, f"processes left on GPU {sorted(gpus)}: {left or 'none'}; memory used {used}"
                     + (" (simulated GPUs)" if gpu_args else ""))
    if run_dir is not None and (run_dir / "sim-gpus").is_dir():
        files = list((run_dir / "sim-gpus").glob("*.json"))
        report.check("sim GPU files removed", not files, f"{len(files)} left in sim-gpus/")


def collect(run_dir: Path, out: Path) -> None:
    """The run's logs, plan, state and LMCache YAMLs as one tar.gz (few files come back from a device)."""
    with tarfile.open(out / "run.tar.gz", "w:gz") as tar:
        for path in sorted(run_dir.iterdir()):
            if path.is_file():
                tar.add(path, arcname=f"{run_dir.name}/{path.name}")
    with tarfile.open(out / "metrics.tar.gz", "w:gz") as tar:
        tar.add(out / "metrics", arcname="metrics")
    shutil.rmtree(out / "state", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", help="profile file (e.g. configs/h200-tiny-1p1d.yaml)")
    ap.add_argument("--out", required=True, help="new directory for summary.json, logs and metrics")
    ap.add_argument("--sim", action="store_true", help="use the simulated engine (engine: sim in a copy of the profile)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the 4 request kinds (default 2)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--up-timeout", type=float, default=900, help="seconds for `pdtui up` (default 900)")
    ap.add_argument("--metrics-wait", type=float, default=30, help="seconds to wait for lmcache:* counters to move")
    ap.add_argument("--capture-dashboard", action="store_true", help="capture the TUI attached to the run (tests/gpu/capture_dashboard.py)")
    args = ap.parse_args(argv)
    if not Path(args.profile).is_file():
        ap.error(f"profile {args.profile!r} not found")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
