-- Purges made by the CLI, so that running gateways drop those runs from memory too.
-- run_ids is a JSON array of the run ids purged, or NULL when the whole cache was emptied.
CREATE TABLE cache_purges (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_ids   TEXT,
    purged_at TEXT NOT NULL  -- RFC 3339, UTC
);
