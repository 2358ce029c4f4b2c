/*
 * store.c - see store.h. Every commit runs on the committer thread, which
 * is thus the only one placing files in the cache tree and evicting: no
 * rename can race an eviction. Order for a batch: make the data durable,
 * rename every file into place, sync each series directory once, commit
 * the rows in one transaction, then tell the observer. When a step fails,
 * neither a new file nor a row is left behind.
 */
#include "store.h"
#include "attrs.h"
#include "cache.h"
#include "index.h"
#include "log.h"

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATUS_SUCCESS 0x0000
#define STATUS_OUT_OF_RESOURCES 0xA700

/* Values over this size go to BulkDataURI in the precomputed JSON. */
#define JSON_BULK_THRESHOLD 4096

/* Most instances committed in one batch (one index transaction). */
#define BATCH_MAX 64

/* A received instance waiting to be committed. */
struct pending {
	struct pending *next;
	struct dcm_instance_info info;
	char tmp[PATH_MAX];
	char rel[256];
	char *json;
	/* study, series and patient attributes the instance carries */
	/* as UTF-8, up to 4 bytes a character (see pacs.c) */
	char pid[257], issuer[257], name[1024], birth[17], sex[17];
	char date[17], time[17], acc[65], desc[257], ref[1024], sid[65];
	char modality[17], sdesc[257], body[65];
	long snum, inum;
	int from_pacs; /* cache fill: counted by retrievals */
	int placed;    /* the file is in the cache tree */
	int wait;      /* the sender waits for the outcome, and frees */
	int done, ok;  /* outcome, guarded by the store's lock */
};

struct store {
	struct cache *cache;
	struct index *ix;
	char pacs_aet[17];
	store_observer observer; /* guarded by lock */
	void *observer_ctx;
	unsigned long refusals; /* guarded by lock */
	char refusal[256];
	pthread_t committer;
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	/* guarded by lock */
	struct pending *head, **tail;
	uint64_t queued, committed; /* sequence numbers */
	int stop;
};

/* Copies what the index needs out of the dataset; NULL on ENOMEM. */
static struct pending *pending_new(const struct dcm_ds *ds,
                                   const struct dcm_instance_info *info,
                                   const char *tmp_path)
{
	struct pending *p = calloc(1, sizeof(*p));
	struct dcm_err e = { "" };
	size_t len;

	if (p == NULL)
		return NULL;
	p->info = *info;
	snprintf(p->tmp, sizeof(p->tmp), "%s", tmp_path);
	if (dcm_ds_to_json(ds, JSON_BULK_THRESHOLD, "", &p->json, &len, &e) !=
	    DCM_OK)
		log_warn(LOGC_DICOM, "sop=%s: no DICOM JSON: %s",
		         info->sop_instance_uid, e.msg);
	attr_str(ds, DCM_TAG(0x0010, 0x0020), p->pid, sizeof(p->pid));
	attr_str(ds, DCM_TAG(0x0010, 0x0021), p->issuer, sizeof(p->issuer));
	attr_str(ds, DCM_TAG(0x0010, 0x0010), p->name, sizeof(p->name));
	attr_str(ds, DCM_TAG(0x0010, 0x0030), p->birth, sizeof(p->birth));
	attr_str(ds, DCM_TAG(0x0010, 0x0040), p->sex, sizeof(p->sex));
	attr_str(ds, DCM_TAG(0x0008, 0x0020), p->date, sizeof(p->date));
	attr_str(ds, DCM_TAG(0x0008, 0x0030), p->time, sizeof(p->time));
	attr_str(ds, DCM_TAG(0x0008, 0x0050), p->acc, sizeof(p->acc));
	attr_str(ds, DCM_TAG(0x0008, 0x1030), p->desc, sizeof(p->desc));
	attr_str(ds, DCM_TAG(0x0008, 0x0090), p->ref, sizeof(p->ref));
	attr_str(ds, DCM_TAG(0x0020, 0x0010), p->sid, sizeof(p->sid));
	attr_str(ds, DCM_TAG(0x0008, 0x0060), p->modality, sizeof(p->modality));
	attr_str(ds, DCM_TAG(0x0008, 0x103E), p->sdesc, sizeof(p->sdesc));
	attr_str(ds, DCM_TAG(0x0018, 0x0015), p->body, sizeof(p->body));
	p->snum = attr_long(ds, DCM_TAG(0x0020, 0x0011));
	p->inum = attr_long(ds, DCM_TAG(0x0020, 0x0013));
	return p;
}

