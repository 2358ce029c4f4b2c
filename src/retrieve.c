/*
 * retrieve.c - see retrieve.h. One lock guards the list of retrievals in
 * flight and their status; a condition variable wakes the requesters
 * waiting on them. A retrieval's entry is freed by the last of its thread
 * and its requesters.
 */
#include "retrieve.h"
#include "grow.h"
#include "log.h"
#include "metrics.h"
#include "pacs.h"
#include "remote.h"
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct entry {
	struct entry *next;
	struct retriever *r;
	char study[65], series[65]; /* series "" = whole study */
	char sop[65];               /* "" = the whole series or study */
	struct retrieve_status st;
	struct timespec start;
	int remote; /* from another DRIMbox, not from the PACS */
	int refs;   /* the thread + each requester */
	unsigned id;
	struct retrieval_item *arrived; /* in order of arrival */
	size_t narrived, cap;
};

struct retriever {
	const struct pacs *pacs;
	struct remote *remote; /* studies other DRIMboxes hold, or NULL */
	struct store *store;
	struct dcm_store_handler handler; /* for C-GET */
	pthread_mutex_t lock;
	pthread_cond_t changed; /* any entry's status changed */
	struct entry *active;   /* in flight, guarded by lock */
	int running;            /* threads alive, guarded by lock */
	int stopping;
	unsigned next_id;
};

static double since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Remembers an arrival for the streams following e (lock held). */
static void note_arrival(struct entry *e, const struct dcm_instance_info *i,
                         const char *tmp_path)
{
	struct retrieval_item *it;

	if (GROW(e->arrived, e->narrived, e->cap, 256) != 0)
		return; /* followers fall back to the index */
	it = &e->arrived[e->narrived++];
	snprintf(it->sop, sizeof(it->sop), "%s", i->sop_instance_uid);
	snprintf(it->series, sizeof(it->series), "%s", i->series_uid);
	snprintf(it->ts, sizeof(it->ts), "%s", i->transfer_syntax);
	snprintf(it->tmp, sizeof(it->tmp), "%s", tmp_path);
}

/*
 * Store observer: an instance landed (tmp_path set: streams may send it)
 * or was committed (counted), for every matching retrieval.
 */
static void on_instance(void *ctx, const struct dcm_instance_info *info,
                        const char *tmp_path)
{
	struct retriever *r = ctx;
	int hit = 0;

	pthread_mutex_lock(&r->lock);
	for (struct entry *e = r->active; e; e = e->next) {
		if (strcmp(e->study, info->study_uid) != 0 ||
		    (e->series[0] &&
		     strcmp(e->series, info->series_uid) != 0) ||
		    (e->sop[0] && strcmp(e->sop, info->sop_instance_uid) != 0))
			continue;
		if (tmp_path != NULL) {
			note_arrival(e, info, tmp_path);
		} else {
			e->st.received++;
			e->st.bytes += info->file_size;
		}
		hit = 1;
	}
	if (hit)
		pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
}

struct retriever *retriever_new(const struct pacs *p, struct store *s)
{
	struct retriever *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->pacs = p;
	r->store = s;
	store_handler(s, &r->handler);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->changed, NULL);
	store_set_observer(s, on_instance, r);
	return r;
}

void retriever_cancel(struct retriever *r)
{
	pthread_mutex_lock(&r->lock);
	r->stopping = 1;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
}

