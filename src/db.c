/*
 * db.c - the SQL connection layer (see db.h): SQLite through its C API,
 * PostgreSQL through libpq (extended protocol: every statement prepared
 * once per connection, values sent apart from the SQL).
 */
#include "db.h"
#include "log.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statements kept prepared per connection, the least recently used out. */
#define STMT_CACHE 64

struct dbs {
	struct dbc *c;
	char *sql; /* as written */
	uint64_t hash, used;
	int64_t changes;
	sqlite3_stmt *lite;
	/* PostgreSQL: the prepared statement's name, the values to send */
	char name[16];
	int nparams;
	const char **values;
	int *lengths, *formats;
	char (*ibuf)[24]; /* integers, as text */
	PGresult *res;
	int row, nrows, started;
};

struct dbc {
	struct db *db;
	sqlite3 *lite;
	PGconn *pg;
	struct dbs *cache[STMT_CACHE];
	uint64_t clock;
	unsigned next_name;
	int busy;
	char err[512];
	char sqlstate[6]; /* PostgreSQL: the last failure's SQLSTATE */
};

struct db {
	enum db_backend backend;
	char *target;
	int readonly, n;
	struct dbc *conns;
	pthread_mutex_t lock;
	pthread_cond_t freed;
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* PostgreSQL: what failed, with its SQLSTATE (r may be NULL). */
static void set_pg_err(struct dbc *c, const PGresult *r)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state ? state : "");
	snprintf(c->err, sizeof(c->err), "%s",
	         r ? PQresultErrorMessage(r) : PQerrorMessage(c->pg));
	c->err[strcspn(c->err, "\n")] = '\0';
}

int db_retryable(struct dbc *c)
{
	/* deadlock detected, serialization failure */
	return strcmp(c->sqlstate, "40P01") == 0 ||
	       strcmp(c->sqlstate, "40001") == 0;
}

static void set_err(struct dbc *c, const char *msg)
{
	size_t n;

	snprintf(c->err, sizeof(c->err), "%s", msg ? msg : "unknown error");
	n = strlen(c->err);
	while (n > 0 && (c->err[n - 1] == '\n' || c->err[n - 1] == ' '))
		c->err[--n] = '\0';
}

const char *db_errmsg(struct dbc *c)
{
	return c->err;
}

static int is_pg(const struct dbc *c)
{
	return c->db->backend == DB_POSTGRES;
}

/* ---- statements ------------------------------------------------------- */

static void stmt_free(struct dbs *s)
{
	if (s == NULL)
		return;
	if (s->lite != NULL)
		sqlite3_finalize(s->lite);
	if (s->res != NULL)
		PQclear(s->res);
	free(s->values);
	free(s->lengths);
	free(s->formats);
	free(s->ibuf);
	free(s->sql);
	free(s);
}

/* Drops every statement (a PostgreSQL session lost loses them all). */
static void cache_clear(struct dbc *c)
{
	for (int i = 0; i < STMT_CACHE; i++) {
		stmt_free(c->cache[i]);
		c->cache[i] = NULL;
	}
}

/*
 * SQLite's ?NNN and ? parameters as PostgreSQL's $NNN (outside quoted
 * text); *nparams gets the highest number.
 */
static char *pg_sql(const char *sql, int *nparams)
{
	char *out = malloc(strlen(sql) * 5 + 1), *o = out;
	int max = 0, quoted = 0;

	if (out == NULL)
		return NULL;
	for (const char *p = sql; *p; p++) {
		int n;

		if (*p == '\'')
			quoted = !quoted;
		if (quoted || *p != '?') {
			*o++ = *p;
			continue;
		}
		if (isdigit((unsigned char)p[1])) {
			char *end;

			n = (int)strtol(p + 1, &end, 10);
			p = end - 1;
		} else {
			n = max + 1;
		}
		if (n > max)
			max = n;
		o += sprintf(o, "$%d", n);
	}
	*o = '\0';
	*nparams = max;
	return out;
}

