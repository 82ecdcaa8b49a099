"""Nothing heavy is imported before the first paint (issue 17, item 3).

`pdtui --demo` imports `pdtui.cli` -> `pdtui.ui.cli` -> `pdtui.ui.app` and, at mount, the
GPU feed with the demo's recorded source and the preset lookup; all of that is before the
first frame. The profile (pydantic), the deployment monitor (aiohttp), the runtime and the
observe screens are imported after it, when they are needed. `-X importtime` lists every
module the interpreter imported; a named heavy one creeping back into that path fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FIRST_PAINT = "import pdtui.cli, pdtui.ui.cli, pdtui.ui.app, pdtui.ui.gpu_feed, pdtui.gpus.recorded_source, pdtui.model.presets"

# Measured on the 2-core box (-X importtime, cumulative): pydantic + the model ~300 ms,
# the monitor with aiohttp ~170 ms, the observe screens ~60 ms; the whole first-paint path
# without them ~180 ms, of which textual.app is ~90 ms.
HEAVY = ("pydantic", "pydantic_core", "aiohttp", "ruamel", "yaml", "prometheus_client", "zmq",
         "pdtui.model.schema", "pdtui.model.render", "pdtui.runtime", "pdtui.telemetry.monitor",
         "pdtui.telemetry.scrape", "pdtui.loadgen", "pdtui.ui.observe", "pdtui.ui.screens.editor",
         "rich.pretty", "attr", "psutil")  # rich.pretty + attrs come with RichLog (~10 ms): the log pane's


def imported_modules(code: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "pdtui.ui.app" in names, "importtime output not understood"
    return names


def test_no_heavy_module_before_the_first_paint():
    names = imported_modules(FIRST_PAINT)
    crept_in = sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY))
    assert not crept_in, f"imported before the first paint (make them lazy): {crept_in}"


def test_the_check_sees_a_heavy_import():
    names = imported_modules(FIRST_PAINT + ", pdtui.telemetry.monitor")
    assert "aiohttp" in names and "pdtui.telemetry.monitor" in names
