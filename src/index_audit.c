/*
 * index_audit.c - the audit trail (see index.h): rows appended one at a
 * time (nodes sharing a PostgreSQL index take turns), each chained to the one
 * before by a SHA-256 hash, so that changing, inserting or removing a row is
 * seen by index_audit_verify().
 */
#include "index.h"
#include "index_internal.h"
#include "log.h"

#include <openssl/evp.h>
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
static int last(struct dbc *c, int64_t *id, char hash[65])
{
	struct dbs *s = db_prepare(
	        c, "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1");
	int rc;

	*id = 0;
	snprintf(hash, 65, "%s", GENESIS);
	if (s == NULL)
		return -1;
	rc = db_step(s);
	if (rc == DB_ROW) {
		*id = db_int(s, 0);
		if (db_text(s, 1) != NULL)
			snprintf(hash, 65, "%s", db_text(s, 1));
	}
	db_reset(s);
	return rc == DB_ERROR ? -1 : 0;
}

int index_audit_add(struct index *ix, struct idx_audit *r)
{
	struct dbc *c = index_tx_begin(ix);
	struct dbs *s;
	char prev[65];
	int rc = -1;

	if (c == NULL)
		return -1;
	/* one writer of the chain at a time: its last row is ours to follow */
	if (index_key_lock(ix, c, "audit") == 0 && last(c, &r->id, prev) == 0) {
		r->id++;
		rc = chain(prev, r, r->hash);
	}
	s = rc == 0 ? db_prepare(c, "INSERT INTO audit(id, at, actor, action, "
	                            "study_uid, series_uid, source, outcome, "
	                            "call, detail, hash) VALUES(?1, ?2, ?3, "
	                            "?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")
	            : NULL;
	rc = -1;
	if (s != NULL) {
		db_bind_int(s, 1, r->id);
		db_bind_int(s, 2, r->at);
		db_bind_text(s, 3, r->actor);
		db_bind_str(s, 4, r->action);
		db_bind_text(s, 5, r->study);
		db_bind_text(s, 6, r->series);
		db_bind_text(s, 7, r->source);
		db_bind_text(s, 8, r->outcome);
		db_bind_text(s, 9, r->call);
		db_bind_text(s, 10, r->detail);
		db_bind_str(s, 11, r->hash);
		rc = db_run(s);
	}
	return index_tx_end(ix, c, rc);
}

static const char *col(struct dbs *s, int i)
{
	const char *v = db_text(s, i);

	return v ? v : "";
}

static void row_of(struct dbs *s, struct idx_audit *r)
{
	r->id = db_int(s, 0);
	r->at = db_int(s, 1);
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
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	struct idx_audit r;
	int rc = 0, step;

	if (c == NULL)
		return -1;
	s = db_prepare(c, "SELECT " COLUMNS " FROM audit WHERE at >= "
	                  "?1 AND at < ?2 ORDER BY id");
	if (s == NULL) {
		index_done(ix, c);
		return -1;
	}
	db_bind_int(s, 1, from);
	db_bind_int(s, 2, to);
	while (rc == 0 && (step = db_step(s)) == DB_ROW) {
		row_of(s, &r);
		rc = cb(ctx, &r);
	}
	if (rc == 0 && step != DB_DONE)
		rc = -1;
	db_reset(s);
	index_done(ix, c);
	return rc;
}

int index_audit_verify(struct index *ix, int64_t *n, char head[65],
                       int64_t *bad)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	struct idx_audit r;
	char prev[65] = GENESIS, want[65];
	int rc = 0, step;

	*n = 0;
	*bad = 0;
	head[0] = '\0';
	if (c == NULL)
		return -1;
	s = db_prepare(c, "SELECT " COLUMNS " FROM audit ORDER BY id");
	if (s == NULL) {
		index_done(ix, c);
		return -1;
	}
	while (rc == 0 && (step = db_step(s)) == DB_ROW) {
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
	if (rc == 0 && step != DB_DONE)
		rc = -1;
	db_reset(s);
	if (rc == 0 && *n > 0)
		snprintf(head, 65, "%s", prev);
	index_done(ix, c);
	return rc;
}
