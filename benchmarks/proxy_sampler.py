"""Run the proxy (`python benchmarks/proxy_sampler.py OUT -- <proxy args>`) with a sampling
profiler: a thread looks at the main thread's stack every millisecond and counts, per
sample, the innermost frame (self) and every function on the stack (total). Unlike
cProfile it slows the proxy a little (the GIL is handed over every 0.1 ms), so the shares are those of a real run. Samples
taken while the loop waits in epoll (no Python frame below the loop's run_forever)
count as idle. Written to OUT as text when the proxy exits (SIGTERM ends it normally).
Used by `proxy_overhead.py --sample-proxy OUT`.
"""

from __future__ import annotations

import collections
import runpy
import sys
import threading
import time


def main() -> None:
    out, argv = sys.argv[1], sys.argv[3:]
    main_id = threading.get_ident()
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    stop = threading.Event()
    samples = [0]

    def where(code) -> str:
        return f"{code.co_filename.rsplit('site-packages/', 1)[-1]}:{code.co_name}"

    def sample() -> None:
        while not stop.wait(0.001):
            frame = sys._current_frames().get(main_id)
            if frame is None:
                continue
            samples[0] += 1
            own[where(frame.f_code)] += 1
            seen = set()
            while frame is not None:
                name = where(frame.f_code)
                if name not in seen:
                    seen.add(name)
                    total[name] += 1
                frame = frame.f_back

    # The sampler needs the GIL to look: with the default 5 ms switch interval it would
    # only get it where the proxy blocks in a system call, and see those spots only.
    sys.setswitchinterval(0.0001)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    sys.argv = ["pdtui.proxy", *argv]
    t0 = time.monotonic()
    try:
        runpy.run_module("pdtui.proxy", run_name="__main__")
    except SystemExit:
        pass
    finally:
        stop.set()
        thread.join()
        n = max(samples[0], 1)
        with open(out, "w") as fh:
            fh.write(f"{samples[0]} samples over {time.monotonic() - t0:.1f} s\n\n"
                     "self % (innermost Python frame):\n")
            for name, count in own.most_common(40):
                fh.write(f"{100 * count / n:6.2f}  {name}\n")
            fh.write("\ntotal % (on the stack):\n")
            for name, count in total.most_common(80):
                fh.write(f"{100 * count / n:6.2f}  {name}\n")


if __name__ == "__main__":
    main()
