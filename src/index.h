/*
 * index.h - the index of what the PACS holds and what the cache holds:
 * patients, studies, series, instances, jobs, audit. This header is the
 * only way to the database: no SQL lives outside the index module, which
 * runs on SQLite (one site) or PostgreSQL (several nodes, one database).
 *
 * A struct index may be shared by threads: each call takes a connection
 * of the pool (SQLite: the one, so calls are serialised) and each write
 * call is one transaction.
 */
#ifndef DRIMBOX_INDEX_H
#define DRIMBOX_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct index;

/*
 * Opens the index and brings its schema up to date. target is a file
 * (SQLite, created if needed unless readonly) or a PostgreSQL connection
 * string ("postgresql://..." or "host=... dbname=..."), with a pool of up
 * to pool connections (SQLite: one). *out set only on success; returns -1
 * with the reason in err otherwise.
 */
int index_open(const char *target, int pool, int readonly, struct index **out,
               char *err, size_t errlen);
void index_close(struct index *ix);

/*
 * This node's name (node_name), which its job claims carry, and how long
 * a claim holds without renewal (job_lease, seconds). Defaults: "drimbox",
 * 60.
 */
void index_set_node(struct index *ix, const char *node, int lease);

/*
 * Starts renewing this node's claims (a thread, every third of the lease,
 * until index_close). 0 or -1.
 */
int index_leases_start(struct index *ix);

/* This node's name (index_set_node). */
const char *index_node(const struct index *ix);

/* 1 when the index is on PostgreSQL (shared by several nodes), else 0. */
int index_is_shared(const struct index *ix);

/*
 * 0 when the index can be written: its file and directory are writable,
 * 16 MiB are free there, and a write transaction can begin (none stuck);
 * -1 with why otherwise. For readiness.
 */
int index_writable(struct index *ix, char *err, size_t errlen);

/* The schema version of the open database. */
int index_schema_version(struct index *ix);

/* Patient-level attributes, as found in a C-FIND answer or an instance. */
struct idx_patient {
	const char *patient_id;
	const char *issuer;
	const char *name;
	const char *birth_date;
	const char *sex;
};

struct idx_study {
	const char *uid;
	const char *date, *time, *accession, *description, *modalities;
	const char *referring, *study_id;
	long num_series, num_instances; /* -1 when unknown */
};

struct idx_series {
	const char *uid;
	const char *modality, *description, *body_part;
	long number;        /* -1 when unknown */
	long num_instances; /* -1 when unknown */
};

struct idx_instance {
	const char *uid;
	const char *sop_class;
	long number; /* -1 when unknown */
	long listed; /* its place in the manifest it comes from, else -1 */
};

/*
 * Records one study as the PACS describes it, with all its series and
 * instances, in one transaction. Instances already indexed keep their
 * cache state; instances of these series that the PACS no longer lists
 * and that are not cached are removed. series[i]'s instances are
 * inst[inst_off[i] .. inst_off[i+1]-1] (inst_off has nseries+1 entries).
 */
int index_sync_study(struct index *ix, const struct idx_patient *pat,
                     const struct idx_study *st,
                     const struct idx_series *series, size_t nseries,
                     const struct idx_instance *inst, const size_t *inst_off);

/*
 * Number of instances the index holds for a study (0 when unknown), to
 * skip image-level queries for studies already complete, and how many of
 * them are cached (cached may be NULL).
 */
int index_study_instances(struct index *ix, const char *study_uid, long *n,
                          long *cached);

/* A cached instance, with everything needed to serve it. */
struct idx_cached {
	const char *sop_uid, *sop_class;
	long number;
	const char *cache_path; /* relative to the cache directory */
	const char *transfer_syntax;
	uint64_t size;
	long frames;
	const char *metadata; /* DICOM JSON */
};

/* One cached instance with the attributes of its patient, study, series. */
struct idx_put {
	struct idx_patient pat;
	struct idx_study st;  /* st.uid required */
	struct idx_series se; /* se.uid required */
	struct idx_cached c;
};

/*
 * Records n cached instances (creating their patient, study and series
 * rows from the instances' own attributes when absent) in one transaction,
 * and marks their series as just used. Call only once the files are
 * durable. *added receives the growth of the cache in bytes (an instance
 * cached again counts the difference). 0, or -1 when nothing was recorded.
 */
int index_put_cached(struct index *ix, const struct idx_put *items, size_t n,
                     int64_t *added);

/* Total bytes of cached instances. */
int index_cache_bytes(struct index *ix, uint64_t *bytes);

/*
 * Finds the least recently used series that has cached instances. Returns 1
 * and fills the buffers (65 bytes each) when there is one, 0 when the cache
 * is empty, -1 on error.
 */
