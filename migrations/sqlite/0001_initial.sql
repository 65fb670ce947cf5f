-- Run inputs: the body exactly as upstream sent it. A run's input never changes, so no TTL.
CREATE TABLE run_inputs (
    run_id    TEXT PRIMARY KEY,
    body      BLOB NOT NULL,
    size      INTEGER NOT NULL,
    stored_at TEXT NOT NULL  -- RFC 3339, UTC
);

-- App keys: only a SHA-256 of each key is kept, never the key itself.
CREATE TABLE app_keys (
    name         TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
