-- Billable calls each app made upstream, and calls the cache saved it, per UTC day, kind
-- ("task_run", "group_run", "search", ...) and processor ('' where a kind has none): aggregates,
-- added to in batches (gateway/billing/). Not the rate-limit figures of replica_usage.
CREATE TABLE billing_calls (
    app         TEXT NOT NULL,
    day         TEXT NOT NULL,  -- YYYY-MM-DD, UTC
    kind        TEXT NOT NULL,
    processor   TEXT NOT NULL,
    calls       INTEGER NOT NULL,
    saved_calls INTEGER NOT NULL,
    PRIMARY KEY (app, day, kind, processor)
) WITHOUT ROWID;

-- Per-app budget (`keys create/update --budget USD --per day|week|month`): a cap on the app's
-- estimated spend per UTC period; NULL for none.
ALTER TABLE app_keys ADD COLUMN budget_usd REAL;
ALTER TABLE app_keys ADD COLUMN budget_per TEXT CHECK (budget_per IN ('day', 'week', 'month'));
