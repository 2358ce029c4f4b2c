/*
 * index_conso.c - the consumer's rows (see index.h): contextual calls and
 * sessions, and the series held by other DRIMboxes. Each call takes a
 * connection of the pool.
 */
#include "index.h"
#include "index_internal.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

static int put(struct dbc *c, const char *hash, const char *kind,
               const char *data, int64_t now, int64_t expires)
{
	struct dbs *s = db_prepare(
	        c, "INSERT INTO sessions(token_hash, kind, data, created_at, "
	           "expires_at) VALUES(?1, ?2, ?3, ?4, ?5) ON "
	           "CONFLICT(token_hash) DO UPDATE SET kind = excluded.kind, "
	           "data = excluded.data, created_at = excluded.created_at, "
	           "expires_at = excluded.expires_at");

	if (s == NULL)
		return -1;
	db_bind_str(s, 1, hash);
	db_bind_str(s, 2, kind);
	db_bind_str(s, 3, data);
	db_bind_int(s, 4, now);
	db_bind_int(s, 5, expires);
	return db_run(s);
}

int index_token_put(struct index *ix, const char *hash, const char *kind,
                    const char *data, int64_t now, int64_t expires)
{
	struct dbc *c = index_tx_begin(ix);
	struct dbs *s;
	int rc = -1;

	if (c == NULL)
		return -1;
	s = db_prepare(c, "DELETE FROM sessions WHERE expires_at <= ?1");
	if (s != NULL) {
		db_bind_int(s, 1, now);
		rc = db_run(s);
	}
	if (rc == 0)
		rc = put(c, hash, kind, data, now, expires);
	return index_tx_end(ix, c, rc);
}

/* The data of a live row of kind (malloc'd into *data): 1, 0 none, -1. */
static int find(struct dbc *c, const char *hash, const char *kind, int64_t now,
                char **data)
{
	struct dbs *s = db_prepare(
	        c, "SELECT data FROM sessions WHERE token_hash = ?1 AND "
	           "kind = ?2 AND expires_at > ?3");
	int rc;

	*data = NULL;
	if (s == NULL)
		return -1;
	db_bind_str(s, 1, hash);
	db_bind_str(s, 2, kind);
	db_bind_int(s, 3, now);
	rc = db_step(s);
	if (rc == DB_ROW) {
		*data = strdup(db_text(s, 0));
		rc = *data ? 1 : -1;
	} else {
		rc = rc == DB_DONE ? 0 : -1;
	}
	db_reset(s);
	return rc;
}

/* Deletes a row: 1 when it was there, 0 when not, -1 on error. */
static int delete_row(struct dbc *c, const char *hash)
{
	struct dbs *s = db_prepare(c, "DELETE FROM sessions WHERE "
	                              "token_hash = ?1");
	int rc;

	if (s == NULL)
		return -1;
	db_bind_str(s, 1, hash);
	rc = db_step(s) == DB_DONE ? db_changes(s) > 0 : -1;
	db_reset(s);
	return rc;
}

int index_context_redeem(struct index *ix, const char *context_hash,
                         const char *session_hash, int64_t now, int64_t expires,
                         char **data)
{
	struct dbc *c = index_tx_begin(ix);
	int rc;

	*data = NULL;
	if (c == NULL)
		return -1;
	rc = find(c, context_hash, "context", now, data);
	/* the delete decides: two nodes redeeming at once, one wins */
	if (rc == 1) {
		int gone = delete_row(c, context_hash);

		if (gone < 0 || (gone == 1 && put(c, session_hash, "session",
		                                  *data, now, expires) != 0))
			rc = -1;
		else if (gone == 0)
			rc = 0;
	}
	rc = index_tx_end(ix, c, rc);
	if (rc != 1) {
		free(*data);
		*data = NULL;
	}
	return rc;
}

int index_token_get(struct index *ix, const char *hash, const char *kind,
                    int64_t now, char **data)
{
	struct dbc *c = index_conn(ix);
	int rc;

	*data = NULL;
	if (c == NULL)
		return -1;
	rc = find(c, hash, kind, now, data);
	index_done(ix, c);
	return rc;
}

