/*
 * index_jobs.c - the HL7 journal and the job queue (see index.h). Uses the
 * connection's statement cache; every call holds the index lock.
 */
#include "index.h"
#include "index_internal.h"
#include "log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void bind_opt(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

static int insert_job(struct index *ix, const struct idx_new_job *j,
                      int64_t now, int64_t *id)
{
	sqlite3_stmt *s = index_cached_stmt(
	        ix, "INSERT INTO jobs(kind, state, payload, subject, "
	            "parked_for, last_error, created_at, updated_at) "
	            "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)");

	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, j->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, j->parked_for ? "parked" : "queued", -1,
	                  SQLITE_STATIC);
	sqlite3_bind_text(s, 3, j->payload, -1, SQLITE_STATIC);
	bind_opt(s, 4, j->subject);
	bind_opt(s, 5, j->parked_for);
	bind_opt(s, 6, j->reason);
	sqlite3_bind_int64(s, 7, now);
	if (index_step_done(ix, s) != 0)
		return -1;
	*id = sqlite3_last_insert_rowid(index_db(ix));
	return 0;
}

static int release(struct index *ix, const char *subject, const char *why,
                   const char *patient, int64_t now, int *released)
{
	sqlite3_stmt *s = index_cached_stmt(
	        ix, "UPDATE jobs SET state = 'queued', parked_for = NULL, "
	            "last_error = NULL, not_before = 0, updated_at = ?1, "
	            "payload = json_set(payload, '$.patient', json(?2)) "
	            "WHERE state = 'parked' AND subject = ?3 AND "
	            "parked_for = ?4");

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_text(s, 2, patient, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, why, -1, SQLITE_STATIC);
	if (index_step_done(ix, s) != 0)
		return -1;
	*released = sqlite3_changes(index_db(ix));
	return 0;
}

static int insert_message(struct index *ix, const struct idx_hl7 *m,
                          const char *reason, int64_t job, int64_t now)
{
	sqlite3_stmt *s = index_cached_stmt(
	        ix, "INSERT INTO hl7_messages(received_at, peer, sender, "
	            "control_id, type, raw, size, outcome, reason, job, "
	            "digest) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, now);
	bind_opt(s, 2, m->peer);
	bind_opt(s, 3, m->sender);
	bind_opt(s, 4, m->control_id);
	bind_opt(s, 5, m->type);
	sqlite3_bind_blob64(s, 6, m->raw ? m->raw : "", m->raw_len,
	                    SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)m->size);
	sqlite3_bind_text(s, 8, m->outcome, -1, SQLITE_STATIC);
	bind_opt(s, 9, reason);
	if (job > 0)
		sqlite3_bind_int64(s, 10, job);
	else
		sqlite3_bind_null(s, 10);
	bind_opt(s, 11, m->digest);
	return index_step_done(ix, s);
}

