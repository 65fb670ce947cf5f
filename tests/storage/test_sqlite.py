"""The storage contract, run against SQLite files in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import StorageSettings
from gateway.storage.open import open_storage
from gateway.storage.protocols import Storage
from tests.storage.app_keys_contract import AppKeysContract
from tests.storage.billing_calls_contract import BillingCallsContract
from tests.storage.final_answers_contract import FinalAnswersContract
from tests.storage.recordings_contract import RecordingsContract
from tests.storage.run_access_contract import RunAccessContract
from tests.storage.run_inputs_contract import PurgesContract, RunInputsContract
from tests.storage.status_contract import StorageStatusContract
from tests.storage.test_storage_faults import immutable


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await open_storage(StorageSettings(database=str(tmp_path / "gw.db")))
    yield opened
    await opened.close()


@pytest.fixture
async def unwritable_storage(tmp_path: Path) -> AsyncIterator[Storage]:
    """A migrated database file that even root cannot write (chattr +i)."""
    settings = StorageSettings(database=str(tmp_path / "gw.db"))
    await (await open_storage(settings)).close()
    with immutable(Path(settings.database)):
        opened = await open_storage(settings)
        yield opened
        await opened.close()


class TestRunInputs(RunInputsContract):
    pass


class TestFinalAnswers(FinalAnswersContract):
    pass


class TestPurges(PurgesContract):
    pass


class TestRecordings(RecordingsContract):
    pass


class TestAppKeys(AppKeysContract):
    pass


class TestRunAccess(RunAccessContract):
    pass


class TestStorageStatus(StorageStatusContract):
    pass


class TestBillingCalls(BillingCallsContract):
    pass
