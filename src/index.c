/*
 * index.c - the index over the SQL layer (db.h): SQLite for one site (one
 * file, WAL, one connection), PostgreSQL for several nodes (a pool of
 * connections). Each write call is one transaction. The schema comes from
 * src/sql/<backend>/NNN_*.sql (embedded); both backends share the version
 * numbers.
 */
#include "index.h"
#include "index_internal.h"
#include "index_schema.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Free space below which the index is not writable, for readiness. */
#define WRITABLE_FREE (16 << 20)

/* Taken by every node upgrading a PostgreSQL schema ("drimbox" in ASCII). */
#define UPGRADE_LOCK "6472696d626f78"

static const char SQL_UPSERT_PATIENT[] =
        "INSERT INTO patients(patient_id, issuer, ins, ipp, name, "
        "birth_date, sex) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) "
        "ON CONFLICT(patient_id, issuer) DO UPDATE SET "
        "name = coalesce(excluded.name, patients.name), "
        "birth_date = coalesce(excluded.birth_date, patients.birth_date), "
        "sex = coalesce(excluded.sex, patients.sex) RETURNING id";
static const char SQL_UPSERT_STUDY[] =
        "INSERT INTO studies(uid, patient, study_date, study_time, "
        "accession, description, modalities, referring, study_id, "
        "num_series, num_instances, synced_at) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
        "ON CONFLICT(uid) DO UPDATE SET "
        "patient = coalesce(excluded.patient, studies.patient), "
        "study_date = coalesce(excluded.study_date, studies.study_date), "
        "study_time = coalesce(excluded.study_time, studies.study_time), "
        "accession = coalesce(excluded.accession, studies.accession), "
        "description = coalesce(excluded.description, "
        "studies.description), "
        "modalities = coalesce(excluded.modalities, studies.modalities), "
        "referring = coalesce(excluded.referring, studies.referring), "
        "study_id = coalesce(excluded.study_id, studies.study_id), "
        "num_series = coalesce(excluded.num_series, studies.num_series), "
        "num_instances = coalesce(excluded.num_instances, "
        "studies.num_instances), "
        "synced_at = coalesce(excluded.synced_at, studies.synced_at) "
        "RETURNING id";
static const char SQL_UPSERT_SERIES[] =
        "INSERT INTO series(uid, study, modality, number, description, "
        "body_part, num_instances, sync_gen, last_access) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
        "ON CONFLICT(uid) DO UPDATE SET study = excluded.study, "
        "modality = coalesce(excluded.modality, series.modality), "
        "number = coalesce(excluded.number, series.number), "
        "description = coalesce(excluded.description, series.description), "
        "body_part = coalesce(excluded.body_part, series.body_part), "
        "num_instances = coalesce(excluded.num_instances, "
        "series.num_instances), "
        "sync_gen = CASE WHEN excluded.sync_gen > series.sync_gen THEN "
        "excluded.sync_gen ELSE series.sync_gen END, "
        "last_access = CASE WHEN excluded.last_access > series.last_access "
        "THEN excluded.last_access ELSE series.last_access END "
        "RETURNING id";
/* Instances are upserted by rows of up to UPSERT_ROWS, one statement. */
#define UPSERT_ROWS 32
static const char SQL_UPSERT_INSTANCES_HEAD[] =
        "INSERT INTO instances(uid, series, sop_class, number, sync_gen, "
        "listed) VALUES ";
static const char SQL_UPSERT_INSTANCES_TAIL[] =
        " ON CONFLICT(uid) DO UPDATE SET series = excluded.series, "
        "sop_class = coalesce(excluded.sop_class, instances.sop_class), "
        "number = coalesce(excluded.number, instances.number), "
        "listed = coalesce(excluded.listed, instances.listed), "
        "sync_gen = CASE WHEN excluded.sync_gen > instances.sync_gen THEN "
        "excluded.sync_gen ELSE instances.sync_gen END";
/*
 * What a sync did not list goes: rows whose generation is older than its
 * own. Not "other than": syncs of one study may commit out of the order
 * of their generations (threads, nodes), and an older one must not remove
 * what a newer one listed. Generations only grow (CASE above).
 */
static const char SQL_PRUNE_INSTANCES[] =
        "DELETE FROM instances WHERE series = ?1 AND cache_path IS NULL "
        "AND sync_gen < ?2";
static const char SQL_CACHED_SIZE[] =
        "SELECT size FROM instances WHERE uid = ?1 AND cache_path IS NOT "
        "NULL";
static const char SQL_PRUNE_SERIES[] =
        "DELETE FROM series WHERE study = ?1 AND sync_gen < ?2 AND "
        "NOT EXISTS (SELECT 1 FROM instances i WHERE i.series = "
        "series.id AND i.cache_path IS NOT NULL)";