/* An accepted message with this sender and control id: its id and job. */
static int find_accepted(struct index *ix, const struct idx_hl7 *m, int64_t *id,
                         int64_t *job)
{
	sqlite3_stmt *s = index_cached_stmt(
	        ix, "SELECT id, job FROM hl7_messages WHERE sender = ? AND "
	            "control_id = ? AND digest = ? AND outcome = 'AA' AND "
	            "job IS NOT NULL ORDER BY id LIMIT 1");
	int rc;

	*id = *job = 0;
	if (s == NULL)
		return -1;
	bind_opt(s, 1, m->sender);
	bind_opt(s, 2, m->control_id);
	bind_opt(s, 3, m->digest);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(s, 0);
		*job = sqlite3_column_int64(s, 1);
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int index_journal_hl7(struct index *ix, const struct idx_hl7 *m,
                      const struct idx_new_job *job,
                      const char *release_subject, const char *release_for,
                      const char *release_patient, int64_t *job_id,
                      int *released, int64_t *duplicate_of)
{
	sqlite3 *db;
	int64_t now = (int64_t)time(NULL), dup_job = 0;
	char reason[160];
	int rc = -1;

	*job_id = 0;
	*released = 0;
	*duplicate_of = 0;
	index_lock(ix);
	db = index_db(ix);
	/* this commit is what an AA promises: synced, unlike cache fill */
	if (index_exec(db, "PRAGMA synchronous = FULL") != 0)
		goto out;
	if (index_exec(db, "BEGIN IMMEDIATE") != 0)
		goto restore;
	if (job != NULL && m->sender != NULL && m->control_id != NULL &&
	    m->digest != NULL &&
	    find_accepted(ix, m, duplicate_of, &dup_job) != 0)
		goto rollback;
	if (*duplicate_of != 0) { /* sent again: the first one's job */
		snprintf(reason, sizeof(reason),
		         "sent again: message %lld was accepted with job %lld, "
		         "no new job",
		         (long long)*duplicate_of, (long long)dup_job);
		job = NULL;
		release_subject = NULL;
	}
	if ((job != NULL && insert_job(ix, job, now, job_id) != 0) ||
	    (release_subject != NULL &&
	     release(ix, release_subject, release_for, release_patient, now,
	             released) != 0) ||
	    insert_message(ix, m, *duplicate_of ? reason : m->reason,
	                   *duplicate_of ? dup_job : *job_id, now) != 0 ||
	    index_exec(db, "COMMIT") != 0) {
	rollback:
		index_exec(db, "ROLLBACK");
		*job_id = 0;
		*released = 0;
		goto restore;
	}
	rc = 0;
restore:
	index_exec(db, "PRAGMA synchronous = NORMAL");
out:
	index_unlock(ix);
	return rc;
}

static const char *col(sqlite3_stmt *s, int i)
{
	return (const char *)sqlite3_column_text(s, i);
}

/* Runs sql (one "LIMIT ?" parameter) and hands each row to row(). */
static int each_row(struct index *ix, const char *sql, long limit,
                    int (*row)(sqlite3_stmt *s, void *ctx), void *ctx)
{
	sqlite3_stmt *s;
	int rc = -1, step;

	index_lock(ix);
	s = index_cached_stmt(ix, sql);
	if (s == NULL)
		goto out;
	sqlite3_bind_int64(s, 1, limit > 0 ? limit : -1);
	while ((step = sqlite3_step(s)) == SQLITE_ROW)
		if (row(s, ctx) != 0)
			break;
	rc = step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -1;
	sqlite3_reset(s);
out:
	index_unlock(ix);
	return rc;
}

struct job_walk {
	int (*cb)(void *ctx, const struct idx_job *j);
	void *ctx;
};

static int job_row(sqlite3_stmt *s, void *ctx)
{
	struct job_walk *w = ctx;
	struct idx_job j = {
		.id = sqlite3_column_int64(s, 0),
		.kind = col(s, 1),
		.state = col(s, 2),
		.payload = col(s, 3),
		.attempts = (long)sqlite3_column_int64(s, 4),
		.not_before = sqlite3_column_int64(s, 5),
		.last_error = col(s, 6),
		.created_at = sqlite3_column_int64(s, 7),
		.updated_at = sqlite3_column_int64(s, 8),
		.subject = col(s, 9),
		.parked_for = col(s, 10),
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
	                "subject, parked_for FROM jobs ORDER BY id DESC "
	                "LIMIT ?",
	                limit, job_row, &w);
}

struct summary_walk {
	void (*cb)(void *ctx, const struct idx_job_count *c);
	void *ctx;
};

static int summary_row(sqlite3_stmt *s, void *ctx)
{
	struct summary_walk *w = ctx;
	struct idx_job_count c = {
		.kind = col(s, 0),
		.state = col(s, 1),
		.count = sqlite3_column_int64(s, 2),
		.oldest = sqlite3_column_int64(s, 3),
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
	                "'failed') GROUP BY kind, state LIMIT ?",
	                0, summary_row, &w);
}

struct hl7_walk {
	int (*cb)(void *ctx, const struct idx_hl7_row *r);
	void *ctx;
};

static int hl7_row(sqlite3_stmt *s, void *ctx)
{
	struct hl7_walk *w = ctx;
	struct idx_hl7_row r = {
		.id = sqlite3_column_int64(s, 0),
		.received_at = sqlite3_column_int64(s, 1),
		.peer = col(s, 2),
		.control_id = col(s, 3),
		.type = col(s, 4),
		.size = (uint64_t)sqlite3_column_int64(s, 5),
		.outcome = col(s, 6),
		.reason = col(s, 7),
		.job = sqlite3_column_int64(s, 8),
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
	sqlite3_stmt *s;
	int rc = -1, step;

	index_lock(ix);
	s = index_cached_stmt(
	        ix,
	        "UPDATE jobs SET state = 'running', updated_at = ?1 WHERE "
	        "id = (SELECT id FROM jobs WHERE state = 'queued' AND "
	        "not_before <= ?1 AND instr(',' || ?2 || ',', ',' || kind "
	        "|| ',') > 0 ORDER BY not_before, id LIMIT 1) RETURNING id, "
	        "kind, payload, attempts, created_at");
	if (s == NULL)
		goto out;
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_text(s, 2, kinds, -1, SQLITE_STATIC);
	step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		const char *payload = col(s, 2);

		j->id = sqlite3_column_int64(s, 0);
		snprintf(j->kind, sizeof(j->kind), "%s", col(s, 1));
		j->payload = strdup(payload ? payload : "{}");
		j->attempts = (long)sqlite3_column_int64(s, 3);
		j->created_at = sqlite3_column_int64(s, 4);
		rc = j->payload ? 1 : -1;
	} else {
		rc = step == SQLITE_DONE ? 0 : -1;
		if (rc < 0)
			log_error(LOGC_INDEX, "claim: %s",
			          sqlite3_errmsg(index_db(ix)));
	}
	/* the update commits when the statement is reset */
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	index_unlock(ix);
	return rc;
}

int index_job_finish(struct index *ix, int64_t id, const char *state,
                     int64_t not_before, const char *parked_for,
                     const char *error, const char *payload)
{
	sqlite3_stmt *s;
	int rc = -1;

	index_lock(ix);
	s = index_cached_stmt(
	        ix, "UPDATE jobs SET state = ?2, not_before = ?3, parked_for = "
	            "?4, last_error = ?5, payload = coalesce(?6, payload), "
	            "attempts = attempts + 1, updated_at = ?7 WHERE id = ?1");
	if (s != NULL) {
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, state, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, not_before);
		bind_opt(s, 4, parked_for);
		bind_opt(s, 5, error);
		bind_opt(s, 6, payload);
		sqlite3_bind_int64(s, 7, (int64_t)time(NULL));
		rc = index_step_done(ix, s);
	}
	index_unlock(ix);
	return rc;
}

