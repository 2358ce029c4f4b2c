/*
 * index_sqlite.c - the index on SQLite (WAL). Owns the connection and its
 * prepared statements; a mutex serialises callers, and each write call is
 * one transaction. The schema comes from src/sql/NNN_*.sql (embedded).
 */
#include "index.h"
#include "index_internal.h"
#include "index_schema.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Free space below which the index is not writable, for readiness. */
#define WRITABLE_FREE (16 << 20)

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_UPSERT_PATIENT,
	S_UPSERT_STUDY,
	S_UPSERT_SERIES,
	S_UPSERT_INSTANCE,
	S_PRUNE_INSTANCES,
	S_PUT_CACHED,
	S_CACHED_SIZE,
	S_PRUNE_SERIES,
	S_CACHE_BYTES,
	S_LRU_SERIES,
	S_SERIES_CACHED_PATHS,
	S_UNCACHE_SERIES,
	S_CACHED_ALL,
	S_UNCACHE_ONE,
	S_HAS_PATH,
	S_COUNTS,
	S_STUDY_INSTANCES,
	S__COUNT
};

static const char *const stmt_sql[S__COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_UPSERT_PATIENT] =
	        "INSERT INTO patients(patient_id, issuer, ins, ipp, name, "
	        "birth_date, sex) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) "
	        "ON CONFLICT(patient_id, issuer) DO UPDATE SET "
	        "name = coalesce(excluded.name, name), "
	        "birth_date = coalesce(excluded.birth_date, birth_date), "
	        "sex = coalesce(excluded.sex, sex) RETURNING id",
	[S_UPSERT_STUDY] =
	        "INSERT INTO studies(uid, patient, study_date, study_time, "
	        "accession, description, modalities, referring, study_id, "
	        "num_series, num_instances, synced_at) "
	        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
	        "ON CONFLICT(uid) DO UPDATE SET "
	        "patient = coalesce(excluded.patient, patient), "
	        "study_date = coalesce(excluded.study_date, study_date), "
	        "study_time = coalesce(excluded.study_time, study_time), "
	        "accession = coalesce(excluded.accession, accession), "
	        "description = coalesce(excluded.description, description), "
	        "modalities = coalesce(excluded.modalities, modalities), "
	        "referring = coalesce(excluded.referring, referring), "
	        "study_id = coalesce(excluded.study_id, study_id), "
	        "num_series = coalesce(excluded.num_series, num_series), "
	        "num_instances = coalesce(excluded.num_instances, "
	        "num_instances), "
	        "synced_at = coalesce(excluded.synced_at, synced_at) "
	        "RETURNING id",
	[S_UPSERT_SERIES] =
	        "INSERT INTO series(uid, study, modality, number, description, "
	        "body_part, num_instances, sync_gen, last_access) "
	        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
	        "ON CONFLICT(uid) DO UPDATE SET study = excluded.study, "
	        "modality = coalesce(excluded.modality, modality), "
	        "number = coalesce(excluded.number, number), "
	        "description = coalesce(excluded.description, description), "
	        "body_part = coalesce(excluded.body_part, body_part), "
	        "num_instances = coalesce(excluded.num_instances, "
	        "num_instances), "
	        "sync_gen = max(excluded.sync_gen, sync_gen), "
	        "last_access = max(excluded.last_access, last_access) "
	        "RETURNING id",
	[S_UPSERT_INSTANCE] =
	        "INSERT INTO instances(uid, series, sop_class, number, "
	        "sync_gen, listed) VALUES(?1, ?2, ?3, ?4, ?5, ?6) "
	        "ON CONFLICT(uid) DO UPDATE SET series = excluded.series, "
	        "sop_class = coalesce(excluded.sop_class, sop_class), "
	        "number = coalesce(excluded.number, number), "
	        "listed = coalesce(excluded.listed, listed), "
	        "sync_gen = excluded.sync_gen",
	[S_PRUNE_INSTANCES] = "DELETE FROM instances WHERE series = ?1 AND "
	                      "cache_path IS NULL AND sync_gen <> ?2",
	[S_CACHED_SIZE] = "SELECT size FROM instances WHERE uid = ?1 AND "
	                  "cache_path IS NOT NULL",
	[S_PRUNE_SERIES] =
	        "DELETE FROM series WHERE study = ?1 AND sync_gen <> ?2 AND "
	        "NOT EXISTS (SELECT 1 FROM instances i WHERE i.series = "
	        "series.id AND i.cache_path IS NOT NULL)",
	[S_PUT_CACHED] =
	        "INSERT INTO instances(uid, series, sop_class, number, "
	        "cache_path, transfer_syntax, size, frames, metadata, "
	        "cached_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
	        "ON CONFLICT(uid) DO UPDATE SET series = excluded.series, "
	        "sop_class = excluded.sop_class, "
	        "number = coalesce(excluded.number, number), "
	        "cache_path = excluded.cache_path, "
	        "transfer_syntax = excluded.transfer_syntax, "
	        "size = excluded.size, frames = excluded.frames, "
	        "metadata = excluded.metadata, cached_at = excluded.cached_at",
	[S_CACHE_BYTES] = "SELECT coalesce(sum(size), 0) FROM instances "
	                  "WHERE cache_path IS NOT NULL",
	[S_LRU_SERIES] =
	        "SELECT st.uid, se.uid FROM series se "
	        "JOIN studies st ON st.id = se.study WHERE EXISTS (SELECT 1 "
	        "FROM instances i WHERE i.series = se.id AND i.cache_path IS "
	        "NOT NULL) ORDER BY se.last_access, se.id LIMIT 1",
	[S_SERIES_CACHED_PATHS] =
	        "SELECT i.cache_path FROM instances i JOIN series se ON "
	        "se.id = i.series WHERE se.uid = ?1 AND i.cache_path IS NOT "
	        "NULL",
	[S_UNCACHE_SERIES] =
	        "UPDATE instances SET cache_path = NULL, size = NULL, "
	        "metadata = NULL, cached_at = NULL WHERE series = (SELECT id "
	        "FROM series WHERE uid = ?1) AND cache_path IS NOT NULL",
	[S_CACHED_ALL] = "SELECT id, cache_path FROM instances WHERE "
	                 "cache_path IS NOT NULL",
	[S_UNCACHE_ONE] = "UPDATE instances SET cache_path = NULL, size = "
	                  "NULL, metadata = NULL, cached_at = NULL WHERE id = "
	                  "?1",
	[S_HAS_PATH] = "SELECT 1 FROM instances WHERE cache_path = ?1",
	[S_COUNTS] = "SELECT (SELECT count(*) FROM patients), (SELECT count(*) "
	             "FROM studies), (SELECT count(*) FROM series), (SELECT "
	             "count(*) FROM instances), (SELECT count(*) FROM "
	             "instances WHERE cache_path IS NOT NULL)",
	[S_STUDY_INSTANCES] = "SELECT count(*), count(i.cache_path) FROM "
	                      "instances i JOIN series "
	                      "se ON se.id = i.series JOIN studies st ON "
	                      "st.id = se.study WHERE st.uid = ?1",
};

