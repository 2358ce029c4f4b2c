/*
 * db.h - the SQL connection layer under the index: one API over SQLite
 * (one embedded file, one connection) and PostgreSQL (a server shared by
 * several drimboxd nodes, a pool of connections). Only the index module
 * uses it.
 *
 * SQL is written once: parameters are ?NNN or ? (numbered in order), as
 * SQLite has them; on PostgreSQL they become $NNN. Where the two dialects
 * differ (JSON, row locks, advisory locks) the index picks by db_backend().
 *
 * A connection is held by one thread between db_acquire() and
 * db_release(). Its statements are prepared once and kept (db_prepare);
 * bound values must stay valid until db_reset().
 */
#ifndef DRIMBOX_DB_H
#define DRIMBOX_DB_H

#include <stddef.h>
#include <stdint.h>

enum db_backend { DB_SQLITE, DB_POSTGRES };

/* db_step() results */
enum { DB_ERROR = -1, DB_DONE = 0, DB_ROW = 1 };

struct db;  /* the pool */
struct dbc; /* one connection */
struct dbs; /* one prepared statement of one connection */

/*
 * Opens target: a file path (SQLite, created unless readonly) or a
 * "postgresql://" URI or "host=... dbname=..." string (libpq), with up to
 * pool connections (SQLite: always one). 0, or -1 with why in err.
 */
int db_open(const char *target, int readonly, int pool, struct db **out,
            char *err, size_t errlen);
void db_close(struct db *db);

enum db_backend db_backend(const struct db *db);

/* The SQLite file (NULL on PostgreSQL). */
const char *db_file(const struct db *db);

/*
 * Waits for a free connection (reconnecting it when the server dropped
 * it); NULL when it cannot be had (logged).
 */
struct dbc *db_acquire(struct db *db);
void db_release(struct db *db, struct dbc *c);

/* Runs SQL without parameters or results (may be several statements). */
int db_exec(struct dbc *c, const char *sql, char *err, size_t errlen);

/* BEGIN (SQLite: IMMEDIATE, the write lock at once), COMMIT, ROLLBACK. */
int db_begin(struct dbc *c);
int db_commit(struct dbc *c);
void db_rollback(struct dbc *c);

/*
 * Commits of this connection synced to disk (on), or merely atomic (off,
 * the default on SQLite: a power loss may lose the last ones). PostgreSQL
 * always syncs its commits.
 */
int db_durable(struct dbc *c, int on);

/* The statement for sql, prepared on first use; NULL on error (logged). */
struct dbs *db_prepare(struct dbc *c, const char *sql);

/* Parameters are 1-based; text NULL or "" binds NULL. */
void db_bind_text(struct dbs *s, int i, const char *v);
/* text as it is ("" stays ""); NULL binds NULL */
void db_bind_str(struct dbs *s, int i, const char *v);
void db_bind_int(struct dbs *s, int i, int64_t v);
/* a negative value ("unknown") binds NULL */
void db_bind_long(struct dbs *s, int i, long v);
void db_bind_null(struct dbs *s, int i);
void db_bind_blob(struct dbs *s, int i, const void *v, size_t n);

/* Runs (first call) or advances: DB_ROW, DB_DONE, DB_ERROR (logged). */
int db_step(struct dbs *s);

/* Columns of the current row, 0-based; text is NULL for NULL. */
const char *db_text(struct dbs *s, int col);
int64_t db_int(struct dbs *s, int col);
int db_is_null(struct dbs *s, int col);
/* the integer, or -1 for NULL */
long db_long(struct dbs *s, int col);

/* Rows changed by the statement's last run (after DB_DONE). */
int64_t db_changes(struct dbs *s);

/* Ends the run and clears the bindings: ready to bind again. */
void db_reset(struct dbs *s);

/* Runs to completion then resets: 0, or -1 (logged). */
int db_run(struct dbs *s);

/* The connection's last error. */
const char *db_errmsg(struct dbc *c);

/*
 * 1 when the last failure was a deadlock or a serialization failure
 * (PostgreSQL, concurrent nodes): the transaction may be run again.
 */
int db_retryable(struct dbc *c);

#endif