int index_jobs_recover(struct index *ix)
{
	int rc;

	index_lock(ix);
	rc = index_exec(index_db(ix), "UPDATE jobs SET state = 'queued' WHERE "
	                              "state = 'running'") == 0
	             ? sqlite3_changes(index_db(ix))
	             : -1;
	index_unlock(ix);
	return rc;
}

int index_job_payload(struct index *ix, int64_t id, const char *payload)
{
	sqlite3_stmt *s;
	int rc = -1;

	index_lock(ix);
	/* what is about to be sent must survive a power loss: synced */
	if (index_exec(index_db(ix), "PRAGMA synchronous = FULL") != 0)
		goto out;
	s = index_cached_stmt(ix, "UPDATE jobs SET payload = ?2, updated_at "
	                          "= ?3 WHERE id = ?1");
	if (s != NULL) {
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, payload, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, (int64_t)time(NULL));
		rc = index_step_done(ix, s);
	}
	index_exec(index_db(ix), "PRAGMA synchronous = NORMAL");
out:
	index_unlock(ix);
	return rc;
}

int64_t index_job_add(struct index *ix, const char *kind, const char *payload,
                      const char *subject)
{
	struct idx_new_job j = { kind, payload, subject, NULL, NULL };
	int64_t id = -1;

	index_lock(ix);
	if (insert_job(ix, &j, (int64_t)time(NULL), &id) != 0)
		id = -1;
	index_unlock(ix);
	return id;
}

