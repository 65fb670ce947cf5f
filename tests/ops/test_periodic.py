"""Background chores: stopped between rounds, or, when asked, after the round under way."""

from __future__ import annotations

import asyncio

from gateway.ops.periodic import Periodic
from tests.conftest import eventually


class Chore:
    """A chore that starts, waits for `go`, then finishes; it counts both."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.started = 0
        self.finished = 0

    async def __call__(self) -> None:
        self.started += 1
        await self.go.wait()
        self.finished += 1


async def test_a_stop_that_lets_the_chore_finish_waits_for_the_round_under_way() -> None:
    """billing.flush writes counts it took from memory: cut off midway, they were lost."""
    chore = Chore()
    periodic = Periodic("billing.flush", 0.001, chore)
    periodic.start()
    await eventually(lambda: chore.started == 1)
    stopping = asyncio.create_task(periodic.stop(let_finish=True))
    await asyncio.sleep(0.01)
    assert not stopping.done()
    chore.go.set()
    await asyncio.wait_for(stopping, 2)
    assert (chore.started, chore.finished) == (1, 1)  # finished, and no round after it


async def test_a_stop_between_rounds_runs_no_more() -> None:
    chore = Chore()
    chore.go.set()
    periodic = Periodic("billing.flush", 60.0, chore)
    periodic.start()
    await asyncio.sleep(0)
    await asyncio.wait_for(periodic.stop(let_finish=True), 2)  # waiting: cancelled at once
    assert (chore.started, chore.finished) == (0, 0)


async def test_a_plain_stop_cuts_the_round_under_way() -> None:
    chore = Chore()
    periodic = Periodic("keys.refresh", 0.001, chore)
    periodic.start()
    await eventually(lambda: chore.started == 1)
    await asyncio.wait_for(periodic.stop(), 2)
    assert (chore.started, chore.finished) == (1, 0)
