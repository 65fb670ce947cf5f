"""The storage contract, run against a real PostgreSQL server (one database per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql

from gateway.config import StorageSettings
from gateway.storage.postgres import open_postgres
from gateway.storage.protocols import Storage
from tests.storage.app_keys_contract import AppKeysContract
from tests.storage.billing_calls_contract import BillingCallsContract
from tests.storage.final_answers_contract import FinalAnswersContract
from tests.storage.recordings_contract import RecordingsContract
from tests.storage.run_access_contract import RunAccessContract
from tests.storage.run_inputs_contract import PurgesContract, RunInputsContract
from tests.storage.status_contract import StorageStatusContract


@pytest.fixture
def storage(postgres_storage: Storage) -> Storage:
    return postgres_storage


@pytest.fixture
async def unwritable_storage(postgres_url: str) -> AsyncIterator[Storage]:
    """A migrated database whose sessions may only read (default_transaction_read_only)."""
    await (await open_postgres(StorageSettings(database=postgres_url))).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
                sql.Identifier(name)
            )
        )
    opened = await open_postgres(StorageSettings(database=postgres_url))
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