int index_lru_series(struct index *ix, char *study_uid, char *series_uid);

/*
 * Marks every cached instance of a series as not cached (one transaction)
 * and calls cb with each former relative path, so that the caller removes
 * the files after the index no longer points at them.
 */
int index_uncache_series(struct index *ix, const char *series_uid,
                         void (*cb)(void *ctx, const char *rel_path),
                         void *ctx);

/*
 * Calls cb for each cached instance (relative path); when cb returns
 * non-zero the instance is marked not cached. Used by the start-up check;
 * a thousand rows per transaction.
 */
int index_check_cached(struct index *ix,
                       int (*cb)(void *ctx, const char *rel_path), void *ctx);

/* True (1) when rel_path is the cache path of an indexed instance. */
int index_has_cache_path(struct index *ix, const char *rel_path);

/*
 * Calls cb for the cache path of each cached instance of a series (one
 * question for a whole series directory); stops at cb's first non-zero,
 * returned. -1 on an index error.
 */
int index_series_cache_paths(struct index *ix, const char *series_uid,
                             int (*cb)(void *ctx, const char *rel_path),
                             void *ctx);

/* Counts at each level, and how many instances are cached. */
struct idx_counts {
	long patients, studies, series, instances, cached;
};
int index_counts(struct index *ix, struct idx_counts *c);

/* One row of a walk over the index, study > series > instance order. */
struct idx_row {
	const char *study_uid, *patient_id, *patient_name, *study_date;
	const char *accession, *description, *modalities;
	const char *series_uid, *modality, *series_description; /* or NULL */
	long series_number;
	const char *sop_uid, *cache_path, *transfer_syntax; /* or NULL */
	long instance_number;
	int64_t size;
};

/*
 * Calls cb for each instance (or each series or study without instances,
 * with the missing levels NULL), optionally restricted to one study.
 * A non-zero return from cb stops the walk and is returned.
 */
int index_walk(struct index *ix, const char *study_uid,
               int (*cb)(void *ctx, const struct idx_row *row), void *ctx);

/* ---- QIDO-RS ------------------------------------------------------------ */

enum idx_level { IDX_STUDY, IDX_SERIES, IDX_INSTANCE };

/* One matching key: a DICOM tag and its matching value (PS3.4 C.2.2.2). */
struct idx_filter {
	uint32_t tag;
	const char *value;
};

struct idx_query {
	enum idx_level level;
	const char *study_uid;  /* from the path, or NULL */
	const char *series_uid; /* from the path, or NULL */
	const struct idx_filter *filters;
	size_t nfilters;
	int fuzzy; /* fuzzymatching=true: person names match any word prefix,
	              case-insensitively */
	long limit, offset; /* limit 0 = no limit */
};

/*
 * One match. Fields of levels above the queried one are filled too
 * (a series match carries its study's attributes); NULL when unknown.
 */
struct idx_match {
	/* study */
	const char *study_uid, *patient_id, *issuer, *patient_name;
	const char *birth_date, *sex, *study_date, *study_time, *accession;
	const char *study_description, *modalities, *referring, *study_id;
	long study_series, study_instances; /* counted; study level only */
	/* series (series and instance levels) */
	const char *series_uid, *modality, *series_description, *body_part;
	long series_number, series_instances; /* counted; series level */
	/* instance (instance level) */
	const char *sop_uid, *sop_class, *transfer_syntax;
	const char *metadata;   /* DICOM JSON when cached, else NULL */
	const char *cache_path; /* relative, when cached, else NULL */
	long instance_number, frames;
	int64_t size;      /* bytes of the cached file, -1 when not cached */
	int64_t cached_at; /* unix time it was cached, -1 when not cached */
};

/* True when tag can be used as a matching key at this level. */
int index_qido_supports(enum idx_level level, uint32_t tag);

/*
 * Runs a QIDO query; cb is called for each match in order (study date,
 * series number, instance number). Returns 0, -1 with a reason in err for
 * a matching value that is not valid for its attribute (a client error),
 * -2 on a database error.
 */
int index_qido(struct index *ix, const struct idx_query *q,
               int (*cb)(void *ctx, const struct idx_match *m), void *ctx,
               char *err, size_t errlen);

/* ---- HL7 journal and jobs (index_jobs.c) ------------------------------ */

/* An HL7 message as received, and the answer given. */
struct idx_hl7 {
	const char *peer, *sender, *control_id, *type;
	const char *digest; /* of raw: a resent message has the same */
	const void *raw;
	size_t raw_len;
	uint64_t size; /* bytes received (more than raw_len when oversized) */
	const char *outcome; /* "AA", "AE", "AR" */
	const char *reason;  /* NULL for AA */
};

