-- Billable calls each app made upstream, and calls the cache saved it, per UTC day, kind
-- ("task_run", "group_run", "search", ...) and processor ('' where a kind has none): aggregates,
-- added to in batches (gateway/billing/), each batch in key order so that replicas never
-- deadlock. Not the rate-limit figures of replica_usage.
CREATE TABLE billing_calls (
    app         text COLLATE "C" NOT NULL,
    day         text COLLATE "C" NOT NULL,  -- YYYY-MM-DD, UTC
    kind        text COLLATE "C" NOT NULL,
    processor   text COLLATE "C" NOT NULL,
    calls       bigint NOT NULL,
    saved_calls bigint NOT NULL,
    PRIMARY KEY (app, day, kind, processor)
);

-- Per-app budget (`keys create/update --budget USD --per day|week|month`): a cap on the app's
-- estimated spend per UTC period; NULL for none. Replicas read it with the spend, every
-- billing.flush_interval.
ALTER TABLE app_keys ADD COLUMN budget_usd double precision;
ALTER TABLE app_keys ADD COLUMN budget_per text COLLATE "C"
    CHECK (budget_per IN ('day', 'week', 'month'));