int index_token_take(struct index *ix, const char *hash, const char *kind,
                     int64_t now, char **data)
{
	struct dbc *c = index_tx_begin(ix);
	int rc, gone;

	*data = NULL;
	if (c == NULL)
		return -1;
	rc = find(c, hash, kind, now, data);
	/* single use, across nodes too: only the one that deletes has it */
	if (rc == 1 && (gone = delete_row(c, hash)) != 1)
		rc = gone < 0 ? -1 : 0;
	rc = index_tx_end(ix, c, rc);
	if (rc != 1) {
		free(*data);
		*data = NULL;
	}
	return rc;
}

int index_token_set(struct index *ix, const char *hash, const char *kind,
                    const char *data)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = -1;

	if (c == NULL)
		return -1;
	s = db_prepare(c, "UPDATE sessions SET data = ?2 WHERE token_hash = "
	                  "?1 AND kind = ?3");
	if (s != NULL) {
		db_bind_str(s, 1, hash);
		db_bind_str(s, 2, data);
		db_bind_str(s, 3, kind);
		rc = db_run(s);
	}
	index_done(ix, c);
	return rc;
}

int index_token_delete(struct index *ix, const char *hash)
{
	struct dbc *c = index_conn(ix);
	int rc;

	if (c == NULL)
		return -1;
	rc = delete_row(c, hash) < 0 ? -1 : 0;
	index_done(ix, c);
	return rc;
}

int index_remote_put(struct index *ix, const struct idx_remote *r, size_t n,
                     int64_t now)
{
	struct dbc *c = index_tx_begin(ix);
	struct dbs *s;
	int rc = 0;

	if (c == NULL)
		return -1;
	s = db_prepare(c, "DELETE FROM remote_series WHERE study_uid = ?1");
	if (s == NULL) {
		rc = -1;
	} else if (n > 0) {
		db_bind_str(s, 1, r[0].study_uid);
		rc = db_run(s);
	}
	s = rc ? NULL
	       : db_prepare(c,
	                    "INSERT INTO remote_series(series_uid, "
	                    "study_uid, retrieve_url, kos_sop, added_at, "
	                    "listed) VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON "
	                    "CONFLICT(series_uid) DO UPDATE SET study_uid "
	                    "= excluded.study_uid, retrieve_url = "
	                    "excluded.retrieve_url, kos_sop = "
	                    "excluded.kos_sop, added_at = excluded.added_at, "
	                    "listed = excluded.listed");
	for (size_t i = 0; s != NULL && rc == 0 && i < n; i++) {
		db_bind_str(s, 1, r[i].series_uid);
		db_bind_str(s, 2, r[i].study_uid);
		db_bind_str(s, 3, r[i].url);
		db_bind_str(s, 4, r[i].kos_sop);
		db_bind_int(s, 5, now);
		db_bind_int(s, 6, (int64_t)i);
		rc = db_run(s);
	}
	if (s == NULL)
		rc = -1;
	return index_tx_end(ix, c, rc);
}

int index_remote_series(struct index *ix, const char *study_uid,
                        int (*cb)(void *ctx, const struct idx_remote *r),
                        void *ctx)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = 0, step = DB_DONE;

	if (c == NULL)
		return -1;
	s = db_prepare(c, "SELECT series_uid, study_uid, retrieve_url, "
	                  "kos_sop FROM remote_series WHERE study_uid = ?1 "
	                  "ORDER BY listed, added_at, series_uid");
	if (s == NULL) {
		index_done(ix, c);
		return -1;
	}
	db_bind_str(s, 1, study_uid);
	while (rc == 0 && (step = db_step(s)) == DB_ROW) {
		struct idx_remote r = {
			db_text(s, 0),
			db_text(s, 1),
			db_text(s, 2),
			db_text(s, 3),
		};

		rc = cb(ctx, &r);
	}
	if (rc == 0 && step != DB_DONE)
		rc = -1;
	db_reset(s);
	index_done(ix, c);
	return rc;
}
