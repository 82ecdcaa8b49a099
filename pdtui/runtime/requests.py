"""Control requests from other pdtui processes (`pdtui down/restart`) to the live owner:
the file protocol is control.py; here the owner acts on them. A mixin of Supervisor."""

from __future__ import annotations

import threading

from pdtui.runtime import control
from pdtui.runtime.base import SupervisorBase
from pdtui.runtime.preflight import PreflightError


class ControlMixin(SupervisorBase):
    def _handle_control_requests(self) -> None:
        for request_id, request in control.pending(self.run_dir):
            action = request.get("action")
            args = request.get("args") or {}
            threading.Thread(target=self._answer_request, args=(request_id, action, args), name="pdtui-control", daemon=True).start()

    def _answer_request(self, request_id: str, action, args: dict) -> None:
        try:
            if action == "stop":
                stopped = self._stop_all()
                control.answer(self.run_dir, request_id, True, f"stopped {self.run_name}" + "".join(f"\n  {line}" for line in stopped))
            elif action == "restart":
                name = str(args.get("name"))
                ok = self.restart(name).result()
                st = self.instance(name)
                control.answer(self.run_dir, request_id, ok, f"{st.name}: {st.state}" + (f" ({st.reason})" if st.reason else ""))
            elif action == "restart_pair":
                ok = self.restart_pair(str(args.get("prefiller")), str(args.get("decoder"))).result()
                control.answer(self.run_dir, request_id, ok, "pair restarted" if ok else "pair restart failed")
            else:
                control.answer(self.run_dir, request_id, False, f"unknown action {action!r}")
        except PreflightError as exc:
            control.answer(self.run_dir, request_id, False, "refused, nothing was stopped: " + "; ".join(exc.problems))
        except Exception as exc:
            control.answer(self.run_dir, request_id, False, str(exc))
