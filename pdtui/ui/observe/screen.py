"""`ObserveScreen`: log panes (one per instance and the proxy), the KV-transfer view, the
latency view and the request playground, in tabs.

    app.push_screen(ObserveScreen(monitor, initial="decoder1"))   # a DeploymentMonitor

The screen owns nothing that must outlive it: every pane is a view of the monitor's one
tail of that file, the KV and latency views read the monitor's stats and store, and a
load run started in the playground is a job of the monitor (the deployment), so leaving
the screen neither loses history nor stops the run. Keys: 1-9 jump to the tabs in
order, `k` KV transfer, `y` latency, `p` playground, escape back.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from pdtui.telemetry.monitor import DeploymentMonitor, MonitoredInstance
from pdtui.ui.bindings import bindings_for
from pdtui.ui.messages import LoadRunRequested, LoadRunStopRequested
from pdtui.ui.observe.kvview import KvTransferView
from pdtui.ui.observe.latency import LatencyView
from pdtui.ui.observe.logpane import LogPane
from pdtui.ui.observe.playground import Playground, start_load_run

__all__ = ["ObserveScreen", "ObservedInstance"]

ObservedInstance = MonitoredInstance  # the name the observe screens used before the monitor


def _tab_id(name: str) -> str:
    return "log-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


class ObserveScreen(Screen):
    CSS_PATH = "../screens/screens.tcss"  # read when the first screen but the cockpit is shown
    AUTO_FOCUS = None  # focus goes to the active tab's content (the log), not the tab bar
    BINDINGS = bindings_for("observe") + [
        Binding(str(n), f"tab_number({n})", f"tab {n}", show=False) for n in range(1, 10)
    ]

    def __init__(self, monitor: DeploymentMonitor, *, initial: str | None = None) -> None:
        super().__init__()
        self.monitor = monitor
        self.initial = initial
        self.kv_stats = monitor.kv_stats
        self.series = monitor.store
        self.pair_stats = monitor.pair_stats
        self.proxy_url = monitor.proxy_url

    def _tab_ids(self) -> list[str]:
        ids = [_tab_id(inst.name) for inst in self.monitor.instances]
        ids += ["kv", "latency"] + (["playground"] if self.proxy_url else [])
        return ids

    def compose(self) -> ComposeResult:
        initial = self.initial
        if initial and initial not in ("kv", "latency", "playground"):
            initial = _tab_id(initial)
        if initial not in self._tab_ids():
            initial = None
        monitor = self.monitor
        with TabbedContent(initial=initial or ""):
            for number, inst in enumerate(monitor.instances, start=1):
                follower = monitor.follower(inst.name)
                label = f"{number} {inst.name}" if number < 10 else inst.name
                with TabPane(label, id=_tab_id(inst.name)):
                    yield LogPane(inst.log_path, title=inst.name, follower=follower.view(), save_dir=monitor.run_dir)
            n = len(monitor.instances)
            with TabPane(f"{n + 1} KV transfer" if n < 9 else "KV transfer", id="kv"):
                yield KvTransferView(self.kv_stats, pairs=self.pair_stats if self.proxy_url else None,
                                     name=monitor.namer, source_status=monitor.events_problem)
            with TabPane(f"{n + 2} latency" if n < 8 else "latency", id="latency"):
                yield LatencyView(self.series, monitor.instance_names())
            if self.proxy_url:
                with TabPane(f"{n + 3} playground" if n < 7 else "playground", id="playground"):
                    yield Playground(self.proxy_url, jobs=monitor.jobs)
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._focus_active)

    def on_tabbed_content_tab_activated(self, _event: TabbedContent.TabActivated) -> None:
        self.call_after_refresh(self._focus_active)

    def _focus_active(self, tries: int = 20) -> None:
        """The active tab's keys work at once: its log (or first field) takes the focus."""
        from textual.css.query import NoMatches

        tabbed = self.query_one(TabbedContent)
        if not tabbed.active:
            return
        try:
            pane = tabbed.get_pane(tabbed.active)
        except NoMatches:  # activated before its pane is mounted (a loaded machine): soon
            if tries > 0 and self.is_attached:
                self.set_timer(0.1, lambda: self._focus_active(tries - 1))
            return
        logs = pane.query(LogPane)
        if logs:
            logs.first().log_view.focus()
            return
        for widget in pane.query("*"):
            if widget.focusable:
                widget.focus()
                return

    def action_tab(self, tab: str) -> None:
        if tab in self._tab_ids():
            self.query_one(TabbedContent).active = tab

    def action_tab_number(self, number: int) -> None:
        ids = self._tab_ids()
        if 1 <= number <= len(ids):
            self.query_one(TabbedContent).active = ids[number - 1]

    def on_load_run_requested(self, message: LoadRunRequested) -> None:
        """The run is the deployment's (a job of its monitor): it goes on after this screen."""
        message.stop()
        if self.proxy_url:
            start_load_run(self.monitor.jobs, self.proxy_url, message.spec, self.notify)

    def on_load_run_stop_requested(self, message: LoadRunStopRequested) -> None:
        message.stop()
        from pdtui.ui.session import LOAD_JOB

        job = self.monitor.jobs.get(LOAD_JOB)
        if job is not None:
            job.cancel()
