"""What every backend's Recordings must do, and what a purge does to them; a backend's test
module subclasses this with a `storage` fixture. Only the protocols are spoken here."""

from __future__ import annotations

from gateway.storage.protocols import Storage
from gateway.storage.types import Recording, StoredInput

AT = "2026-01-02T03:04:05.000006Z"
LATER = "2026-01-02T03:04:06.000000Z"
LATEST = "2026-01-02T03:04:07.000000Z"
MATCH = "a" * 64
OTHER = "b" * 64
FIELDS = {"input": "0123456789abcdef", "processor": "fedcba9876543210"}


def recording(
    run_id: str,
    app: str = "ci",
    match: str = MATCH,
    at: str = AT,
    fields: dict[str, str] | None = None,
) -> Recording:
    return Recording(app, match, FIELDS if fields is None else fields, run_id, at)


class RecordingsContract:
    async def test_a_match_with_no_recording_is_empty(self, storage: Storage) -> None:
        assert await storage.recordings.matching(MATCH) == []
        assert await storage.recordings.list_recordings() == []

    async def test_recordings_of_a_match_come_back_newest_first_with_their_fields(
        self, storage: Storage
    ) -> None:
        fields = {"input": "1" * 16, "task_spec.output_schema": "2" * 16, "parallel-beta": "3" * 16}
        await storage.recordings.put(recording("trun_old", at=AT, fields=fields))
        await storage.recordings.put(recording("trun_new", at=LATER))
        await storage.recordings.put(recording("trun_else", match=OTHER, at=LATEST))
        assert await storage.recordings.matching(MATCH) == [
            recording("trun_new", at=LATER),
            recording("trun_old", at=AT, fields=fields),
        ]

    async def test_a_second_put_of_one_recording_changes_nothing(self, storage: Storage) -> None:
        await storage.recordings.put(recording("trun_once", at=AT))
        await storage.recordings.put(recording("trun_once", at=LATER, fields={"input": "x"}))
        assert await storage.recordings.list_recordings() == [recording("trun_once", at=AT)]

    async def test_an_app_sees_only_its_own_when_asked(self, storage: Storage) -> None:
        await storage.recordings.put(recording("trun_ci", app="ci", at=AT))
        await storage.recordings.put(recording("trun_web", app="web", at=LATER))
        assert await storage.recordings.matching(MATCH, "ci") == [recording("trun_ci", "ci")]
        assert [r.run_id for r in await storage.recordings.matching(MATCH)] == [
            "trun_web",
            "trun_ci",
        ]
        assert await storage.recordings.list_recordings("web") == [
            recording("trun_web", "web", at=LATER)
        ]

    async def test_listing_is_newest_first_and_limited(self, storage: Storage) -> None:
        for run_id, at in (("trun_1", AT), ("trun_3", LATEST), ("trun_2", LATER)):
            await storage.recordings.put(recording(run_id, match=run_id.ljust(64, "0"), at=at))
        listed = await storage.recordings.list_recordings(limit=2)
        assert [r.run_id for r in listed] == ["trun_3", "trun_2"]
        assert len(await storage.recordings.list_recordings()) == 3

    async def test_a_purge_of_runs_takes_their_recordings(self, storage: Storage) -> None:
        await storage.run_inputs.put(StoredInput("trun_input", b"{}", AT))
        for run_id in ("trun_input", "trun_recorded", "trun_kept"):
            await storage.recordings.put(recording(run_id))
        # A run of which only a recording is stored counts as purged.
        assert await storage.recordings.has_run("trun_recorded")
        assert await storage.purges.purge(["trun_input", "trun_recorded", "trun_never"]) == 2
        assert await storage.recordings.list_recordings() == [recording("trun_kept")]
        assert not await storage.recordings.has_run("trun_recorded")
        assert await storage.recordings.has_run("trun_kept")

    async def test_a_purge_of_all_takes_every_recording(self, storage: Storage) -> None:
        await storage.recordings.put(recording("trun_a", app="ci"))
        await storage.recordings.put(recording("trun_b", app="web"))
        assert await storage.purges.purge(None) == 2
        assert await storage.recordings.list_recordings() == []