/* Generated queries (QIDO, WADO listings) kept prepared, least used out. */
#define QCACHE_SIZE 32

struct cached_stmt {
	char *sql;
	uint64_t hash, used;
	sqlite3_stmt *stmt;
};

struct index {
	sqlite3 *db;
	sqlite3_stmt *stmt[S__COUNT];
	struct cached_stmt qcache[QCACHE_SIZE];
	uint64_t qclock;
	pthread_mutex_t lock; /* serialises every call */
	int version;
	int64_t last_gen; /* sync generations, strictly increasing */
};

static int64_t now_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

/* Binds text, or NULL for a NULL or empty value. */
void index_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL || v[0] == '\0')
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* Binds an integer, or NULL for a negative ("unknown") value. */
static void bind_long(sqlite3_stmt *s, int i, long v)
{
	if (v < 0)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_int64(s, i, v);
}

static void stmt_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Runs a statement that returns no row; 0 or -1 (logged). */
static int run(struct index *ix, enum stmt_id id)
{
	sqlite3_stmt *s = ix->stmt[id];
	int rc = sqlite3_step(s);

	stmt_done(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_error(LOGC_INDEX, "statement %d failed: %s", (int)id,
		          sqlite3_errmsg(ix->db));
		return -1;
	}
	return 0;
}

