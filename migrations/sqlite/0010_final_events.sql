-- A finished run's event stream is a final answer too (kind 'events'): byte for byte, stored only
-- once it ended with a final task_run.state. SQLite cannot change a CHECK constraint in place, so
-- the table is made anew and its rows copied (https://www.sqlite.org/lang_altertable.html#otheralter).
CREATE TABLE final_answers_new (
    run_id    TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('result', 'run', 'events')),
    beta      TEXT NOT NULL,
    body      BLOB NOT NULL,
    size      INTEGER NOT NULL,
    stored_at TEXT NOT NULL,  -- RFC 3339, UTC
    PRIMARY KEY (run_id, kind, beta)
) WITHOUT ROWID;
INSERT INTO final_answers_new (run_id, kind, beta, body, size, stored_at)
    SELECT run_id, kind, beta, body, size, stored_at FROM final_answers;
DROP TABLE final_answers;
ALTER TABLE final_answers_new RENAME TO final_answers;
