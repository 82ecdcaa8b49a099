"""Request playground: one prompt through the proxy with the answer streaming in and the
request's stage timeline; and a small load run with its summary table.

The single request runs as an async worker on the app's loop (aiohttp never blocks a
frame); the answer is appended at most ~10 times a second. A load run is not the
playground's: `Run` posts `LoadRunRequested`, the observe screen starts it as a job of the
deployment's monitor (`start_load_run`), and the playground only shows that job's
progress and summary -- so it goes on when the operator leaves, and is there on return.
"""

from __future__ import annotations

import aiohttp
from rich.table import Table
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, Static

from pdtui.loadgen.client import RequestResult, stream_completion
from pdtui.loadgen.load import LoadSpec, run_load
from pdtui.telemetry.jobs import BackgroundJobs, Job
from pdtui.ui.messages import LoadRunRequested, LoadRunStopRequested
from pdtui.ui.session import LOAD_JOB
from pdtui.loadgen.prompts import synthetic_prompt
from pdtui.loadgen.timeline import fetch_timeline, stage_durations

__all__ = ["Playground", "parse_int_field", "start_load_run"]


def start_load_run(jobs: BackgroundJobs, proxy_url: str, spec: LoadSpec, notify) -> Job | None:
    """Start `spec` as the deployment's load job; a clear message when one is running."""
    try:
        return jobs.start(LOAD_JOB, lambda job: run_load(proxy_url, spec, on_result=job.count),
                          detail=f"{spec.requests} requests, {spec.concurrency} at a time", total=spec.requests)
    except RuntimeError as exc:
        notify(str(exc), severity="warning")
        return None


def parse_int_field(label: str, text: str, low: int, high: int, default: int | None = None) -> int:
    """A whole number from a form field, or ValueError naming the field and the valid range."""
    text = text.strip()
    if not text and default is not None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{label}: '{text}' is not a whole number ({low}..{high})") from None
    if not low <= value <= high:
        raise ValueError(f"{label}: {value} is outside {low}..{high}")
    return value


