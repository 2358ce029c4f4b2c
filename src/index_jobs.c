/*
 * index_jobs.c - the HL7 journal and the job queue (see index.h).
 *
 * Several nodes may share the queue (PostgreSQL): a job is claimed by one
 * node at a time (FOR UPDATE SKIP LOCKED: claimers never wait for each
 * other), under a lease that node renews while the job runs. A node that
 * dies stops renewing: once its lease has run out, another node claims
 * the job and goes on from the last step the payload records. Every write
 * of a running job names its claim (owner), so that a node that lost its
 * lease cannot overwrite what the new owner does.
 */
#include "index.h"
#include "index_internal.h"
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Claims of this process, each with its own owner token. */
static atomic_uint_fast64_t claim_seq;

static int is_pg(struct index *ix)
{
	return index_backend(ix) == DB_POSTGRES;
}

/*
 * Leases are reckoned by the database's clock, one for every node: a node
 * whose clock runs ahead does not take over the jobs of the others early.
 */
#define NOW_SQLITE "CAST(strftime('%s', 'now') AS INTEGER)"
#define NOW_PG "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)"

static int insert_job(struct dbc *c, const struct idx_new_job *j, int64_t now,
                      int64_t *id)
{
	struct dbs *s = db_prepare(
	        c, "INSERT INTO jobs(kind, state, payload, subject, "
	           "parked_for, last_error, created_at, updated_at) "
	           "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING id");

	if (s == NULL)
		return -1;
	db_bind_str(s, 1, j->kind);
	db_bind_str(s, 2, j->parked_for ? "parked" : "queued");
	db_bind_str(s, 3, j->payload);
	db_bind_str(s, 4, j->subject);
	db_bind_str(s, 5, j->parked_for);
	db_bind_str(s, 6, j->reason);
	db_bind_int(s, 7, now);
	*id = db_step(s) == DB_ROW ? db_int(s, 0) : -1;
	db_reset(s);
	return *id > 0 ? 0 : -1;
}

static int release(struct index *ix, struct dbc *c, const char *subject,
                   const char *why, const char *patient, int64_t now,
                   int *released)
{
	struct dbs *s = db_prepare(
	        c, is_pg(ix) ? "UPDATE jobs SET state = 'queued', parked_for = "
	                       "NULL, last_error = NULL, not_before = 0, "
	                       "updated_at = ?1, payload = jsonb_set("
	                       "payload::jsonb, '{patient}', ?2::jsonb)::text "
	                       "WHERE state = 'parked' AND subject = ?3 AND "
	                       "parked_for = ?4"
	                     : "UPDATE jobs SET state = 'queued', parked_for = "
	                       "NULL, last_error = NULL, not_before = 0, "
	                       "updated_at = ?1, payload = json_set(payload, "
	                       "'$.patient', json(?2)) WHERE state = 'parked' "
	                       "AND subject = ?3 AND parked_for = ?4");

	if (s == NULL)
		return -1;
	db_bind_int(s, 1, now);
	db_bind_str(s, 2, patient);
	db_bind_str(s, 3, subject);
	db_bind_str(s, 4, why);
	if (db_step(s) != DB_DONE) {
		db_reset(s);
		return -1;
	}
	*released = (int)db_changes(s);
	db_reset(s);
	return 0;
}

static int insert_message(struct dbc *c, const struct idx_hl7 *m,
                          const char *reason, int64_t job, int64_t now)
{
	struct dbs *s = db_prepare(
	        c, "INSERT INTO hl7_messages(received_at, peer, sender, "
	           "control_id, type, raw, size, outcome, reason, job, "
	           "digest) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");

	if (s == NULL)
		return -1;
	db_bind_int(s, 1, now);
	db_bind_str(s, 2, m->peer);
	db_bind_str(s, 3, m->sender);
	db_bind_str(s, 4, m->control_id);
	db_bind_str(s, 5, m->type);
	db_bind_blob(s, 6, m->raw, m->raw_len);
	db_bind_int(s, 7, (int64_t)m->size);
	db_bind_str(s, 8, m->outcome);
	db_bind_str(s, 9, reason);
	if (job > 0)
		db_bind_int(s, 10, job);
	db_bind_str(s, 11, m->digest);
	return db_run(s);
}