static void pending_free(struct pending *p)
{
	if (p == NULL)
		return;
	free(p->json);
	free(p);
}

static void to_put(const struct pending *p, struct idx_put *x)
{
	const struct dcm_instance_info *i = &p->info;

	*x = (struct idx_put){
		.pat = { p->pid, p->issuer, p->name, p->birth, p->sex },
		.st = { i->study_uid, p->date, p->time, p->acc, p->desc, NULL,
		        p->ref, p->sid, -1, -1 },
		.se = { i->series_uid, p->modality, p->sdesc, p->body, p->snum,
		        -1 },
		.c = { i->sop_instance_uid, i->sop_class_uid, p->inum, p->rel,
		       i->transfer_syntax, i->file_size, i->number_of_frames,
		       p->json },
	};
}

/*
 * Drops a pending instance that could not be committed. A placed file
 * whose path an older row points at is a copy of the same instance (the
 * path is made of its UIDs): it stays.
 */
static void discard(struct store *s, struct pending *p)
{
	if (!p->placed)
		unlink(p->tmp);
	else if (index_has_cache_path(s->ix, p->rel) == 0)
		cache_unpublish(s->cache, p->rel);
	p->placed = 0;
}

/* Places the files of a batch; returns how many are placed. */
static size_t place_all(struct store *s, struct pending **batch, size_t n)
{
	char err[300];
	size_t placed = 0;
	/* One file-system sync makes a whole batch's data durable. */
	int synced = n > 1 && cache_sync_data(s->cache, err, sizeof(err)) == 0;

	for (size_t i = 0; i < n; i++) {
		struct pending *p = batch[i];
		const struct dcm_instance_info *in = &p->info;

		if (cache_place(s->cache, p->tmp, synced, in->study_uid,
		                in->series_uid, in->sop_instance_uid, p->rel,
		                sizeof(p->rel), err, sizeof(err)) != 0) {
			log_error(LOGC_CACHE, "sop=%s not cached: %s",
			          in->sop_instance_uid, err);
			discard(s, p);
			continue;
		}
		p->placed = 1;
		placed++;
	}
	return placed;
}

/* Length of the directory part of a relative path ("STUDY/SERIES"). */
static size_t dir_len(const char *rel)
{
	const char *slash = strrchr(rel, '/');

	return slash ? (size_t)(slash - rel) : 0;
}

/*
 * Syncs each series directory of the placed files once, after all their
 * renames. A directory that cannot be synced fails its files.
 */
static void sync_dirs(struct store *s, struct pending **batch, size_t n)
{
	char err[300];

	for (size_t i = 0; i < n; i++) {
		struct pending *p = batch[i];
		size_t len = dir_len(p->rel);
		int seen = 0, rc;

		if (!p->placed)
			continue;
		for (size_t j = 0; j < i && !seen; j++)
			seen = batch[j]->placed &&
			       dir_len(batch[j]->rel) == len &&
			       strncmp(batch[j]->rel, p->rel, len) == 0;
		if (seen)
			continue;
		rc = cache_sync_dir(s->cache, p->rel, err, sizeof(err));
		if (rc == 0)
			continue;
		log_error(LOGC_CACHE, "%s", err);
		for (size_t j = i; j < n; j++)
			if (batch[j]->placed && dir_len(batch[j]->rel) == len &&
			    strncmp(batch[j]->rel, p->rel, len) == 0)
				discard(s, batch[j]);
	}
}

/*
 * Commits a batch (see the file comment); sets each instance's ok.
 * Runs on the committer thread only.
 */
static void commit(struct store *s, struct pending **batch, size_t n)
{
	struct idx_put puts[BATCH_MAX];
	struct pending *ok[BATCH_MAX];
	store_observer observer;
	void *observer_ctx;
	size_t m = 0;
	int64_t added = 0;

	pthread_mutex_lock(&s->lock);
	observer = s->observer;
	observer_ctx = s->observer_ctx;
	pthread_mutex_unlock(&s->lock);
	if (place_all(s, batch, n) > 0)
		sync_dirs(s, batch, n);
	for (size_t i = 0; i < n; i++) {
		batch[i]->ok = 0;
		if (batch[i]->placed) {
			to_put(batch[i], &puts[m]);
			ok[m++] = batch[i];
		}
	}
	if (m > 0 && index_put_cached(s->ix, puts, m, &added) != 0) {
		log_error(LOGC_INDEX,
		          "%zu instances not recorded: index write failed", m);
		for (size_t i = 0; i < m; i++)
			discard(s, ok[i]);
		return;
	}
	cache_added(s->cache, added);
	for (size_t i = 0; i < m; i++) {
		ok[i]->ok = 1;
		if (observer && ok[i]->from_pacs)
			observer(observer_ctx, &ok[i]->info, NULL);
	}
	if (cache_bytes(s->cache) > cache_max_bytes(s->cache))
		(void)cache_enforce_bound(s->cache);
}

