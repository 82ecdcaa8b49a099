"""Client side of the PD proxy: one streamed request, a small load run, the request timeline.

No textual here (headless use and tests stay light). Modules:
- `client`    `stream_completion(...) -> RequestResult`: one request through the proxy,
              streamed (SSE), with the answer's text as it arrives, TTFT and token times.
- `prompts`   `synthetic_prompt(n_tokens, seed)`: a prompt of roughly N tokens.
- `load`      `LoadSpec`, `run_load(proxy_url, spec) -> LoadSummary`, `summarize(results)`.
- `timeline`  `fetch_timeline(session, proxy_url, req_id)`: the proxy's `GET /events`
              stage events of one request, and `stage_durations(events)`.
(The proxy-telemetry readers -- stage quantiles, per-pair stats, the /events reader --
are in `pdtui.telemetry`: they belong to the deployment's monitor.)
"""
