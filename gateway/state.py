"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from aiohttp import web

from .billing.budgets import Budgets
from .billing.tally import Tally
from .cache.final_answers import FinalAnswerCache
from .cache.recordings import CreateRecordings
from .cache.run_inputs import RunInputCache
from .config import Settings
from .keys.keyring import KeyRing
from .keys.ownership import OwnershipRecorder
from .ops.metrics import Metrics
from .storage.health import StorageHealth
from .storage.protocols import Storage
from .upstream.answers import Answer
from .upstream.client import UpstreamClient


class LiveSettings:
    """The settings in force: those the gateway started with, and since then the reloadable
    ones of each SIGHUP (gateway/ops/reload.py). Read them at use, never keep a copy."""

    __slots__ = ("current",)

    def __init__(self, settings: Settings) -> None:
        self.current = settings


# As started. What SIGHUP may change (gateway/ops/reload_policy.py) is read from LIVE_SETTINGS.
SETTINGS = web.AppKey("settings", Settings)
LIVE_SETTINGS = web.AppKey("live_settings", LiveSettings)
KEYRING = web.AppKey("keyring", KeyRing)
STORAGE = web.AppKey("storage", Storage)
UPSTREAM = web.AppKey("upstream", UpstreamClient)
CACHE = web.AppKey("cache", RunInputCache)
FINALS = web.AppKey("finals", FinalAnswerCache)
RECORDINGS = web.AppKey("recordings", CreateRecordings)
METRICS = web.AppKey("metrics", Metrics)
OWNERSHIP = web.AppKey("ownership", OwnershipRecorder)
STORAGE_HEALTH = web.AppKey("storage_health", StorageHealth)
# Billable and saved calls counted since the last flush (gateway/billing/).
TALLY = web.AppKey("tally", Tally)
BUDGETS = web.AppKey("budgets", Budgets)
# This process, as the other replicas know it (fetch leases, shared usage).
REPLICA = web.AppKey("replica", str)
# [True] once shutdown begins (a list, so the flag can change on a frozen application)
DRAINING: web.AppKey[list[bool]] = web.AppKey("draining")
# Upstream responses being relayed to apps: closed when shutdown begins.
STREAMS: web.AppKey[set[Answer]] = web.AppKey("streams")

APP_NAME = web.RequestKey("app_name", str)
REQUEST_ID = web.RequestKey("request_id", str)
ROUTE = web.RequestKey("route", str)
# The app whose open calls count this one (keys --max-open), until it ends.
OPEN_FOR = web.RequestKey("open_for", str)
# Seconds this request spent waiting on upstream, so its overhead is the rest.
UPSTREAM_WAIT = web.RequestKey("upstream_wait", float)