static int pg_prepare(struct dbc *c, struct dbs *s)
{
	char *text = pg_sql(s->sql, &s->nparams);
	PGresult *r;
	int ok;

	if (text == NULL)
		return -1;
	snprintf(s->name, sizeof(s->name), "s%u", ++c->next_name);
	r = PQprepare(c->pg, s->name, text, 0, NULL);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		set_pg_err(c, r);
	PQclear(r);
	free(text);
	if (!ok)
		return -1;
	if (s->nparams > 0) {
		s->values = calloc((size_t)s->nparams, sizeof(*s->values));
		s->lengths = calloc((size_t)s->nparams, sizeof(*s->lengths));
		s->formats = calloc((size_t)s->nparams, sizeof(*s->formats));
		s->ibuf = calloc((size_t)s->nparams, sizeof(*s->ibuf));
		if (!s->values || !s->lengths || !s->formats || !s->ibuf)
			return -1;
	}
	return 0;
}

static void pg_deallocate(struct dbc *c, struct dbs *s)
{
	char sql[48];
	PGresult *r;

	snprintf(sql, sizeof(sql), "DEALLOCATE %s", s->name);
	r = PQexec(c->pg, sql);
	PQclear(r);
}

struct dbs *db_prepare(struct dbc *c, const char *sql)
{
	uint64_t hash = fnv1a(sql);
	struct dbs **victim = &c->cache[0], *s;

	for (int i = 0; i < STMT_CACHE; i++) {
		struct dbs *e = c->cache[i];

		if (e != NULL && e->hash == hash && strcmp(e->sql, sql) == 0) {
			e->used = ++c->clock;
			return e;
		}
		if (e == NULL || (*victim != NULL && e->used < (*victim)->used))
			victim = &c->cache[i];
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->sql = strdup(sql)) == NULL) {
		free(s);
		set_err(c, "out of memory");
		goto fail;
	}
	s->c = c;
	s->hash = hash;
	if (is_pg(c) ? pg_prepare(c, s) != 0
	             : sqlite3_prepare_v3(c->lite, sql, -1,
	                                  SQLITE_PREPARE_PERSISTENT, &s->lite,
	                                  NULL) != SQLITE_OK) {
		if (!is_pg(c))
			set_err(c, sqlite3_errmsg(c->lite));
		stmt_free(s);
		goto fail;
	}
	if (*victim != NULL) {
		if (is_pg(c))
			pg_deallocate(c, *victim);
		stmt_free(*victim);
	}
	s->used = ++c->clock;
	*victim = s;
	return s;
fail:
	log_error(LOGC_INDEX, "preparing \"%.80s\": %s", sql, c->err);
	return NULL;
}

void db_bind_str(struct dbs *s, int i, const char *v)
{
	if (v == NULL) {
		db_bind_null(s, i);
	} else if (s->lite != NULL) {
		sqlite3_bind_text(s->lite, i, v, -1, SQLITE_STATIC);
	} else if (i >= 1 && i <= s->nparams) {
		s->values[i - 1] = v;
		s->formats[i - 1] = 0;
	}
}

void db_bind_text(struct dbs *s, int i, const char *v)
{
	db_bind_str(s, i, v != NULL && v[0] != '\0' ? v : NULL);
}

void db_bind_int(struct dbs *s, int i, int64_t v)
{
	if (s->lite != NULL) {
		sqlite3_bind_int64(s->lite, i, v);
	} else if (i >= 1 && i <= s->nparams) {
		snprintf(s->ibuf[i - 1], sizeof(s->ibuf[0]), "%lld",
		         (long long)v);
		s->values[i - 1] = s->ibuf[i - 1];
		s->formats[i - 1] = 0;
	}
}

void db_bind_long(struct dbs *s, int i, long v)
{
	if (v < 0)
		db_bind_null(s, i);
	else
		db_bind_int(s, i, v);
}

