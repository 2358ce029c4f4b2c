-- 001_init.sql - first schema of the drimbox index (SQLite).
-- Applied in one transaction by index_open() when schema_version < 1.

CREATE TABLE patients (
    id          INTEGER PRIMARY KEY,
    patient_id  TEXT NOT NULL,            -- (0010,0020) as the PACS has it
    issuer      TEXT NOT NULL DEFAULT '', -- (0010,0021)
    ins         TEXT,                     -- INS matricule when PatientID is one
    ipp         TEXT,                     -- local identifier otherwise
    name        TEXT,
    birth_date  TEXT,
    sex         TEXT,
    UNIQUE (patient_id, issuer)
);

CREATE TABLE studies (
    id            INTEGER PRIMARY KEY,
    uid           TEXT NOT NULL UNIQUE,
    patient       INTEGER REFERENCES patients(id),
    study_date    TEXT,
    study_time    TEXT,
    accession     TEXT,
    description   TEXT,
    modalities    TEXT,
    referring     TEXT,
    study_id      TEXT,
    num_series    INTEGER,   -- as announced by the PACS
    num_instances INTEGER,
    synced_at     INTEGER    -- unix time of the last image-level sync
);
CREATE INDEX studies_date ON studies(study_date);
CREATE INDEX studies_accession ON studies(accession);
CREATE INDEX studies_patient ON studies(patient);

CREATE TABLE series (
    id            INTEGER PRIMARY KEY,
    uid           TEXT NOT NULL UNIQUE,
    study         INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    modality      TEXT,
    number        INTEGER,
    description   TEXT,
    body_part     TEXT,
    num_instances INTEGER,
    last_access   INTEGER NOT NULL DEFAULT 0, -- LRU clock of the cache
    sync_gen      INTEGER NOT NULL DEFAULT 0  -- last sync that listed it
);
CREATE INDEX series_study ON series(study);

CREATE TABLE instances (
    id              INTEGER PRIMARY KEY,
    uid             TEXT NOT NULL UNIQUE,
    series          INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    sop_class       TEXT,
    number          INTEGER,
    cache_path      TEXT,     -- relative to cache_dir; NULL = not cached
    transfer_syntax TEXT,
    size            INTEGER,  -- bytes of the cached file
    frames          INTEGER,
    metadata        TEXT,     -- precomputed DICOM JSON (PS3.18 F.2)
    cached_at       INTEGER,
    sync_gen        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX instances_series ON instances(series);
CREATE INDEX instances_cached ON instances(series) WHERE cache_path IS NOT NULL;
CREATE UNIQUE INDEX instances_path ON instances(cache_path) WHERE cache_path IS NOT NULL;

-- Durable work queue (publications, imports, pulls): claimed by a worker,
-- retried with not_before, parked with a reason when it cannot proceed.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'done', 'failed', 'parked')),
    payload     TEXT NOT NULL DEFAULT '{}',
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX jobs_ready ON jobs(state, not_before);

-- Audit trail: who did what to which study, from where, with what outcome.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT,
    action      TEXT NOT NULL,
    study_uid   TEXT,
    series_uid  TEXT,
    source      TEXT,
    outcome     TEXT,
    detail      TEXT
);
CREATE INDEX audit_at ON audit(at);
