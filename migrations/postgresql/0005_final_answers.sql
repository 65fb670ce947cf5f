-- Final answers, byte for byte (bytea): a run's result (a 200 of /result) and its run object
-- once its status is final (completed, failed, cancelled). Neither changes afterwards, so no
-- TTL. beta is the normalised parallel-beta set the answer was asked with ('' for none).
CREATE TABLE final_answers (
    run_id    text COLLATE "C" NOT NULL,
    kind      text COLLATE "C" NOT NULL CHECK (kind IN ('result', 'run')),
    beta      text COLLATE "C" NOT NULL,
    body      bytea NOT NULL,
    size      integer NOT NULL,
    stored_at text COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, kind, beta)
);
