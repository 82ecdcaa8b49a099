"""Observing a deployment (issue 9): log panes, KV-transfer and latency views, playground.

- `ObserveScreen(instances, proxy_url, run_dir)` / `ObserveScreen.from_status(status)`:
  the whole set in tabs; push it from the instance drill-down.
- `LogPane(path)`: one followed log file (follow/pause, search, filters, save/copy).
- `KvTransferView(stats)`, `LatencyView(store, instances)`, `Playground(proxy_url)`.
- `logfile`, `logstyle`, `kvstats`: the parts without textual.
"""

from __future__ import annotations

from pdtui.ui.observe.logpane import LogPane
from pdtui.ui.observe.screen import ObservedInstance, ObserveScreen

__all__ = ["LogPane", "ObserveScreen", "ObservedInstance"]