/* A job to create. */
struct idx_new_job {
	const char *kind;       /* "publish", "replace", "unpublish" ... */
	const char *payload;    /* JSON */
	const char *subject;    /* what it is about, for release; or NULL */
	const char *parked_for; /* NULL: queued; else parked, e.g. "identity" */
	const char *reason;     /* why parked */
};

/*
 * Journals a message and, when job is not NULL, creates its job; when
 * release_subject is not NULL, the jobs parked for `release_for` with that
 * subject are queued again, their payload's "patient" replaced by
 * release_patient (JSON). One transaction, synced to disk before
 * returning (an AA must survive a power loss). *job_id gets the new job's
 * id (0 when none). A message whose sender, control id and digest were
 * already accepted with a job (sent again) creates none: *duplicate_of gets
 * that message's id and *job_id its job (0 otherwise). 0, or -1 on a database
 * error.
 */
int index_journal_hl7(struct index *ix, const struct idx_hl7 *m,
                      const struct idx_new_job *job,
                      const char *release_subject, const char *release_for,
                      const char *release_patient, int64_t *job_id,
                      int *released, int64_t *duplicate_of);

/* A job, as listed. */
struct idx_job {
	int64_t id;
	const char *kind, *state, *payload, *last_error, *subject, *parked_for;
	const char *owner; /* the last claim: node:pid:n */
	long attempts;
	int64_t not_before, created_at, updated_at;
};

/* A job claimed to be run. */
struct idx_claimed {
	int64_t id, created_at;
	long attempts;
	char kind[32];
	char owner[128]; /* this claim: node:pid:n */
	char *payload;   /* malloc'd: the caller frees it */
};

/*
 * Claims the oldest job of one of the kinds ("a,b" list) that is queued
 * and due, or running under a lease that ran out (its node died): it
 * becomes running, owned by this claim until now + the lease (renewed by
 * index_leases_start). Several nodes never claim the same job. 1 with *j
 * filled, 0 when none, -1 on error.
 */
int index_job_claim(struct index *ix, const char *kinds, int64_t now,
                    struct idx_claimed *j);

/*
 * Ends a claimed job's run: state "done", "queued" (retry at not_before),
 * "parked" (parked_for set) or "failed"; attempts is incremented, error
 * recorded (NULL clears it), payload replaced when not NULL. 0, or -1 on
 * error or when the claim was lost (its lease ran out and another node
 * claimed the job: nothing is written).
 */
int index_job_finish(struct index *ix, const struct idx_claimed *j,
                     const char *state, int64_t not_before,
                     const char *parked_for, const char *error,
                     const char *payload);

/*
 * 1 when a publication (publish, replace) naming study_uid is still queued
 * or running, 0 when none, -1 on error.
 */
int index_job_pending_for(struct index *ix, const char *study_uid);

/*
 * The latest job about subject: its state (into state), payload
 * (malloc'd) and last error (into error when not NULL). 1, 0 when there is
 * none, -1 on error.
 */
int index_job_latest(struct index *ix, const char *subject, char *state,
                     size_t state_cap, char **payload, char *error,
                     size_t error_cap);

/* Queues a new job; its id, or -1. */
int64_t index_job_add(struct index *ix, const char *kind, const char *payload,
                      const char *subject);

/*
 * Queues a new job unless one about subject exists (one transaction:
 * nodes receiving the same thing at once create one job). Its id, 0 when
 * there was one, -1 on error.
 */
int64_t index_job_add_once(struct index *ix, const char *kind,
                           const char *payload, const char *subject);

/*
 * The payload (malloc'd, the caller frees it) of the latest done
 * publication whose manifest for study_uid was sent; NULL when none.
 */
char *index_job_published(struct index *ix, const char *study_uid);

/*
 * Replaces a claimed job's payload (a step's result recorded, synced); 0,
 * or -1 on error or when the claim was lost.
 */
int index_job_payload(struct index *ix, const struct idx_claimed *j,
                      const char *payload);

/*
 * Queues a parked or failed job again, due now (what `drimbox jobs retry`
 * does once the cause is fixed). 1 done, 0 no such job in those states,
 * -1 on error.
 */
int index_job_retry(struct index *ix, int64_t id);

/*
 * At start: this node's claims left running by a stop or a crash, and
 * claims whose lease ran out, are queued again; how many, or -1.
 */
int index_jobs_recover(struct index *ix);

/*
 * Extends the leases of the claims this process is running (not of a
 * claim whose run ended without its outcome written); how many, or -1.
 */