/* An accepted message with this sender and control id: its id and job. */
static int find_accepted(struct dbc *c, const struct idx_hl7 *m, int64_t *id,
                         int64_t *job)
{
	struct dbs *s = db_prepare(
	        c, "SELECT id, job FROM hl7_messages WHERE sender = ? AND "
	           "control_id = ? AND digest = ? AND outcome = 'AA' AND "
	           "job IS NOT NULL ORDER BY id LIMIT 1");
	int rc;

	*id = *job = 0;
	if (s == NULL)
		return -1;
	db_bind_str(s, 1, m->sender);
	db_bind_str(s, 2, m->control_id);
	db_bind_str(s, 3, m->digest);
	rc = db_step(s);
	if (rc == DB_ROW) {
		*id = db_int(s, 0);
		*job = db_int(s, 1);
	}
	db_reset(s);
	return rc == DB_ERROR ? -1 : 0;
}

int index_journal_hl7(struct index *ix, const struct idx_hl7 *m,
                      const struct idx_new_job *job,
                      const char *release_subject, const char *release_for,
                      const char *release_patient, int64_t *job_id,
                      int *released, int64_t *duplicate_of)
{
	int64_t now = (int64_t)time(NULL), dup_job = 0;
	char reason[160], key[512];
	struct dbc *c;
	int rc = -1;

	*job_id = 0;
	*released = 0;
	*duplicate_of = 0;
	if ((c = index_conn(ix)) == NULL)
		return -1;
	/* this commit is what an AA promises: synced, unlike cache fill */
	if (db_durable(c, 1) != 0)
		goto out;
	if (db_begin(c) != 0)
		goto restore;
	/* the same message sent to two nodes at once: one after the other */
	snprintf(key, sizeof(key), "hl7:%s|%s", m->sender ? m->sender : "",
	         m->control_id ? m->control_id : "");
	if (index_key_lock(ix, c, key) != 0)
		goto rollback;
	if (job != NULL && m->sender != NULL && m->control_id != NULL &&
	    m->digest != NULL &&
	    find_accepted(c, m, duplicate_of, &dup_job) != 0)
		goto rollback;
	if (*duplicate_of != 0) { /* sent again: the first one's job */
		snprintf(reason, sizeof(reason),
		         "sent again: message %lld was accepted with job %lld, "
		         "no new job",
		         (long long)*duplicate_of, (long long)dup_job);
		job = NULL;
		release_subject = NULL;
	}
	if ((job != NULL && insert_job(c, job, now, job_id) != 0) ||
	    (release_subject != NULL &&
	     release(ix, c, release_subject, release_for, release_patient, now,
	             released) != 0) ||
	    insert_message(c, m, *duplicate_of ? reason : m->reason,
	                   *duplicate_of ? dup_job : *job_id, now) != 0) {
	rollback:
		db_rollback(c);
		goto failed;
	}
	if (db_commit(c) == 0) {
		rc = 0;
		goto restore;
	}
failed:
	*job_id = 0;
	*released = 0;
restore:
	db_durable(c, 0);
out:
	index_done(ix, c);
	return rc;
}

/* Runs sql (one "LIMIT ?" parameter) and hands each row to row(). */
static int each_row(struct index *ix, const char *sql, long limit,
                    int (*row)(struct dbs *s, void *ctx), void *ctx)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = -1, step;

	if (c == NULL)
		return -1;
	s = db_prepare(c, sql);
	if (s != NULL) {
		db_bind_int(s, 1, limit > 0 ? limit : INT64_MAX);
		while ((step = db_step(s)) == DB_ROW)
			if (row(s, ctx) != 0)
				break;
		rc = step == DB_ERROR ? -1 : 0;
		db_reset(s);
	}
	index_done(ix, c);
	return rc;
}

struct job_walk {
	int (*cb)(void *ctx, const struct idx_job *j);
	void *ctx;
};

static int job_row(struct dbs *s, void *ctx)
{
	struct job_walk *w = ctx;
	struct idx_job j = {
		.id = db_int(s, 0),
		.kind = db_text(s, 1),
		.state = db_text(s, 2),
		.payload = db_text(s, 3),
		.attempts = (long)db_int(s, 4),
		.not_before = db_int(s, 5),
		.last_error = db_text(s, 6),
		.created_at = db_int(s, 7),
		.updated_at = db_int(s, 8),
		.subject = db_text(s, 9),
		.parked_for = db_text(s, 10),
		.owner = db_text(s, 11),
	};

	return w->cb(w->ctx, &j);
}