/* Runs a statement returning one integer (RETURNING id); -1 on error. */
static int64_t run_id(struct index *ix, enum stmt_id id)
{
	sqlite3_stmt *s = ix->stmt[id];
	int64_t v = -1;

	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	else
		log_error(LOGC_INDEX, "statement %d failed: %s", (int)id,
		          sqlite3_errmsg(ix->db));
	stmt_done(s);
	return v;
}

static int tx_begin(struct index *ix)
{
	pthread_mutex_lock(&ix->lock);
	if (run(ix, S_BEGIN) != 0) {
		pthread_mutex_unlock(&ix->lock);
		return -1;
	}
	return 0;
}

/* Commits when ok is 0, rolls back otherwise; returns ok or -1. */
static int tx_end(struct index *ix, int ok)
{
	if (ok == 0 && run(ix, S_COMMIT) != 0)
		ok = -1;
	if (ok != 0)
		(void)run(ix, S_ROLLBACK);
	pthread_mutex_unlock(&ix->lock);
	return ok;
}

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int read_version(sqlite3 *db, int *version)
{
	sqlite3_stmt *s = NULL;
	int rc;

	*version = 0;
	rc = sqlite3_prepare_v2(db,
	                        "SELECT count(*) FROM sqlite_master WHERE "
	                        "type = 'table' AND name = 'schema_version'",
	                        -1, &s, NULL);
	if (rc != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW)
		goto out;
	if (sqlite3_column_int(s, 0) == 0) {
		rc = SQLITE_OK;
		goto out;
	}
	sqlite3_finalize(s);
	s = NULL;
	rc = sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1,
	                        &s, NULL);
	if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		*version = sqlite3_column_int(s, 0);
out:
	sqlite3_finalize(s);
	return rc == SQLITE_OK ? 0 : -1;
}

/* Applies the schema steps above the database's version, each atomic. */
static int upgrade(struct index *ix, int readonly, char *err, size_t errlen)
{
	char sql[256];

	if (read_version(ix->db, &ix->version) != 0) {
		snprintf(err, errlen, "reading schema version: %s",
		         sqlite3_errmsg(ix->db));
		return -1;
	}
	if (ix->version > index_schema_count) {
		snprintf(err, errlen,
		         "index schema version %d is newer than this drimbox "
		         "(%d)",
		         ix->version, index_schema_count);
		return -1;
	}
	if (ix->version < index_schema_count && readonly) {
		snprintf(err, errlen,
		         "index schema version %d needs an upgrade to %d: "
		         "start drimboxd first",
		         ix->version, index_schema_count);
		return -1;
	}
	for (int i = ix->version; i < index_schema_count; i++) {
		const struct index_schema_step *st = &index_schema_steps[i];

		if (exec_sql(ix->db, "BEGIN IMMEDIATE", err, errlen) != 0)
			return -1;
		snprintf(sql, sizeof(sql),
		         "CREATE TABLE IF NOT EXISTS schema_version(version "
		         "INTEGER NOT NULL); DELETE FROM schema_version; "
		         "INSERT INTO schema_version VALUES(%d)",
		         st->version);
		if (exec_sql(ix->db, st->sql, err, errlen) != 0 ||
		    exec_sql(ix->db, sql, err, errlen) != 0) {
			char e2[64];

			(void)exec_sql(ix->db, "ROLLBACK", e2, sizeof(e2));
			return -1;
		}
		if (exec_sql(ix->db, "COMMIT", err, errlen) != 0)
			return -1;
		log_info(LOGC_INDEX, "schema upgraded to version %d (%s)",
		         st->version, st->name);
		ix->version = st->version;
	}
	return 0;
}

