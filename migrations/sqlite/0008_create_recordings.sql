-- Record and replay of creates (keys create/update --replay MODE): each key's replay mode, and
-- the creates recorded: a hash of the canonical body (MCP header values replaced) and the
-- parallel-beta set, each field's hash (a JSON object, path -> hash), and the run it made.
-- Never a body or a header value. Several runs may be recorded for one match.
ALTER TABLE app_keys ADD COLUMN replay TEXT NOT NULL DEFAULT 'off'
    CHECK (replay IN ('off', 'record', 'replay', 'replay-only'));

CREATE TABLE create_recordings (
    app         TEXT NOT NULL,
    match_hash  TEXT NOT NULL,
    fields      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    recorded_at TEXT NOT NULL,  -- RFC 3339, UTC
    PRIMARY KEY (app, match_hash, run_id)
) WITHOUT ROWID;
CREATE INDEX create_recordings_by_match ON create_recordings (match_hash);
CREATE INDEX create_recordings_by_run ON create_recordings (run_id);