char *index_job_published(struct index *ix, const char *study_uid)
{
	sqlite3_stmt *s;
	char *out = NULL;

	index_lock(ix);
	/* the latest finished job about the study decides: an unpublication
	 * or a withdrawal (no manifest sent) means nothing is published */
	s = index_cached_stmt(
	        ix,
	        "SELECT payload, kind = 'unpublish' OR NOT EXISTS (SELECT 1 "
	        "FROM json_each(payload, '$.kos') WHERE json_extract(value, "
	        "'$.study') = ?1 AND json_extract(value, '$.sent')) FROM "
	        "jobs WHERE state = 'done' AND kind IN ('publish', "
	        "'replace', 'iocm', 'unpublish') AND EXISTS (SELECT 1 FROM "
	        "json_each(payload, '$.studies') WHERE json_extract(value, "
	        "'$.uid') = ?1) ORDER BY id DESC LIMIT 1");
	if (s != NULL) {
		sqlite3_bind_text(s, 1, study_uid, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW && col(s, 0) != NULL &&
		    sqlite3_column_int(s, 1) == 0)
			out = strdup(col(s, 0));
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
	index_unlock(ix);
	return out;
}

int index_job_retry(struct index *ix, int64_t id)
{
	sqlite3_stmt *s;
	int rc = -1;

	index_lock(ix);
	s = index_cached_stmt(ix, "UPDATE jobs SET state = 'queued', "
	                          "not_before = 0, parked_for = NULL, "
	                          "updated_at = ?2 WHERE id = ?1 AND state IN "
	                          "('parked', 'failed', 'queued')");
	if (s != NULL) {
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, (int64_t)time(NULL));
		rc = index_step_done(ix, s) == 0
		             ? sqlite3_changes(index_db(ix)) > 0
		             : -1;
	}
	index_unlock(ix);
	return rc;
}

/* Whether sql (one text parameter) selects a row: 1, 0, or -1. */
static int any_row(struct index *ix, const char *sql, const char *value)
{
	sqlite3_stmt *s;
	int rc = -1, step;

	index_lock(ix);
	s = index_cached_stmt(ix, sql);
	if (s != NULL) {
		sqlite3_bind_text(s, 1, value, -1, SQLITE_STATIC);
		step = sqlite3_step(s);
		rc = step == SQLITE_ROW ? 1 : step == SQLITE_DONE ? 0 : -1;
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
	index_unlock(ix);
	return rc;
}

int index_job_exists(struct index *ix, const char *subject)
{
	return any_row(ix, "SELECT 1 FROM jobs WHERE subject = ? LIMIT 1",
	               subject);
}

int index_job_pending_for(struct index *ix, const char *study_uid)
{
	return any_row(ix,
	               "SELECT 1 FROM jobs WHERE state IN ('queued', "
	               "'running') AND kind IN ('publish', 'replace') AND "
	               "EXISTS (SELECT 1 FROM json_each(payload, '$.studies') "
	               "WHERE json_extract(value, '$.uid') = ?) LIMIT 1",
	               study_uid);
}

int index_job_latest(struct index *ix, const char *subject, char *state,
                     size_t state_cap, char **payload, char *error,
                     size_t error_cap)
{
	sqlite3_stmt *s;
	int rc = -1, step;

	*payload = NULL;
	index_lock(ix);
	s = index_cached_stmt(ix, "SELECT state, payload, last_error FROM jobs "
	                          "WHERE subject = ?1 ORDER BY id DESC "
	                          "LIMIT 1");
	if (s == NULL)
		goto out;
	sqlite3_bind_text(s, 1, subject, -1, SQLITE_STATIC);
	step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		const char *e = (const char *)sqlite3_column_text(s, 2);

		snprintf(state, state_cap, "%s", sqlite3_column_text(s, 0));
		*payload = strdup((const char *)sqlite3_column_text(s, 1));
		if (error != NULL)
			snprintf(error, error_cap, "%s", e ? e : "");
		rc = *payload ? 1 : -1;
	} else {
		rc = step == SQLITE_DONE ? 0 : -1;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	index_unlock(ix);
	return rc;
}
