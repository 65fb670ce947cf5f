"""The report's sums and its period: table-driven, no server."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.billing.prices import price_table
from gateway.billing.report import PeriodError, UsageRow, first_day, total_row, usage_rows
from gateway.config import PricesSettings
from gateway.storage.types import CallCount

TODAY = date(2026, 3, 31)
PRICES = price_table(PricesSettings())


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("1d", date(2026, 3, 31)),
        ("30d", date(2026, 3, 2)),
        ("2w", date(2026, 3, 18)),
        ("2026-01-05", date(2026, 1, 5)),
    ],
)
def test_first_day(text: str, day: date) -> None:
    assert first_day(text, TODAY) == day


@pytest.mark.parametrize("text", ["0d", "30", "d", "-1d", "2026-1-5", "2026-02-30", "20260105"])
def test_a_bad_first_day_is_refused(text: str) -> None:
    with pytest.raises(PeriodError) as raised:
        first_day(text, TODAY)
    assert str(raised.value) == (
        f"{text!r} is not a date (YYYY-MM-DD) or a number of days or weeks (30d, 4w)."
    )


def test_a_row_with_priced_and_unpriced_calls_estimates_the_priced_ones() -> None:
    counts = [
        CallCount("a", "2026-03-01", "task_run", "core", 2, 1),
        CallCount("a", "2026-03-02", "task_run", "core", 1, 0),
        CallCount("a", "2026-03-02", "task_run", "mega", 4, 0),
        CallCount("a", "2026-03-02", "monitor", None, 1, 0),
    ]
    rows = usage_rows(counts, PRICES, "app")
    assert rows == [UsageRow(None, "a", None, None, 8, 0.075, 1, 0.025, 5)]
    only_unpriced = usage_rows(counts[2:], PRICES, None)
    assert only_unpriced == [
        UsageRow(None, "a", "monitor", None, 1, None, 0, None, 1),
        UsageRow(None, "a", "task_run", "mega", 4, None, 0, None, 4),
    ]
    assert total_row(only_unpriced) == UsageRow(None, None, None, None, 5, None, 0, None, 5)
    assert total_row([]) == UsageRow(None, None, None, None, 0, None, 0, None, 0)
