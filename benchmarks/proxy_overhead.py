"""Proxy overhead: pdtui's PD proxy vs a direct connection to the decoder, side by side.

Starts one simulated prefiller and one simulated decoder with zero compute delay
(PDTUI_SIM_PREFILL_US_PER_TOKEN=0, PDTUI_SIM_DECODE_MS_PER_TOKEN=0) and the proxy
(lmcache-pd mode, real ZMQ notifications), then sends the same streaming
completion to the decoder directly and through the proxy, alternating rounds so
both see the same machine load. Reports per-request latency (p50/p90/p99),
time to first byte, the added latency at p50, and requests/s, at concurrency 1
and at 64 concurrent streams.

    python benchmarks/proxy_overhead.py [--requests 1000] [--concurrency 64] [--max-tokens 8]
        [--baseline /work/main] [--decode-ms-per-token 0] [--proxy-arg=--first-token-from-prefiller]
        [--sim-root /work/main]

--sim-root DIR runs both deployments' simulated engines from another checkout, to tell
how much of a change comes from the proxy and how much from a cheaper simulator (the
baseline proxy runs on the same engines, so it gains from a cheaper simulator too).

With --baseline DIR a second deployment (its own simulated engines, same settings)
runs the proxy from that checkout (e.g. the unmodified main), and the rounds
alternate direct / proxy / baseline, so the before and after are measured in one
run on the same machine load. CPU per request is the proxy process's user+system
time over a round divided by its requests (from /proc), so it counts only the proxy.

Through the proxy a request makes three backend round trips (tokenize,
prefill, decode) plus one ZMQ notification where the direct path makes one, so
"added" includes those hops, not only the proxy's own processing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
MODEL = "bench-model"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv: list[str], env: dict[str, str], log: Path, root: Path = REPO) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=root,
                                env={**os.environ, **env}, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_deployment(tmp: Path, proxy_root: Path = REPO, decode_ms: float = 0.0,
                     log_level: str = "INFO", preexec=None, proxy_args: tuple[str, ...] = (),
                     profile: str | None = None, sample: str | None = None,
                     sim_root: Path = REPO):
    tmp.mkdir(parents=True, exist_ok=True)
    zmq_port, p_port, d_port, init, alloc, x_port = (free_port() for _ in range(6))
    env = {"PDTUI_SIM_STARTUP_S": "0.2", "PDTUI_SIM_PREFILL_US_PER_TOKEN": "0",
           "PDTUI_SIM_DECODE_MS_PER_TOKEN": f"{decode_ms:g}", "PYTHONHASHSEED": "0",
           "PYTHONPATH": str(sim_root)}
    (tmp / "p.yaml").write_text(
        "chunk_size: 256\nlocal_cpu: False\nsave_unfull_chunk: true\nenable_pd: True\n"
        'pd_role: "sender"\npd_proxy_host: "127.0.0.1"\n'
        f"pd_proxy_port: {zmq_port}\npd_buffer_size: 1073741824\n")
    (tmp / "d.yaml").write_text(
        "chunk_size: 256\nlocal_cpu: False\nenable_pd: True\npd_role: \"receiver\"\n"
        f'pd_peer_host: "127.0.0.1"\npd_peer_init_port: [{init}]\n'
        f"pd_peer_alloc_port: [{alloc}]\npd_buffer_size: 2147483648\n")
    procs = []
    try:
        for role, port, cfg, kv_role in (("decoder", d_port, "d.yaml", "kv_consumer"),
                                         ("prefiller", p_port, "p.yaml", "kv_producer")):
            kv = json.dumps({"kv_connector": "LMCacheConnectorV1", "kv_role": kv_role})
            procs.append(spawn([sys.executable, "-m", "pdtui.sim", "serve", MODEL, "--port",
                                str(port), "--kv-transfer-config", kv],
                               {**env, "LMCACHE_CONFIG_FILE": str(tmp / cfg)}, tmp / f"{role}.log",
                               sim_root))
        # the proxy under test at its default log level (pdtui's writes an access line
        # per request), imported from proxy_root
        with open(tmp / "proxy.log", "wb") as fh:
            # --profile-proxy: cProfile in the proxy process, written when it stops (SIGTERM
            # ends its loop normally)
            prof = ["-m", "cProfile", "-o", profile] if profile else []
            if sample:  # --sample-proxy: a sampling profiler instead (proxy_sampler.py)
                prof = [str(REPO / "benchmarks" / "proxy_sampler.py"), sample, "--"]
            procs.append(subprocess.Popen([
                sys.executable, *prof, *([] if sample else ["-m", "pdtui.proxy"]), "--port", str(x_port), "--zmq-port",
                str(zmq_port), "--prefiller", f"http://127.0.0.1:{p_port}", "--decoder",
                f"http://127.0.0.1:{d_port}", "--decoder-init-ports", str(init),
                "--decoder-alloc-ports", str(alloc), "--log-level", log_level, *proxy_args],
                stdout=fh, stderr=subprocess.STDOUT, cwd=proxy_root, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(proxy_root)}, preexec_fn=preexec))
    except BaseException:
        for p in procs:
            stop(p)
        raise
    return f"http://127.0.0.1:{x_port}", f"http://127.0.0.1:{d_port}", procs


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_ready(session: aiohttp.ClientSession, proxy: str, procs) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a process exited during start-up; see the logs")
        try:
            async with session.get(proxy + "/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("deployment not ready after 60 s")


async def one(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[float, float]:
    t0 = time.perf_counter()
    ttfb = None
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {await resp.text()}")
        async for _ in resp.content.iter_any():
            if ttfb is None:
                ttfb = time.perf_counter() - t0
    return time.perf_counter() - t0, ttfb or 0.0


async def round_(session, url: str, body: dict, n: int, concurrency: int):
    lat: list[float] = []
    ttfb: list[float] = []
    todo = iter(range(n))

    async def worker():
        for _ in todo:
            total, first = await one(session, url, body)
            lat.append(total)
            ttfb.append(first)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, ttfb, time.perf_counter() - t0


async def timeline_stats(session: aiohttp.ClientSession, proxy: str, last: int):
    """From the proxy's kept timelines (GET /events history), for its last `last` requests:
    its own time per request (total minus the tokenize, prefill, kv_wait and decode
    spans, i.e. time in its own code) and the tokenize+prefill+kv_wait time of each."""
    timelines: dict[str, dict[tuple[str, str], float]] = {}
    async with session.get(proxy + "/events") as resp:
        buf = b""
        while True:
            try:
                chunk = await asyncio.wait_for(resp.content.readany(), 0.5)
            except asyncio.TimeoutError:
                break  # history replayed; only live events would follow
            if not chunk:
                break
            buf += chunk
    for line in buf.splitlines():
        e = json.loads(line)
        if e.get("type") == "stage":
            timelines.setdefault(e["req_id"], {})[(e["stage"], e["state"])] = e["elapsed_ms"]
    own, before_decode = [], []
    done = [m for m in timelines.values() if ("request", "end") in m][-last:]
    for marks in done:
        spans = {st: marks.get((st, "end"), 0.0) - marks.get((st, "start"), 0.0)
                 for st in ("tokenize", "prefill", "kv_wait", "decode")}
        own.append((marks[("request", "end")] - sum(spans.values())) / 1000.0)
        before_decode.append((spans["tokenize"] + spans["prefill"] + spans["kv_wait"]) / 1000.0)
    return own, before_decode


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000.0


async def bench(args) -> None:
    with tempfile.TemporaryDirectory(prefix="pdtui-proxy-bench-") as tmpdir:
        tmp = Path(tmpdir)
        sim_root = Path(args.sim_root).resolve() if args.sim_root else REPO
        deployments = {"proxy": start_deployment(tmp / "new", REPO, args.decode_ms_per_token,
                                                 proxy_args=tuple(args.proxy_arg or ()),
                                                 profile=args.profile_proxy,
                                                 sample=args.sample_proxy, sim_root=sim_root)}
        if args.baseline:
            deployments["baseline"] = start_deployment(tmp / "base", Path(args.baseline).resolve(),
                                                       args.decode_ms_per_token, sim_root=sim_root)
        try:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                for proxy, _, procs in deployments.values():
                    await wait_ready(session, proxy, procs)
                prompt = "the quick brown fox jumps over the lazy dog " * 12
                proxy, decoder, _ = deployments["proxy"]
                async with session.post(decoder + "/tokenize", json={"prompt": prompt}) as r:
                    direct_tokens = (await r.json())["tokens"]
                body = {"model": MODEL, "max_tokens": args.max_tokens, "stream": True}
                targets = {
                    # the direct path gets token ids, as the proxy's decode hop does
                    "direct": (decoder + "/v1/completions", {**body, "prompt": direct_tokens}),
                }
                pids = {}  # path -> the proxy's pid
                # path -> the pids whose CPU is counted: proxy, prefiller, decoder (procs are
                # started decoder, prefiller, proxy)
                counted = {"direct": (None, None, deployments["proxy"][2][0].pid)}
                for name, (url, _, procs) in deployments.items():
                    targets[name] = (url + "/v1/completions", {**body, "prompt": prompt})
                    pids[name] = procs[-1].pid
                    counted[name] = (procs[2].pid, procs[1].pid, procs[0].pid)
                for url, b in targets.values():  # warm-up: connections, first-use paths
                    await round_(session, url, b, 50, 8)
                print(f"prompt {len(direct_tokens)} tokens, max_tokens {args.max_tokens}, stream, "
                      f"simulated decode {args.decode_ms_per_token:g} ms/token, zero prefill "
                      f"compute; {os.cpu_count()} CPUs"
                      + (f"; baseline proxy from {args.baseline}" if args.baseline else "")
                      + f"; simulated engines from {sim_root}")
                for concurrency, n in ((1, max(args.requests // 5, 100)),
                                       (args.concurrency, args.requests)):
                    results = {k: ([], [], 0.0, (0.0, 0.0, 0.0)) for k in targets}
                    # alternate in slices so every path sees the same background load
                    slices = 5
                    for _ in range(slices):
                        for name, (url, b) in targets.items():
                            cpu0 = [cpu_seconds(p) if p else 0.0 for p in counted[name]]
                            lat, tt, el = await round_(session, url, b, n // slices, concurrency)
                            cpu = [cpu_seconds(p) - c0 if p else 0.0
                                   for p, c0 in zip(counted[name], cpu0)]
                            acc = results[name]
                            results[name] = (acc[0] + lat, acc[1] + tt, acc[2] + el,
                                             tuple(a + c for a, c in zip(acc[3], cpu)))
                    print(f"\nconcurrency {concurrency}, {n} requests per path; CPU ms per "
                          "request of each process (the simulated engines' too: with tokenize "
                          "and prefill the prefiller serves two requests per proxied one)")
                    print(f"{'path':9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
                          f"{'ttfb p50':>9} {'req/s':>8} {'proxy CPU':>10} {'P CPU':>6} "
                          f"{'D CPU':>6}")
                    for name, (lat, tt, el, cpu) in results.items():
                        cpu_txt = " ".join(
                            f"{c / len(lat) * 1000:{w}.2f}" if p else f"{'-':>{w}}"
                            for c, p, w in zip(cpu, counted[name], (10, 6, 6)))
                        print(f"{name:9} {pct(lat, .5):8.2f} {pct(lat, .9):8.2f} "
                              f"{pct(lat, .99):8.2f} {pct(tt, .5):9.2f} {len(lat) / el:8.0f} "
                              f"{cpu_txt}")
                    for name in pids:
                        added = pct(results[name][0], .5) - pct(results["direct"][0], .5)
                        print(f"added at p50 ({name} path - direct path): {added:.2f} ms")
                    if "baseline" in results:
                        new_rps = len(results["proxy"][0]) / results["proxy"][2]
                        base_rps = len(results["baseline"][0]) / results["baseline"][2]
                        print(f"throughput proxy / baseline: {new_rps / base_rps:.2f}x")
                    for name, (url, _, _) in deployments.items():
                        own, pre = await timeline_stats(session, url, n // slices)
                        if own:
                            print(f"{name}: own time per request (total minus waits on "
                                  f"backends, last {len(own)}): p50 {pct(own, .5):.3f} ms, "
                                  f"p90 {pct(own, .9):.3f} ms")
                        if concurrency == 1 and pre:
                            # TTFB target: decoder's own TTFB + the stages before it + 1 ms
                            ttfb = pct(results[name][1], .5)
                            direct = pct(results["direct"][1], .5)
                            print(f"{name}: TTFB p50 {ttfb:.2f} ms vs decoder's own TTFB p50 "
                                  f"{direct:.2f} + tokenize/prefill/kv_wait p50 "
                                  f"{pct(pre, .5):.2f} ms = {direct + pct(pre, .5):.2f} ms "
                                  f"(over by {ttfb - direct - pct(pre, .5):+.2f} ms)")
        finally:
            for _, _, procs in deployments.values():
                for p in procs:
                    stop(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run the proxy from this checkout (e.g. /work/main), same run")
    parser.add_argument("--decode-ms-per-token", type=float, default=0.0)
    parser.add_argument("--sim-root", metavar="DIR",
                        help="run the simulated engines (both deployments') from this checkout, "
                        "e.g. the baseline's, to tell the proxy's gain from the simulator's")
    parser.add_argument("--proxy-arg", action="append", metavar="ARG",
                        help="extra argument for the proxy under test (not the baseline), e.g. "
                        "--proxy-arg=--first-token-from-prefiller")
    parser.add_argument("--profile-proxy", metavar="FILE",
                        help="run the proxy under test in cProfile and write its stats to FILE "
                        "(read with python -m pstats FILE); slows that proxy down")
    parser.add_argument("--sample-proxy", metavar="FILE",
                        help="run the proxy under test with a sampling profiler (1 kHz; "
                        "benchmarks/proxy_sampler.py) and write its report to FILE")
    args = parser.parse_args()
    for name in ("profile_proxy", "sample_proxy"):
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
