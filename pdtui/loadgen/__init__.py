"""Client side of the PD proxy: one streamed request, a small load run, the request timeline.

No textual here (headless use and tests stay light). Modules:
- `client`    `stream_completion(...) -> RequestResult`: one request through the proxy,
              streamed (SSE), with the answer's text as it arrives, TTFT and token times.
- `prompts`   `synthetic_prompt(n_tokens, seed)`: a prompt of roughly N tokens.
- `load`      `LoadSpec`, `run_load(proxy_url, spec) -> LoadSummary`, `summarize(results)`.
- `timeline`  `fetch_timeline(session, proxy_url, req_id)`: the proxy's `GET /events`
              stage events of one request, and `stage_durations(events)`.
- `stages`    the proxy's `pdtui_proxy_stage_seconds` histograms -> windowed p50/p99.
- `pairs`     `PairStats`: `GET /events` stage events -> per prefiller -> decoder pair
              requests/s, prefill and kv_wait p50/p99, errors/timeouts, slowest hand-offs.
- `events_reader` `ProxyEventsReader(proxy_url, on_line)`: reads `/events` on its own
              thread, reconnecting with backoff.
"""
