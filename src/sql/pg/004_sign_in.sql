-- 004_sign_in.sql - as src/sql/sqlite/004_sign_in.sql: two more kinds of
-- rows, 'login' and 'user' (PostgreSQL changes the constraint in place).
ALTER TABLE sessions DROP CONSTRAINT sessions_kind_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_kind_check
    CHECK (kind IN ('context', 'session', 'login', 'user'));
