-- The PostgreSQL schema, as SQLite's migrations 0001 to 0006 leave theirs. Times are RFC 3339
-- text in UTC, as in SQLite, so both backends hand domain code the same values.

-- Run inputs: the body exactly as upstream sent it (bytea keeps every byte; jsonb would not).
CREATE TABLE run_inputs (
    run_id    text COLLATE "C" PRIMARY KEY,
    body      bytea NOT NULL,
    size      integer NOT NULL,
    stored_at text COLLATE "C" NOT NULL
);

-- App keys: only a SHA-256 of each key is kept, never the key itself.
CREATE TABLE app_keys (
    name         text COLLATE "C" PRIMARY KEY,
    key_hash     text COLLATE "C" NOT NULL UNIQUE,
    prefix       text NOT NULL,
    created_at   text COLLATE "C" NOT NULL,
    last_used_at text,
    revoked_at   text,
    allow        text,              -- a JSON array of "METHOD /path/pattern"; NULL: every route
    rate         double precision,  -- requests per second; NULL: no limit
    burst        integer,
    expires_at   text,              -- NULL: never
    max_open     integer            -- calls open at once; NULL: no cap
);

-- Keys replaced by `keys rotate`: only the SHA-256 of each.
CREATE TABLE retired_keys (
    key_hash   text COLLATE "C" PRIMARY KEY,
    app        text COLLATE "C" NOT NULL,
    prefix     text NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    retires_at text NOT NULL
);
CREATE INDEX retired_keys_app ON retired_keys (app);

-- Purges made by the CLI, so that running gateways drop those runs from memory too. run_ids is
-- a JSON array of the run ids purged, or NULL when the whole cache was emptied. Replicas read
-- them by sequence number, so numbers must become visible in their order: each insert takes an
-- advisory lock, held to its commit, before it draws its number.
CREATE SEQUENCE cache_purges_seq;
CREATE TABLE cache_purges (
    seq       bigint PRIMARY KEY,
    run_ids   text,
    purged_at text NOT NULL
);
CREATE FUNCTION cache_purges_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('parallel_gateway.cache_purges'));
    NEW.seq := nextval('cache_purges_seq');
    RETURN NEW;
END
$$;
CREATE TRIGGER cache_purges_number BEFORE INSERT ON cache_purges
    FOR EACH ROW EXECUTE FUNCTION cache_purges_number();

-- Which app may read which run or task group under [isolation] mode = "app".
CREATE TABLE run_access (
    id  text COLLATE "C" NOT NULL,
    app text COLLATE "C" NOT NULL,
    how text NOT NULL CHECK (how IN ('created', 'granted')),
    at  text COLLATE "C" NOT NULL,
    PRIMARY KEY (id, app)
);