void db_bind_null(struct dbs *s, int i)
{
	if (s->lite != NULL) {
		sqlite3_bind_null(s->lite, i);
	} else if (i >= 1 && i <= s->nparams) {
		s->values[i - 1] = NULL;
		s->formats[i - 1] = 0;
	}
}

void db_bind_blob(struct dbs *s, int i, const void *v, size_t n)
{
	if (s->lite != NULL) {
		sqlite3_bind_blob64(s->lite, i, v ? v : "", n, SQLITE_STATIC);
	} else if (i >= 1 && i <= s->nparams) {
		s->values[i - 1] = v ? v : "";
		s->lengths[i - 1] = (int)n;
		s->formats[i - 1] = 1; /* binary: bytea as it is */
	}
}

static int pg_step(struct dbs *s)
{
	struct dbc *c = s->c;

	if (!s->started) {
		ExecStatusType st;

		s->started = 1;
		s->row = -1;
		s->nrows = 0;
		s->res = PQexecPrepared(c->pg, s->name, s->nparams, s->values,
		                        s->lengths, s->formats, 0);
		st = PQresultStatus(s->res);
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			set_pg_err(c, s->res);
			return DB_ERROR;
		}
		if (st == PGRES_TUPLES_OK)
			s->nrows = PQntuples(s->res);
		s->changes = strtoll(PQcmdTuples(s->res), NULL, 10);
	}
	if (s->row + 1 < s->nrows) {
		s->row++;
		return DB_ROW;
	}
	return DB_DONE;
}

int db_step(struct dbs *s)
{
	int rc;

	if (s->lite == NULL) {
		rc = pg_step(s);
	} else {
		rc = sqlite3_step(s->lite);
		if (rc == SQLITE_ROW) {
			rc = DB_ROW;
		} else if (rc == SQLITE_DONE) {
			s->changes = sqlite3_changes(s->c->lite);
			rc = DB_DONE;
		} else {
			set_err(s->c, sqlite3_errmsg(s->c->lite));
			rc = DB_ERROR;
		}
	}
	if (rc == DB_ERROR)
		log_error(LOGC_INDEX, "\"%.80s\": %s", s->sql, s->c->err);
	return rc;
}

const char *db_text(struct dbs *s, int col)
{
	if (s->lite != NULL)
		return (const char *)sqlite3_column_text(s->lite, col);
	if (s->res == NULL || s->row < 0 || s->row >= s->nrows ||
	    col >= PQnfields(s->res) || PQgetisnull(s->res, s->row, col))
		return NULL;
	return PQgetvalue(s->res, s->row, col);
}

int db_is_null(struct dbs *s, int col)
{
	if (s->lite != NULL)
		return sqlite3_column_type(s->lite, col) == SQLITE_NULL;
	return db_text(s, col) == NULL;
}

int64_t db_int(struct dbs *s, int col)
{
	const char *t;

	if (s->lite != NULL)
		return sqlite3_column_int64(s->lite, col);
	t = db_text(s, col);
	if (t == NULL)
		return 0;
	if (t[0] == 't' && t[1] == '\0') /* a boolean */
		return 1;
	return strtoll(t, NULL, 10);
}

long db_long(struct dbs *s, int col)
{
	return db_is_null(s, col) ? -1 : (long)db_int(s, col);
}

int64_t db_changes(struct dbs *s)
{
	return s->changes;
}

void db_reset(struct dbs *s)
{
	if (s->lite != NULL) {
		sqlite3_reset(s->lite);
		sqlite3_clear_bindings(s->lite);
		return;
	}
	PQclear(s->res);
	s->res = NULL;
	s->started = 0;
	for (int i = 0; i < s->nparams; i++) {
		s->values[i] = NULL;
		s->lengths[i] = s->formats[i] = 0;
	}
}

int db_run(struct dbs *s)
{
	int rc = db_step(s);

	db_reset(s);
	return rc == DB_ERROR ? -1 : 0;
}

/* ---- plain SQL, transactions ------------------------------------------ */

