-- Per-app cap on calls open at once (`keys create/update --max-open N`); NULL for no cap.
ALTER TABLE app_keys ADD COLUMN max_open INTEGER;