static const char SQL_PUT_CACHED[] =
        "INSERT INTO instances(uid, series, sop_class, number, "
        "cache_path, transfer_syntax, size, frames, metadata, "
        "cached_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
        "ON CONFLICT(uid) DO UPDATE SET series = excluded.series, "
        "sop_class = excluded.sop_class, "
        "number = coalesce(excluded.number, instances.number), "
        "cache_path = excluded.cache_path, "
        "transfer_syntax = excluded.transfer_syntax, "
        "size = excluded.size, frames = excluded.frames, "
        "metadata = excluded.metadata, cached_at = excluded.cached_at";
static const char SQL_CACHE_BYTES[] =
        "SELECT coalesce(sum(size), 0) FROM instances WHERE cache_path IS "
        "NOT NULL";
static const char SQL_LRU_SERIES[] =
        "SELECT st.uid, se.uid FROM series se "
        "JOIN studies st ON st.id = se.study WHERE EXISTS (SELECT 1 "
        "FROM instances i WHERE i.series = se.id AND i.cache_path IS "
        "NOT NULL) ORDER BY se.last_access, se.id LIMIT 1";
#define SQL_SERIES_CACHED_PATHS                                                \
	"SELECT i.id, i.cache_path FROM instances i JOIN series se ON "        \
	"se.id = i.series WHERE se.uid = ?1 AND i.cache_path IS NOT NULL"
static const char SQL_CACHED_PAGE[] =
        "SELECT id, cache_path FROM instances WHERE cache_path IS NOT NULL "
        "AND id > ?1 ORDER BY id LIMIT ?2";
static const char SQL_UNCACHE_ONE[] =
        "UPDATE instances SET cache_path = NULL, size = NULL, "
        "metadata = NULL, cached_at = NULL WHERE id = ?1";
static const char SQL_HAS_PATH[] =
        "SELECT 1 FROM instances WHERE cache_path = ?1";
static const char SQL_COUNTS[] =
        "SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM "
        "studies), (SELECT count(*) FROM series), (SELECT count(*) FROM "
        "instances), (SELECT count(*) FROM instances WHERE cache_path IS "
        "NOT NULL)";
static const char SQL_STUDY_INSTANCES[] =
        "SELECT count(*), count(i.cache_path) FROM instances i JOIN series "
        "se ON se.id = i.series JOIN studies st ON st.id = se.study WHERE "
        "st.uid = ?1";
static const char SQL_WALK[] =
        "SELECT st.uid, p.patient_id, p.name, st.study_date, "
        "st.accession, st.description, st.modalities, se.uid, "
        "se.modality, se.description, se.number, i.uid, i.cache_path, "
        "i.transfer_syntax, i.number, i.size FROM studies st "
        "LEFT JOIN patients p ON p.id = st.patient "
        "LEFT JOIN series se ON se.study = st.id "
        "LEFT JOIN instances i ON i.series = se.id "
        "WHERE CAST(?1 AS TEXT) IS NULL OR st.uid = ?1 "
        "ORDER BY st.study_date NULLS FIRST, st.uid, se.number NULLS FIRST, "
        "se.uid, i.listed NULLS FIRST, i.number NULLS FIRST, i.uid";

struct index {
	struct db *db;
	int version;
	pthread_mutex_t gen_lock;
	int64_t last_gen; /* sync generations, strictly increasing */
	char node[64];    /* who claims jobs */
	int lease;        /* seconds a claim holds without renewal */
	/* the claims running here, and the thread renewing their leases */
	char claims[INDEX_CLAIMS_MAX][128];
	int nclaims;
	pthread_mutex_t claims_lock;
	pthread_t renewer;
	int renewing, stop;
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
};

static int64_t now_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

struct dbc *index_conn(struct index *ix)
{
	return db_acquire(ix->db);
}

void index_done(struct index *ix, struct dbc *c)
{
	db_release(ix->db, c);
}

enum db_backend index_backend(const struct index *ix)
{
	return db_backend(ix->db);
}

const char *index_node(const struct index *ix)
{
	return ix->node;
}

int index_lease(const struct index *ix)
{
	return ix->lease;
}

void index_set_node(struct index *ix, const char *node, int lease)
{
	snprintf(ix->node, sizeof(ix->node), "%s", node);
	ix->lease = lease > 0 ? lease : 60;
}

int index_claim_hold(struct index *ix, const char *owner)
{
	int rc = -1;

	pthread_mutex_lock(&ix->claims_lock);
	if (ix->nclaims < INDEX_CLAIMS_MAX) {
		snprintf(ix->claims[ix->nclaims++], sizeof(ix->claims[0]), "%s",
		         owner);
		rc = 0;
	}
	pthread_mutex_unlock(&ix->claims_lock);
	if (rc != 0)
		log_error(LOGC_JOBS, "more than %d jobs running at once",
		          INDEX_CLAIMS_MAX);
	return rc;
}

void index_claim_drop(struct index *ix, const char *owner)
{
	pthread_mutex_lock(&ix->claims_lock);
	for (int i = 0; i < ix->nclaims; i++) {
		if (strcmp(ix->claims[i], owner) == 0) {
			memcpy(ix->claims[i], ix->claims[--ix->nclaims],
			       sizeof(ix->claims[0]));
			break;
		}
	}
	pthread_mutex_unlock(&ix->claims_lock);
}