void retriever_free(struct retriever *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = 1;
	while (r->running > 0)
		pthread_cond_wait(&r->changed, &r->lock);
	pthread_mutex_unlock(&r->lock);
	/* Instances still being committed report to r: let them land. */
	store_flush(r->store);
	store_set_observer(r->store, NULL, NULL);
	pthread_cond_destroy(&r->changed);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Drops a reference; the caller holds the lock. */
static void entry_put(struct entry *e)
{
	if (--e->refs == 0) {
		free(e->arrived);
		free(e);
	}
}

static int on_progress(void *ctx, const struct dcm_progress *p)
{
	struct entry *e = ctx;
	struct retriever *r = e->r;
	int stop;

	pthread_mutex_lock(&r->lock);
	e->st.expected = p->remaining + p->completed + p->failed + p->warning;
	e->st.failed = p->failed;
	stop = r->stopping;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
	return stop;
}

/* Progress of a pull from another DRIMbox. */
static int on_pull_progress(void *ctx, long expected, long failed)
{
	struct entry *e = ctx;
	struct retriever *r = e->r;
	int stop;

	pthread_mutex_lock(&r->lock);
	e->st.expected = expected;
	e->st.failed = failed;
	stop = r->stopping;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
	return stop;
}

/* Retrieves from the PACS, or from the DRIMbox that holds the study. */
static int fetch(struct entry *e, const struct dcm_selection *sel,
                 struct dcm_progress *fin, char *err, size_t errlen)
{
	struct retriever *r = e->r;
	long done = 0, failed = 0;
	int rc;

	if (!e->remote) {
		log_info(LOGC_PACS, "retrieve study=%s%s%s%s%s via %s",
		         e->study, e->series[0] ? " series=" : "", e->series,
		         e->sop[0] ? " instance=" : "", e->sop,
		         r->pacs->use_get ? "C-GET" : "C-MOVE");
		return pacs_retrieve(r->pacs, sel, &r->handler, on_progress, e,
		                     fin, err, errlen);
	}
	rc = remote_pull(r->remote, e->study, sel->series_uid, sel->sop_uid,
	                 on_pull_progress, e, &done, &failed, err, errlen);
	fin->completed = (int)done;
	fin->failed = (int)failed;
	if (rc == 0 && done == 0 && failed == 0)
		fin->completed = (int)e->st.received; /* all cached already */
	return rc;
}

static void *retrieval_thread(void *arg)
{
	struct entry *e = arg;
	struct retriever *r = e->r;
	struct dcm_selection sel = { e->study, e->series[0] ? e->series : NULL,
		                     e->sop[0] ? e->sop : NULL };
	struct dcm_progress fin = { 0, 0, 0, 0 };
	char ctx[32], err[256] = "", why[160];
	unsigned long refused = store_refusals(r->store, NULL, 0);
	int rc;

	snprintf(ctx, sizeof(ctx), "fetch=%u", e->id);
	log_set_context(ctx);
	rc = fetch(e, &sel, &fin, err, sizeof(err));
	/* Answered instances may still be on their way to the disk. */
	store_flush(r->store);
	if (rc != 0 && store_refusals(r->store, why, sizeof(why)) > refused) {
		size_t n = strlen(err);

		snprintf(err + n, sizeof(err) - n, " (not stored: %s)", why);
	}
	pthread_mutex_lock(&r->lock);
	if (rc == 0 && fin.completed + fin.warning == 0 && fin.failed == 0 &&
	    e->st.received == 0) {
		snprintf(err, sizeof(err),
		         "the PACS has no instance for this "
		         "selection");
		rc = -1;
	} else if (rc == 0 && e->st.received < fin.completed + fin.warning) {
		snprintf(err, sizeof(err),
		         "%ld of %d instances sent by the PACS could not be "
		         "cached (see the log)",
		         (long)(fin.completed + fin.warning) - e->st.received,
		         fin.completed + fin.warning);
		rc = -1;
	}
	for (struct entry **pp = &r->active; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	e->st.elapsed = since(&e->start);
	e->st.failed = fin.failed;
	if (fin.completed + fin.failed + fin.warning > 0)
		e->st.expected = fin.completed + fin.failed + fin.warning;
	e->st.done = 1;
	e->st.ok = rc == 0;
	snprintf(e->st.error, sizeof(e->st.error), "%s", err);
	if (e->remote)
		metrics_remote(rc == 0, (uint64_t)e->st.received, e->st.bytes);
	else
		metrics_retrieval(rc == 0, (uint64_t)e->st.received,
		                  e->st.bytes, e->st.elapsed);
	if (rc == 0)
		log_info(LOGC_PACS,
		         "retrieved study=%s instances=%ld bytes=%llu "
		         "seconds=%.3f",
		         e->study, e->st.received,
		         (unsigned long long)e->st.bytes, e->st.elapsed);
	else
		log_error(LOGC_PACS, "retrieve study=%s failed: %s", e->study,
		          err);
	entry_put(e);
	r->running--;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* 1 when the study is to be pulled from another DRIMbox. */
static int is_remote(struct retriever *r, const char *study)
{
	return r->remote != NULL && remote_holds(r->remote, study);
}

/*
 * Finds or starts the retrieval; the caller holds the lock. A series of a
 * remote study joins the pull of the whole study when one is under way:
 * the link to the other DRIMbox is what limits, and the series would
 * cross it twice.
 */
static struct entry *join_or_start(struct retriever *r, const char *study,
                                   const char *series, const char *sop,
                                   int remote, char *err, size_t len)
{
	struct entry *e;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	for (e = r->active; e; e = e->next)
		if (strcmp(e->study, study) == 0 &&
		    ((strcmp(e->series, series ? series : "") == 0 &&
		      strcmp(e->sop, sop ? sop : "") == 0) ||
		     (remote && e->remote && sop == NULL &&
		      e->series[0] == '\0'))) {
			e->refs++;
			return e;
		}
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	e->r = r;
	snprintf(e->study, sizeof(e->study), "%s", study);
	snprintf(e->series, sizeof(e->series), "%s", series ? series : "");
	snprintf(e->sop, sizeof(e->sop), "%s", sop ? sop : "");
	e->st.expected = -1;
	e->remote = remote;
	e->refs = 2;
	e->id = ++r->next_id;
	clock_gettime(CLOCK_MONOTONIC, &e->start);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, retrieval_thread, e);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		snprintf(err, len, "cannot start a thread: %s", strerror(rc));
		free(e);
		return NULL;
	}
	r->running++;
	e->next = r->active;
	r->active = e;
	return e;
}

/* A requester's hold on an entry. */
struct retrieval {
	struct retriever *r;
	struct entry *e;
};

struct retrieval *retriever_start(struct retriever *r, const char *study,
                                  const char *series, const char *sop,
                                  char *err, size_t errlen)
{
	struct retrieval *h = calloc(1, sizeof(*h));
	int remote = is_remote(r, study);

	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_lock(&r->lock);
	if (r->stopping)
		snprintf(err, errlen, "shutting down");
	else
		h->e = join_or_start(r, study, series, sop, remote, err,
		                     errlen);
	pthread_mutex_unlock(&r->lock);
	if (h->e == NULL) {
		free(h);
		return NULL;
	}
	h->r = r;
	return h;
}

int retriever_progress(struct retriever *r, const char *study,
                       struct retrieve_status *st)
{
	int found = 0;

	pthread_mutex_lock(&r->lock);
	for (struct entry *e = r->active; e && !found; e = e->next)
		if (strcmp(e->study, study) == 0) {
			*st = e->st;
			found = 1;
		}
	pthread_mutex_unlock(&r->lock);
	return found;
}

int retriever_instances_running(struct retriever *r)
{
	int n = 0;

	pthread_mutex_lock(&r->lock);
	for (struct entry *e = r->active; e; e = e->next)
		n += e->sop[0] != '\0';
	pthread_mutex_unlock(&r->lock);
	return n;
}

void retrieval_wait(struct retrieval *h, size_t arrived, int timeout_ms,
                    struct retrieve_status *st)
{
	struct retriever *r = h->r;
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	until.tv_sec += timeout_ms / 1000 + until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&r->lock);
	while (!h->e->st.done && h->e->narrived <= arrived &&
	       pthread_cond_timedwait(&r->changed, &r->lock, &until) !=
	               ETIMEDOUT)
		;
	*st = h->e->st;
	if (!st->done)
		st->elapsed = since(&h->e->start);
	pthread_mutex_unlock(&r->lock);
}

