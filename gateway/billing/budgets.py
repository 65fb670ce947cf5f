"""Budgets: a cap on an app's estimated spend per UTC day, week or month, checked before a
billable call goes upstream. The spend is the store's (re-read every billing.flush_interval)
plus this process's counts not yet flushed and the calls it has in flight."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

from ..errors import BudgetExceededError
from ..storage.protocols import AppKeys, BillingCalls
from ..storage.types import CallCount
from .calls import calls_made
from .periods import Budget, period_end, period_start
from .prices import PriceTable, estimate, price_of
from .tally import Tally


def spend_of(counts: list[CallCount], prices: PriceTable) -> float:
    """Estimated USD of the calls counted; calls no price covers add nothing."""
    return sum(estimate(prices, c.kind, c.processor, c.calls) or 0.0 for c in counts)


def budgets_of(apps: list[tuple[str, float | None, str | None]]) -> dict[str, Budget]:
    """The apps with a budget, from (name, budget_usd, budget_per). Pure."""
    return {name: Budget(usd, per) for name, usd, per in apps if usd is not None and per}


class Budgets:
    """The budgeted apps, their spend, and the check before each billable call."""

    def __init__(
        self,
        tally: Tally,
        store: BillingCalls,
        keys: AppKeys,
        prices: PriceTable,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tally = tally
        self._store = store
        self._keys = keys
        self._prices = prices
        self._clock = clock
        self._caps: dict[str, Budget] = {}
        self._stored: dict[str, tuple[date, float]] = {}  # app: (period start, spend stored)
        # Per app: how many billable calls are in flight, and their estimated cost.
        self._held: dict[str, tuple[int, float]] = {}

    def today(self) -> date:
        return datetime.fromtimestamp(self._clock(), UTC).date()

    async def refresh(self) -> None:
        """Re-read the budgets and each budgeted app's spend in its current period."""
        apps = await self._keys.list_apps()
        caps = budgets_of([(a.name, a.budget_usd, a.budget_per) for a in apps])
        today = self.today()
        stored: dict[str, tuple[date, float]] = {}
        for app, budget in caps.items():
            start = period_start(budget.per, today)
            counts = await self._store.counts(start.isoformat(), today.isoformat(), app)
            stored[app] = (start, spend_of(counts, self._prices))
        self._caps, self._stored = caps, stored

    def capped(self, app: str) -> bool:
        return app in self._caps

    def spent(self, app: str, start: date) -> float:
        """`app`'s estimated spend since `start`: stored, unflushed (being flushed included),
        and in flight."""
        stored_start, stored = self._stored.get(app, (start, 0.0))
        if stored_start != start:
            stored = 0.0  # read in an earlier period: the new one starts at nothing
        prices = self._prices
        unflushed = sum(
            (price_of(prices, kind, processor) or 0.0) * n
            for (owner, kind, processor), n in self._tally.calls.items()
            if owner == app
        )
        flushing = spend_of([c for c in self._tally.flushing if c.app == app], prices)
        return stored + unflushed + flushing + self._held.get(app, (0, 0.0))[1]

    @contextmanager
    def hold(self, app: str, kind: str, asked: bytes | None) -> Iterator[None]:
        """Admit a billable call of `kind` (its request body `asked`, when read) while it is in
        flight, or raise BudgetExceededError (402) if it would take `app` past its budget."""
        budget = self._caps.get(app)
        if budget is None:
            yield
            return
        made = calls_made(kind, asked, b"")
        cost = sum((price_of(self._prices, kind, p) or 0.0) * n for p, n in made.items())
        today = self.today()
        spent = self.spent(app, period_start(budget.per, today))
        # A call of unknown cost (no price, or a body not read) is refused once the cap is met.
        if spent >= budget.usd or spent + cost > budget.usd:
            resets = period_end(budget.per, today).isoformat()
            raise BudgetExceededError(
                f"Budget exceeded: app {app!r} may spend {budget.usd:g} USD per {budget.per} "
                f"(estimated; spent {spent:.4f} USD, this call {cost:.4f} USD). The budget "
                f"resets at {resets}T00:00:00Z."
            )
        calls, held = self._held.get(app, (0, 0.0))
        self._held[app] = (calls + 1, held + cost)
        try:
            yield
        finally:
            calls, held = self._held[app]
            if calls > 1:
                self._held[app] = (calls - 1, held - cost)
            else:
                del self._held[app]  # the last in flight: no rounding left behind