int index_jobs(struct index *ix, long limit,
               int (*cb)(void *ctx, const struct idx_job *j), void *ctx)
{
	struct job_walk w = { cb, ctx };

	return each_row(ix,
	                "SELECT id, kind, state, payload, attempts, "
	                "not_before, last_error, created_at, updated_at, "
	                "subject, parked_for, owner FROM jobs ORDER BY id DESC "
	                "LIMIT ?",
	                limit, job_row, &w);
}

struct summary_walk {
	void (*cb)(void *ctx, const struct idx_job_count *c);
	void *ctx;
};

static int summary_row(struct dbs *s, void *ctx)
{
	struct summary_walk *w = ctx;
	struct idx_job_count c = {
		.kind = db_text(s, 0),
		.state = db_text(s, 1),
		.count = db_int(s, 2),
		.oldest = db_int(s, 3),
	};

	w->cb(w->ctx, &c);
	return 0;
}

int index_jobs_summary(struct index *ix,
                       void (*cb)(void *ctx, const struct idx_job_count *c),
                       void *ctx)
{
	struct summary_walk w = { cb, ctx };

	return each_row(ix,
	                "SELECT kind, state, count(*), min(created_at) FROM "
	                "jobs WHERE state IN ('queued', 'running', 'parked', "
	                "'failed') GROUP BY kind, state ORDER BY kind, state "
	                "LIMIT ?",
	                0, summary_row, &w);
}

struct hl7_walk {
	int (*cb)(void *ctx, const struct idx_hl7_row *r);
	void *ctx;
};

static int hl7_row(struct dbs *s, void *ctx)
{
	struct hl7_walk *w = ctx;
	struct idx_hl7_row r = {
		.id = db_int(s, 0),
		.received_at = db_int(s, 1),
		.peer = db_text(s, 2),
		.control_id = db_text(s, 3),
		.type = db_text(s, 4),
		.size = (uint64_t)db_int(s, 5),
		.outcome = db_text(s, 6),
		.reason = db_text(s, 7),
		.job = db_int(s, 8),
	};

	return w->cb(w->ctx, &r);
}

int index_hl7_messages(struct index *ix, long limit,
                       int (*cb)(void *ctx, const struct idx_hl7_row *r),
                       void *ctx)
{
	struct hl7_walk w = { cb, ctx };

	return each_row(ix,
	                "SELECT id, received_at, peer, control_id, type, size, "
	                "outcome, reason, job FROM hl7_messages ORDER BY id "
	                "DESC LIMIT ?",
	                limit, hl7_row, &w);
}

int index_job_claim(struct index *ix, const char *kinds, int64_t now,
                    struct idx_claimed *j)
{
	struct dbc *c;
	struct dbs *s;
	int rc = -1, step;

	/* queued and due, or running under a lease that ran out (its node
	 * died): the oldest first */
	static const char sqlite_sql[] =
	        "UPDATE jobs SET state = 'running', updated_at = ?1, owner = "
	        "?3, lease_until = " NOW_SQLITE " + ?4 WHERE id = (SELECT id "
	        "FROM jobs WHERE ((state = 'queued' AND not_before <= ?1) OR "
	        "(state = 'running' AND lease_until < " NOW_SQLITE ")) AND "
	        "instr(',' || ?2 || ',', ',' || kind || ',') > 0 ORDER BY "
	        "not_before, id LIMIT 1) RETURNING id, kind, payload, "
	        "attempts, created_at";
	static const char pg_sql[] =
	        "UPDATE jobs SET state = 'running', updated_at = ?1, owner = "
	        "?3, lease_until = " NOW_PG " + ?4 WHERE id = (SELECT id FROM "
	        "jobs WHERE ((state = 'queued' AND not_before <= ?1) OR (state "
	        "= 'running' AND lease_until < " NOW_PG ")) AND kind = "
	        "ANY(string_to_array(?2, ',')) ORDER BY not_before, id LIMIT 1 "
	        "FOR UPDATE SKIP LOCKED) RETURNING id, kind, payload, "
	        "attempts, created_at";