int index_claims_held(struct index *ix, char owners[][128])
{
	int n;

	pthread_mutex_lock(&ix->claims_lock);
	n = ix->nclaims;
	memcpy(owners, ix->claims, (size_t)n * sizeof(ix->claims[0]));
	pthread_mutex_unlock(&ix->claims_lock);
	return n;
}

int index_is_shared(const struct index *ix)
{
	return index_backend(ix) == DB_POSTGRES;
}

static void *renew_leases(void *arg)
{
	struct index *ix = arg;
	struct timespec until;

	log_set_context("leases");
	pthread_mutex_lock(&ix->stop_lock);
	while (!ix->stop) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += ix->lease / 3 > 0 ? ix->lease / 3 : 1;
		pthread_cond_timedwait(&ix->stop_cond, &ix->stop_lock, &until);
		if (ix->stop)
			break;
		pthread_mutex_unlock(&ix->stop_lock);
		if (index_jobs_renew(ix) < 0)
			log_warn(LOGC_JOBS, "the leases of this node's running "
			                    "jobs could not be renewed");
		pthread_mutex_lock(&ix->stop_lock);
	}
	pthread_mutex_unlock(&ix->stop_lock);
	return NULL;
}

int index_leases_start(struct index *ix)
{
	if (pthread_create(&ix->renewer, NULL, renew_leases, ix) != 0)
		return -1;
	ix->renewing = 1;
	return 0;
}

struct dbc *index_tx_begin(struct index *ix)
{
	struct dbc *c = index_conn(ix);

	if (c != NULL && db_begin(c) != 0) {
		index_done(ix, c);
		return NULL;
	}
	return c;
}

int index_tx_end(struct index *ix, struct dbc *c, int rc)
{
	if (rc >= 0 && db_commit(c) != 0)
		rc = -1;
	else if (rc < 0)
		db_rollback(c);
	index_done(ix, c);
	return rc;
}

int index_key_lock(struct index *ix, struct dbc *c, const char *key)
{
	struct dbs *s;

	if (index_backend(ix) != DB_POSTGRES)
		return 0;
	s = db_prepare(c, "SELECT pg_advisory_xact_lock(hashtext(?1))");
	if (s == NULL)
		return -1;
	db_bind_str(s, 1, key);
	return db_run(s);
}

int index_any_row(struct index *ix, const char *sql, const char *value)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = -1;

	if (c == NULL)
		return -1;
	s = db_prepare(c, sql);
	if (s != NULL) {
		db_bind_str(s, 1, value);
		rc = db_step(s);
		rc = rc == DB_ROW ? 1 : rc == DB_DONE ? 0 : -1;
		db_reset(s);
	}
	index_done(ix, c);
	return rc;
}

/* Runs a statement returning one integer (RETURNING id); -1 on error. */
static int64_t run_id(struct dbs *s)
{
	int64_t v = db_step(s) == DB_ROW ? db_int(s, 0) : -1;

	db_reset(s);
	return v;
}

static int read_version(struct dbc *c, int pg, int *version)
{
	struct dbs *s = db_prepare(
	        c, pg ? "SELECT count(*) FROM information_schema.tables "
	                "WHERE table_schema = current_schema() AND "
	                "table_name = 'schema_version'"
	              : "SELECT count(*) FROM sqlite_master WHERE type = "
	                "'table' AND name = 'schema_version'");
	int64_t n;

	*version = 0;
	if (s == NULL || (n = run_id(s)) < 0)
		return -1;
	if (n == 0)
		return 0;
	s = db_prepare(c, "SELECT version FROM schema_version");
	if (s == NULL || (n = run_id(s)) < 0)
		return -1;
	*version = (int)n;
	return 0;
}

/* Applies the schema steps above the database's version, each atomic. */
static int upgrade(struct index *ix, struct dbc *c, int readonly, char *err,
                   size_t errlen)
{
	int pg = index_backend(ix) == DB_POSTGRES;
	const struct index_schema_step *steps =
	        pg ? index_schema_pg : index_schema_sqlite;
	int count = pg ? index_schema_pg_count : index_schema_sqlite_count;
	char sql[256];

	if (read_version(c, pg, &ix->version) != 0) {
		snprintf(err, errlen, "reading schema version: %s",
		         db_errmsg(c));
		return -1;
	}
	if (ix->version > count) {
		snprintf(err, errlen,
		         "index schema version %d is newer than this drimbox "
		         "(%d)",
		         ix->version, count);
		return -1;
	}
	if (ix->version < count && readonly) {
		snprintf(err, errlen,
		         "index schema version %d needs an upgrade to %d: "
		         "start drimboxd first",
		         ix->version, count);
		return -1;
	}
	for (int i = ix->version; i < count; i++) {
		const struct index_schema_step *st = &steps[i];

		if (db_exec(c, pg ? "BEGIN" : "BEGIN IMMEDIATE", err, errlen) !=
		    0)
			return -1;
		snprintf(sql, sizeof(sql),
		         "CREATE TABLE IF NOT EXISTS schema_version(version "
		         "INTEGER NOT NULL); DELETE FROM schema_version; "
		         "INSERT INTO schema_version VALUES(%d)",
		         st->version);
		if (db_exec(c, st->sql, err, errlen) != 0 ||
		    db_exec(c, sql, err, errlen) != 0) {
			db_rollback(c);
			return -1;
		}
		if (db_exec(c, "COMMIT", err, errlen) != 0)
			return -1;
		log_info(LOGC_INDEX, "schema upgraded to version %d (%s)",
		         st->version, st->name);
		ix->version = st->version;
	}
	return 0;
}

