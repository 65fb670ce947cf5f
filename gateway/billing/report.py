"""The usage report: stored counts summed into rows by app, day or processor, with their
estimated cost. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from ..storage.types import CallCount
from .prices import PriceTable, estimate

BY = ("day", "app", "processor")
DAYS_BACK = re.compile(r"([1-9][0-9]{0,4})([dw])")
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class PeriodError(ValueError):
    """A --since or --until that is neither a date nor a count of days or weeks."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One line of the report: None in a column the rows are not split by (`day` unless by
    day, `kind` and `processor` by app, `app` by processor; `processor` where a kind has
    none). The costs are estimates: None where no call in the row has a price."""

    day: str | None
    app: str | None
    kind: str | None
    processor: str | None
    calls: int
    estimated_usd: float | None
    saved_calls: int
    saved_usd: float | None
    unpriced_calls: int  # calls in `calls` that no price covers, so not in estimated_usd


def first_day(text: str, today: date) -> date:
    """`--since`: a date (YYYY-MM-DD), or the last N days (Nd) or weeks (Nw), today included."""
    back = DAYS_BACK.fullmatch(text)
    if back is not None:
        days = int(back[1]) * (7 if back[2] == "w" else 1)
        return today - timedelta(days=days - 1)
    return day_of(text)


def day_of(text: str) -> date:
    """A date given as YYYY-MM-DD."""
    try:
        if ISO_DAY.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise PeriodError(
        f"{text!r} is not a date (YYYY-MM-DD) or a number of days or weeks (30d, 4w)."
    )


def usage_rows(counts: Iterable[CallCount], prices: PriceTable, by: str | None) -> list[UsageRow]:
    """The counts summed per app, kind and processor (`by` day: per day too; `by` app: per app
    alone; `by` processor: per kind and processor, every app's together), in that order."""
    sums: dict[tuple[str | None, str | None, str | None, str | None], _Sum] = {}
    for c in counts:
        usd = estimate(prices, c.kind, c.processor, c.calls)
        saved_usd = estimate(prices, c.kind, c.processor, c.saved_calls)
        unpriced = c.calls if usd is None else 0
        sums.setdefault(_key(c, by), _Sum()).add(c.calls, usd, c.saved_calls, saved_usd, unpriced)
    ordered = sorted(sums.items(), key=lambda item: tuple(part or "" for part in item[0]))
    return [total.row(*key) for key, total in ordered]


def total_row(rows: Iterable[UsageRow]) -> UsageRow:
    """Every row summed: the report's last line."""
    total = _Sum()
    for r in rows:
        total.add(r.calls, r.estimated_usd, r.saved_calls, r.saved_usd, r.unpriced_calls)
    return total.row(None, None, None, None)


def _key(c: CallCount, by: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    if by == "day":
        return (c.day, c.app, c.kind, c.processor)
    if by == "app":
        return (None, c.app, None, None)
    if by == "processor":
        return (None, None, c.kind, c.processor)
    return (None, c.app, c.kind, c.processor)


class _Sum:
    """A row's figures as parts are added; a cost stays None until a priced part comes."""

    __slots__ = ("calls", "saved_calls", "saved_usd", "unpriced", "usd")

    def __init__(self) -> None:
        self.calls = self.saved_calls = self.unpriced = 0
        self.usd: float | None = None
        self.saved_usd: float | None = None

    def add(
        self,
        calls: int,
        usd: float | None,
        saved_calls: int,
        saved_usd: float | None,
        unpriced: int,
    ) -> None:
        self.calls += calls
        self.saved_calls += saved_calls
        self.unpriced += unpriced
        if usd is not None:
            self.usd = round((self.usd or 0.0) + usd, 6)
        if saved_usd is not None:
            self.saved_usd = round((self.saved_usd or 0.0) + saved_usd, 6)

    def row(
        self, day: str | None, app: str | None, kind: str | None, processor: str | None
    ) -> UsageRow:
        return UsageRow(
            day,
            app,
            kind,
            processor,
            self.calls,
            self.usd,
            self.saved_calls,
            self.saved_usd,
            self.unpriced,
        )
