-- Record and replay of creates (keys create/update --replay MODE): each key's replay mode, and
-- the creates recorded: a hash of the canonical body (MCP header values replaced) and the
-- parallel-beta set, each field's hash (a JSON object, path -> hash), and the run it made.
-- Never a body or a header value. Several runs may be recorded for one match.
ALTER TABLE app_keys ADD COLUMN replay text COLLATE "C" NOT NULL DEFAULT 'off'
    CHECK (replay IN ('off', 'record', 'replay', 'replay-only'));

-- Replicas hear of a changed replay mode as of any other key change.
DROP TRIGGER app_keys_changed ON app_keys;
CREATE TRIGGER app_keys_changed
    AFTER INSERT OR DELETE OR UPDATE OF key_hash, prefix, created_at, revoked_at, allow, rate,
        burst, expires_at, max_open, replay
    ON app_keys FOR EACH STATEMENT EXECUTE FUNCTION parallel_gateway_notify();

CREATE TABLE create_recordings (
    app         text COLLATE "C" NOT NULL,
    match_hash  text COLLATE "C" NOT NULL,
    fields      text NOT NULL,
    run_id      text COLLATE "C" NOT NULL,
    recorded_at text COLLATE "C" NOT NULL,
    PRIMARY KEY (app, match_hash, run_id)
);
CREATE INDEX create_recordings_by_match ON create_recordings (match_hash);
CREATE INDEX create_recordings_by_run ON create_recordings (run_id);