class Playground(Vertical):
    DEFAULT_CSS = """
    Playground { height: 1fr; }
    Playground Horizontal { height: auto; }
    Playground Input { width: 1fr; }
    Playground .num { width: 8; }
    Playground .fields Label { padding: 1 0 0 1; }
    Playground .fields Label.group { width: 13; text-style: bold; }
    Playground #pg-answer { height: 1fr; min-height: 4; border: round $primary 50%; padding: 0 1; }
    Playground #pg-timeline { height: auto; }
    Playground #pg-summary { height: auto; max-height: 14; }
    Playground #pg-message { height: 1; color: $warning; }
    """

    def __init__(self, proxy_url: str, id: str | None = None, *, jobs: BackgroundJobs | None = None) -> None:
        super().__init__(id=id)
        self.proxy_url = proxy_url
        self.jobs = jobs  # the deployment's (its monitor's); None: the run is this widget's
        self.last_result: RequestResult | None = None
        self.last_summary = None
        self.last_timeline: list = []
        self._answer = ""

    def compose(self) -> ComposeResult:
        # Focus order (Tab): prompt, Send, Run, then the numbers: Run is two Tabs away.
        with Horizontal():
            yield Input(placeholder="prompt (or leave empty and give a length below)", id="pg-prompt")
            yield Button("Send", id="pg-send", variant="primary")
            yield Button("Run load", id="pg-run")
        with Horizontal(classes="fields"):
            yield Label("one request:", classes="group")
            yield Label("prompt tok")
            yield Input(placeholder="64", id="pg-prompt-tokens", classes="num")
            yield Label("max tok")
            yield Input(value="32", id="pg-max-tokens", classes="num")
        with Horizontal(classes="fields"):
            yield Label("load run:", classes="group")
            yield Label("requests")
            yield Input(value="20", id="pg-n", classes="num")
            yield Label("at once")
            yield Input(value="4", id="pg-c", classes="num")
            yield Label("prompt tok")
            yield Input(value="128", id="pg-p", classes="num")
            yield Label("out tok")
            yield Input(value="16", id="pg-o", classes="num")
        yield Static("", id="pg-message", markup=False)
        yield Static("", id="pg-answer", markup=False)
        yield Static("", id="pg-timeline")
        yield DataTable(id="pg-summary", show_cursor=False)

    def _message(self, text: str) -> None:
        self.query_one("#pg-message", Static).update(text)

    # --- one request ---------------------------------------------------------------
    @on(Button.Pressed, "#pg-send")
    @on(Input.Submitted, "#pg-prompt")
    @on(Input.Submitted, "#pg-prompt-tokens")
    @on(Input.Submitted, "#pg-max-tokens")
    def send(self) -> None:
        try:
            max_tokens = parse_int_field("max tokens", self.query_one("#pg-max-tokens", Input).value, 1, 100_000, 32)
            n_text = self.query_one("#pg-prompt-tokens", Input).value
            prompt = self.query_one("#pg-prompt", Input).value
            if not prompt.strip():
                prompt = synthetic_prompt(parse_int_field("prompt tokens", n_text, 1, 1_000_000, 64))
        except ValueError as exc:
            self._message(str(exc))
            return
        self._message(f"sending to {self.proxy_url} ...")
        self._answer = ""
        self.query_one("#pg-answer", Static).update("")
        self.query_one("#pg-timeline", Static).update("")
        self._send(prompt, max_tokens)

    @work(exclusive=True, group="playground-send", exit_on_error=False)
    async def _send(self, prompt: str, max_tokens: int) -> None:
        answer = self.query_one("#pg-answer", Static)
        pieces: list[str] = []

        def flush() -> None:
            if pieces:
                self._answer += "".join(pieces)
                pieces.clear()
                answer.update(self._answer)

        timer = self.set_interval(0.1, flush)
        try:
            async with aiohttp.ClientSession() as session:
                result = await stream_completion(session, self.proxy_url, prompt=prompt, max_tokens=max_tokens,
                                                 on_text=pieces.append, ignore_eos=False)
                flush()
                self.last_result = result
                if result.error:
                    self._message(f"failed: {result.error}")
                else:
                    ttft = "N/A" if result.ttft_s is None else f"{result.ttft_s * 1000:.1f} ms"
                    total = "N/A" if result.duration_s is None else f"{result.duration_s * 1000:.0f} ms"
                    self._message(f"{result.output_tokens} tokens, TTFT {ttft}, total {total}, "
                                  f"request {result.req_id}")
                if result.req_id:
                    events = await fetch_timeline(session, self.proxy_url, result.req_id, timeout_s=5.0)
                    self._show_timeline(events)
        finally:
            timer.stop()

    def _show_timeline(self, events) -> None:
        rows = self.last_timeline = stage_durations(events)
        table = Table(title="stages of this request (since it arrived)", expand=True)
        for column in ("stage", "start", "end", "took", "", "backend"):
            table.add_column(column)
        end = max((r[2] for r in rows), default=0.0) or 1.0
        backends = {e.stage: e.backend for e in events if e.state != "start"}
        for stage, start, stop, state in rows:
            lo, hi = int(start / end * 30), max(int(start / end * 30) + 1, int(stop / end * 30))
            bar = " " * lo + "█" * (hi - lo)
            table.add_row(stage + (" (error)" if state == "error" else ""), f"{start:.1f} ms", f"{stop:.1f} ms",
                          f"{stop - start:.1f} ms", bar, backends.get(stage) or "")
        self.query_one("#pg-timeline", Static).update(table if rows else "no timeline from GET /events")

    # --- load run ----------------------------------------------------------------------
    @on(Button.Pressed, "#pg-run")
    @on(Input.Submitted, "#pg-n, #pg-c, #pg-p, #pg-o")  # Enter in a load-run field starts the run
    def run(self) -> None:
        try:
            spec = LoadSpec(
                requests=parse_int_field("requests", self.query_one("#pg-n", Input).value, 1, 100_000),
                concurrency=parse_int_field("concurrency", self.query_one("#pg-c", Input).value, 1, 1024),
                prompt_tokens=parse_int_field("prompt tokens", self.query_one("#pg-p", Input).value, 1, 1_000_000),
                output_tokens=parse_int_field("output tokens", self.query_one("#pg-o", Input).value, 1, 100_000),
            )
        except ValueError as exc:
            self._message(str(exc))
            return
        self._message(f"load run: {spec.requests} requests, {spec.concurrency} at a time ...")
        self._start(spec)

    def _start(self, spec: LoadSpec) -> None:
        if self.jobs is None:
            self._run(spec)  # no deployment monitor: the run lives with this widget
            return
        self.post_message(LoadRunRequested(spec))

    def on_mount(self) -> None:
        if self.jobs is not None:
            self._shown_job: Job | None = None
            self.set_interval(0.25, self._watch_job)
            self._watch_job()

    def _watch_job(self) -> None:
        """Show the deployment's load job: progress while it runs, its summary when done."""
        job = self.jobs.get(LOAD_JOB) if self.jobs is not None else None
        if job is None:
            return
        if not job.done:
            self._message(f"load run ({job.detail}): {job.completed}/{job.total} done, {job.failed} failed")
            return
        if job is self._shown_job:
            return
        self._shown_job = job
        if job.result is not None:
            self._show_summary(job.result)
        else:
            self._message(f"load run {job.error or 'ended'} after {job.completed} requests")

    def stop_run(self) -> None:
        self.post_message(LoadRunStopRequested())

    @work(exclusive=True, group="playground-load", exit_on_error=False)
    async def _run(self, spec: LoadSpec) -> None:
        done = [0, 0]

        def progress(_index, result) -> None:
            done[0] += 1
            done[1] += 0 if result.ok else 1

        timer = self.set_interval(0.25, lambda: self._message(
            f"load run: {done[0]}/{spec.requests} done, {done[1]} failed"))
        try:
            summary = await run_load(self.proxy_url, spec, on_result=progress)
        finally:
            timer.stop()
        self._show_summary(summary)

    def _show_summary(self, summary) -> None:
        self.last_summary = summary
        table = self.query_one("#pg-summary", DataTable)
        table.clear(columns=True)
        table.add_columns("measure", "value")
        for label, value in summary.rows():
            table.add_row(label, value)
        self._message(f"load run done: {summary.ok}/{summary.requests} ok")
