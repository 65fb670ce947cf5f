"""The price table: which [prices] key prices which call, and count x price. No server."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.billing.calls import (
    EXTRACT,
    FINDALL,
    GROUP_RUN,
    MONITOR,
    RUN_INPUT,
    RUN_OBJECT,
    RUN_RESULT,
    SEARCH,
    TASK_RUN,
)
from gateway.billing.prices import estimate, price_of, price_table
from gateway.config import ConfigError, PricesSettings, settings_from_dict

DEFAULTS = price_table(PricesSettings())


@pytest.mark.parametrize(
    ("kind", "processor", "price"),
    [
        (TASK_RUN, "lite", 0.005),
        (TASK_RUN, "base", 0.01),
        (TASK_RUN, "core", 0.025),
        (TASK_RUN, "core2x", 0.05),
        (TASK_RUN, "pro", 0.1),
        (TASK_RUN, "ultra", 0.3),
        (TASK_RUN, "ultra8x", 2.4),
        (TASK_RUN, "pro-fast", 0.1),  # fast costs what standard does
        (GROUP_RUN, "core-fast", 0.025),  # a group's runs are task runs
        (SEARCH, None, 0.005),
        (EXTRACT, None, 0.001),
        (FINDALL, "preview", 0.1),
        (FINDALL, "pro", 10.0),
        (RUN_INPUT, None, 0.0),  # reads are free upstream
        (RUN_RESULT, None, 0.0),
        (RUN_OBJECT, None, 0.0),
        # Unknown: counted, never priced by a guess.
        (TASK_RUN, "mega", None),
        (TASK_RUN, None, None),
        (TASK_RUN, "-fast", None),
        (FINDALL, None, None),
        (MONITOR, None, None),
        ("nothing-known", None, None),
    ],
)
def test_price_of(kind: str, processor: str | None, price: float | None) -> None:
    assert price_of(DEFAULTS, kind, processor) == price


def test_an_estimate_is_count_times_price() -> None:
    assert estimate(DEFAULTS, TASK_RUN, "core", 3) == 0.075
    assert estimate(DEFAULTS, SEARCH, None, 7) == 0.035
    assert estimate(DEFAULTS, TASK_RUN, "mega", 3) is None
    assert estimate(DEFAULTS, TASK_RUN, "lite", 0) == 0.0


def test_a_team_overrides_prices_for_its_contract() -> None:
    settings = settings_from_dict({"prices": {"task_core": 0.02, "search": 0}})
    table = price_table(settings.prices)
    assert estimate(table, TASK_RUN, "core", 3) == 0.06
    assert estimate(table, SEARCH, None, 3) == 0.0
    assert settings.prices == dataclasses.replace(PricesSettings(), task_core=0.02, search=0.0)


BAD_PRICE = "Must be a finite number of USD, 0 or more."


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-0.01, f"Config 'prices.task_core' has value -0.01. {BAD_PRICE}"),
        (float("nan"), f"Config 'prices.task_core' has value nan. {BAD_PRICE}"),
        ("1", "Config 'prices.task_core' has value '1'. Not a valid float."),
    ],
)
def test_a_bad_price_is_refused_naming_it(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_from_dict({"prices": {"task_core": value}})
    assert str(raised.value) == message


def test_an_unknown_price_key_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        settings_from_dict({"prices": {"task_cor": 0.1}})
    hint = "Did you mean 'task_core'?"
    assert str(raised.value) == f"Config has unknown key 'prices.task_cor'. {hint}"