int db_exec(struct dbc *c, const char *sql, char *err, size_t errlen)
{
	int ok;

	if (is_pg(c)) {
		PGresult *r = PQexec(c->pg, sql);
		ExecStatusType st = PQresultStatus(r);

		ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
		if (!ok)
			set_pg_err(c, r);
		/* COMMIT of a failed transaction answers ROLLBACK */
		else if (strncmp(sql, "COMMIT", 6) == 0 &&
		         strcmp(PQcmdStatus(r), "COMMIT") != 0) {
			ok = 0;
			set_err(c, "the transaction was rolled back");
		}
		PQclear(r);
	} else {
		char *msg = NULL;

		ok = sqlite3_exec(c->lite, sql, NULL, NULL, &msg) == SQLITE_OK;
		if (!ok)
			set_err(c, msg ? msg : sqlite3_errmsg(c->lite));
		sqlite3_free(msg);
	}
	if (!ok && err != NULL)
		snprintf(err, errlen, "%s", c->err);
	return ok ? 0 : -1;
}

static int exec_logged(struct dbc *c, const char *sql)
{
	if (db_exec(c, sql, NULL, 0) == 0)
		return 0;
	log_error(LOGC_INDEX, "%s: %s", sql, c->err);
	return -1;
}

int db_begin(struct dbc *c)
{
	return exec_logged(c, is_pg(c) ? "BEGIN" : "BEGIN IMMEDIATE");
}

int db_commit(struct dbc *c)
{
	if (exec_logged(c, "COMMIT") == 0)
		return 0;
	/* a COMMIT that failed may leave the transaction open */
	if (is_pg(c) ? PQtransactionStatus(c->pg) != PQTRANS_IDLE
	             : !sqlite3_get_autocommit(c->lite))
		db_rollback(c);
	return -1;
}

void db_rollback(struct dbc *c)
{
	(void)exec_logged(c, "ROLLBACK");
}

int db_durable(struct dbc *c, int on)
{
	if (is_pg(c))
		return 0;
	return exec_logged(c, on ? "PRAGMA synchronous = FULL"
	                         : "PRAGMA synchronous = NORMAL");
}

/* ---- connections ------------------------------------------------------ */

/* PostgreSQL's NOTICEs ("relation exists, skipping") are not logged. */
static void no_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static int connect_one(struct db *db, struct dbc *c, char *err, size_t errlen)
{
	c->db = db;
	if (db->backend == DB_POSTGRES) {
		c->pg = PQconnectdb(db->target);
		if (PQstatus(c->pg) != CONNECTION_OK) {
			snprintf(err, errlen, "PostgreSQL: %s",
			         PQerrorMessage(c->pg));
			return -1;
		}
		PQsetNoticeProcessor(c->pg, no_notice, NULL);
		if (db_exec(c,
		            db->readonly ? "SET default_transaction_read_only "
		                           "= on; SET client_encoding = 'UTF8'"
		                         : "SET client_encoding = 'UTF8'",
		            err, errlen) != 0)
			return -1;
		return 0;
	}
	if (sqlite3_open_v2(db->target, &c->lite,
	                    (db->readonly ? SQLITE_OPEN_READONLY
	                                  : SQLITE_OPEN_READWRITE |
	                                            SQLITE_OPEN_CREATE) |
	                            SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", db->target,
		         c->lite ? sqlite3_errmsg(c->lite) : "cannot open");
		return -1;
	}
	sqlite3_busy_timeout(c->lite, 10000);
	/*
	 * WAL: readers (the drimbox command) never block the daemon.
	 * synchronous=NORMAL: commits are atomic and survive a crash of the
	 * process; only a power loss can drop the last commits, and the
	 * start-up check then reconciles the cache with the index.
	 */
	if (!db->readonly &&
	    db_exec(c,
	            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; "
	            "PRAGMA foreign_keys = ON",
	            err, errlen) != 0)
		return -1;
	return 0;
}