	snprintf(j->owner, sizeof(j->owner), "%s:%d:%llu", index_node(ix),
	         (int)getpid(), (unsigned long long)++claim_seq);
	if ((c = index_conn(ix)) == NULL)
		return -1;
	s = db_prepare(c, is_pg(ix) ? pg_sql : sqlite_sql);
	if (s == NULL)
		goto out;
	db_bind_int(s, 1, now);
	db_bind_str(s, 2, kinds);
	db_bind_str(s, 3, j->owner);
	db_bind_int(s, 4, index_lease(ix));
	step = db_step(s);
	if (step == DB_ROW) {
		const char *payload = db_text(s, 2);

		j->id = db_int(s, 0);
		snprintf(j->kind, sizeof(j->kind), "%s", db_text(s, 1));
		j->payload = strdup(payload ? payload : "{}");
		j->attempts = (long)db_int(s, 3);
		j->created_at = db_int(s, 4);
		/* renewed while held; a claim not run (no memory) is not, and
		 * is taken again once its lease has run out */
		rc = j->payload && index_claim_hold(ix, j->owner) == 0 ? 1 : -1;
		if (rc < 0) {
			free(j->payload);
			j->payload = NULL;
		}
	} else {
		rc = step == DB_DONE ? 0 : -1;
	}
	/* the update commits when the statement ends */
	db_reset(s);
out:
	index_done(ix, c);
	return rc;
}

/*
 * Runs a write about a claimed job; 0, or -1 when it failed or when the
 * claim was lost (logged).
 */
static int claimed_write(struct dbs *s, const struct idx_claimed *j)
{
	int rc = db_step(s);
	int64_t n = db_changes(s);

	db_reset(s);
	if (rc != DB_DONE)
		return -1;
	if (n == 0) {
		log_warn(LOGC_JOBS,
		         "job=%lld: its lease ran out and another claim holds "
		         "it "
		         "now: this run's outcome is dropped",
		         (long long)j->id);
		return -1;
	}
	return 0;
}

int index_job_finish(struct index *ix, const struct idx_claimed *j,
                     const char *state, int64_t not_before,
                     const char *parked_for, const char *error,
                     const char *payload)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = -1;

	if (c == NULL)
		return -1;
	s = db_prepare(c, "UPDATE jobs SET state = ?2, not_before = ?3, "
	                  "parked_for = ?4, last_error = ?5, payload = "
	                  "coalesce(?6, payload), attempts = attempts + 1, "
	                  "updated_at = ?7, lease_until = 0 "
	                  "WHERE id = ?1 AND state = 'running' AND owner = ?8");
	if (s != NULL) {
		db_bind_int(s, 1, j->id);
		db_bind_str(s, 2, state);
		db_bind_int(s, 3, not_before);
		db_bind_str(s, 4, parked_for);
		db_bind_str(s, 5, error);
		db_bind_str(s, 6, payload);
		db_bind_int(s, 7, (int64_t)time(NULL));
		db_bind_str(s, 8, j->owner);
		rc = claimed_write(s, j);
	}
	index_done(ix, c);
	/* this run is over, written or not: no more renewals (a job whose
	 * outcome could not be written goes to another claim once its
	 * lease runs out) */
	index_claim_drop(ix, j->owner);
	return rc;
}

int index_job_payload(struct index *ix, const struct idx_claimed *j,
                      const char *payload)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = -1;

	if (c == NULL)
		return -1;
	/* what is about to be sent must survive a power loss: synced */
	if (db_durable(c, 1) != 0)
		goto out;
	s = db_prepare(c, "UPDATE jobs SET payload = ?2, updated_at = ?3 "
	                  "WHERE id = ?1 AND state = 'running' AND owner = ?4");
	if (s != NULL) {
		db_bind_int(s, 1, j->id);
		db_bind_str(s, 2, payload);
		db_bind_int(s, 3, (int64_t)time(NULL));
		db_bind_str(s, 4, j->owner);
		rc = claimed_write(s, j);
	}
	db_durable(c, 0);
out:
	index_done(ix, c);
	return rc;
}

