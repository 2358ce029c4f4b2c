-- 006_audit.sql - as src/sql/sqlite/006_audit.sql.
ALTER TABLE audit ADD COLUMN call TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
CREATE INDEX audit_call ON audit(call) WHERE call IS NOT NULL;
