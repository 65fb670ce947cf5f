"""What every backend's AppKeys must do; a backend's test module subclasses this with a
`storage` fixture. Only the protocol is spoken here."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from gateway.storage.protocols import Storage
from gateway.storage.types import AppKey, Deleted, KeyChanges, KeyState, NewKey, ReplayMode

T0 = "2026-01-02T03:00:00.000000Z"
T1 = "2026-01-02T04:00:00.000000Z"
T2 = "2026-01-02T05:00:00.000000Z"


def seconds(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()


def new_key(
    name: str,
    key_hash: str = "",
    *,
    allow: list[str] | None = None,
    rate: float | None = None,
    burst: int | None = None,
    expires_at: str | None = None,
    max_open: int | None = None,
) -> NewKey:
    """App `name`'s key (hash `hash-NAME` unless given), made at T0."""
    return NewKey(
        name,
        key_hash or f"hash-{name}",
        f"pgw_{name[:8]}",
        T0,
        allow,
        rate,
        burst,
        expires_at,
        max_open,
    )


class AppKeysContract:
    async def test_a_created_app_is_found_with_every_field(self, storage: Storage) -> None:
        keys = storage.app_keys
        assert await keys.get("billing") is None
        created = await keys.create(
            new_key(
                "billing",
                allow=["GET /v1/tasks/runs/*"],
                rate=2.5,
                burst=5,
                expires_at=T2,
                max_open=3,
            )
        )
        assert created is True
        assert await keys.get("billing") == AppKey(
            "billing", "pgw_billing", T0, None, None, ["GET /v1/tasks/runs/*"], 2.5, 5, T2, 3
        )

    async def test_a_budget_is_stored_changed_and_removed(self, storage: Storage) -> None:
        keys = storage.app_keys
        budgeted = NewKey("capped", "h-capped", "pgw_capped", T0, budget_usd=1.5, budget_per="week")
        await keys.create(budgeted)
        found = await keys.get("capped")
        assert found is not None
        assert (found.budget_usd, found.budget_per) == (1.5, "week")
        await keys.update("capped", KeyChanges(budget_usd=0.0, budget_per="day"))
        found = await keys.get("capped")
        assert found is not None
        assert (found.budget_usd, found.budget_per, found.max_open) == (0.0, "day", None)
        await keys.update("capped", KeyChanges(budget_usd=None, budget_per=None))
        assert await keys.get("capped") == AppKey("capped", "pgw_capped", T0, None, None)

    async def test_a_taken_name_is_refused_and_the_first_key_kept(self, storage: Storage) -> None:
        keys = storage.app_keys
        assert await keys.create(new_key("app", "first-hash")) is True
        assert await keys.create(new_key("app", "second-hash", max_open=9)) is False
        assert await keys.key_states() == {"first-hash": KeyState("app", False, None)}
        assert [a.max_open for a in await keys.list_apps()] == [None]

    async def test_apps_are_listed_by_name(self, storage: Storage) -> None:
        for name in ("zeta", "alpha", "mid"):
            await storage.app_keys.create(new_key(name))
        assert [a.name for a in await storage.app_keys.list_apps()] == ["alpha", "mid", "zeta"]

    async def test_update_sets_what_it_names_and_keeps_the_rest(self, storage: Storage) -> None:
        keys = storage.app_keys
        await keys.create(new_key("app", allow=["GET /v1/**"], rate=1.0, burst=2, max_open=4))

        await keys.update("app", KeyChanges(allow=["POST /v1/tasks/runs"], expires_at=T1))
        assert await keys.get("app") == AppKey(
            "app", "pgw_app", T0, None, None, ["POST /v1/tasks/runs"], 1.0, 2, T1, 4
        )
        await keys.update("app", KeyChanges(allow=None, rate=None, burst=None, max_open=None))
        assert await keys.get("app") == AppKey(
            "app", "pgw_app", T0, None, None, None, None, None, T1
        )

    async def test_the_replay_mode_is_off_unless_set_and_kept_by_other_changes(
        self, storage: Storage
    ) -> None:
        keys = storage.app_keys
        await keys.create(new_key("plain"))
        await keys.create(dataclasses.replace(new_key("ci"), replay=ReplayMode.REPLAY_ONLY))
        assert [(a.name, a.replay) for a in await keys.list_apps()] == [
            ("ci", ReplayMode.REPLAY_ONLY),
            ("plain", ReplayMode.OFF),
        ]
        await keys.update("plain", KeyChanges(replay=ReplayMode.RECORD))
        await keys.update("plain", KeyChanges(max_open=2))
        app = await keys.get("plain")
        assert app is not None
        assert (app.replay, app.max_open) == (ReplayMode.RECORD, 2)

    async def test_rotation_keeps_the_old_key_until_its_grace_ends(self, storage: Storage) -> None:
        keys = storage.app_keys
        await keys.create(new_key("app", "old", expires_at=T2))

        await keys.rotate("app", "new", "pgw_new00000", T1, T2)

        assert await keys.key_states() == {
            "new": KeyState("app", False, seconds(T2)),
            "old": KeyState("app", False, seconds(T2), seconds(T2)),
        }
        app = await keys.get("app")
        assert app is not None
        assert (app.prefix, app.created_at) == ("pgw_new00000", T1)

    async def test_revoking_stops_every_key_of_the_app_once(self, storage: Storage) -> None:
        keys = storage.app_keys
        await keys.create(new_key("app", "old"))
        await keys.rotate("app", "new", "pgw_new00000", T1, T2)

        assert await keys.revoke("app", T1) is True
        assert await keys.revoke("app", T2) is False

        app = await keys.get("app")
        assert app is not None
        assert app.revoked_at == T1
        assert await keys.key_states() == {
            "new": KeyState("app", True, None),
            "old": KeyState("app", True, None, seconds(T2)),
        }

    async def test_rotating_a_revoked_app_revives_it_with_its_old_keys_dead(
        self, storage: Storage
    ) -> None:
        keys = storage.app_keys
        await keys.create(new_key("app", "first"))
        await keys.rotate("app", "second", "pgw_second00", T0, T2)  # "first" in its grace
        await keys.revoke("app", T1)

        await keys.rotate("app", "third", "pgw_third000", T1, T1)

        app = await keys.get("app")
        assert app is not None
        assert app.revoked_at is None
        assert await keys.key_states() == {
            "third": KeyState("app", False, None),
            "second": KeyState("app", False, None, seconds(T1)),
            "first": KeyState("app", False, None, seconds(T1)),  # cut from T2 to T1
        }

    async def test_a_revoked_app_is_deleted_with_its_keys_and_run_records(
        self, storage: Storage
    ) -> None:
        keys = storage.app_keys
        await keys.create(new_key("gone", "gone-1"))
        await keys.rotate("gone", "gone-2", "pgw_gone2000", T1, T2)
        await keys.create(new_key("stays"))
        await storage.run_access.record_created("gone", ["trun_a", "trun_b"], T0)
        await storage.run_access.record_created("stays", ["trun_a"], T0)
        await keys.revoke("gone", T1)

        assert await keys.delete_revoked("gone") == Deleted(keys=2, runs=2)

        assert await keys.get("gone") is None
        assert set(await keys.key_states()) == {"hash-stays"}
        assert [(r.id, r.app) for r in await storage.run_access.list_records()] == [
            ("trun_a", "stays")
        ]
        assert await keys.create(new_key("gone", "gone-3")) is True  # the name is free

    async def test_a_live_app_is_not_deleted(self, storage: Storage) -> None:
        await storage.app_keys.create(new_key("live"))
        await storage.run_access.record_created("live", ["trun_a"], T0)

        assert await storage.app_keys.delete_revoked("live") == Deleted(keys=0, runs=0)

        assert await storage.app_keys.get("live") is not None
        assert await storage.run_access.may_read("live", ["trun_a"]) is True

    async def test_last_use_is_recorded_per_app(self, storage: Storage) -> None:
        keys = storage.app_keys
        for name in ("a", "b", "c"):
            await keys.create(new_key(name))
        await keys.record_last_used({"a", "c"}, T1)
        await keys.record_last_used({"c"}, T2)
        assert [(a.name, a.last_used_at) for a in await keys.list_apps()] == [
            ("a", T1),
            ("b", None),
            ("c", T2),
        ]