int index_jobs_recover(struct index *ix)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	char prefix[80];
	int rc = -1;

	if (c == NULL)
		return -1;
	/* this node's claims (it stopped), and claims nobody renews */
	snprintf(prefix, sizeof(prefix), "%s:", index_node(ix));
	s = db_prepare(c, is_pg(ix) ? "UPDATE jobs SET state = 'queued', owner "
	                              "= NULL, lease_until = 0 WHERE state = "
	                              "'running' AND (owner IS NULL OR "
	                              "substr(owner, 1, length(?1)) = ?1 OR "
	                              "lease_until < " NOW_PG ")"
	                            : "UPDATE jobs SET state = 'queued', owner "
	                              "= NULL, lease_until = 0 WHERE state = "
	                              "'running' AND (owner IS NULL OR "
	                              "substr(owner, 1, length(?1)) = ?1 OR "
	                              "lease_until < " NOW_SQLITE ")");
	if (s != NULL) {
		db_bind_str(s, 1, prefix);
		if (db_step(s) == DB_DONE)
			rc = (int)db_changes(s);
		db_reset(s);
	}
	index_done(ix, c);
	return rc;
}

int index_jobs_renew(struct index *ix)
{
	char owners[INDEX_CLAIMS_MAX][128];
	int n = index_claims_held(ix, owners), rc = 0;
	struct dbc *c;
	struct dbs *s;

	if (n == 0)
		return 0;
	if ((c = index_conn(ix)) == NULL)
		return -1;
	s = db_prepare(c, is_pg(ix)
	                          ? "UPDATE jobs SET lease_until = " NOW_PG
	                            " + ?2 WHERE owner = ?1 AND state = "
	                            "'running'"
	                          : "UPDATE jobs SET lease_until = " NOW_SQLITE
	                            " + ?2 WHERE owner = ?1 AND state = "
	                            "'running'");
	for (int i = 0; s != NULL && i < n; i++) {
		db_bind_str(s, 1, owners[i]);
		db_bind_int(s, 2, index_lease(ix));
		if (db_step(s) == DB_DONE)
			rc += (int)db_changes(s);
		else
			rc = -1;
		db_reset(s);
		if (rc < 0)
			break;
	}
	index_done(ix, c);
	return s == NULL ? -1 : rc;
}

int64_t index_job_add(struct index *ix, const char *kind, const char *payload,
                      const char *subject)
{
	struct idx_new_job j = { kind, payload, subject, NULL, NULL };
	struct dbc *c = index_conn(ix);
	int64_t id = -1;

	if (c == NULL)
		return -1;
	if (insert_job(c, &j, (int64_t)time(NULL), &id) != 0)
		id = -1;
	index_done(ix, c);
	return id;
}

int64_t index_job_add_once(struct index *ix, const char *kind,
                           const char *payload, const char *subject)
{
	struct idx_new_job j = { kind, payload, subject, NULL, NULL };
	struct dbc *c = index_tx_begin(ix);
	struct dbs *s;
	int64_t id = -1;
	int ok = -1;

	if (c == NULL)
		return -1;
	if (index_key_lock(ix, c, subject) == 0 &&
	    (s = db_prepare(c, "SELECT 1 FROM jobs WHERE subject = ?1 "
	                       "LIMIT 1")) != NULL) {
		db_bind_str(s, 1, subject);
		switch (db_step(s)) {
		case DB_ROW:
			id = 0; /* there already */
			ok = 0;
			break;
		case DB_DONE:
			ok = 0;
			break;
		}
		db_reset(s);
		if (ok == 0 && id < 0)
			ok = insert_job(c, &j, (int64_t)time(NULL), &id);
	}
	return index_tx_end(ix, c, ok) == 0 ? id : -1;
}

