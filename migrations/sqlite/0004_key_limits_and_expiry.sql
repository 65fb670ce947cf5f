-- Per-app rate limits (a token bucket: `rate` requests per second, up to `burst` at once;
-- NULL for no limit) and key expiry (RFC 3339, UTC; NULL for never).
ALTER TABLE app_keys ADD COLUMN rate REAL;
ALTER TABLE app_keys ADD COLUMN burst INTEGER;
ALTER TABLE app_keys ADD COLUMN expires_at TEXT;
