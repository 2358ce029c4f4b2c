-- 007_nodes.sql - as src/sql/sqlite/007_nodes.sql: who runs a job, and
-- until when its claim holds.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_running ON jobs(lease_until) WHERE state = 'running';
ALTER TABLE remote_series ADD COLUMN listed BIGINT;