/*
 * The upgrade on PostgreSQL: under a session lock, so that nodes started
 * together upgrade one after the other (the others then find it done).
 */
static int upgrade_locked(struct index *ix, int readonly, char *err,
                          size_t errlen)
{
	struct dbc *c = index_conn(ix);
	int pg = index_backend(ix) == DB_POSTGRES, rc;

	if (c == NULL) {
		snprintf(err, errlen, "no connection to the index");
		return -1;
	}
	if (pg && !readonly &&
	    db_exec(c, "SELECT pg_advisory_lock(x'" UPGRADE_LOCK "'::bigint)",
	            err, errlen) != 0) {
		index_done(ix, c);
		return -1;
	}
	rc = upgrade(ix, c, readonly, err, errlen);
	if (pg && !readonly)
		(void)db_exec(c,
		              "SELECT pg_advisory_unlock(x'" UPGRADE_LOCK
		              "'::bigint)",
		              NULL, 0);
	index_done(ix, c);
	return rc;
}

void index_close(struct index *ix)
{
	if (ix == NULL)
		return;
	if (ix->renewing) {
		pthread_mutex_lock(&ix->stop_lock);
		ix->stop = 1;
		pthread_cond_signal(&ix->stop_cond);
		pthread_mutex_unlock(&ix->stop_lock);
		pthread_join(ix->renewer, NULL);
	}
	db_close(ix->db);
	pthread_mutex_destroy(&ix->gen_lock);
	pthread_mutex_destroy(&ix->stop_lock);
	pthread_mutex_destroy(&ix->claims_lock);
	pthread_cond_destroy(&ix->stop_cond);
	free(ix);
}