char *index_job_published(struct index *ix, const char *study_uid)
{
	/* the latest finished job about the study decides: an unpublication
	 * or a withdrawal (no manifest sent) means nothing is published */
	static const char sqlite_sql[] =
	        "SELECT payload, kind = 'unpublish' OR NOT EXISTS (SELECT 1 "
	        "FROM json_each(payload, '$.kos') WHERE json_extract(value, "
	        "'$.study') = ?1 AND json_extract(value, '$.sent')) FROM "
	        "jobs WHERE state = 'done' AND kind IN ('publish', "
	        "'replace', 'iocm', 'unpublish') AND EXISTS (SELECT 1 FROM "
	        "json_each(payload, '$.studies') WHERE json_extract(value, "
	        "'$.uid') = ?1) ORDER BY id DESC LIMIT 1";
	static const char pg_sql[] =
	        "SELECT payload, kind = 'unpublish' OR NOT EXISTS (SELECT 1 "
	        "FROM jsonb_array_elements(coalesce(payload::jsonb -> 'kos', "
	        "'[]')) k WHERE k ->> 'study' = ?1 AND (k -> 'sent') = "
	        "'true'::jsonb) FROM jobs WHERE state = 'done' AND kind IN "
	        "('publish', 'replace', 'iocm', 'unpublish') AND EXISTS "
	        "(SELECT 1 FROM jsonb_array_elements(coalesce(payload::jsonb "
	        "-> 'studies', '[]')) x WHERE x ->> 'uid' = ?1) ORDER BY id "
	        "DESC LIMIT 1";
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	char *out = NULL;

	if (c == NULL)
		return NULL;
	s = db_prepare(c, is_pg(ix) ? pg_sql : sqlite_sql);
	if (s != NULL) {
		db_bind_str(s, 1, study_uid);
		if (db_step(s) == DB_ROW && db_text(s, 0) != NULL &&
		    db_int(s, 1) == 0)
			out = strdup(db_text(s, 0));
		db_reset(s);
	}
	index_done(ix, c);
	return out;
}

int index_job_retry(struct index *ix, int64_t id)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = -1;

	if (c == NULL)
		return -1;
	/* a fresh start: the retry delays and the import's attempt limit
	 * count again from the first */
	s = db_prepare(c, "UPDATE jobs SET state = 'queued', not_before = 0, "
	                  "parked_for = NULL, attempts = 0, updated_at = ?2 "
	                  "WHERE id = ?1 AND state IN ('parked', 'failed', "
	                  "'queued')");
	if (s != NULL) {
		db_bind_int(s, 1, id);
		db_bind_int(s, 2, (int64_t)time(NULL));
		if (db_step(s) == DB_DONE)
			rc = db_changes(s) > 0;
		db_reset(s);
	}
	index_done(ix, c);
	return rc;
}

int index_job_pending_for(struct index *ix, const char *study_uid)
{
	return index_any_row(
	        ix,
	        is_pg(ix) ? "SELECT 1 FROM jobs WHERE state IN ('queued', "
	                    "'running') AND kind IN ('publish', 'replace') AND "
	                    "EXISTS (SELECT 1 FROM jsonb_array_elements("
	                    "coalesce(payload::jsonb -> 'studies', '[]')) x "
	                    "WHERE x ->> 'uid' = ?) LIMIT 1"
	                  : "SELECT 1 FROM jobs WHERE state IN ('queued', "
	                    "'running') AND kind IN ('publish', 'replace') AND "
	                    "EXISTS (SELECT 1 FROM json_each(payload, "
	                    "'$.studies') WHERE json_extract(value, '$.uid') = "
	                    "?) LIMIT 1",
	        study_uid);
}

int index_job_latest(struct index *ix, const char *subject, char *state,
                     size_t state_cap, char **payload, char *error,
                     size_t error_cap)
{
	struct dbc *c = index_conn(ix);
	struct dbs *s;
	int rc = -1, step;

	*payload = NULL;
	if (c == NULL)
		return -1;
	s = db_prepare(c, "SELECT state, payload, last_error FROM jobs WHERE "
	                  "subject = ?1 ORDER BY id DESC LIMIT 1");
	if (s == NULL)
		goto out;
	db_bind_str(s, 1, subject);
	step = db_step(s);
	if (step == DB_ROW) {
		const char *e = db_text(s, 2);

		snprintf(state, state_cap, "%s", db_text(s, 0));
		*payload = strdup(db_text(s, 1));
		if (error != NULL)
			snprintf(error, error_cap, "%s", e ? e : "");
		rc = *payload ? 1 : -1;
	} else {
		rc = step == DB_DONE ? 0 : -1;
	}
	db_reset(s);
out:
	index_done(ix, c);
	return rc;
}
