-- The audit trail becomes a hash chain: each row's hash is the SHA-256 of
-- the previous row's hash and of this row's fields (see index_audit.c), so
-- that a row changed, inserted or removed breaks the chain from there on.
-- call: the contextual call a row belongs to (the statistics file).
ALTER TABLE audit ADD COLUMN call TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
CREATE INDEX audit_call ON audit(call) WHERE call IS NOT NULL;
