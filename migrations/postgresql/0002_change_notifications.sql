-- Every replica hears of a change the moment it commits: a statement that changes keys, purges
-- or run access notifies channel parallel_gateway_changes with the table's name. Replicas
-- re-read on a notification, after a reconnect, and every storage-sync interval in any case,
-- so a notification lost with a connection loses nothing. last_used_at is left out: replicas
-- write it every few seconds, and no other replica needs to hear of it.
CREATE FUNCTION parallel_gateway_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('parallel_gateway_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER app_keys_changed
    AFTER INSERT OR DELETE OR UPDATE OF key_hash, prefix, created_at, revoked_at, allow, rate,
        burst, expires_at, max_open
    ON app_keys FOR EACH STATEMENT EXECUTE FUNCTION parallel_gateway_notify();
CREATE TRIGGER retired_keys_changed AFTER INSERT OR UPDATE OR DELETE
    ON retired_keys FOR EACH STATEMENT EXECUTE FUNCTION parallel_gateway_notify();
CREATE TRIGGER cache_purges_changed AFTER INSERT
    ON cache_purges FOR EACH STATEMENT EXECUTE FUNCTION parallel_gateway_notify();
CREATE TRIGGER run_access_changed AFTER INSERT OR DELETE
    ON run_access FOR EACH STATEMENT EXECUTE FUNCTION parallel_gateway_notify();
