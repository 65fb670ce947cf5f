"""App keys without a database: their shape and hash, and how a request presents one."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

import orjson
import pytest
from multidict import CIMultiDict

from gateway.errors import AuthenticationError, GatewayError
from gateway.keys.app_keys import display_prefix, generate_key, hash_key
from gateway.keys.keyring import KeyRing, _hash_recent, presented_key
from gateway.storage.types import KeyState

KEY_SHAPE = re.compile(r"pgw_[A-Za-z0-9_-]{43}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")

ACTIVE = "pgw_active0000000000000000000000000000000000000"
REVOKED = "pgw_revoked000000000000000000000000000000000000"
MISSING = "Unauthorized: missing gateway key; send it in the x-api-key header."
INVALID = "Unauthorized: invalid gateway key."
WAS_REVOKED = "Unauthorized: this gateway key has been revoked."


def test_generate_key_shape() -> None:
    for _ in range(50):
        key = generate_key()
        assert KEY_SHAPE.fullmatch(key), key
        assert len(key) == 47


def test_generated_keys_are_unique() -> None:
    assert len({generate_key() for _ in range(2000)}) == 2000


@pytest.mark.parametrize(
    ("key", "digest"),
    [
        pytest.param(
            "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", id="abc"
        ),
        pytest.param(
            "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", id="empty"
        ),
    ],
)
def test_hash_key_is_sha256_hex(key: str, digest: str) -> None:
    assert hash_key(key) == digest


def test_hash_of_a_generated_key() -> None:
    key = generate_key()
    hashed = hash_key(key)
    assert SHA256_HEX.fullmatch(hashed)
    assert hashed == hashlib.sha256(key.encode()).hexdigest()
    assert hashed != key
    assert key not in hashed
    assert hash_key(key) == hashed
    assert hash_key(generate_key()) != hashed


def test_display_prefix() -> None:
    assert display_prefix("pgw_abcdefghijklmnop") == "pgw_abcdefgh"
    key = generate_key()
    prefix = display_prefix(key)
    assert len(prefix) == 12
    assert key.startswith(prefix)
    assert prefix.startswith("pgw_")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"x-api-key": ACTIVE}, ACTIVE, id="x-api-key"),
        pytest.param(CIMultiDict({"X-API-Key": ACTIVE}), ACTIVE, id="x-api-key-any-case"),
        pytest.param({"authorization": f"Bearer {ACTIVE}"}, ACTIVE, id="bearer"),
        pytest.param({"authorization": f"bearer {ACTIVE}"}, ACTIVE, id="bearer-lower"),
        pytest.param({"authorization": f"BEARER {ACTIVE}"}, ACTIVE, id="bearer-upper"),
        pytest.param({"authorization": f"BeArEr {ACTIVE}"}, ACTIVE, id="bearer-mixed"),
        pytest.param({"authorization": f"Bearer   {ACTIVE}  "}, ACTIVE, id="bearer-spaces"),
        pytest.param(
            CIMultiDict({"Authorization": f"Bearer {ACTIVE}"}), ACTIVE, id="authorization-any-case"
        ),
        pytest.param(
            {"x-api-key": ACTIVE, "authorization": f"Bearer {REVOKED}"},
            ACTIVE,
            id="x-api-key-wins",
        ),
        pytest.param(
            {"x-api-key": "", "authorization": f"Bearer {ACTIVE}"}, ACTIVE, id="empty-x-api-key"
        ),
        pytest.param({}, None, id="no-headers"),
        pytest.param({"x-api-key": ""}, None, id="empty-x-api-key-only"),
        pytest.param({"authorization": "Basic dXNlcjpwYXNz"}, None, id="basic"),
        pytest.param({"authorization": f"Token {ACTIVE}"}, None, id="token-scheme"),
        pytest.param({"authorization": ACTIVE}, None, id="no-scheme"),
        pytest.param({"authorization": f"Bearer{ACTIVE}"}, None, id="no-space"),
        pytest.param({"authorization": "Bearer"}, None, id="bearer-alone"),
        pytest.param({"authorization": "Bearer    "}, None, id="bearer-blank"),
        pytest.param({"authorization": ""}, None, id="empty-authorization"),
    ],
)
def test_presented_key(headers: Mapping[str, str], expected: str | None) -> None:
    assert presented_key(headers) == expected


NOW = 1_800_000_000.0  # the wall clock these key rings see: 2027-01-15T08:00:00Z
EXPIRED = "pgw_expired000000000000000000000000000000000"
EXPIRING = "pgw_expiring00000000000000000000000000000000"


def keyring() -> KeyRing:
    return KeyRing(
        {
            hash_key(ACTIVE): KeyState("billing", False, None),
            hash_key(REVOKED): KeyState("old-app", True, None),
            hash_key(EXPIRED): KeyState("ci", False, NOW),  # expires the very second it is used
            hash_key(EXPIRING): KeyState("billing", False, NOW + 0.001),
        },
        wall_clock=lambda: NOW,
    )


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"x-api-key": ACTIVE}, id="x-api-key"),
        pytest.param({"authorization": f"Bearer {ACTIVE}"}, id="bearer"),
        pytest.param({"authorization": f"bearer {ACTIVE}"}, id="bearer-lower"),
        pytest.param(
            {"x-api-key": ACTIVE, "authorization": f"Bearer {REVOKED}"}, id="x-api-key-wins"
        ),
        pytest.param({"x-api-key": ACTIVE, "authorization": "Bearer nope"}, id="x-api-key-wins-2"),
        pytest.param({"x-api-key": EXPIRING}, id="not-yet-expired"),
    ],
)
def test_authenticate(headers: Mapping[str, str]) -> None:
    assert keyring().authenticate(headers) == "billing"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({}, MISSING, id="missing"),
        pytest.param({"authorization": f"Basic {ACTIVE}"}, MISSING, id="non-bearer-is-missing"),
        pytest.param({"authorization": "Bearer "}, MISSING, id="empty-bearer"),
        pytest.param({"x-api-key": "pgw_unknown0000000000000000000000000"}, INVALID, id="unknown"),
        pytest.param({"x-api-key": hash_key(ACTIVE)}, INVALID, id="hash-is-not-the-key"),
        pytest.param({"x-api-key": ACTIVE.upper()}, INVALID, id="key-is-case-sensitive"),
        pytest.param({"x-api-key": f" {ACTIVE}"}, INVALID, id="key-not-trimmed"),
        pytest.param({"x-api-key": REVOKED}, WAS_REVOKED, id="revoked"),
        pytest.param({"authorization": f"Bearer {REVOKED}"}, WAS_REVOKED, id="revoked-bearer"),
        pytest.param(
            {"x-api-key": REVOKED, "authorization": f"Bearer {ACTIVE}"},
            WAS_REVOKED,
            id="x-api-key-wins-even-when-revoked",
        ),
        pytest.param(
            {"x-api-key": EXPIRED},
            "Unauthorized: this gateway key expired at 2027-01-15T08:00:00.000000Z.",
            id="expired",
        ),
    ],
)
def test_authenticate_rejects(headers: Mapping[str, str], message: str) -> None:
    with pytest.raises(AuthenticationError) as e:
        keyring().authenticate(headers)
    assert e.value.status == 401
    assert e.value.message == message
    assert str(e.value) == message
    assert isinstance(e.value, GatewayError)
    assert orjson.loads(e.value.body()) == {
        "type": "error",
        "error": {"ref_id": e.value.ref_id, "message": message, "detail": None},
    }


def test_empty_keyring_knows_no_key() -> None:
    with pytest.raises(AuthenticationError) as e:
        KeyRing().authenticate({"x-api-key": ACTIVE})
    assert e.value.message == INVALID


def test_a_key_revoked_after_use_is_refused_though_its_hash_is_remembered() -> None:
    owners = {hash_key(ACTIVE): KeyState("billing", False, None)}
    ring = KeyRing(owners)
    assert ring.authenticate({"x-api-key": ACTIVE}) == "billing"
    owners[hash_key(ACTIVE)] = KeyState("billing", True, None)
    with pytest.raises(AuthenticationError) as e:
        ring.authenticate({"x-api-key": ACTIVE})
    assert e.value.message == WAS_REVOKED


def test_remembered_hashes_are_bounded() -> None:
    ring = keyring()
    for n in range(3000):
        with pytest.raises(AuthenticationError):
            ring.authenticate({"x-api-key": f"pgw_unknown{n:032d}"})
    assert _hash_recent.cache_info().currsize <= 1024
    assert ring.authenticate({"x-api-key": ACTIVE}) == "billing"