int index_open(const char *target, int pool, int readonly, struct index **out,
               char *err, size_t errlen)
{
	struct index *ix = calloc(1, sizeof(*ix));

	if (ix == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&ix->gen_lock, NULL);
	pthread_mutex_init(&ix->stop_lock, NULL);
	pthread_mutex_init(&ix->claims_lock, NULL);
	pthread_cond_init(&ix->stop_cond, NULL);
	index_set_node(ix, "drimbox", 60);
	if (db_open(target, readonly, pool, &ix->db, err, errlen) != 0) {
		pthread_mutex_destroy(&ix->gen_lock);
		pthread_mutex_destroy(&ix->stop_lock);
		pthread_mutex_destroy(&ix->claims_lock);
		pthread_cond_destroy(&ix->stop_cond);
		free(ix);
		return -1;
	}
	if (upgrade_locked(ix, readonly, err, errlen) != 0) {
		index_close(ix);
		return -1;
	}
	*out = ix;
	return 0;
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

static int64_t upsert_patient(struct dbc *c, const struct idx_patient *p)
{
	struct dbs *s;
	int ins;

	if (p == NULL || p->patient_id == NULL || p->patient_id[0] == '\0')
		return 0; /* unknown patient: studies.patient stays NULL */
	if ((s = db_prepare(c, SQL_UPSERT_PATIENT)) == NULL)
		return -1;
	ins = issuer_is_ins(p->issuer);
	db_bind_str(s, 1, p->patient_id);
	db_bind_str(s, 2, p->issuer ? p->issuer : "");
	db_bind_text(s, 3, ins ? p->patient_id : NULL);
	db_bind_text(s, 4, ins ? NULL : p->patient_id);
	db_bind_text(s, 5, p->name);
	db_bind_text(s, 6, p->birth_date);
	db_bind_text(s, 7, p->sex);
	return run_id(s);
}

static int64_t upsert_study(struct dbc *c, int64_t patient,
                            const struct idx_study *st, int64_t synced_at)
{
	struct dbs *s = db_prepare(c, SQL_UPSERT_STUDY);

	if (s == NULL)
		return -1;
	db_bind_str(s, 1, st->uid);
	if (patient > 0)
		db_bind_int(s, 2, patient);
	db_bind_text(s, 3, st->date);
	db_bind_text(s, 4, st->time);
	db_bind_text(s, 5, st->accession);
	db_bind_text(s, 6, st->description);
	db_bind_text(s, 7, st->modalities);
	db_bind_text(s, 8, st->referring);
	db_bind_text(s, 9, st->study_id);
	db_bind_long(s, 10, st->num_series);
	db_bind_long(s, 11, st->num_instances);
	if (synced_at > 0)
		db_bind_int(s, 12, synced_at);
	return run_id(s);
}

static int64_t upsert_series(struct dbc *c, int64_t study,
                             const struct idx_series *se, int64_t gen,
                             int64_t access)
{
	struct dbs *s = db_prepare(c, SQL_UPSERT_SERIES);

	if (s == NULL)
		return -1;
	db_bind_str(s, 1, se->uid);
	db_bind_int(s, 2, study);
	db_bind_text(s, 3, se->modality);
	db_bind_long(s, 4, se->number);
	db_bind_text(s, 5, se->description);
	db_bind_text(s, 6, se->body_part);
	db_bind_long(s, 7, se->num_instances);
	db_bind_int(s, 8, gen);
	db_bind_int(s, 9, access);
	return run_id(s);
}

/* Runs sql with two integer parameters; 0 or -1. */
static int run_ii(struct dbc *c, const char *sql, int64_t a, int64_t b)
{
	struct dbs *s = db_prepare(c, sql);

	if (s == NULL)
		return -1;
	db_bind_int(s, 1, a);
	db_bind_int(s, 2, b);
	return db_run(s);
}

static int64_t next_gen(struct index *ix)
{
	int64_t gen = now_us();

	pthread_mutex_lock(&ix->gen_lock);
	if (gen <= ix->last_gen)
		gen = ix->last_gen + 1;
	ix->last_gen = gen;
	pthread_mutex_unlock(&ix->gen_lock);
	return gen;
}

static int by_uid(const void *a, const void *b)
{
	return strcmp((*(const struct idx_instance *const *)a)->uid,
	              (*(const struct idx_instance *const *)b)->uid);
}

/*
 * Upserts instances inst[0..n-1] of series se, up to UPSERT_ROWS a
 * statement (a round trip each on PostgreSQL): parameters ?1 the series,
 * ?2 the generation, then four per row. In UID order, as every writer
 * takes row locks (no two nodes wait on each other in a cycle); a UID
 * listed twice is upserted once (one statement cannot change a row twice).
 */
static int upsert_instances(struct dbc *c, int64_t se, int64_t gen,
                            const struct idx_instance *inst, size_t n)
{
	const struct idx_instance **order =
	        malloc((n ? n : 1) * sizeof(*order));
	size_t done = 0;
	int rc = 0;

	if (order == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		order[i] = &inst[i];
	qsort(order, n, sizeof(*order), by_uid);
	while (rc == 0 && done < n) {
		const struct idx_instance *row[UPSERT_ROWS];
		char sql[sizeof(SQL_UPSERT_INSTANCES_HEAD) +
		         sizeof(SQL_UPSERT_INSTANCES_TAIL) + UPSERT_ROWS * 48];
		size_t k = 0, len;
		struct dbs *s;

		for (; done < n && k < UPSERT_ROWS; done++)
			if (k == 0 || strcmp(row[k - 1]->uid, order[done]->uid))
				row[k++] = order[done];
		len = (size_t)snprintf(sql, sizeof(sql), "%s",
		                       SQL_UPSERT_INSTANCES_HEAD);
		for (size_t j = 0; j < k; j++)
			len += (size_t)snprintf(
			        sql + len, sizeof(sql) - len,
			        "%s(?%zu, ?1, ?%zu, ?%zu, ?2, ?%zu)",
			        j ? ", " : "", 3 + 4 * j, 4 + 4 * j, 5 + 4 * j,
			        6 + 4 * j);
		snprintf(sql + len, sizeof(sql) - len, "%s",
		         SQL_UPSERT_INSTANCES_TAIL);
		if ((s = db_prepare(c, sql)) == NULL) {
			rc = -1;
			break;
		}
		db_bind_int(s, 1, se);
		db_bind_int(s, 2, gen);
		for (size_t j = 0; j < k; j++) {
			int p = 3 + 4 * (int)j;

			db_bind_str(s, p, row[j]->uid);
			db_bind_text(s, p + 1, row[j]->sop_class);
			db_bind_long(s, p + 2, row[j]->number);
			db_bind_long(s, p + 3, row[j]->listed);
		}
		rc = db_run(s);
	}
	free(order);
	return rc;
}

/*
 * Runs body in a transaction; one that lost a deadlock or a serialization
 * conflict to another node's (PostgreSQL) is run again, up to 3 times.
 */
static int in_tx(struct index *ix, int (*body)(struct dbc *c, void *arg),
                 void *arg)
{
	for (int attempt = 1;; attempt++) {
		struct dbc *c = index_tx_begin(ix);
		int rc, again;

		if (c == NULL)
			return -1;
		rc = body(c, arg);
		again = rc != 0 && attempt < 3 && db_retryable(c);
		rc = index_tx_end(ix, c, rc);
		if (!again)
			return rc;
		log_info(LOGC_INDEX, "transaction lost a conflict with another "
		                     "node's: run again");
	}
}

struct sync_args {
	const struct idx_patient *pat;
	const struct idx_study *st;
	const struct idx_series *series;
	size_t nseries;
	const struct idx_instance *inst;
	const size_t *inst_off;
	int64_t gen;
	const size_t *order; /* series by UID: the order rows are locked in */
};

/* qsort_r: indexes into the series array, by UID */
static int by_series_uid(const void *a, const void *b, void *series)
{
	const struct idx_series *se = series;

	return strcmp(se[*(const size_t *)a].uid, se[*(const size_t *)b].uid);
}

static int sync_body(struct dbc *c, void *arg)
{
	const struct sync_args *a = arg;
	int64_t patient, study;

	patient = upsert_patient(c, a->pat);
	if (patient < 0)
		return -1;
	study = upsert_study(c, patient, a->st, a->gen / 1000000);
	if (study < 0)
		return -1;
	for (size_t k = 0; k < a->nseries; k++) {
		size_t i = a->order[k];
		int64_t se = upsert_series(c, study, &a->series[i], a->gen, 0);

		if (se < 0 ||
		    upsert_instances(c, se, a->gen, &a->inst[a->inst_off[i]],
		                     a->inst_off[i + 1] - a->inst_off[i]) !=
		            0 ||
		    run_ii(c, SQL_PRUNE_INSTANCES, se, a->gen) != 0)
			return -1;
	}
	/* Series the PACS no longer lists go, unless something is cached. */
	return run_ii(c, SQL_PRUNE_SERIES, study, a->gen);
}

int index_sync_study(struct index *ix, const struct idx_patient *pat,
                     const struct idx_study *st,
                     const struct idx_series *series, size_t nseries,
                     const struct idx_instance *inst, const size_t *inst_off)
{
	size_t *order = malloc((nseries ? nseries : 1) * sizeof(*order));
	struct sync_args a = { pat,  st,       series,       nseries,
		               inst, inst_off, next_gen(ix), order };
	int rc;

	if (order == NULL)
		return -1;
	for (size_t i = 0; i < nseries; i++)
		order[i] = i;
	qsort_r(order, nseries, sizeof(*order), by_series_uid, (void *)series);
	rc = in_tx(ix, sync_body, &a);
	free(order);
	return rc;
}

/* Runs a query with one text parameter (or none) for its first row. */
static struct dbs *first_row(struct dbc *c, const char *sql, const char *v)
{
	struct dbs *s = db_prepare(c, sql);

	if (s == NULL)
		return NULL;
	if (v != NULL)
		db_bind_str(s, 1, v);
	if (db_step(s) != DB_ROW) {
		db_reset(s);
		return NULL;
	}
	return s;
}

int index_study_instances(struct index *ix, const char *study_uid, long *n,
                          long *cached)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;

	*n = 0;
	if (cached)
		*cached = 0;
	if (c == NULL)
		return -1;
	s = first_row(c, SQL_STUDY_INSTANCES, study_uid);
	if (s != NULL) {
		*n = (long)db_int(s, 0);
		if (cached)
			*cached = (long)db_int(s, 1);
		db_reset(s);
	}
	index_done(ix, c);
	return s != NULL ? 0 : -1;
}

/* Bytes an instance already occupies in the cache (0 when not cached). */
static int64_t cached_size(struct dbc *c, const char *sop_uid)
{
	struct dbs *s = db_prepare(c, SQL_CACHED_SIZE);
	int64_t size = 0;

	if (s == NULL)
		return 0;
	db_bind_str(s, 1, sop_uid);
	if (db_step(s) == DB_ROW)
		size = db_int(s, 0);
	db_reset(s);
	return size;
}

static int by_study_series_sop(const void *a, const void *b)
{
	const struct idx_put *x = *(const struct idx_put *const *)a;
	const struct idx_put *y = *(const struct idx_put *const *)b;
	int d = strcmp(x->st.uid, y->st.uid);

	if (d == 0)
		d = strcmp(x->se.uid, y->se.uid);
	return d ? d : strcmp(x->c.sop_uid, y->c.sop_uid);
}

struct put_args {
	const struct idx_put **items; /* in lock order */
	size_t n;
	int64_t now, grew;
};

static int put_body(struct dbc *c, void *arg)
{
	struct put_args *a = arg;

	a->grew = 0;
	for (size_t i = 0; i < a->n; i++) {
		const struct idx_put *p = a->items[i];
		int64_t patient, study, series;
		struct dbs *s;

		patient = upsert_patient(c, &p->pat);
		study = patient < 0 ? -1 : upsert_study(c, patient, &p->st, 0);
		series = study < 0 ? -1
		                   : upsert_series(c, study, &p->se, 0, a->now);
		s = series < 0 ? NULL : db_prepare(c, SQL_PUT_CACHED);
		if (s == NULL)
			return -1;
		a->grew += (int64_t)p->c.size - cached_size(c, p->c.sop_uid);
		db_bind_str(s, 1, p->c.sop_uid);
		db_bind_int(s, 2, series);
		db_bind_text(s, 3, p->c.sop_class);
		db_bind_long(s, 4, p->c.number);
		db_bind_str(s, 5, p->c.cache_path);
		db_bind_text(s, 6, p->c.transfer_syntax);
		db_bind_int(s, 7, (int64_t)p->c.size);
		db_bind_long(s, 8, p->c.frames);
		db_bind_text(s, 9, p->c.metadata);
		db_bind_int(s, 10, a->now / 1000000);
		if (db_run(s) != 0)
			return -1;
	}
	return 0;
}

int index_put_cached(struct index *ix, const struct idx_put *items, size_t n,
                     int64_t *added)
{
	struct put_args a = { malloc((n ? n : 1) * sizeof(*a.items)), n,
		              now_us(), 0 };
	int rc;

	if (a.items == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		a.items[i] = &items[i];
	/* rows locked in one order by every writer: no deadlock cycle */
	qsort(a.items, n, sizeof(*a.items), by_study_series_sop);
	rc = in_tx(ix, put_body, &a);
	if (rc == 0)
		*added = a.grew;
	free(a.items);
	return rc;
}

int index_cache_bytes(struct index *ix, uint64_t *bytes)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;

	if (c == NULL)
		return -1;
	s = first_row(c, SQL_CACHE_BYTES, NULL);
	if (s != NULL) {
		*bytes = (uint64_t)db_int(s, 0);
		db_reset(s);
	}
	index_done(ix, c);
	return s != NULL ? 0 : -1;
}

static void copy_col(struct dbs *s, int col, char *buf, size_t cap)
{
	const char *t = db_text(s, col);

	snprintf(buf, cap, "%s", t ? t : "");
}

int index_lru_series(struct index *ix, char *study_uid, char *series_uid)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = -1;

	if (c == NULL)
		return -1;
	s = db_prepare(c, SQL_LRU_SERIES);
	if (s != NULL) {
		rc = db_step(s);
		if (rc == DB_ROW) {
			copy_col(s, 0, study_uid, 65);
			copy_col(s, 1, series_uid, 65);
			rc = 1;
		} else {
			rc = rc == DB_DONE ? 0 : -1;
		}
		db_reset(s);
	}
	index_done(ix, c);
	return rc;
}

