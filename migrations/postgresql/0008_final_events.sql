-- A finished run's event stream is a final answer too (kind 'events'): byte for byte, stored only
-- once it ended with a final task_run.state.
ALTER TABLE final_answers DROP CONSTRAINT final_answers_kind_check;
ALTER TABLE final_answers ADD CONSTRAINT final_answers_kind_check
    CHECK (kind IN ('result', 'run', 'events'));
