-- 003_consumer.sql - as src/sql/sqlite/003_consumer.sql.
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('context', 'session')),
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE remote_series (
    series_uid   TEXT COLLATE "C" PRIMARY KEY,
    study_uid    TEXT COLLATE "C" NOT NULL,
    retrieve_url TEXT NOT NULL,
    kos_sop      TEXT NOT NULL,
    added_at     BIGINT NOT NULL
);
CREATE INDEX remote_series_study ON remote_series(study_uid);
