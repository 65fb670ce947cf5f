-- Final answers, byte for byte: a run's result (a 200 of /result) and its run object once its
-- status is final (completed, failed, cancelled). Neither changes afterwards, so no TTL.
-- beta is the normalised parallel-beta set the answer was asked with ('' for none).
CREATE TABLE final_answers (
    run_id    TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('result', 'run')),
    beta      TEXT NOT NULL,
    body      BLOB NOT NULL,
    size      INTEGER NOT NULL,
    stored_at TEXT NOT NULL,  -- RFC 3339, UTC
    PRIMARY KEY (run_id, kind, beta)
) WITHOUT ROWID;
