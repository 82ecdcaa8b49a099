"""The simulated engine's EngineCore (and TP worker) processes, as vLLM runs them.

`vllm serve` is an API-server process that starts an EngineCore child process (named
`VLLM::EngineCore`); with TP > 1 the EngineCore starts one worker per rank
(`VLLM::Worker_TP<rank>`). The EngineCore and the workers hold the GPU memory, not the
API server. When the API server is killed (`kill -9`, the OOM killer) the EngineCore does
NOT exit by itself: it lives on, re-parented to init, holding the GPU. The simulator
keeps exactly that behaviour so that pdtui's clean-up is tested against it:

- the API server feeds its EngineCore the current usage over a pipe (stdin, one JSON line
  `{"memory_bytes": N, "utilization": U}` per change);
- the EngineCore writes `$PDTUI_SIM_GPU_DIR/<its pid>.json` (the GPU process, as NVML would
  list it) and keeps it while it lives, also after the pipe closed because its API server died;
- it exits (removing the file) on SIGINT/SIGTERM, which the API server sends when it shuts
  down normally. Workers exit when their EngineCore is gone (as vLLM's do).

`PDTUI_SIM_ORPHAN_LINGER_S` (unset = for ever, like vLLM) ends an orphaned EngineCore after
that many seconds: the test suite sets it as a safety net so no test leaves one for long.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time

CORE_NAME = "VLLM::EngineCore"
WORKER_NAME = "VLLM::Worker_TP{rank}"
ORPHAN_LINGER_ENV = "PDTUI_SIM_ORPHAN_LINGER_S"


def set_process_name(name: str) -> None:
    """The kernel's process name (comm, 15 bytes: what ps, top and nvidia-smi show), like
    vLLM's setproctitle; argv stays `python -m pdtui.sim.enginecore ...` as the marker."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15] + b"\0", 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


class EngineCoreChild:
    """The API server's handle on its EngineCore: start it, feed it, stop it."""

    def __init__(self, gpu_dir: str | None, name: str, role: str, port: int, gpus: tuple[int, ...], tp: int) -> None:
        argv = [sys.executable, "-m", "pdtui.sim.enginecore", "core", "--name", name, "--role", role,
                "--port", str(port), "--gpus", ",".join(map(str, gpus)), "--tp", str(tp)]
        if gpu_dir:
            argv += ["--gpu-dir", gpu_dir]
        # Same process group and session as the API server (a multiprocessing child in vLLM).
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=None, stderr=None, close_fds=True)
        self._last: tuple[int, float] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def update(self, memory_bytes: int, utilization: float) -> None:
        content = (int(memory_bytes), round(float(utilization), 1))
        if content == self._last or self.proc.stdin is None:
            return
        self._last = content
        try:
            self.proc.stdin.write(json.dumps({"memory_bytes": content[0], "utilization": content[1]}).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def stop(self, timeout_s: float = 5.0) -> None:
        """Normal shutdown: the EngineCore frees its memory and exits with us."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass


def _run_core(args: dict[str, str]) -> int:
    from pdtui.sim.gpufile import GpuUsageFile

    set_process_name(CORE_NAME)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    gpus = tuple(int(g) for g in args["gpus"].split(",") if g)
    tp = int(args.get("tp", "1"))
    workers = []
    if tp > 1:
        for rank in range(tp):
            workers.append(subprocess.Popen([sys.executable, "-m", "pdtui.sim.enginecore", "worker", "--rank", str(rank)],
                                            stdin=subprocess.DEVNULL, close_fds=True))
    gpu_file = GpuUsageFile(args["gpu-dir"], os.getpid(), args["name"], args["role"], int(args["port"]), gpus) if args.get("gpu-dir") else None
    usage: list[float] = [0, 0.0]  # memory bytes, utilization
    parent_gone = threading.Event()

    def read_pipe() -> None:
        # os.read, not sys.stdin: a daemon thread blocked in a buffered reader aborts the
        # interpreter's shutdown.
        pending = b""
        while True:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                try:
                    data = json.loads(line)
                    usage[0], usage[1] = int(data["memory_bytes"]), float(data["utilization"])
                except (ValueError, KeyError, TypeError):
                    continue
        parent_gone.set()  # EOF: the API server is gone. vLLM's EngineCore keeps running.

    threading.Thread(target=read_pipe, daemon=True).start()
    linger = os.environ.get(ORPHAN_LINGER_ENV)
    orphan_since: float | None = None
    try:
        while not stop.wait(0.25):
            if gpu_file is not None:
                try:
                    gpu_file.update(int(usage[0]), 0.0 if parent_gone.is_set() else usage[1])
                except OSError:
                    pass  # the run directory was deleted: keep holding the "GPU" anyway
            if parent_gone.is_set():
                orphan_since = orphan_since or time.monotonic()
                if linger and time.monotonic() - orphan_since > float(linger):
                    break
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in workers:
            try:
                worker.wait(5)
            except subprocess.TimeoutExpired:
                worker.kill()
        if gpu_file is not None:
            gpu_file.remove()
    return 0


def _run_worker(args: dict[str, str]) -> int:
    set_process_name(WORKER_NAME.format(rank=args.get("rank", "0")))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != parent:
            break  # its EngineCore died: a vLLM worker exits with it
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("core", "worker"):
        print("usage: python -m pdtui.sim.enginecore core|worker --option value ...", file=sys.stderr)
        return 2
    args = {argv[i].lstrip("-"): argv[i + 1] for i in range(1, len(argv) - 1, 2)}
    return _run_core(args) if argv[0] == "core" else _run_worker(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
