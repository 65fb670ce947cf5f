-- Per-key route allowlists: a JSON array of "METHOD /path/pattern", or NULL for every route.
ALTER TABLE app_keys ADD COLUMN allow TEXT;

-- Which app may read which run or task group under [isolation] mode = "app": the app that
-- created it through the gateway, and any app granted it with `parallel-gateway runs grant`.
CREATE TABLE run_access (
    id  TEXT NOT NULL,  -- a run id or a task group id
    app TEXT NOT NULL,
    how TEXT NOT NULL CHECK (how IN ('created', 'granted')),
    at  TEXT NOT NULL,  -- RFC 3339, UTC
    PRIMARY KEY (id, app)
) WITHOUT ROWID;