int index_jobs_renew(struct index *ix);

/* Calls cb for each job, newest first (at most limit; 0 = all). */
int index_jobs(struct index *ix, long limit,
               int (*cb)(void *ctx, const struct idx_job *j), void *ctx);

/* Jobs not done of one kind in one state. */
struct idx_job_count {
	const char *kind, *state;
	int64_t count, oldest; /* oldest: the first one's created_at */
};

/* Calls cb for each (kind, state) of the jobs not done; 0 or -1. */
int index_jobs_summary(struct index *ix,
                       void (*cb)(void *ctx, const struct idx_job_count *c),
                       void *ctx);

/* An HL7 message, as listed from the journal (raw bytes not included). */
struct idx_hl7_row {
	int64_t id, received_at, job;
	const char *peer, *control_id, *type, *outcome, *reason;
	uint64_t size;
};

/* Calls cb for each journaled message, newest first (at most limit). */
int index_hl7_messages(struct index *ix, long limit,
                       int (*cb)(void *ctx, const struct idx_hl7_row *r),
                       void *ctx);

/* ---- tokens: contextual calls, sessions, sign-ins; remote series -------- */

/*
 * Rows kept under the hash of an opaque token, of a kind ("context": a
 * contextual call, "session": a consumer session, "login": a sign-in under
 * way, "user": a signed-in professional), with their data (JSON), until
 * they expire.
 */

/* Records a row (replacing one of that hash); expired rows are dropped. */
int index_token_put(struct index *ix, const char *hash, const char *kind,
                    const char *data, int64_t now, int64_t expires);

/* A live row's data (malloc'd): 1, 0 when none, -1 on error. */
int index_token_get(struct index *ix, const char *hash, const char *kind,
                    int64_t now, char **data);

/* index_token_get that deletes the row: single use. */
int index_token_take(struct index *ix, const char *hash, const char *kind,
                     int64_t now, char **data);

/* Replaces a row's data. 0 or -1. */
int index_token_set(struct index *ix, const char *hash, const char *kind,
                    const char *data);

/* Deletes a row, of any kind. 0 or -1. */
int index_token_delete(struct index *ix, const char *hash);

/*
 * Redeems a live contextual call: in one transaction it is deleted and a
 * session with its data is created under session_hash, valid until
 * expires. 1 with *data (malloc'd), 0 when there is no such live call
 * (used already, expired, unknown), -1 on error.
 */
int index_context_redeem(struct index *ix, const char *context_hash,
                         const char *session_hash, int64_t now, int64_t expires,
                         char **data);

/* A series another DRIMbox holds, as a manifest names it. */
struct idx_remote {
	const char *series_uid, *study_uid, *url, *kos_sop;
};

/*
 * Records the remote series of a study (every r names the same study) in
 * place of those recorded before (a manifest replaces the one it
 * follows), in one transaction. 0 or -1.
 */
int index_remote_put(struct index *ix, const struct idx_remote *r, size_t n,
                     int64_t now);

/*
 * Calls cb for each remote series of a study; a non-zero return stops and
 * is returned. 0 when done (none is not an error), -1 on error.
 */
int index_remote_series(struct index *ix, const char *study_uid,
                        int (*cb)(void *ctx, const struct idx_remote *r),
                        void *ctx);

/* ---- audit trail -------------------------------------------------------- */

/*
 * A row of the audit trail: who (actor: an RPPS number, "ris", "drimbox"),
 * did what (action) to which study and series, from where (source), with
 * what outcome, for which contextual call, and when (at: milliseconds
 * since the epoch). id and hash are set by index_audit_add().
 */
struct idx_audit {
	int64_t id, at;
	const char *actor, *action, *study, *series, *source, *outcome, *call,
	        *detail;
	char hash[65];
};

/*
 * Appends a row, chained to the last one: its hash is the SHA-256 of the
 * previous row's hash and of this row's fields. Sets r->id and r->hash.
 * 0 or -1.
 */
int index_audit_add(struct index *ix, struct idx_audit *r);

/*
 * Calls cb for each row with from <= at < to, oldest first; a non-zero
 * return stops and is returned. 0 when done, -1 on error.
 */
int index_audit_rows(struct index *ix, int64_t from, int64_t to,
                     int (*cb)(void *ctx, const struct idx_audit *r),
                     void *ctx);

/*
 * Checks the whole chain: 0 when every row's hash follows from the one
 * before (*n rows, head = the last hash, or "" when empty), 1 when row
 * *bad does not (a row changed, inserted or removed before it), -1 on
 * error.
 */
int index_audit_verify(struct index *ix, int64_t *n, char head[65],
                       int64_t *bad);

#endif
