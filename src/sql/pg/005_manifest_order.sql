-- 005_manifest_order.sql - as src/sql/sqlite/005_manifest_order.sql.
ALTER TABLE instances ADD COLUMN listed BIGINT;