int index_uncache_series(struct index *ix, const char *series_uid,
                         void (*cb)(void *ctx, const char *rel_path), void *ctx)
{
	struct dbc *c = index_tx_begin(ix);
	struct dbs *s;
	struct {
		int64_t id;
		char *path;
	} *rows = NULL;
	size_t n = 0, cap = 0;
	int ok = 0, step = DB_ERROR;

	if (c == NULL)
		return -1;
	/* the rows locked (PostgreSQL): another node evicting the same series
	 * waits, then finds them cleared, and removes no file */
	s = db_prepare(c, index_backend(ix) == DB_POSTGRES
	                          ? SQL_SERIES_CACHED_PATHS " FOR UPDATE OF i"
	                          : SQL_SERIES_CACHED_PATHS);
	if (s == NULL) {
		ok = -1;
		goto end;
	}
	db_bind_str(s, 1, series_uid);
	while ((step = db_step(s)) == DB_ROW) {
		const char *p = db_text(s, 1);

		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			void *nr = realloc(rows, nc * sizeof(*rows));

			if (nr == NULL) {
				ok = -1;
				break;
			}
			rows = nr;
			cap = nc;
		}
		rows[n].id = db_int(s, 0);
		rows[n].path = strdup(p ? p : "");
		if (rows[n].path == NULL) {
			ok = -1;
			break;
		}
		n++;
	}
	if (ok == 0 && step != DB_DONE)
		ok = -1;
	db_reset(s);
	/* Clear the rows only when every file to remove is known, and only
	 * those: an instance cached meanwhile keeps its row and its file. */
	s = ok == 0 ? db_prepare(c, SQL_UNCACHE_ONE) : NULL;
	for (size_t i = 0; ok == 0 && i < n; i++) {
		db_bind_int(s, 1, rows[i].id);
		ok = db_run(s);
	}
	if (ok == 0 && n > 0 && s == NULL)
		ok = -1;
