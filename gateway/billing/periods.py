"""Budget periods: UTC days, ISO weeks (from Monday) and calendar months. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

PERIODS = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class Budget:
    usd: float
    per: str  # one of PERIODS


def period_start(per: str, day: date) -> date:
    """The first day of the UTC period holding `day`: itself, its week's Monday, its month's 1st."""
    if per == "day":
        return day
    if per == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_end(per: str, day: date) -> date:
    """The first day of the next period: when a budget resets."""
    if per == "day":
        return day + timedelta(days=1)
    if per == "week":
        return period_start(per, day) + timedelta(days=7)
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)
