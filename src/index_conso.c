/*
 * index_conso.c - the consumer's rows (see index.h): contextual calls and
 * sessions, and the series held by other DRIMboxes. Uses the connection's
 * statement cache; every call holds the index lock.
 */
#include "index.h"
#include "index_internal.h"
#include "log.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

static int put(struct index *ix, const char *hash, const char *kind,
               const char *data, int64_t now, int64_t expires)
{
	sqlite3_stmt *s = index_cached_stmt(
	        ix, "INSERT OR REPLACE INTO sessions(token_hash, kind, data, "
	            "created_at, expires_at) VALUES(?1, ?2, ?3, ?4, ?5)");

	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, data, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, now);
	sqlite3_bind_int64(s, 5, expires);
	return index_step_done(ix, s);
}

int index_token_put(struct index *ix, const char *hash, const char *kind,
                    const char *data, int64_t now, int64_t expires)
{
	sqlite3_stmt *s;
	int rc = -1;

	index_lock(ix);
	if (index_exec(index_db(ix), "BEGIN IMMEDIATE") != 0)
		goto out;
	s = index_cached_stmt(ix,
	                      "DELETE FROM sessions WHERE expires_at <= ?1");
	if (s != NULL) {
		sqlite3_bind_int64(s, 1, now);
		rc = index_step_done(ix, s);
	}
	if (rc == 0)
		rc = put(ix, hash, kind, data, now, expires);
	rc = index_exec(index_db(ix), rc == 0 ? "COMMIT" : "ROLLBACK") == 0
	             ? rc
	             : -1;
out:
	index_unlock(ix);
	return rc;
}

/* The data of a live row of kind (malloc'd into *data): 1, 0 none, -1. */
static int find(struct index *ix, const char *hash, const char *kind,
                int64_t now, char **data)
{
	sqlite3_stmt *s = index_cached_stmt(
	        ix, "SELECT data FROM sessions WHERE token_hash = ?1 AND "
	            "kind = ?2 AND expires_at > ?3");
	int rc;

	*data = NULL;
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*data = strdup((const char *)sqlite3_column_text(s, 0));
		rc = *data ? 1 : -1;
	} else {
		rc = rc == SQLITE_DONE ? 0 : -1;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc;
}

static int delete_row(struct index *ix, const char *hash)
{
	sqlite3_stmt *s = index_cached_stmt(ix, "DELETE FROM sessions WHERE "
	                                        "token_hash = ?1");

	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, hash, -1, SQLITE_STATIC);
	return index_step_done(ix, s);
}

int index_context_redeem(struct index *ix, const char *context_hash,
                         const char *session_hash, int64_t now, int64_t expires,
                         char **data)
{
	int rc;

	index_lock(ix);
	if (index_exec(index_db(ix), "BEGIN IMMEDIATE") != 0) {
		index_unlock(ix);
		return -1;
	}
	rc = find(ix, context_hash, "context", now, data);
	if (rc == 1) {
		if (delete_row(ix, context_hash) != 0 ||
		    put(ix, session_hash, "session", *data, now, expires) != 0)
			rc = -1;
	}
	if (index_exec(index_db(ix), rc >= 0 ? "COMMIT" : "ROLLBACK") != 0)
		rc = -1;
	if (rc != 1) {
		free(*data);
		*data = NULL;
	}
	index_unlock(ix);
	return rc;
}

int index_token_get(struct index *ix, const char *hash, const char *kind,
                    int64_t now, char **data)
{
	int rc;

	index_lock(ix);
	rc = find(ix, hash, kind, now, data);
	index_unlock(ix);
	return rc;
}

int index_token_take(struct index *ix, const char *hash, const char *kind,
                     int64_t now, char **data)
{
	int rc;

	index_lock(ix);
	rc = find(ix, hash, kind, now, data);
	if (rc == 1 && delete_row(ix, hash) != 0) {
		free(*data);
		*data = NULL;
		rc = -1;
	}
	index_unlock(ix);
	return rc;
}

int index_token_set(struct index *ix, const char *hash, const char *kind,
                    const char *data)
{
	sqlite3_stmt *s;
	int rc = -1;

	index_lock(ix);
	s = index_cached_stmt(ix, "UPDATE sessions SET data = ?2 WHERE "
	                          "token_hash = ?1 AND kind = ?3");
	if (s != NULL) {
		sqlite3_bind_text(s, 1, hash, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, data, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, kind, -1, SQLITE_STATIC);
		rc = index_step_done(ix, s);
	}
	index_unlock(ix);
	return rc;
}

int index_token_delete(struct index *ix, const char *hash)
{
	int rc;

	index_lock(ix);
	rc = delete_row(ix, hash);
	index_unlock(ix);
	return rc;
}

int index_remote_put(struct index *ix, const struct idx_remote *r, size_t n,
                     int64_t now)
{
	sqlite3_stmt *s;
	int rc = 0;

	index_lock(ix);
	if (index_exec(index_db(ix), "BEGIN IMMEDIATE") != 0) {
		index_unlock(ix);
		return -1;
	}
	s = index_cached_stmt(ix, "DELETE FROM remote_series WHERE "
	                          "study_uid = ?1");
	if (s == NULL) {
		rc = -1;
	} else if (n > 0) {
		sqlite3_bind_text(s, 1, r[0].study_uid, -1, SQLITE_STATIC);
		rc = index_step_done(ix, s);
	}
	s = rc ? NULL
	       : index_cached_stmt(
	                 ix, "INSERT OR REPLACE INTO remote_series(series_uid, "
	                     "study_uid, retrieve_url, kos_sop, added_at) "
	                     "VALUES(?1, ?2, ?3, ?4, ?5)");
	for (size_t i = 0; s != NULL && rc == 0 && i < n; i++) {
		sqlite3_bind_text(s, 1, r[i].series_uid, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, r[i].study_uid, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, r[i].url, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, r[i].kos_sop, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, now);
		rc = index_step_done(ix, s);
	}
	if (s == NULL)
		rc = -1;
	if (index_exec(index_db(ix), rc == 0 ? "COMMIT" : "ROLLBACK") != 0)
		rc = -1;
	index_unlock(ix);
	return rc;
}

int index_remote_series(struct index *ix, const char *study_uid,
                        int (*cb)(void *ctx, const struct idx_remote *r),
                        void *ctx)
{
	sqlite3_stmt *s;
	int rc = 0, step;

	index_lock(ix);
	s = index_cached_stmt(ix, "SELECT series_uid, study_uid, "
	                          "retrieve_url, kos_sop FROM remote_series "
	                          "WHERE study_uid = ?1 ORDER BY rowid");
	if (s == NULL) {
		index_unlock(ix);
		return -1;
	}
	sqlite3_bind_text(s, 1, study_uid, -1, SQLITE_STATIC);
	while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
		struct idx_remote r = {
			(const char *)sqlite3_column_text(s, 0),
			(const char *)sqlite3_column_text(s, 1),
			(const char *)sqlite3_column_text(s, 2),
			(const char *)sqlite3_column_text(s, 3),
		};

		rc = cb(ctx, &r);
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = -1;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	index_unlock(ix);
	return rc;
}
