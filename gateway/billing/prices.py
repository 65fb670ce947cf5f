"""What calls are estimated to cost: count x price, from the [prices] table. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..config import PricesSettings
from .calls import EXTRACT, FINDALL, FREE_KINDS, GROUP_RUN, SEARCH, TASK_RUN

PriceTable = Mapping[str, float]  # [prices] key -> USD per call
FAST = "-fast"  # a fast processor costs what its standard one does (Parallel's pricing page)


def price_table(prices: PricesSettings) -> PriceTable:
    return dataclasses.asdict(prices)


def price_of(table: PriceTable, kind: str, processor: str | None) -> float | None:
    """USD per call of `kind` on `processor`; None where no price is known (an unknown
    processor, a monitor: Parallel bills its executions, which the gateway never sees)."""
    if kind in FREE_KINDS:
        return 0.0
    if kind in (TASK_RUN, GROUP_RUN):  # a group's runs are priced as task runs
        key = None if processor is None else f"task_{processor.removesuffix(FAST)}"
    elif kind == FINDALL:
        key = None if processor is None else f"findall_{processor}"
    elif kind in (SEARCH, EXTRACT):
        key = kind
    else:
        key = None
    return None if key is None else table.get(key)


def estimate(table: PriceTable, kind: str, processor: str | None, calls: int) -> float | None:
    """Estimated USD of `calls` calls, rounded to a millionth; None where no price is known."""
    price = price_of(table, kind, processor)
    return None if price is None else round(calls * price, 6)