static void disconnect(struct dbc *c)
{
	cache_clear(c);
	if (c->pg != NULL)
		PQfinish(c->pg);
	if (c->lite != NULL)
		sqlite3_close(c->lite);
	c->pg = NULL;
	c->lite = NULL;
}

void db_close(struct db *db)
{
	if (db == NULL)
		return;
	for (int i = 0; i < db->n; i++)
		disconnect(&db->conns[i]);
	free(db->conns);
	free(db->target);
	pthread_mutex_destroy(&db->lock);
	pthread_cond_destroy(&db->freed);
	free(db);
}

static int is_pg_target(const char *t)
{
	return strncmp(t, "postgresql://", 13) == 0 ||
	       strncmp(t, "postgres://", 11) == 0 || strchr(t, '=') != NULL;
}

int db_open(const char *target, int readonly, int pool, struct db **out,
            char *err, size_t errlen)
{
	struct db *db = calloc(1, sizeof(*db));

	if (db == NULL || (db->target = strdup(target)) == NULL) {
		free(db);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	db->backend = is_pg_target(target) ? DB_POSTGRES : DB_SQLITE;
	db->readonly = readonly;
	db->n = db->backend == DB_SQLITE || pool < 1 ? 1 : pool;
	pthread_mutex_init(&db->lock, NULL);
	pthread_cond_init(&db->freed, NULL);
	db->conns = calloc((size_t)db->n, sizeof(*db->conns));
	if (db->conns == NULL) {
		snprintf(err, errlen, "out of memory");
		db->n = 0;
		goto fail;
	}
	for (int i = 0; i < db->n; i++)
		if (connect_one(db, &db->conns[i], err, errlen) != 0)
			goto fail;
	*out = db;
	return 0;
fail:
	db_close(db);
	return -1;
}

enum db_backend db_backend(const struct db *db)
{
	return db->backend;
}

const char *db_file(const struct db *db)
{
	return db->backend == DB_SQLITE ? db->target : NULL;
}

/*
 * Whether an idle connection still has its server. What the server sent
 * meanwhile is read without blocking: a server that went away left its
 * goodbye (FATAL: terminating connection) and the end of the stream,
 * which libpq sees as a broken connection. A statement would otherwise be
 * the one to find out, and fail.
 */
static int pg_alive(PGconn *pg)
{
	for (int i = 0; i < 4 && PQstatus(pg) == CONNECTION_OK; i++) {
		struct pollfd p = { PQsocket(pg), POLLIN, 0 };

		if (p.fd < 0 || poll(&p, 1, 0) < 0)
			return 0;
		if (p.revents == 0)
			return 1; /* nothing pending */
		if (PQconsumeInput(pg) == 0)
			return 0;
	}
	return PQstatus(pg) == CONNECTION_OK;
}

struct dbc *db_acquire(struct db *db)
{
	struct dbc *c = NULL;

	pthread_mutex_lock(&db->lock);
	for (;;) {
		for (int i = 0; i < db->n && c == NULL; i++)
			if (!db->conns[i].busy)
				c = &db->conns[i];
		if (c != NULL)
			break;
		pthread_cond_wait(&db->freed, &db->lock);
	}
	c->busy = 1;
	pthread_mutex_unlock(&db->lock);
	/* a server restarted, a connection cut: connect again */
	if (c->pg != NULL && !pg_alive(c->pg)) {
		char err[512];

		log_warn(LOGC_INDEX,
		         "PostgreSQL connection lost: reconnecting");
		disconnect(c);
		if (connect_one(db, c, err, sizeof(err)) != 0) {
			log_error(LOGC_INDEX, "%s", err);
			set_err(c, err);
			db_release(db, c);
			return NULL;
		}
	}
	return c;
}

void db_release(struct db *db, struct dbc *c)
{
	pthread_mutex_lock(&db->lock);
	c->busy = 0;
	pthread_cond_signal(&db->freed);
	pthread_mutex_unlock(&db->lock);
}