size_t retrieval_arrived(struct retrieval *h, size_t from,
                         struct retrieval_item *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&h->r->lock);
	while (from + n < h->e->narrived && n < max) {
		out[n] = h->e->arrived[from + n];
		n++;
	}
	pthread_mutex_unlock(&h->r->lock);
	return n;
}

void retrieval_release(struct retrieval *h)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->r->lock);
	entry_put(h->e);
	pthread_mutex_unlock(&h->r->lock);
	free(h);
}

int retriever_fetch(struct retriever *r, const char *study, const char *series,
                    int interval_ms, retrieve_cb cb, void *ctx,
                    struct retrieve_status *final)
{
	struct entry *e;
	struct timespec next;
	struct retrieve_status snap;
	int remote = is_remote(r, study);

	memset(final, 0, sizeof(*final));
	pthread_mutex_lock(&r->lock);
	if (r->stopping) {
		pthread_mutex_unlock(&r->lock);
		snprintf(final->error, sizeof(final->error), "shutting down");
		return -1;
	}
	e = join_or_start(r, study, series, NULL, remote, final->error,
	                  sizeof(final->error));
	if (e == NULL) {
		pthread_mutex_unlock(&r->lock);
		return -1;
	}
	clock_gettime(CLOCK_REALTIME, &next);
	while (!e->st.done) {
		next.tv_nsec += (long)interval_ms * 1000000L;
		while (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		while (!e->st.done &&
		       pthread_cond_timedwait(&r->changed, &r->lock, &next) !=
		               ETIMEDOUT)
			;
		if (e->st.done || cb == NULL)
			continue;
		snap = e->st;
		snap.elapsed = since(&e->start);
		pthread_mutex_unlock(&r->lock);
		cb(ctx, &snap);
		pthread_mutex_lock(&r->lock);
	}
	*final = e->st;
	entry_put(e);
	pthread_mutex_unlock(&r->lock);
	if (cb)
		cb(ctx, final);
	return final->ok ? 0 : -1;
}

void retriever_set_remote(struct retriever *r, struct remote *remote)
{
	r->remote = remote;
}
