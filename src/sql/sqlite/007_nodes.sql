-- 007_nodes.sql - a running job belongs to the node that claimed it
-- (owner: its node_name) until its lease ends (lease_until, unix seconds),
-- which that node renews while the job runs. A node that dies leaves its
-- jobs to the others (PostgreSQL) or to itself when it starts again once
-- the lease has run out.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_running ON jobs(lease_until) WHERE state = 'running';
-- The order of a study's remote series in its manifest (SQLite ordered
-- them by rowid, which PostgreSQL has not).
ALTER TABLE remote_series ADD COLUMN listed INTEGER;