static void *committer_thread(void *arg)
{
	struct store *s = arg;
	struct pending *batch[BATCH_MAX];

	log_set_context("committer");
	pthread_mutex_lock(&s->lock);
	for (;;) {
		size_t n = 0;

		while (s->head == NULL && !s->stop)
			pthread_cond_wait(&s->work, &s->lock);
		if (s->head == NULL)
			break; /* stopping with nothing left */
		while (s->head != NULL && n < BATCH_MAX) {
			batch[n++] = s->head;
			s->head = s->head->next;
		}
		if (s->head == NULL)
			s->tail = &s->head;
		pthread_mutex_unlock(&s->lock);
		commit(s, batch, n);
		pthread_mutex_lock(&s->lock);
		for (size_t i = 0; i < n; i++) {
			batch[i]->done = 1;
			if (!batch[i]->wait)
				pending_free(batch[i]);
		}
		s->committed += n;
		pthread_cond_broadcast(&s->done);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/*
 * An IOCM rejection note (a KOS titled "Rejected for Quality Reasons",
 * ...: the instances it lists are withdrawn): a job is queued to update or
 * withdraw the study's manifest in the DMP.
 */
static void check_rejection(struct store *s, const struct dcm_ds *ds,
                            const struct dcm_instance_info *info)
{
	static const char *const codes[] = { "113001", "113037", "113038",
		                             "113039" };
	char code[32], scheme[16], sop[65], path[160], subject[80];
	json_t *rejected, *payload;
	char *text;
	int64_t id;
	int found = 0;

	if (strcmp(info->sop_class_uid, "1.2.840.10008.5.1.4.1.1.88.59") != 0 ||
	    dcm_ds_get_path(ds, "0040A043/0/00080100", code, sizeof(code)) !=
	            DCM_OK ||
	    dcm_ds_get_path(ds, "0040A043/0/00080102", scheme,
	                    sizeof(scheme)) != DCM_OK ||
	    strcmp(scheme, "DCM") != 0)
		return;
	for (size_t i = 0; i < sizeof(codes) / sizeof(*codes); i++)
		found |= strcmp(code, codes[i]) == 0;
	if (!found)
		return;
	rejected = json_array();
	for (long st = 0; st < dcm_ds_items(ds, "0040A375"); st++) {
		snprintf(path, sizeof(path), "0040A375/%ld/00081115", st);
		for (long se = 0; se < dcm_ds_items(ds, path); se++) {
			char sops[100];

			snprintf(sops, sizeof(sops),
			         "0040A375/%ld/00081115/%ld/"
			         "00081199",
			         st, se);
			for (long k = 0; k < dcm_ds_items(ds, sops); k++) {
				snprintf(path, sizeof(path), "%s/%ld/00081155",
				         sops, k);
				if (dcm_ds_get_path(ds, path, sop,
				                    sizeof(sop)) == DCM_OK)
					json_array_append_new(rejected,
					                      json_string(sop));
			}
			snprintf(path, sizeof(path), "0040A375/%ld/00081115",
			         st);
		}
	}
	payload = json_pack("{s:s, s:s, s:o}", "study", info->study_uid, "code",
	                    code, "rejected", rejected);
	text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
	snprintf(subject, sizeof(subject), "note:%s", info->sop_instance_uid);
	/* the same note again, here or on another node: one job */
	id = text ? index_job_add_once(s->ix, "iocm", text, subject) : -1;
	if (id == 0)
		log_info(LOGC_JOBS, "rejection note sop=%s: already handled",
		         info->sop_instance_uid);
	else if (id < 0)
		log_error(LOGC_JOBS,
		          "rejection note sop=%s: its job could not be queued",
		          info->sop_instance_uid);
	else
		log_info(LOGC_JOBS,
		         "rejection note sop=%s (%s) for study=%s: %zu "
		         "instances rejected",
		         info->sop_instance_uid, code, info->study_uid,
		         json_array_size(rejected));
	free(text);
	json_decref(payload);
}

/*
 * Queues a received instance; fill: cache fill (its origin keeps it), told
 * to the observer and answered at once; otherwise answered once durable.
 */
static unsigned receive(struct store *s, const struct dcm_ds *ds,
                        const struct dcm_instance_info *info,
                        const char *tmp_path, const char *calling_aet, int fill,
                        int remote)
{
	struct pending *p = pending_new(ds, info, tmp_path);
	unsigned status = STATUS_SUCCESS;
	int wait;

	if (p == NULL) {
		unlink(tmp_path);
		return STATUS_OUT_OF_RESOURCES;
	}
	/* from the PACS (IOCM), whether pushed or sent again as cache fill:
	 * each note is handled once (its SOP Instance UID is the job's);
	 * another DRIMbox's notes are about its own publications */
	if (!remote)
		check_rejection(s, ds, info);
	log_debug(LOGC_DICOM, "received sop=%s from=%s ts=%s bytes=%llu",
	          info->sop_instance_uid, calling_aet, info->transfer_syntax,
	          (unsigned long long)info->file_size);
	p->from_pacs = fill;
	/* Another sender's success status must mean durable and indexed. */
	wait = p->wait = !p->from_pacs;
	/* Once queued, p belongs to the committer unless we wait for it. */
	pthread_mutex_lock(&s->lock);
	if (p->from_pacs && s->observer) /* before the committer sees p */
		s->observer(s->observer_ctx, info, tmp_path);
	*s->tail = p;
	s->tail = &p->next;
	s->queued++;
	pthread_cond_signal(&s->work);
	if (wait) {
		while (!p->done)
			pthread_cond_wait(&s->done, &s->lock);
		status = p->ok ? STATUS_SUCCESS : STATUS_OUT_OF_RESOURCES;
	}
	pthread_mutex_unlock(&s->lock);
	if (wait)
		pending_free(p);
	return status;
}

static unsigned on_stored(void *ctx, const struct dcm_ds *ds,
                          const struct dcm_instance_info *info,
                          const char *tmp_path, const char *calling_aet)
{
	struct store *s = ctx;

	return receive(s, ds, info, tmp_path, calling_aet,
	               strcmp(calling_aet, s->pacs_aet) == 0, 0);
}

static unsigned on_fill_stored(void *ctx, const struct dcm_ds *ds,
                               const struct dcm_instance_info *info,
                               const char *tmp_path, const char *sender)
{
	return receive(ctx, ds, info, tmp_path, sender, 1, 1);
}

static void on_rejected(void *ctx, const char *calling_aet, const char *reason)
{
	struct store *s = ctx;

	log_warn(LOGC_DICOM, "rejected instance from=%s: %s", calling_aet,
	         reason);
	pthread_mutex_lock(&s->lock);
	s->refusals++;
	snprintf(s->refusal, sizeof(s->refusal), "%s", reason);
	pthread_mutex_unlock(&s->lock);
}

unsigned long store_refusals(struct store *s, char *why, size_t len)
{
	unsigned long n;

	pthread_mutex_lock(&s->lock);
	n = s->refusals;
	if (why != NULL && len > 0)
		snprintf(why, len, "%s", s->refusal);
	pthread_mutex_unlock(&s->lock);
	return n;
}

void store_flush(struct store *s)
{
	uint64_t target;

	pthread_mutex_lock(&s->lock);
	target = s->queued;
	while (s->committed < target)
		pthread_cond_wait(&s->done, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

struct store *store_new(struct cache *c, struct index *ix, const char *pacs_aet)
{
	struct store *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->cache = c;
	s->ix = ix;
	snprintf(s->pacs_aet, sizeof(s->pacs_aet), "%s", pacs_aet);
	s->tail = &s->head;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->work, NULL);
	pthread_cond_init(&s->done, NULL);
	if (pthread_create(&s->committer, NULL, committer_thread, s) != 0) {
		pthread_cond_destroy(&s->done);
		pthread_cond_destroy(&s->work);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return NULL;
	}
	return s;
}

void store_free(struct store *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = 1;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->committer, NULL);
	pthread_cond_destroy(&s->done);
	pthread_cond_destroy(&s->work);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void store_set_observer(struct store *s, store_observer cb, void *ctx)
{
	pthread_mutex_lock(&s->lock);
	s->observer = cb;
	s->observer_ctx = ctx;
	pthread_mutex_unlock(&s->lock);
}

void store_handler(struct store *s, struct dcm_store_handler *h)
{
	h->ctx = s;
	h->stored = on_stored;
	h->rejected = on_rejected;
	h->tmp_dir = cache_tmp_dir(s->cache);
}

void store_fill_handler(struct store *s, struct dcm_store_handler *h)
{
	store_handler(s, h);
	h->stored = on_fill_stored;
}
