-- Which replica is fetching a cold run from Parallel, and until when its lease holds (POSIX
-- seconds). The holder renews it while it fetches; a replica that dies stops renewing, and
-- another takes the run over once the lease runs out.
CREATE TABLE fetch_leases (
    run_id text COLLATE "C" PRIMARY KEY,
    owner  text NOT NULL,
    until  double precision NOT NULL
);
