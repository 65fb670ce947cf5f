-- What each replica has let each app do, so that rate limits and open-call caps hold across
-- replicas: its calls admitted since it started (taken) and its calls open now. Each replica
-- writes its own rows every few hundred milliseconds and reads the others'; `at` (POSIX
-- seconds) tells a live replica's rows from a dead one's.
CREATE TABLE replica_usage (
    replica text COLLATE "C" NOT NULL,
    app     text COLLATE "C" NOT NULL,
    taken   bigint NOT NULL,
    open    integer NOT NULL,
    started double precision NOT NULL,  -- when the replica began counting the app (POSIX s)
    at      double precision NOT NULL,
    PRIMARY KEY (replica, app)
);
