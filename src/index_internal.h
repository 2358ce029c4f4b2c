/*
 * index_internal.h - shared by the files of the SQLite index module only
 * (index_sqlite.c, index_qido.c, index_jobs.c, index_conso.c, index_audit.c):
 * the connection and its lock.
 */
#ifndef DRIMBOX_INDEX_INTERNAL_H
#define DRIMBOX_INDEX_INTERNAL_H

#include <sqlite3.h>

struct index;

/* The connection; use only between index_lock() and index_unlock(). */
sqlite3 *index_db(struct index *ix);
void index_lock(struct index *ix);
void index_unlock(struct index *ix);

/*
 * A prepared statement for sql from the connection's cache of recent
 * generated queries (prepared on a miss), ready to bind; the caller holds
 * the lock and calls sqlite3_reset() when done, never sqlite3_finalize().
 * NULL on a preparation error (sqlite3_errmsg() says why).
 */
sqlite3_stmt *index_cached_stmt(struct index *ix, const char *sql);

/* Binds text, or NULL for a NULL or empty value. */
void index_bind_text(sqlite3_stmt *s, int i, const char *v);

/* Runs SQL without results; 0, or -1 (logged). */
int index_exec(sqlite3 *db, const char *sql);

/*
 * Runs a cached statement to completion, then resets it and clears its
 * bindings; 0, or -1 (logged).
 */
int index_step_done(struct index *ix, sqlite3_stmt *s);

#endif
