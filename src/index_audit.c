/*
 * index_audit.c - the audit trail (see index.h): rows appended under the
 * index lock, each chained to the one before by a SHA-256 hash, so that
 * changing, inserting or removing a row is seen by index_audit_verify().
 */
#include "index.h"
#include "index_internal.h"
#include "log.h"

#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#define GENESIS                                                                \
	"0000000000000000000000000000000000000000000000000000000000000000"

/* Each field as its length, ':' and its bytes: no two rows hash alike. */
static void field(EVP_MD_CTX *md, const char *v)
{
	char len[24];

	v = v ? v : "";
	snprintf(len, sizeof(len), "%zu:", strlen(v));
	EVP_DigestUpdate(md, len, strlen(len));
	EVP_DigestUpdate(md, v, strlen(v));
}

static int chain(const char *prev, const struct idx_audit *r, char out[65])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	char num[48];
	int ok;

	ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	if (ok) {
		field(md, prev);
		snprintf(num, sizeof(num), "%lld", (long long)r->id);
		field(md, num);
		snprintf(num, sizeof(num), "%lld", (long long)r->at);
		field(md, num);
		field(md, r->actor);
		field(md, r->action);
		field(md, r->study);
		field(md, r->series);
		field(md, r->source);
		field(md, r->outcome);
		field(md, r->call);
		field(md, r->detail);
		ok = EVP_DigestFinal_ex(md, d, &n) == 1 && n == 32;
	}
	EVP_MD_CTX_free(md);
	for (unsigned i = 0; ok && i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
	return ok ? 0 : -1;
}

/* The last row's id and hash (GENESIS, 0 when empty): 0 or -1. */
static int last(struct index *ix, int64_t *id, char hash[65])
{
	sqlite3_stmt *s = index_cached_stmt(
	        ix, "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1");
	int rc;

	*id = 0;
	snprintf(hash, 65, "%s", GENESIS);
	if (s == NULL)
		return -1;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(s, 0);
		if (sqlite3_column_text(s, 1) != NULL)
			snprintf(hash, 65, "%s", sqlite3_column_text(s, 1));
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int index_audit_add(struct index *ix, struct idx_audit *r)
{
	sqlite3_stmt *s;
	char prev[65];
	int rc = -1;

	index_lock(ix);
	if (index_exec(index_db(ix), "BEGIN IMMEDIATE") != 0)
		goto out;
	if (last(ix, &r->id, prev) == 0) {
		r->id++;
		rc = chain(prev, r, r->hash);
	}
	s = rc == 0 ? index_cached_stmt(
	                      ix, "INSERT INTO audit(id, at, actor, action, "
	                          "study_uid, series_uid, source, outcome, "
	                          "call, detail, hash) VALUES(?1, ?2, ?3, ?4, "
	                          "?5, ?6, ?7, ?8, ?9, ?10, ?11)")
	            : NULL;
	rc = -1;
	if (s != NULL) {
		sqlite3_bind_int64(s, 1, r->id);
		sqlite3_bind_int64(s, 2, r->at);
		index_bind_text(s, 3, r->actor);
		sqlite3_bind_text(s, 4, r->action, -1, SQLITE_STATIC);
		index_bind_text(s, 5, r->study);
		index_bind_text(s, 6, r->series);
		index_bind_text(s, 7, r->source);
		index_bind_text(s, 8, r->outcome);
		index_bind_text(s, 9, r->call);
		index_bind_text(s, 10, r->detail);
		sqlite3_bind_text(s, 11, r->hash, -1, SQLITE_STATIC);
		rc = index_step_done(ix, s);
	}
	if (index_exec(index_db(ix), rc == 0 ? "COMMIT" : "ROLLBACK") != 0) {
		/* a COMMIT that failed leaves the transaction open */
		if (!sqlite3_get_autocommit(index_db(ix)))
			(void)index_exec(index_db(ix), "ROLLBACK");
		rc = -1;
	}
out:
	index_unlock(ix);
	return rc;
}

static const char *col(sqlite3_stmt *s, int i)
{
	const unsigned char *v = sqlite3_column_text(s, i);

	return v ? (const char *)v : "";
}

static void row_of(sqlite3_stmt *s, struct idx_audit *r)
{
	r->id = sqlite3_column_int64(s, 0);
	r->at = sqlite3_column_int64(s, 1);
	r->actor = col(s, 2);
	r->action = col(s, 3);
	r->study = col(s, 4);
	r->series = col(s, 5);
	r->source = col(s, 6);
	r->outcome = col(s, 7);
	r->call = col(s, 8);
	r->detail = col(s, 9);
	snprintf(r->hash, sizeof(r->hash), "%s", col(s, 10));
}

#define COLUMNS                                                                \
	"id, at, actor, action, study_uid, series_uid, source, outcome, "      \
	"call, detail, hash"

int index_audit_rows(struct index *ix, int64_t from, int64_t to,
                     int (*cb)(void *ctx, const struct idx_audit *r), void *ctx)
{
	sqlite3_stmt *s;
	struct idx_audit r;
	int rc = 0, step;

	index_lock(ix);
	s = index_cached_stmt(ix, "SELECT " COLUMNS " FROM audit WHERE at >= "
	                          "?1 AND at < ?2 ORDER BY id");
	if (s == NULL) {
		index_unlock(ix);
		return -1;
	}
	sqlite3_bind_int64(s, 1, from);
	sqlite3_bind_int64(s, 2, to);
	while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
		row_of(s, &r);
		rc = cb(ctx, &r);
	}
	if (rc == 0 && step != SQLITE_DONE) {
		log_error(LOGC_INDEX, "%s", sqlite3_errmsg(index_db(ix)));
		rc = -1;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	index_unlock(ix);
	return rc;
}

int index_audit_verify(struct index *ix, int64_t *n, char head[65],
                       int64_t *bad)
{
	sqlite3_stmt *s;
	struct idx_audit r;
	char prev[65] = GENESIS, want[65];
	int rc = 0, step;

	*n = 0;
	*bad = 0;
	head[0] = '\0';
	index_lock(ix);
	s = index_cached_stmt(ix, "SELECT " COLUMNS " FROM audit ORDER BY id");
	if (s == NULL) {
		index_unlock(ix);
		return -1;
	}
	while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
		row_of(s, &r);
		/* ids follow one another: a row removed shows too */
		if (r.id != *n + 1 || chain(prev, &r, want) != 0 ||
		    strcmp(want, r.hash) != 0) {
			*bad = r.id;
			rc = 1;
			break;
		}
		snprintf(prev, sizeof(prev), "%s", r.hash);
		++*n;
	}
	if (rc == 0 && step != SQLITE_DONE) {
		log_error(LOGC_INDEX, "%s", sqlite3_errmsg(index_db(ix)));
		rc = -1;
	}
	sqlite3_reset(s);
	if (rc == 0 && *n > 0)
		snprintf(head, 65, "%s", prev);
	index_unlock(ix);
	return rc;
}