end:
	ok = index_tx_end(ix, c, ok);
	/* The index no longer points at the files: now they may go. */
	for (size_t i = 0; i < n; i++) {
		if (ok == 0)
			cb(ctx, rows[i].path);
		free(rows[i].path);
	}
	free(rows);
	return ok;
}

/* Rows per transaction of the start-up check: memory stays bounded
 * (PostgreSQL hands a result over whole) and no transaction is long. */
#define CHECK_PAGE 1000

int index_check_cached(struct index *ix,
                       int (*cb)(void *ctx, const char *rel_path), void *ctx)
{
	int64_t last = 0;
	long n;

	do {
		struct dbc *c = index_tx_begin(ix);
		struct dbs *s, *u;
		int ok = 0, rc = DB_ERROR;

		if (c == NULL)
			return -1;
		s = db_prepare(c, SQL_CACHED_PAGE);
		u = db_prepare(c, SQL_UNCACHE_ONE);
		if (s == NULL || u == NULL)
			return index_tx_end(ix, c, -1);
		db_bind_int(s, 1, last);
		db_bind_int(s, 2, CHECK_PAGE);
		n = 0;
		while (ok == 0 && (rc = db_step(s)) == DB_ROW) {
			const char *p = db_text(s, 1);

			last = db_int(s, 0);
			n++;
			if (cb(ctx, p ? p : "") != 0) {
				db_bind_int(u, 1, last);
				ok = db_run(u);
			}
		}
		if (ok == 0 && rc != DB_DONE)
			ok = -1;
		db_reset(s);
		if (index_tx_end(ix, c, ok) != 0)
			return -1;
	} while (n == CHECK_PAGE);
	return 0;
}

