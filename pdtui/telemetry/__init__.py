"""Telemetry: what the panes show, from /metrics scrapes and log lines.

Modules (import the one you need; this package imports nothing heavy):
- `logparse`  fast line classifier: `parse_line`, `LogScanner`, `parse_header`,
              `milestones`, `find_root_cause` (re-exported from `rootcause`).
- `events`    the typed immutable events and alerts the parser produces.
- `rootcause` the first real error of a failed start.
- `metrics`   /metrics body -> `MetricsSnapshot`; `METRIC_ALIASES` for old/new names.
- `scrape`    `Scraper`: async polling, one non-overlapping task per endpoint.
- `series`    `RingSeries` / `SeriesStore`: bounded time series.
- `derive`    rates, windowed p50/p99, LMCache tokens/s, decoder hit rate (`Deriver`).
- `export`    CSV/JSON export of a run's series.
- `logtail`   `LogFollower`: one tail per log file (sparse line index, read-back),
              with any number of `LogView`s (`logview`: filter, search, pending lines
              and a doorbell each); `logfilter`: `ViewFilter` and the line tests.
- `filewatch` `FileWatch`: inotify wake-ups when followed files are written.
- `kvstats`   KV-transfer numbers per instance from parsed log events.
- `pairs`     `PairStats`: per prefiller -> decoder pair numbers from the proxy's /events.
- `stages`    the proxy's stage histograms -> windowed p50/p99.
- `events_reader` `ProxyEventsReader`: the proxy's /events stream, reconnecting.
- `jobs`      `BackgroundJobs`: coroutines (load runs) owned by the deployment.
- `monitor`   `DeploymentMonitor`: all of the above for one deployment, headless.
- `logscan`   whole-file scanning and the summary behind `pdtui logscan`.
"""
