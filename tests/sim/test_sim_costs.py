"""The simulated engine's short costs and its event loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from pdtui.sim import engine, runner, tokenizer

uvloop = pytest.importorskip("uvloop")


@pytest.mark.parametrize("loop_factory", [None, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
@pytest.mark.parametrize("seconds", [0.00009, 0.0004, 0.0015])
def test_a_simulated_cost_never_ends_early(loop_factory, seconds):
    """A sub-millisecond cost (a KV copy from the PD buffer) used to go through the loop's
    millisecond timer: uvloop rounds 0.09 ms to nothing. Only a lower bound is checked (a
    busy machine may make it later, never earlier)."""
    async def timed() -> float:
        t0 = time.monotonic()
        await engine._sleep(seconds)
        return time.monotonic() - t0

    with asyncio.Runner(loop_factory=loop_factory) as r:
        assert all(r.run(timed()) >= seconds for _ in range(20))


def test_the_api_server_runs_on_uvloop_unless_asked_not_to(monkeypatch):
    monkeypatch.delenv("PDTUI_SIM_LOOP", raising=False)
    assert runner._loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv("PDTUI_SIM_LOOP", "asyncio")
    assert runner._loop_factory() is None


def test_token_ids_pack_as_before():
    ids = [0, 1, 2**32 - 1, 12345]
    assert tokenizer.le_u32(ids) == b"".join(int(t).to_bytes(4, "little") for t in ids)
    with pytest.raises(OverflowError):  # what int.to_bytes raised for an id out of range
        tokenizer.le_u32([-1])