int index_series_cache_paths(struct index *ix, const char *series_uid,
                             int (*cb)(void *ctx, const char *rel_path),
                             void *ctx)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = -1, step;

	if (c == NULL)
		return -1;
	s = db_prepare(c, SQL_SERIES_CACHED_PATHS);
	if (s != NULL) {
		db_bind_str(s, 1, series_uid);
		rc = 0;
		while (rc == 0 && (step = db_step(s)) == DB_ROW)
			rc = cb(ctx, db_text(s, 1));
		if (rc == 0 && step != DB_DONE)
			rc = -1;
		db_reset(s);
	}
	index_done(ix, c);
	return rc;
}

int index_has_cache_path(struct index *ix, const char *rel_path)
{
	return index_any_row(ix, SQL_HAS_PATH, rel_path);
}

/* SQLite: the file, its directory, their free space, the write lock. */
static int sqlite_writable(struct dbc *c, const char *path, char *err,
                           size_t errlen)
{
	char dir[4096];
	struct statvfs fs;

	snprintf(dir, sizeof(dir), "%s", path);
	if (strrchr(dir, '/') != NULL)
		*strrchr(dir, '/') = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if (access(path, W_OK) != 0 || access(dir, W_OK) != 0)
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	else if (statvfs(dir, &fs) != 0)
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
	else if ((uint64_t)fs.f_bavail * fs.f_frsize < WRITABLE_FREE)
		snprintf(err, errlen, "%s: less than %d MiB free", dir,
		         WRITABLE_FREE >> 20);
	else if (db_exec(c, "BEGIN IMMEDIATE", err, errlen) != 0 ||
	         db_exec(c, "ROLLBACK", err, errlen) != 0)
		return -1;
	else
		return 0;
	return -1;
}

int index_writable(struct index *ix, char *err, size_t errlen)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = -1;

	if (c == NULL) {
		snprintf(err, errlen, "no connection to the index");
		return -1;
	}
	if (index_backend(ix) == DB_SQLITE) {
		rc = sqlite_writable(c, db_file(ix->db), err, errlen);
	} else if ((s = first_row(c, "SELECT pg_is_in_recovery()", NULL)) ==
	           NULL) {
		snprintf(err, errlen, "PostgreSQL: %s", db_errmsg(c));
	} else {
		/* a standby (read-only) server takes no writes */
		if (db_int(s, 0) != 0)
			snprintf(err, errlen, "PostgreSQL is in recovery");
		else
			rc = 0;
		db_reset(s);
	}
	index_done(ix, c);
	return rc;
}

int index_counts(struct index *ix, struct idx_counts *n)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;

	if (c == NULL)
		return -1;
	s = first_row(c, SQL_COUNTS, NULL);
	if (s != NULL) {
		n->patients = (long)db_int(s, 0);
		n->studies = (long)db_int(s, 1);
		n->series = (long)db_int(s, 2);
		n->instances = (long)db_int(s, 3);
		n->cached = (long)db_int(s, 4);
		db_reset(s);
	}
	index_done(ix, c);
	return s != NULL ? 0 : -1;
}

int index_walk(struct index *ix, const char *study_uid,
               int (*cb)(void *ctx, const struct idx_row *row), void *ctx)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = 0, step;

	if (c == NULL)
		return -1;
	s = db_prepare(c, SQL_WALK);
	if (s == NULL) {
		index_done(ix, c);
		return -1;
	}
	db_bind_text(s, 1, study_uid);
	while ((step = db_step(s)) == DB_ROW) {
		struct idx_row r = {
			.study_uid = db_text(s, 0),
			.patient_id = db_text(s, 1),
			.patient_name = db_text(s, 2),
			.study_date = db_text(s, 3),
			.accession = db_text(s, 4),
			.description = db_text(s, 5),
			.modalities = db_text(s, 6),
			.series_uid = db_text(s, 7),
			.modality = db_text(s, 8),
			.series_description = db_text(s, 9),
			.series_number = db_long(s, 10),
			.sop_uid = db_text(s, 11),
			.cache_path = db_text(s, 12),
			.transfer_syntax = db_text(s, 13),
			.instance_number = db_long(s, 14),
			.size = db_long(s, 15),
		};
		rc = cb(ctx, &r);
		if (rc != 0)
			break;
	}
	if (rc == 0 && step != DB_DONE)
		rc = -1;
	db_reset(s);
	index_done(ix, c);
	return rc;
}
