-- Sign-in (Pro Santé Connect): two more kinds of rows under a token's
-- hash. A 'login' is a sign-in under way (its state: the PKCE verifier,
-- the nonce, the page to go back to), single-use; a 'user' is a signed-in
-- professional's session (who they are, their PSC tokens). SQLite cannot
-- change a CHECK constraint in place: the table is made again.
CREATE TABLE sessions_new (
    token_hash  TEXT PRIMARY KEY,           -- hex SHA-256 of the token
    kind        TEXT NOT NULL
                CHECK (kind IN ('context', 'session', 'login', 'user')),
    data        TEXT NOT NULL,              -- JSON
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
INSERT INTO sessions_new SELECT token_hash, kind, data, created_at, expires_at
    FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_new RENAME TO sessions;
CREATE INDEX sessions_expiry ON sessions(expires_at);