void index_close(struct index *ix)
{
	if (ix == NULL)
		return;
	for (int i = 0; i < S__COUNT; i++)
		sqlite3_finalize(ix->stmt[i]);
	for (int i = 0; i < QCACHE_SIZE; i++) {
		sqlite3_finalize(ix->qcache[i].stmt);
		free(ix->qcache[i].sql);
	}
	sqlite3_close(ix->db);
	pthread_mutex_destroy(&ix->lock);
	free(ix);
}

int index_open(const char *path, int readonly, struct index **out, char *err,
               size_t errlen)
{
	struct index *ix = calloc(1, sizeof(*ix));
	int flags = readonly ? SQLITE_OPEN_READONLY
	                     : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

	if (ix == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&ix->lock, NULL);
	if (sqlite3_open_v2(path, &ix->db, flags | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
		         ix->db ? sqlite3_errmsg(ix->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(ix->db, 10000);
	/*
	 * WAL: readers (the drimbox command) never block the daemon.
	 * synchronous=NORMAL: commits are atomic and survive a crash of the
	 * process; only a power loss can drop the last commits, and the
	 * start-up check then reconciles the cache with the index.
	 */
	if (!readonly &&
	    exec_sql(ix->db,
	             "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; "
	             "PRAGMA foreign_keys = ON",
	             err, errlen) != 0)
		goto fail;
	if (upgrade(ix, readonly, err, errlen) != 0)
		goto fail;
	for (int i = 0; i < S__COUNT; i++) {
		if (sqlite3_prepare_v3(ix->db, stmt_sql[i], -1,
		                       SQLITE_PREPARE_PERSISTENT, &ix->stmt[i],
		                       NULL) != SQLITE_OK) {
			snprintf(err, errlen, "preparing statement %d: %s", i,
			         sqlite3_errmsg(ix->db));
			goto fail;
		}
	}
	*out = ix;
	return 0;
fail:
	index_close(ix);
	return -1;
}

int index_schema_version(struct index *ix)
{
	return ix->version;
}

/* Known INS issuers: the PatientID is then the INS matricule. */
static int issuer_is_ins(const char *issuer)
{
	return issuer != NULL && (strcmp(issuer, "ASIP-SANTE-INS-NIR") == 0 ||
	                          strcmp(issuer, "ASIP-SANTE-INS-NIA") == 0 ||
	                          strcmp(issuer, "ASIP-SANTE-INS-C") == 0);
}

static int64_t upsert_patient(struct index *ix, const struct idx_patient *p)
{
	sqlite3_stmt *s = ix->stmt[S_UPSERT_PATIENT];
	int ins;

	if (p == NULL || p->patient_id == NULL || p->patient_id[0] == '\0')
		return 0; /* unknown patient: studies.patient stays NULL */
	ins = issuer_is_ins(p->issuer);
	sqlite3_bind_text(s, 1, p->patient_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, p->issuer ? p->issuer : "", -1, SQLITE_STATIC);
	index_bind_text(s, 3, ins ? p->patient_id : NULL);
	index_bind_text(s, 4, ins ? NULL : p->patient_id);
	index_bind_text(s, 5, p->name);
	index_bind_text(s, 6, p->birth_date);
	index_bind_text(s, 7, p->sex);
	return run_id(ix, S_UPSERT_PATIENT);
}

static int64_t upsert_study(struct index *ix, int64_t patient,
                            const struct idx_study *st, int64_t synced_at)
{
	sqlite3_stmt *s = ix->stmt[S_UPSERT_STUDY];

	sqlite3_bind_text(s, 1, st->uid, -1, SQLITE_STATIC);
	if (patient > 0)
		sqlite3_bind_int64(s, 2, patient);
	index_bind_text(s, 3, st->date);
	index_bind_text(s, 4, st->time);
	index_bind_text(s, 5, st->accession);
	index_bind_text(s, 6, st->description);
	index_bind_text(s, 7, st->modalities);
	index_bind_text(s, 8, st->referring);
	index_bind_text(s, 9, st->study_id);
	bind_long(s, 10, st->num_series);
	bind_long(s, 11, st->num_instances);
	if (synced_at > 0)
		sqlite3_bind_int64(s, 12, synced_at);
	return run_id(ix, S_UPSERT_STUDY);
}

static int64_t upsert_series(struct index *ix, int64_t study,
                             const struct idx_series *se, int64_t gen,
                             int64_t access)
{
	sqlite3_stmt *s = ix->stmt[S_UPSERT_SERIES];

	sqlite3_bind_text(s, 1, se->uid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, study);
	index_bind_text(s, 3, se->modality);
	bind_long(s, 4, se->number);
	index_bind_text(s, 5, se->description);
	index_bind_text(s, 6, se->body_part);
	bind_long(s, 7, se->num_instances);
	sqlite3_bind_int64(s, 8, gen);
	sqlite3_bind_int64(s, 9, access);
	return run_id(ix, S_UPSERT_SERIES);
}

int index_sync_study(struct index *ix, const struct idx_patient *pat,
                     const struct idx_study *st,
                     const struct idx_series *series, size_t nseries,
                     const struct idx_instance *inst, const size_t *inst_off)
{
	int64_t patient, study, gen;
	int ok = -1;

	if (tx_begin(ix) != 0)
		return -1;
	gen = now_us();
	if (gen <= ix->last_gen)
		gen = ix->last_gen + 1;
	ix->last_gen = gen;
	patient = upsert_patient(ix, pat);
	if (patient < 0)
		goto out;
	study = upsert_study(ix, patient, st, gen / 1000000);
	if (study < 0)
		goto out;
	for (size_t i = 0; i < nseries; i++) {
		int64_t se = upsert_series(ix, study, &series[i], gen, 0);
		if (se < 0)
			goto out;
		for (size_t j = inst_off[i]; j < inst_off[i + 1]; j++) {
			sqlite3_stmt *s = ix->stmt[S_UPSERT_INSTANCE];

			sqlite3_bind_text(s, 1, inst[j].uid, -1, SQLITE_STATIC);
			sqlite3_bind_int64(s, 2, se);
			index_bind_text(s, 3, inst[j].sop_class);
			bind_long(s, 4, inst[j].number);
			sqlite3_bind_int64(s, 5, gen);
			bind_long(s, 6, inst[j].listed);
			if (run(ix, S_UPSERT_INSTANCE) != 0)
				goto out;
		}
		sqlite3_bind_int64(ix->stmt[S_PRUNE_INSTANCES], 1, se);
		sqlite3_bind_int64(ix->stmt[S_PRUNE_INSTANCES], 2, gen);
		if (run(ix, S_PRUNE_INSTANCES) != 0)
			goto out;
	}
	/* Series the PACS no longer lists go, unless something is cached. */
	sqlite3_bind_int64(ix->stmt[S_PRUNE_SERIES], 1, study);
	sqlite3_bind_int64(ix->stmt[S_PRUNE_SERIES], 2, gen);
	if (run(ix, S_PRUNE_SERIES) != 0)
		goto out;
	ok = 0;
out:
	return tx_end(ix, ok);
}

int index_study_instances(struct index *ix, const char *study_uid, long *n,
                          long *cached)
{
	sqlite3_stmt *s = ix->stmt[S_STUDY_INSTANCES];
	int rc = -1;

	*n = 0;
	if (cached)
		*cached = 0;
	pthread_mutex_lock(&ix->lock);
	sqlite3_bind_text(s, 1, study_uid, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		*n = (long)sqlite3_column_int64(s, 0);
		if (cached)
			*cached = (long)sqlite3_column_int64(s, 1);
		rc = 0;
	}
	stmt_done(s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

/* Bytes an instance already occupies in the cache (0 when not cached). */
static int64_t cached_size(struct index *ix, const char *sop_uid)
{
	sqlite3_stmt *s = ix->stmt[S_CACHED_SIZE];
	int64_t size = 0;

	sqlite3_bind_text(s, 1, sop_uid, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		size = sqlite3_column_int64(s, 0);
	stmt_done(s);
	return size;
}

int index_put_cached(struct index *ix, const struct idx_put *items, size_t n,
                     int64_t *added)
{
	sqlite3_stmt *s = ix->stmt[S_PUT_CACHED];
	int64_t now = now_us(), grew = 0;
	int ok = 0;

	if (tx_begin(ix) != 0)
		return -1;
	for (size_t i = 0; ok == 0 && i < n; i++) {
		const struct idx_put *p = &items[i];
		int64_t patient, study, series;

		patient = upsert_patient(ix, &p->pat);
		study = patient < 0 ? -1 : upsert_study(ix, patient, &p->st, 0);
		series = study < 0 ? -1
		                   : upsert_series(ix, study, &p->se, 0, now);
		if (series < 0) {
			ok = -1;
			break;
		}
		grew += (int64_t)p->c.size - cached_size(ix, p->c.sop_uid);
		sqlite3_bind_text(s, 1, p->c.sop_uid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, series);
		index_bind_text(s, 3, p->c.sop_class);
		bind_long(s, 4, p->c.number);
		sqlite3_bind_text(s, 5, p->c.cache_path, -1, SQLITE_STATIC);
		index_bind_text(s, 6, p->c.transfer_syntax);
		sqlite3_bind_int64(s, 7, (sqlite3_int64)p->c.size);
		bind_long(s, 8, p->c.frames);
		index_bind_text(s, 9, p->c.metadata);
		sqlite3_bind_int64(s, 10, now / 1000000);
		ok = run(ix, S_PUT_CACHED);
	}
	ok = tx_end(ix, ok);
	if (ok == 0)
		*added = grew;
	return ok;
}

int index_cache_bytes(struct index *ix, uint64_t *bytes)
{
	sqlite3_stmt *s = ix->stmt[S_CACHE_BYTES];
	int rc = -1;

	pthread_mutex_lock(&ix->lock);
	if (sqlite3_step(s) == SQLITE_ROW) {
		*bytes = (uint64_t)sqlite3_column_int64(s, 0);
		rc = 0;
	}
	stmt_done(s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

static void copy_col(sqlite3_stmt *s, int col, char *buf, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	snprintf(buf, cap, "%s", t ? (const char *)t : "");
}

int index_lru_series(struct index *ix, char *study_uid, char *series_uid)
{
	sqlite3_stmt *s = ix->stmt[S_LRU_SERIES];
	int rc;

	pthread_mutex_lock(&ix->lock);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		copy_col(s, 0, study_uid, 65);
		copy_col(s, 1, series_uid, 65);
		rc = 1;
	} else {
		rc = rc == SQLITE_DONE ? 0 : -1;
	}
	stmt_done(s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int index_uncache_series(struct index *ix, const char *series_uid,
                         void (*cb)(void *ctx, const char *rel_path), void *ctx)
{
	sqlite3_stmt *s = ix->stmt[S_SERIES_CACHED_PATHS];
	char **paths = NULL;
	size_t n = 0, cap = 0;
	int ok = 0, step;

	if (tx_begin(ix) != 0)
		return -1;
	sqlite3_bind_text(s, 1, series_uid, -1, SQLITE_STATIC);
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		const char *p = (const char *)sqlite3_column_text(s, 0);

		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			char **np = realloc(paths, nc * sizeof(*np));

			if (np == NULL) {
				ok = -1;
				break;
			}
			paths = np;
			cap = nc;
		}
		paths[n] = strdup(p ? p : "");
		if (paths[n] == NULL) {
			ok = -1;
			break;
		}
		n++;
	}
	if (ok == 0 && step != SQLITE_DONE)
		ok = -1;
	stmt_done(s);
	/* Clear the rows only when every file to remove is known. */
	if (ok == 0) {
		sqlite3_bind_text(ix->stmt[S_UNCACHE_SERIES], 1, series_uid, -1,
		                  SQLITE_STATIC);
		ok = run(ix, S_UNCACHE_SERIES);
	}
	ok = tx_end(ix, ok);
	/* The index no longer points at the files: now they may go. */
	for (size_t i = 0; i < n; i++) {
		if (ok == 0)
			cb(ctx, paths[i]);
		free(paths[i]);
	}
	free(paths);
	return ok;
}

int index_check_cached(struct index *ix,
                       int (*cb)(void *ctx, const char *rel_path), void *ctx)
{
	sqlite3_stmt *s = ix->stmt[S_CACHED_ALL];
	int ok = 0, rc;

	if (tx_begin(ix) != 0)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *p = (const char *)sqlite3_column_text(s, 1);

		if (cb(ctx, p ? p : "") != 0) {
			sqlite3_stmt *u = ix->stmt[S_UNCACHE_ONE];

			sqlite3_bind_int64(u, 1, sqlite3_column_int64(s, 0));
			if (run(ix, S_UNCACHE_ONE) != 0) {
				ok = -1;
				break;
			}
		}
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		ok = -1;
	stmt_done(s);
	return tx_end(ix, ok);
}

int index_has_cache_path(struct index *ix, const char *rel_path)
{
	sqlite3_stmt *s = ix->stmt[S_HAS_PATH];
	int rc;

	pthread_mutex_lock(&ix->lock);
	sqlite3_bind_text(s, 1, rel_path, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	rc = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
	stmt_done(s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int index_writable(struct index *ix, char *err, size_t errlen)
{
	const char *path;
	char dir[4096];
	struct statvfs fs;
	int rc = -1;

	pthread_mutex_lock(&ix->lock);
	path = sqlite3_db_filename(ix->db, "main");
	snprintf(dir, sizeof(dir), "%s", path ? path : "");
	if (strrchr(dir, '/') != NULL)
		*strrchr(dir, '/') = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if (path == NULL || path[0] == '\0')
		snprintf(err, errlen, "the index has no file");
	else if (access(path, W_OK) != 0 || access(dir, W_OK) != 0)
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	else if (statvfs(dir, &fs) != 0)
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
	else if ((uint64_t)fs.f_bavail * fs.f_frsize < WRITABLE_FREE)
		snprintf(err, errlen, "%s: less than %d MiB free", dir,
		         WRITABLE_FREE >> 20);
	else if (sqlite3_exec(ix->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	         SQLITE_OK)
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(ix->db));
	else if (sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL) !=
	         SQLITE_OK)
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(ix->db));
	else
		rc = 0;
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

int index_counts(struct index *ix, struct idx_counts *c)
{
	sqlite3_stmt *s = ix->stmt[S_COUNTS];
	int rc = -1;

	pthread_mutex_lock(&ix->lock);
	if (sqlite3_step(s) == SQLITE_ROW) {
		c->patients = (long)sqlite3_column_int64(s, 0);
		c->studies = (long)sqlite3_column_int64(s, 1);
		c->series = (long)sqlite3_column_int64(s, 2);
		c->instances = (long)sqlite3_column_int64(s, 3);
		c->cached = (long)sqlite3_column_int64(s, 4);
		rc = 0;
	}
	stmt_done(s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

static const char *col_text(sqlite3_stmt *s, int col)
{
	return (const char *)sqlite3_column_text(s, col);
}

static long col_long(sqlite3_stmt *s, int col)
{
	return sqlite3_column_type(s, col) == SQLITE_NULL
	               ? -1
	               : (long)sqlite3_column_int64(s, col);
}

int index_walk(struct index *ix, const char *study_uid,
               int (*cb)(void *ctx, const struct idx_row *row), void *ctx)
{
	static const char sql[] =
	        "SELECT st.uid, p.patient_id, p.name, st.study_date, "
	        "st.accession, st.description, st.modalities, se.uid, "
	        "se.modality, se.description, se.number, i.uid, i.cache_path, "
	        "i.transfer_syntax, i.number, i.size FROM studies st "
	        "LEFT JOIN patients p ON p.id = st.patient "
	        "LEFT JOIN series se ON se.study = st.id "
	        "LEFT JOIN instances i ON i.series = se.id "
	        "WHERE ?1 IS NULL OR st.uid = ?1 "
	        "ORDER BY st.study_date, st.uid, se.number, se.uid, i.listed, "
	        "i.number, i.uid";
	sqlite3_stmt *s = NULL;
	int rc = 0, step;

	pthread_mutex_lock(&ix->lock);
	if (sqlite3_prepare_v2(ix->db, sql, -1, &s, NULL) != SQLITE_OK) {
		log_error(LOGC_INDEX, "walk: %s", sqlite3_errmsg(ix->db));
		rc = -1;
		goto out;
	}
	index_bind_text(s, 1, study_uid);
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		struct idx_row r = {
			.study_uid = col_text(s, 0),
			.patient_id = col_text(s, 1),
			.patient_name = col_text(s, 2),
			.study_date = col_text(s, 3),
			.accession = col_text(s, 4),
			.description = col_text(s, 5),
			.modalities = col_text(s, 6),
			.series_uid = col_text(s, 7),
			.modality = col_text(s, 8),
			.series_description = col_text(s, 9),
			.series_number = col_long(s, 10),
			.sop_uid = col_text(s, 11),
			.cache_path = col_text(s, 12),
			.transfer_syntax = col_text(s, 13),
			.instance_number = col_long(s, 14),
			.size = col_long(s, 15),
		};
		rc = cb(ctx, &r);
		if (rc != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE) {
		log_error(LOGC_INDEX, "walk: %s", sqlite3_errmsg(ix->db));
		rc = -1;
	}
out:
	sqlite3_finalize(s);
	pthread_mutex_unlock(&ix->lock);
	return rc;
}

sqlite3 *index_db(struct index *ix)
{
	return ix->db;
}

void index_lock(struct index *ix)
{
	pthread_mutex_lock(&ix->lock);
}

void index_unlock(struct index *ix)
{
	pthread_mutex_unlock(&ix->lock);
}

int index_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	log_error(LOGC_INDEX, "%s: %s", sql, msg ? msg : "?");
	sqlite3_free(msg);
	return -1;
}

int index_step_done(struct index *ix, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	if (rc != SQLITE_DONE)
		log_error(LOGC_INDEX, "%s", sqlite3_errmsg(ix->db));
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

sqlite3_stmt *index_cached_stmt(struct index *ix, const char *sql)
{
	uint64_t hash = 14695981039346656037ULL; /* FNV-1a */
	struct cached_stmt *victim = &ix->qcache[0];
	sqlite3_stmt *s;
	char *copy;

	for (const char *p = sql; *p; p++)
		hash = (hash ^ (unsigned char)*p) * 1099511628211ULL;
	for (int i = 0; i < QCACHE_SIZE; i++) {
		struct cached_stmt *c = &ix->qcache[i];

		if (c->stmt != NULL && c->hash == hash &&
		    strcmp(c->sql, sql) == 0) {
			c->used = ++ix->qclock;
			return c->stmt;
		}
		if (c->used < victim->used)
			victim = c;
	}
	if (sqlite3_prepare_v3(ix->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s,
	                       NULL) != SQLITE_OK)
		return NULL;
	copy = strdup(sql);
	if (copy == NULL) {
		sqlite3_finalize(s);
		return NULL;
	}
	sqlite3_finalize(victim->stmt);
	free(victim->sql);
	*victim = (struct cached_stmt){ copy, hash, ++ix->qclock, s };
	return s;
}
