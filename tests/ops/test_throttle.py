"""gateway/ops/throttle.py: one report per key per interval, with a count (a fake clock); and the
background chores whose failures it throttles."""

from __future__ import annotations

from gateway.ops.periodic import Periodic
from gateway.ops.throttle import Throttle
from gateway.storage.types import StoreError
from tests.conftest import capture_logs, eventually


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_occurrence_is_reported_then_one_report_per_interval_with_a_count() -> None:
    clock = Clock()
    throttle = Throttle(60.0, clock)

    assert throttle.count("disk-full") == 1
    assert [throttle.count("disk-full") for _ in range(14_999)] == [None] * 14_999
    clock.now += 59.9
    assert throttle.count("disk-full") is None
    clock.now += 0.1
    assert throttle.count("disk-full") == 15_001
    assert throttle.count("disk-full") is None


def test_each_key_has_its_own_interval() -> None:
    clock = Clock()
    throttle = Throttle(10.0, clock)
    assert throttle.count("io") == 1
    assert throttle.count("corrupt") == 1
    assert throttle.count("io") is None
    clock.now += 10
    assert throttle.count("io") == 2
    assert throttle.count("corrupt") == 1


def test_after_a_quiet_interval_the_next_occurrence_is_reported_alone() -> None:
    clock = Clock()
    throttle = Throttle(5.0, clock)
    assert throttle.count("k") == 1
    clock.now += 3600
    assert throttle.count("k") == 1


async def test_a_chore_failing_every_round_is_logged_once_with_its_traceback() -> None:
    rounds = 0

    async def chore() -> None:
        nonlocal rounds
        rounds += 1
        raise StoreError("disk-full", "database or disk is full")

    periodic = Periodic("keys.refresh", 0.001, chore)
    with capture_logs() as logs:
        periodic.start()
        await eventually(lambda: rounds >= 20)
        await periodic.stop()

    assert [(line["event"], line["chore"], line["count"]) for line in logs] == [
        ("periodic.failed", "keys.refresh", 1)
    ]
    assert logs[0]["exc_info"] is True
