"""The simulated engine's short costs, its event loop, its token-id packing."""

from __future__ import annotations

import asyncio

import pytest

from pdtui.sim import engine, runner, tokenizer

uvloop = pytest.importorskip("uvloop")


@pytest.mark.parametrize(("cost", "waited"), [(0.00009, 0.001), (0.0004, 0.001), (0.0015, 0.0015),
                                               (0.0, 0), (0.008, 0.008)])
def test_a_short_simulated_cost_waits_the_timer_grain(monkeypatch, cost, waited):
    """A sub-millisecond cost waits 1 ms on any loop: what the standard loop's epoll made of
    it before the simulator ran on uvloop (which would round it to nothing)."""
    asked = []

    async def fake_sleep(seconds):
        asked.append(seconds)

    monkeypatch.setattr(engine.asyncio, "sleep", fake_sleep)
    asyncio.run(engine._sleep(cost))
    assert asked == [waited]


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
