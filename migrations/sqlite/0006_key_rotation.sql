-- Keys replaced by `keys rotate`: only the SHA-256 of each, never the key. Each works until
-- retires_at (the rotation plus its --grace), under its app's revocation and expiry, and is
-- kept after that so that a call with it is refused naming its app. `keys delete` removes them.
CREATE TABLE retired_keys (
    key_hash   TEXT PRIMARY KEY,
    app        TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    created_at TEXT NOT NULL,  -- when the key was made, RFC 3339, UTC
    retires_at TEXT NOT NULL   -- when it stops working, RFC 3339, UTC
) WITHOUT ROWID;
CREATE INDEX retired_keys_app ON retired_keys (app);
