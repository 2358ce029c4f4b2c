-- 003_consumer.sql - the consumer role.

-- Contextual calls and the browser sessions they open. The token itself is
-- never stored, only its SHA-256: a copy of the database opens nothing.
-- A 'context' is single-use (deleted when redeemed); it becomes a
-- 'session' bound to one patient.
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,           -- hex SHA-256 of the token
    kind        TEXT NOT NULL CHECK (kind IN ('context', 'session')),
    data        TEXT NOT NULL,              -- JSON: patient, focus, exams
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- Series held by another DRIMbox, as a manifest read from the DMP names
-- them: where to retrieve each (the manifest's RetrieveURL) and which
-- manifest to name when asking (KOS-SOPInstanceUID).
CREATE TABLE remote_series (
    series_uid   TEXT PRIMARY KEY,
    study_uid    TEXT NOT NULL,
    retrieve_url TEXT NOT NULL,
    kos_sop      TEXT NOT NULL,
    added_at     INTEGER NOT NULL
);
CREATE INDEX remote_series_study ON remote_series(study_uid);
