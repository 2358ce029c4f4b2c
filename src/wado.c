/*
 * wado.c - WADO-RS (PS3.18 10.4): retrieve of studies, series and
 * instances as multipart/related streams read from the cache (or, for what
 * is not cached yet, as the PACS delivers it), metadata from the index's
 * precomputed DICOM JSON, frames, and rendered images.
 */
#include "accept.h"
#include "cache.h"
#include "config.h"
#include "dcm.h"
#include "dicomweb.h"
#include "fsutil.h"
#include "imgenc.h"
#include "index.h"
#include "log.h"
#include "metrics.h"
#include "retrieve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TS_ELE "1.2.840.10008.1.2.1" /* the default of PS3.18 */
#define STREAM_BLOCK (256 * 1024)
#define FRAMES_MAX 1024
#define WAIT_SLICE_MS 1000
#define STALL_MAX_S 300 /* a retrieval that delivers nothing for so long */
#define INSTANCE_RETRIEVALS_MAX 2 /* single instances asked for at once */

/* One instance of the selection. */
struct item {
	char sop[65], series[65], rel[200], ts[65];
	char *tmp; /* landed, not yet committed: its temporary file */
	int cached, sent;
	int64_t size;
	int64_t cached_at; /* -1 unknown */
	long frames;
};

struct items {
	struct item *v;
	size_t n;
};

struct list_ctx {
	struct items *out;
	int failed;
};

static int on_item(void *ctx, const struct idx_match *m)
{
	struct list_ctx *l = ctx;
	struct item *it, *nv;

	if (l->out->n % 64 == 0) {
		nv = realloc(l->out->v, (l->out->n + 64) * sizeof(*nv));
		if (nv == NULL) {
			l->failed = 1;
			return -1;
		}
		l->out->v = nv;
	}
	it = &l->out->v[l->out->n++];
	memset(it, 0, sizeof(*it));
	snprintf(it->sop, sizeof(it->sop), "%s", m->sop_uid);
	snprintf(it->series, sizeof(it->series), "%s", m->series_uid);
	it->cached = m->cache_path != NULL;
	if (it->cached) {
		snprintf(it->rel, sizeof(it->rel), "%s", m->cache_path);
		snprintf(it->ts, sizeof(it->ts), "%s",
		         m->transfer_syntax ? m->transfer_syntax : "");
	}
	it->size = m->size;
	it->frames = m->frames;
	it->cached_at = m->cached_at;
	return 0;
}

/* 1 when the manifest references the instance of that series. */
static int referenced(const struct dcm_manifest *k, const char *series,
                      const char *sop)
{
	for (size_t i = 0; i < k->nseries; i++) {
		if (strcmp(k->series[i].uid, series) != 0)
			continue;
		for (size_t j = 0; j < k->series[i].ninst; j++)
			if (strcmp(k->series[i].inst[j].sop_uid, sop) == 0)
				return 1;
	}
	return 0;
}

struct kos_filter {
	const struct dcm_manifest *kos;
	int (*cb)(void *ctx, const struct idx_match *m);
	void *ctx;
};

static int on_referenced(void *ctx, const struct idx_match *m)
{
	struct kos_filter *f = ctx;

	return referenced(f->kos, m->series_uid, m->sop_uid) ? f->cb(f->ctx, m)
	                                                     : 0;
}

/*
 * Calls cb for each instance of the request's selection (study, series or
 * one instance), in order, and when the request names a manifest, only
 * for those it references; what index_qido() returns.
 */
static int each_instance(const struct dw_request *rq,
                         int (*cb)(void *ctx, const struct idx_match *m),
                         void *ctx)
{
	struct idx_filter f = { 0x00080018, rq->sop };
	struct kos_filter kf = { rq->kos, cb, ctx };
	struct idx_query q;
	char err[128];

	if (rq->kos != NULL) {
		cb = on_referenced;
		ctx = &kf;
	}

	memset(&q, 0, sizeof(q));
	q.level = IDX_INSTANCE;
	q.study_uid = rq->study;
	q.series_uid = rq->series;
	q.filters = rq->sop ? &f : NULL;
	q.nfilters = rq->sop != NULL;
	return index_qido(rq->env->ix, &q, cb, ctx, err, sizeof(err));
}

static void items_clear(struct items *it)
{
	for (size_t i = 0; i < it->n; i++)
		free(it->v[i].tmp);
	free(it->v);
	memset(it, 0, sizeof(*it));
}

/* The instances of the request's selection; -1 on a database error. */
static int list_items(const struct dw_request *rq, struct items *out)
{
	struct list_ctx l = { out, 0 };

	items_clear(out);
	if (each_instance(rq, on_item, &l) != 0 || l.failed)
		return -1;
	return 0;
}

static size_t count_uncached(const struct items *it)
{
	size_t n = 0;

	for (size_t i = 0; i < it->n; i++)
		n += !it->v[i].cached;
	return n;
}

/* ---- transfer syntax negotiation ------------------------------------- */

/*
 * The ranges of an Accept header that can be answered with parts of
 * media `part` (e.g. "application/dicom") inside multipart/related.
 */
struct prefs {
	char ts[ACCEPT_MAX][65]; /* "*" = as stored */
	size_t n;
};

static int wanted_parts(const struct accept *a, const char *part,
                        struct prefs *p)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < a->n; i++) {
		const struct accept_range *r = &a->r[i];
		int ok = strcmp(r->media, "*/*") == 0 ||
		         (strcmp(r->media, "multipart/related") == 0 &&
		          (r->type[0] == '\0' || strcmp(r->type, part) == 0 ||
		           strcmp(r->type, "*/*") == 0)) ||
		         strcmp(r->media, part) == 0;

		if (!ok)
			continue;
		snprintf(p->ts[p->n++], sizeof(p->ts[0]), "%s",
		         r->ts[0] ? r->ts : TS_ELE);
	}
	return p->n > 0;
}

/* The syntax to send an instance stored in `stored`; NULL when none. */
static const char *choose_ts(const struct prefs *p, const char *stored)
{
	for (size_t i = 0; i < p->n; i++) {
		if (strcmp(p->ts[i], "*") == 0 || strcmp(p->ts[i], stored) == 0)
			return stored;
		if (dcm_can_transcode(stored, p->ts[i]))
			return p->ts[i];
	}
	return NULL;
}

static int parse_accept(struct dw_request *rq, struct accept *a,
                        enum MHD_Result *rc)
{
	char err[200];
	const char *h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
	                                            "Accept");

	if (accept_parse(h, a, err, sizeof(err)) != 0) {
		*rc = dw_error(rq->conn, 400, "%s", err);
		return -1;
	}
	return 0;
}

/* ---- multipart stream --------------------------------------------------- */

struct ahead;
static void ahead_stop(struct ahead *a);

/* A random boundary: it must not occur in the parts. */
static void new_boundary(char *buf, size_t cap)
{
	unsigned long long r = 0;

	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (unsigned long long)time(NULL) ^ (uintptr_t)buf;
	snprintf(buf, cap, "drimbox-%016llx", r);
}

struct stream {
	struct dw_request rq; /* copy; env outlives the stream */
	char study[65], series[65], sop[65];
	struct items items;
	struct prefs prefs;
	struct retrieval *retrieval;
	char boundary[48];
	/* the part being sent: its header, then a file or a buffer */
	char head[512];
	size_t head_len, head_off;
	int fd;
	off_t off, end; /* end: the file's size when the length is declared */
	unsigned char *mem;
	size_t mem_len, mem_off;
	int parts, done;
	size_t arrived;      /* arrivals already taken from the retrieval */
	struct ahead *ahead; /* transcoding ahead, or NULL */
	time_t last_progress;
	uint64_t length; /* declared Content-Length, 0 when sent chunked */
};

static void stream_free(void *cls)
{
	struct stream *s = cls;

	if (s->fd >= 0)
		close(s->fd);
	free(s->mem);
	items_clear(&s->items);
	retrieval_release(s->retrieval);
	ahead_stop(s->ahead);
	dcm_manifest_free(s->rq.kos);
	free(s);
}

/* Marks as cached what the retrieval delivered since the last call. */
static size_t take_arrivals(struct stream *s)
{
	struct retrieval_item got[8];
	size_t n, total = 0;

	while ((n = retrieval_arrived(s->retrieval, s->arrived, got, 8)) > 0) {
		s->arrived += n;
		for (size_t k = 0; k < n; k++) {
			struct item *it = NULL;

			for (size_t i = 0; i < s->items.n && it == NULL; i++)
				if (strcmp(s->items.v[i].sop, got[k].sop) == 0)
					it = &s->items.v[i];
			if (it == NULL || it->cached)
				continue;
			if (cache_rel_path(s->study, got[k].series, got[k].sop,
			                   it->rel, sizeof(it->rel)) != 0)
				continue;
			it->cached = 1;
			it->tmp = strdup(got[k].tmp); /* NULL: use rel */
			snprintf(it->ts, sizeof(it->ts), "%s", got[k].ts);
			total++;
		}
	}
	return total;
}

/* Re-reads the selection from the index, keeping what was sent. */
static int refresh_items(struct stream *s)
{
	struct items old = s->items, now = { NULL, 0 };

	if (list_items(&s->rq, &now) != 0) {
		items_clear(&now);
		return -1;
	}
	for (size_t i = 0; i < now.n; i++)
		for (size_t j = 0; j < old.n; j++)
			if (old.v[j].sent &&
			    strcmp(old.v[j].sop, now.v[i].sop) == 0)
				now.v[i].sent = 1;
	items_clear(&old);
	s->items = now;
	return 0;
}

/* Finds the next instance that can be sent now; waits for the PACS. */
static struct item *next_item(struct stream *s)
{
	struct retrieve_status st;

	for (;;) {
		size_t unsent = 0;

		for (size_t i = 0; i < s->items.n; i++) {
			struct item *it = &s->items.v[i];

			if (!it->sent && it->cached)
				return it;
			unsent += !it->sent;
		}
		if (unsent == 0 || s->retrieval == NULL)
			return NULL;
		retrieval_wait(s->retrieval, s->arrived, WAIT_SLICE_MS, &st);
		if (take_arrivals(s) > 0)
			s->last_progress = time(NULL);
		else if (st.done && refresh_items(s) != 0)
			return NULL;
		if (st.done && count_uncached(&s->items) > 0) {
			size_t left = 0;

			for (size_t i = 0; i < s->items.n; i++)
				left += !s->items.v[i].sent &&
				        s->items.v[i].cached;
			if (left == 0) {
				log_warn(LOGC_HTTP,
				         "study=%s: %zu instances could not "
				         "be retrieved: %s",
				         s->study, count_uncached(&s->items),
				         st.error);
				return NULL;
			}
		}
		if (time(NULL) - s->last_progress > STALL_MAX_S) {
			log_warn(LOGC_HTTP, "study=%s: retrieval stalled",
			         s->study);
			return NULL;
		}
	}
}

/*
 * Transcoding ahead: when every instance of a stream is cached and some
 * must be transcoded, worker threads (one per core) convert the next
 * AHEAD_DEPTH instances in order while the current one is sent.
 */
#define AHEAD_DEPTH 6
#define AHEAD_WORKERS_MAX 8

struct ahead_slot {
	void *buf;
	size_t len;
	int state; /* 0 to do, 1 in progress, 2 ready, 3 failed */
	char err[256];
};

struct ahead {
	pthread_t workers[AHEAD_WORKERS_MAX];
	int nworkers;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	size_t n, next, taken; /* items; next to claim; consumed */
	char (*path)[PATH_MAX];
	const char **ts; /* target syntax per item, NULL = as stored */
	struct ahead_slot *slot;
	int stop;
};

static void *ahead_worker(void *arg)
{
	struct ahead *a = arg;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		size_t i;
		struct ahead_slot *sl;
		struct dcm_err e;
		void *buf = NULL;
		size_t len = 0;
		int rc;

		while (!a->stop && a->next < a->n &&
		       a->next >= a->taken + AHEAD_DEPTH)
			pthread_cond_wait(&a->changed, &a->lock);
		if (a->stop || a->next >= a->n)
			break;
		i = a->next++;
		sl = &a->slot[i];
		if (a->ts[i] == NULL) {
			sl->state = 2; /* sent as stored by the reader */
			continue;
		}
		sl->state = 1;
		pthread_mutex_unlock(&a->lock);
		rc = dcm_transcode_file(a->path[i], a->ts[i], &buf, &len, &e);
		pthread_mutex_lock(&a->lock);
		if (rc == DCM_OK) {
			sl->buf = buf;
			sl->len = len;
			sl->state = 2;
		} else {
			snprintf(sl->err, sizeof(sl->err), "%s", e.msg);
			sl->state = 3;
		}
		pthread_cond_broadcast(&a->changed);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

static void ahead_stop(struct ahead *a)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = 1;
	pthread_cond_broadcast(&a->changed);
	pthread_mutex_unlock(&a->lock);
	for (int w = 0; w < a->nworkers; w++)
		pthread_join(a->workers[w], NULL);
	for (size_t i = 0; i < a->n; i++)
		free(a->slot[i].buf);
	pthread_cond_destroy(&a->changed);
	pthread_mutex_destroy(&a->lock);
	free(a->path);
	free(a->ts);
	free(a->slot);
	free(a);
}

/*
 * Starts transcoding ahead for a stream whose items are all cached and
 * of which at least one needs converting; NULL when not worth it (or on
 * failure: the stream then transcodes in line).
 */
static struct ahead *ahead_start(struct stream *s)
{
	struct ahead *a;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int convert = 0;

	if (count_uncached(&s->items) > 0 || s->items.n < 2)
		return NULL;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	a->n = s->items.n;
	a->path = calloc(a->n, sizeof(*a->path));
	a->ts = calloc(a->n, sizeof(*a->ts));
	a->slot = calloc(a->n, sizeof(*a->slot));
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->changed, NULL);
	if (a->path == NULL || a->ts == NULL || a->slot == NULL)
		goto fail;
	for (size_t i = 0; i < a->n; i++) {
		const struct item *it = &s->items.v[i];
		const char *ts = choose_ts(&s->prefs, it->ts);

		if (cache_abs_path(s->rq.env->cache, it->rel, a->path[i],
		                   sizeof(a->path[i])) != 0)
			goto fail;
		a->ts[i] = ts != NULL && strcmp(ts, it->ts) != 0 ? ts : NULL;
		convert |= a->ts[i] != NULL;
	}
	if (!convert)
		goto fail;
	cores = cores < 1                   ? 1
	        : cores > AHEAD_WORKERS_MAX ? AHEAD_WORKERS_MAX
	                                    : cores;
	for (int w = 0; w < cores; w++)
		if (pthread_create(&a->workers[w], NULL, ahead_worker, a) == 0)
			a->nworkers++;
	if (a->nworkers == 0)
		goto fail;
	return a;
fail:
	ahead_stop(a);
	return NULL;
}

/*
 * Takes item i's transcoded bytes from the workers (waiting for them);
 * 1 with *buf set, 0 when the item is sent as stored, -1 on failure.
 */
static int ahead_take(struct ahead *a, size_t i, void **buf, size_t *len)
{
	struct ahead_slot *sl = &a->slot[i];
	int rc;

	pthread_mutex_lock(&a->lock);
	while (a->ts[i] != NULL && sl->state < 2)
		pthread_cond_wait(&a->changed, &a->lock);
	rc = a->ts[i] == NULL ? 0 : sl->state == 2 ? 1 : -1;
	if (rc == 1) {
		*buf = sl->buf;
		*len = sl->len;
		sl->buf = NULL;
	} else if (rc < 0) {
		log_warn(LOGC_HTTP, "%s: to %s: %s", a->path[i], a->ts[i],
		         sl->err);
	}
	a->taken = i + 1;
	pthread_cond_broadcast(&a->changed);
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* The boundary line and headers that open a part, or close the body. */
static size_t part_head(char *buf, size_t cap, int first, const char *boundary,
                        const char *ts)
{
	int n = ts ? snprintf(buf, cap,
	                      "%s--%s\r\nContent-Type: application/dicom; "
	                      "transfer-syntax=%s\r\n\r\n",
	                      first ? "" : "\r\n", boundary, ts)
	           : snprintf(buf, cap, "%s--%s--\r\n", first ? "" : "\r\n",
	                      boundary);

	return n < 0 ? 0 : (size_t)n;
}

/*
 * The body's length when every instance is cached and sent as stored (the
 * file sizes are taken now; a part that then fails ends the connection),
 * 0 otherwise.  A declared length spares the client chunked decoding.
 */
static uint64_t known_length(struct stream *s)
{
	char path[PATH_MAX], head[512];
	uint64_t total = 0;
	struct stat st;

	if (s->ahead != NULL)
		return 0;
	for (size_t i = 0; i < s->items.n; i++) {
		struct item *it = &s->items.v[i];
		const char *ts = choose_ts(&s->prefs, it->ts);

		if (!it->cached || ts == NULL || strcmp(ts, it->ts) != 0 ||
		    cache_abs_path(s->rq.env->cache, it->rel, path,
		                   sizeof(path)) != 0 ||
		    stat(path, &st) != 0)
			return 0;
		it->size = st.st_size;
		total +=
		        part_head(head, sizeof(head), i == 0, s->boundary, ts) +
		        (uint64_t)st.st_size;
	}
	return total + part_head(head, sizeof(head), s->items.n == 0,
	                         s->boundary, NULL);
}

/*
 * An instance's file, read-only: its temporary file while it has only
 * landed, else (or once renamed) its cache file.  path gets the name that
 * opened (it stays valid until the store renames the file).
 */
static int open_item(const struct stream *s, const struct item *it, char *path,
                     size_t len)
{
	int fd;

	if (it->tmp != NULL) {
		snprintf(path, len, "%s", it->tmp);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			return fd;
	}
	if (cache_abs_path(s->rq.env->cache, it->rel, path, len) != 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return open(path, O_RDONLY | O_CLOEXEC);
}

/* Transcodes an instance's file (see open_item); DCM_OK or an error. */
static int transcode_item(const struct stream *s, const struct item *it,
                          const char *ts, void **buf, size_t *len,
                          struct dcm_err *e)
{
	char path[PATH_MAX];
	int fd = open_item(s, it, path, sizeof(path)), rc;

	if (fd < 0) {
		snprintf(e->msg, sizeof(e->msg), "%s", strerror(errno));
		return DCM_ERR_IO;
	}
	close(fd);
	rc = dcm_transcode_file(path, ts, buf, len, e);
	/* renamed into the cache in between: once more from there */
	if (rc != DCM_OK && it->tmp != NULL && strcmp(path, it->tmp) == 0 &&
	    cache_abs_path(s->rq.env->cache, it->rel, path, sizeof(path)) == 0)
		rc = dcm_transcode_file(path, ts, buf, len, e);
	return rc;
}

/*
 * Opens the next part; 0, or -1 when there is none left, -2 when a part
 * cannot be sent although the length was declared.
 */
static int open_part(struct stream *s)
{
	char path[PATH_MAX];
	struct dcm_err e;
	struct item *it;
	const char *ts;
	void *buf;
	size_t len;
	int rc;

	while ((it = next_item(s)) != NULL) {
		buf = NULL;
		len = 0;
		it->sent = 1;
		ts = choose_ts(&s->prefs, it->ts);
		if (ts == NULL && s->length != 0)
			return -2;
		if (ts == NULL) {
			log_warn(LOGC_HTTP,
			         "sop=%s: no acceptable transfer "
			         "syntax for %s: skipped",
			         it->sop, it->ts);
			continue;
		}
		rc = s->ahead ? ahead_take(s->ahead, (size_t)(it - s->items.v),
		                           &buf, &len)
		     : strcmp(ts, it->ts) == 0                             ? 0
		     : transcode_item(s, it, ts, &buf, &len, &e) == DCM_OK ? 1
		                                                           : -1;
		if (rc < 0) {
			if (s->ahead == NULL)
				log_warn(LOGC_HTTP, "sop=%s: to %s: %s",
				         it->sop, ts, e.msg);
			goto skip;
		}
		if (rc == 1) {
			s->mem = buf;
			s->mem_len = len;
			s->mem_off = 0;
		} else {
			s->fd = open_item(s, it, path, sizeof(path));
			if (s->fd < 0) {
				log_warn(LOGC_HTTP, "%s: %s", path,
				         strerror(errno));
				goto skip;
			}
			s->off = 0;
			s->end = s->length ? (off_t)it->size : -1;
		}
		s->head_len = part_head(s->head, sizeof(s->head), s->parts == 0,
		                        s->boundary, ts);
		s->head_off = 0;
		s->parts++;
		return 0;
	skip:
		if (s->length != 0)
			return -2;
	}
	return -1;
}

static ssize_t stream_fill(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *s = cls;
	ssize_t n;

	(void)pos;
	for (;;) {
		if (s->head_off < s->head_len) {
			size_t k = s->head_len - s->head_off;

			k = k < max ? k : max;
			memcpy(buf, s->head + s->head_off, k);
			s->head_off += k;
			return (ssize_t)k;
		}
		if (s->fd >= 0) {
			size_t want = max;

			if (s->end >= 0 && (uint64_t)(s->end - s->off) < want)
				want = (size_t)(s->end - s->off);
			n = want ? pread(s->fd, buf, want, s->off) : 0;
			if (n > 0) {
				s->off += n;
				return n;
			}
			close(s->fd);
			s->fd = -1;
			/* a declared length no longer holds: end the connection
			 */
			if (n < 0 || s->off < s->end)
				return MHD_CONTENT_READER_END_WITH_ERROR;
			continue;
		}
		if (s->mem != NULL) {
			size_t k = s->mem_len - s->mem_off;

			if (k > 0) {
				k = k < max ? k : max;
				memcpy(buf, s->mem + s->mem_off, k);
				s->mem_off += k;
				return (ssize_t)k;
			}
			free(s->mem);
			s->mem = NULL;
			continue;
		}
		if (s->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		switch (open_part(s)) {
		case 0:
			break;
		case -1:
			s->head_len =
			        part_head(s->head, sizeof(s->head),
			                  s->parts == 0, s->boundary, NULL);
			s->head_off = 0;
			s->done = 1;
			break;
		default:
			log_warn(LOGC_HTTP,
			         "study=%s: an instance went missing while "
			         "it was sent: connection closed",
			         s->study);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
	}
}

/* The stream's reader: stream_fill, its bytes counted. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	ssize_t n = stream_fill(cls, pos, buf, max);

	if (n > 0)
		metrics_http_bytes((uint64_t)n);
	return n;
}

/* Last-Modified: when the instance was cached (its copy's date). */
static void add_last_modified(struct MHD_Response *resp, int64_t when)
{
	char date[64];
	time_t t = (time_t)when;
	struct tm tm;

	if (when <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
		return;
	MHD_add_response_header(resp, "Last-Modified", date);
}

static enum MHD_Result retrieve(struct dw_request *rq, struct items *items)
{
	struct stream *s = calloc(1, sizeof(*s));
	struct MHD_Response *resp;
	struct accept a;
	enum MHD_Result rc;
	char ctype[160], err[200], etag[160] = "";

	if (s == NULL)
		return dw_error(rq->conn, 500, "out of memory");
	s->fd = -1;
	if (parse_accept(rq, &a, &rc) != 0) {
		free(s);
		return rc;
	}
	if (!wanted_parts(&a, "application/dicom", &s->prefs)) {
		free(s);
		return dw_error(rq->conn, 406,
		                "only multipart/related; "
		                "type=\"application/dicom\" is served here");
	}
	/* Refuse now what no cached instance could be sent as. */
	for (size_t i = 0; i < items->n; i++)
		if (items->v[i].cached &&
		    choose_ts(&s->prefs, items->v[i].ts) == NULL) {
			free(s);
			return dw_error(rq->conn, 406,
			                "instance %s (%s) cannot be sent in an "
			                "acceptable transfer syntax",
			                items->v[i].sop, items->v[i].ts);
		}
	/* one cached instance never changes: it can be revalidated */
	if (rq->sop != NULL && items->n == 1 && items->v[0].cached) {
		snprintf(etag, sizeof(etag), "\"%s-%s\"", items->v[0].sop,
		         choose_ts(&s->prefs, items->v[0].ts));
		if (dw_not_modified(rq->conn, etag, &rc)) {
			free(s);
			return rc;
		}
	}
	s->rq = *rq;
	rq->kos = NULL;   /* the stream owns the manifest now */
	s->rq.who = NULL; /* the request's, gone when it returns */
	snprintf(s->study, sizeof(s->study), "%s", rq->study);
	snprintf(s->series, sizeof(s->series), "%s",
	         rq->series ? rq->series : "");
	snprintf(s->sop, sizeof(s->sop), "%s", rq->sop ? rq->sop : "");
	s->rq.study = s->study;
	s->rq.series = rq->series ? s->series : NULL;
	s->rq.sop = rq->sop ? s->sop : NULL;
	s->items = *items;
	memset(items, 0, sizeof(*items)); /* the stream owns them now */
	s->last_progress = time(NULL);
	/* a retrieval may have finished since the items were listed */
	if (count_uncached(&s->items) > 0 && refresh_items(s) != 0) {
		stream_free(s);
		return dw_error(rq->conn, 500, "index unreadable");
	}
	metrics_cache(s->items.n - count_uncached(&s->items),
	              count_uncached(&s->items));
	s->ahead = ahead_start(s);
	if (count_uncached(&s->items) > 0) {
		s->retrieval =
		        retriever_start(rq->env->retriever, s->study,
		                        s->rq.series, NULL, err, sizeof(err));
		if (s->retrieval == NULL)
			log_warn(LOGC_HTTP, "study=%s: %s", s->study, err);
	}
	new_boundary(s->boundary, sizeof(s->boundary));
	s->length = known_length(s);
	resp = MHD_create_response_from_callback(
	        s->length ? s->length : MHD_SIZE_UNKNOWN, STREAM_BLOCK,
	        stream_read, s, stream_free);
	if (resp == NULL) {
		stream_free(s);
		return MHD_NO;
	}
	snprintf(ctype, sizeof(ctype),
	         "multipart/related; type=\"application/dicom\"; "
	         "boundary=%s",
	         s->boundary);
	MHD_add_response_header(resp, "Content-Type", ctype);
	if (etag[0]) {
		add_last_modified(resp, s->items.v[0].cached_at);
		MHD_add_response_header(resp, "ETag", etag);
		MHD_add_response_header(resp, "Cache-Control",
		                        "private, max-age=31536000, immutable");
	}
	rc = MHD_queue_response(rq->conn, 200, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* Cache-Control of what never changes once stored. */
#define IMMUTABLE "private, max-age=31536000, immutable"

/*
 * Sends data (taken over: freed here) with its Content-Type and, when
 * non-NULL, a Cache-Control.
 */
static enum MHD_Result send_buffer(const struct dw_request *rq, void *data,
                                   size_t len, const char *ctype,
                                   const char *cache)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	        len, data, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result rc;

	if (resp == NULL) {
		free(data);
		return MHD_NO;
	}
	metrics_http_bytes(len);
	MHD_add_response_header(resp, "Content-Type", ctype);
	if (cache != NULL)
		MHD_add_response_header(resp, "Cache-Control", cache);
	rc = MHD_queue_response(rq->conn, 200, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* ---- metadata ------------------------------------------------------------ */

/* Retrieves what is not cached yet; 0, or -1 with the reason in err. */
static int fetch_missing(struct dw_request *rq, struct items *items, char *err,
                         size_t errlen)
{
	struct retrieve_status st;
	struct retrieval *h, *one;
	size_t seen_all = 0, seen_one = 0;
	int rc = 0, one_done = 0;

	metrics_cache(items->n - count_uncached(items), count_uncached(items));
	if (count_uncached(items) == 0)
		return 0;
	if (rq->sop == NULL) {
		if (retriever_fetch(rq->env->retriever, rq->study, rq->series,
		                    1000, NULL, NULL, &st) != 0) {
			snprintf(err, errlen, "%s", st.error);
			return -1;
		}
		if (list_items(rq, items) != 0) {
			snprintf(err, errlen, "index unreadable");
			return -1;
		}
		return 0;
	}
	/* One instance (a frame, its rendering, its metadata) is served as
	 * soon as it is in the cache, not once its whole series is (a viewer
	 * asks for the middle image first): the instance is asked for on its
	 * own (a few at a time), its series beside it for what comes next. */
	one = retriever_instances_running(rq->env->retriever) <
	                      INSTANCE_RETRIEVALS_MAX
	              ? retriever_start(rq->env->retriever, rq->study,
	                                rq->series, rq->sop, err, errlen)
	              : NULL;
	h = retriever_start(rq->env->retriever, rq->study, rq->series, NULL,
	                    err, errlen);
	if (h == NULL && one == NULL)
		return -1;
	for (;;) {
		struct retrieval *w = one && !one_done ? one : h ? h : one;
		size_t *seen = w == one ? &seen_one : &seen_all;
		struct retrieval_item got[4];
		size_t n;

		retrieval_wait(w, *seen, WAIT_SLICE_MS, &st);
		while ((n = retrieval_arrived(w, *seen, got, 4)) > 0)
			*seen += n;
		if (list_items(rq, items) != 0) {
			snprintf(err, errlen, "index unreadable");
			rc = -1;
			break;
		}
		if (count_uncached(items) == 0)
			break;
		if (!st.done)
			continue;
		if (w == one && h != NULL) {
			/* refused or missed: the series brings it */
			one_done = 1;
			continue;
		}
		if (!st.ok) {
			snprintf(err, errlen, "%s", st.error);
			rc = -1;
		}
		break;
	}
	if (one != NULL)
		retrieval_release(one);
	if (h != NULL)
		retrieval_release(h);
	return rc;
}

struct meta_ctx {
	const struct dw_request *rq;
	char *buf;
	size_t len, cap;
	int failed, count;
};

static void meta_put(struct meta_ctx *m, const char *s, size_t n)
{
	if (m->failed)
		return;
	if (m->len + n + 1 > m->cap) {
		size_t cap = (m->cap + n) * 2 + 4096;
		char *nb = realloc(m->buf, cap);

		if (nb == NULL) {
			m->failed = 1;
			return;
		}
		m->buf = nb;
		m->cap = cap;
	}
	memcpy(m->buf + m->len, s, n);
	m->len += n;
	m->buf[m->len] = '\0';
}

/*
 * Appends one instance's DICOM JSON, its BulkDataURIs (stored as tag
 * paths) made absolute.
 */
static int on_meta(void *ctx, const struct idx_match *mt)
{
	static const char key[] = "\"BulkDataURI\":\"";
	struct meta_ctx *m = ctx;
	const char *p = mt->metadata, *hit;
	char prefix[768];
	int n;

	if (p == NULL)
		return 0;
	n = snprintf(prefix, sizeof(prefix),
	             "%s/studies/%s/series/%s/instances/%s/bulkdata/",
	             m->rq->base, mt->study_uid, mt->series_uid, mt->sop_uid);
	if (n < 0 || (size_t)n >= sizeof(prefix))
		return -1;
	if (m->count++ > 0)
		meta_put(m, ",", 1);
	while ((hit = strstr(p, key)) != NULL) {
		meta_put(m, p, (size_t)(hit - p) + sizeof(key) - 1);
		meta_put(m, prefix, (size_t)n);
		p = hit + sizeof(key) - 1;
	}
	meta_put(m, p, strlen(p));
	return m->failed ? -1 : 0;
}

static enum MHD_Result metadata(struct dw_request *rq, struct items *items)
{
	struct meta_ctx m = { rq, NULL, 0, 0, 0, 0 };
	char err[256], etag[80];

	if (fetch_missing(rq, items, err, sizeof(err)) != 0)
		return dw_error(rq->conn, 502,
		                "cannot retrieve from the PACS: "
		                "%s",
		                err);
	meta_put(&m, "[", 1);
	if (each_instance(rq, on_meta, &m) != 0 || m.failed) {
		free(m.buf);
		return dw_error(rq->conn, 500, "index unreadable");
	}
	meta_put(&m, "]", 1);
	if (m.failed) {
		free(m.buf);
		return dw_error(rq->conn, 500, "out of memory");
	}
	/* an instance never changes: its metadata can be cached for good */
	snprintf(etag, sizeof(etag), "\"%s-meta\"", rq->sop ? rq->sop : "");
	return dw_send_json(rq->conn, m.buf, m.len, "application/dicom+json",
	                    rq->sop ? etag : NULL);
}

/* ---- multipart bodies built in memory (frames, rendered, bulk data) --- */

struct multipart {
	struct meta_ctx body;
	char boundary[48];
};

static void mp_init(struct multipart *m, struct dw_request *rq)
{
	memset(m, 0, sizeof(*m));
	m->body.rq = rq;
	new_boundary(m->boundary, sizeof(m->boundary));
}

/* Appends a part: its Content-Type (with parameters), then data. */
static void mp_add(struct multipart *m, const char *ctype, const void *data,
                   size_t len)
{
	char head[256];

	snprintf(head, sizeof(head), "%s--%s\r\nContent-Type: %s\r\n\r\n",
	         m->body.len ? "\r\n" : "", m->boundary, ctype);
	meta_put(&m->body, head, strlen(head));
	meta_put(&m->body, data, len);
}

/* Closes the body and sends it as multipart/related of type. */
static enum MHD_Result mp_send(struct multipart *m, const char *type,
                               const char *cache)
{
	char tail[64], ctype[160];

	snprintf(tail, sizeof(tail), "\r\n--%s--\r\n", m->boundary);
	meta_put(&m->body, tail, strlen(tail));
	if (m->body.failed) {
		free(m->body.buf);
		return dw_error(m->body.rq->conn, 500, "out of memory");
	}
	snprintf(ctype, sizeof(ctype),
	         "multipart/related; type=\"%s\"; boundary=%s", type,
	         m->boundary);
	return send_buffer(m->body.rq, m->body.buf, m->body.len, ctype, cache);
}

/* ---- frames ------------------------------------------------------------ */

/* Parses "1,3,5" into frames[]; returns the count, -1 when malformed. */
static int parse_frames(const char *list, unsigned *frames, int max)
{
	int n = 0;
	const char *p = list;

	while (*p) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(p, &end, 10);
		if (errno || end == p || v == 0 || v > 1000000 || n == max ||
		    (*end != ',' && *end != '\0'))
			return -1;
		frames[n++] = (unsigned)v;
		p = *end == ',' ? end + 1 : end;
	}
	return n;
}

/* Media type of a compressed frame syntax, for "image/..." requests. */
static const char *frame_media(const char *ts)
{
	static const struct {
		const char *ts, *media;
	} map[] = {
		{ "1.2.840.10008.1.2.4.50", "image/jpeg" },
		{ "1.2.840.10008.1.2.4.51", "image/jpeg" },
		{ "1.2.840.10008.1.2.4.57", "image/jpeg" },
		{ "1.2.840.10008.1.2.4.70", "image/jpeg" },
		{ "1.2.840.10008.1.2.4.80", "image/jls" },
		{ "1.2.840.10008.1.2.4.81", "image/jls" },
		{ "1.2.840.10008.1.2.4.90", "image/jp2" },
		{ "1.2.840.10008.1.2.4.91", "image/jp2" },
		{ "1.2.840.10008.1.2.5", "image/x-dicom-rle" },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].ts, ts) == 0)
			return map[i].media;
	return "application/octet-stream";
}

static enum MHD_Result frames(struct dw_request *rq, struct items *items,
                              const char *list)
{
	unsigned fr[FRAMES_MAX];
	int n = parse_frames(list, fr, FRAMES_MAX);
	struct multipart mp;
	struct accept a;
	struct prefs octet;
	enum MHD_Result rc;
	char path[PATH_MAX], part[128], err[256];
	struct item *it;

	if (n <= 0)
		return dw_error(rq->conn, 400,
		                "frame list: comma-separated numbers from 1, "
		                "at most %d",
		                FRAMES_MAX);
	if (fetch_missing(rq, items, err, sizeof(err)) != 0)
		return dw_error(rq->conn, 502,
		                "cannot retrieve from the PACS: "
		                "%s",
		                err);
	it = &items->v[0];
	if (parse_accept(rq, &a, &rc) != 0)
		return rc;
	if (!wanted_parts(&a, "application/octet-stream", &octet) &&
	    !wanted_parts(&a, frame_media(it->ts), &octet))
		return dw_error(rq->conn, 406,
		                "frames are served as "
		                "multipart/related");
	if (cache_abs_path(rq->env->cache, it->rel, path, sizeof(path)) != 0)
		return dw_error(rq->conn, 500, "cache path too long");
	mp_init(&mp, rq);
	for (int i = 0; i < n; i++) {
		const char *want = choose_ts(&octet, it->ts);
		char ts_out[65];
		struct dcm_err e;
		void *data = NULL;
		size_t len = 0;
		int st;

		if (want == NULL) {
			free(mp.body.buf);
			return dw_error(rq->conn, 406,
			                "frames of %s cannot be sent in an "
			                "acceptable transfer syntax",
			                it->ts);
		}
		st = dcm_frame(path, fr[i], strcmp(want, it->ts) ? want : NULL,
		               &data, &len, ts_out, &e);
		if (st != DCM_OK) {
			free(mp.body.buf);
			if (st == DCM_ERR_NOT_FOUND)
				return dw_error(rq->conn, 400,
				                "frame %u: out of range "
				                "(NumberOfFrames %ld)",
				                fr[i],
				                it->frames > 0 ? it->frames
				                               : 1L);
			if (st == DCM_ERR_ARG)
				return dw_error(rq->conn, 400,
				                "instance %s has no pixel "
				                "data",
				                it->sop);
			return dw_error(rq->conn, 500, "frame %u: %s", fr[i],
			                e.msg);
		}
		snprintf(part, sizeof(part), "%s; transfer-syntax=%s",
		         frame_media(ts_out), ts_out);
		mp_add(&mp, part, data, len);
		free(data);
	}
	return mp_send(&mp, "application/octet-stream", IMMUTABLE);
}

/* ---- rendered ------------------------------------------------------------ */

struct render_params {
	struct dcm_render_opts o;
	int quality;
	char error[160];
};

static enum MHD_Result on_render_param(void *cls, enum MHD_ValueKind kind,
                                       const char *key, const char *value)
{
	struct render_params *p = cls;
	double a = 0, b = 0;
	unsigned w = 0, h = 0;
	int n = 0, used = 0;

	(void)kind;
	if (value == NULL)
		value = "";
	if (strcmp(key, "window") == 0) {
		/* center,width[,function] */
		if (sscanf(value, "%lf,%lf%n", &a, &b, &used) == 2 && b > 0 &&
		    (value[used] == '\0' || value[used] == ',')) {
			p->o.has_window = 1;
			p->o.center = a;
			p->o.width = b;
		} else {
			snprintf(p->error, sizeof(p->error),
			         "window: 'center,width' expected");
		}
	} else if (strcmp(key, "viewport") == 0) {
		n = sscanf(value, "%u,%u%n", &w, &h, &used);
		if (n == 2 && w > 0 && h > 0 && w <= 8192 && h <= 8192 &&
		    (value[used] == '\0' || value[used] == ',')) {
			p->o.max_w = w;
			p->o.max_h = h;
		} else {
			snprintf(p->error, sizeof(p->error),
			         "viewport: 'width,height' (1..8192) "
			         "expected");
		}
	} else if (strcmp(key, "quality") == 0) {
		if (sscanf(value, "%d%n", &n, &used) != 1 ||
		    value[used] != '\0' || n < 1 || n > 100)
			snprintf(p->error, sizeof(p->error),
			         "quality: an integer 1..100 expected");
		else
			p->quality = n;
	} else if (strcmp(key, "annotation") != 0 &&
	           strcmp(key, "charset") != 0 && strcmp(key, "accept") != 0) {
		snprintf(p->error, sizeof(p->error),
		         "unknown parameter '%.40s'", key);
	}
	return MHD_YES;
}

/* image/jpeg (default) or image/png, from the Accept header. */
static const char *render_media(const struct accept *a)
{
	for (size_t i = 0; i < a->n; i++) {
		const struct accept_range *r = &a->r[i];
		int multi = strcmp(r->media, "multipart/related") == 0;

		if (multi && (strcmp(r->type, "image/png") == 0 ||
		              strcmp(r->type, "image/jpeg") == 0))
			return strcmp(r->type, "image/png") == 0 ? "image/png"
			                                         : "image/jpeg";
		if (multi && r->type[0] == '\0')
			return "image/jpeg";
		if (accept_media_matches(r, "image/jpeg"))
			return "image/jpeg";
		if (accept_media_matches(r, "image/png"))
			return "image/png";
	}
	return NULL;
}

/*
 * Renders one instance and encodes it as media. Returns 0 with *img set
 * (malloc'd), or the HTTP status to answer with a reason in msg.
 */
static unsigned render_one(struct dw_request *rq, const struct item *it,
                           const struct render_params *p, const char *media,
                           unsigned char **img, size_t *len, char *msg,
                           size_t msglen)
{
	char path[PATH_MAX];
	unsigned char *px = NULL;
	unsigned w, h;
	int ch, st;
	struct dcm_err e;

	if (cache_abs_path(rq->env->cache, it->rel, path, sizeof(path)) != 0) {
		snprintf(msg, msglen, "cache path too long");
		return 500;
	}
	st = dcm_render(path, &p->o, &px, &w, &h, &ch, &e);
	if (st != DCM_OK) {
		snprintf(msg, msglen, "cannot render %s: %.120s", it->sop,
		         st == DCM_ERR_NOT_FOUND ? "no such frame" : e.msg);
		return st == DCM_ERR_NOT_FOUND     ? 400
		       : st == DCM_ERR_UNSUPPORTED ? 406
		                                   : 500;
	}
	st = strcmp(media, "image/png") == 0
	             ? imgenc_png(px, w, h, ch, img, len)
	             : imgenc_jpeg(px, w, h, ch, p->quality, img, len);
	free(px);
	if (st != 0) {
		snprintf(msg, msglen, "cannot encode %s", media);
		return 500;
	}
	return 0;
}

/*
 * /rendered of an instance or frame: one image. Of a study or series:
 * every instance, as multipart/related. /thumbnail: one small image (of
 * the middle instance for a study or series).
 */
static enum MHD_Result rendered(struct dw_request *rq, struct items *items,
                                unsigned frame, int thumbnail)
{
	struct render_params p;
	struct multipart mp;
	struct accept a;
	enum MHD_Result rc;
	const char *media;
	char err[256];
	unsigned char *img = NULL;
	size_t len = 0;
	unsigned status;

	memset(&p, 0, sizeof(p));
	p.quality = 90;
	p.o.frame = frame;
	if (thumbnail)
		p.o.max_w = p.o.max_h = 128;
	MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND,
	                          on_render_param, &p);
	if (p.error[0])
		return dw_error(rq->conn, 400, "%s", p.error);
	if (parse_accept(rq, &a, &rc) != 0)
		return rc;
	media = render_media(&a);
	if (media == NULL)
		return dw_error(rq->conn, 406,
		                "rendered images are image/jpeg or image/png");
	if (fetch_missing(rq, items, err, sizeof(err)) != 0)
		return dw_error(rq->conn, 502,
		                "cannot retrieve from the PACS: "
		                "%s",
		                err);
	if (rq->sop != NULL || thumbnail) {
		status = render_one(rq, &items->v[items->n / 2], &p, media,
		                    &img, &len, err, sizeof(err));
		if (status != 0)
			return dw_error(rq->conn, status, "%s", err);
		return send_buffer(rq, img, len, media,
		                   rq->sop != NULL ? "private, max-age=3600"
		                                   : NULL);
	}
	mp_init(&mp, rq);
	for (size_t i = 0; i < items->n; i++) {
		status = render_one(rq, &items->v[i], &p, media, &img, &len,
		                    err, sizeof(err));
		if (status != 0) {
			free(mp.body.buf);
			return dw_error(rq->conn, status, "%s", err);
		}
		mp_add(&mp, media, img, len);
		free(img);
	}
	return mp_send(&mp, media, NULL);
}

/* ---- bulk data ---------------------------------------------------------- */

static enum MHD_Result bulkdata(struct dw_request *rq, struct items *items,
                                const char *tag_path)
{
	struct dcm_err e;
	struct accept a;
	struct prefs octet;
	enum MHD_Result rc;
	char path[PATH_MAX], err[256];
	void *data = NULL;
	size_t len = 0;
	int st, as_multipart = 1;

	if (parse_accept(rq, &a, &rc) != 0)
		return rc;
	/* multipart/related (the default) or a bare application/octet-stream */
	if (!wanted_parts(&a, "application/octet-stream", &octet))
		return dw_error(rq->conn, 406,
		                "bulk data is "
		                "application/octet-stream");
	as_multipart = !(a.n > 0 && strcmp(a.r[0].media, "application/"
	                                                 "octet-stream") == 0);
	if (fetch_missing(rq, items, err, sizeof(err)) != 0)
		return dw_error(rq->conn, 502,
		                "cannot retrieve from the PACS: "
		                "%s",
		                err);
	if (cache_abs_path(rq->env->cache, items->v[0].rel, path,
	                   sizeof(path)) != 0)
		return dw_error(rq->conn, 500, "cache path too long");
	st = dcm_bulk(path, tag_path, &data, &len, &e);
	if (st == DCM_ERR_NOT_FOUND)
		return dw_error(rq->conn, 404, "no bulk data %s", tag_path);
	if (st == DCM_ERR_ARG || st == DCM_ERR_UNSUPPORTED)
		return dw_error(rq->conn, 400, "bulk data %s: %s", tag_path,
		                e.msg);
	if (st != DCM_OK)
		return dw_error(rq->conn, 500, "bulk data %s: %s", tag_path,
		                e.msg);
	if (as_multipart) {
		struct multipart mp;

		mp_init(&mp, rq);
		mp_add(&mp, "application/octet-stream", data, len);
		free(data);
		return mp_send(&mp, "application/octet-stream", IMMUTABLE);
	}
	return send_buffer(rq, data, len, "application/octet-stream",
	                   IMMUTABLE);
}

/* ---- dispatch ------------------------------------------------------------ */

/* The manifest a published KOS file holds, or NULL. */
static struct dcm_manifest *read_kos_file(const char *path)
{
	struct dcm_manifest *m = NULL;
	struct dcm_err e;
	size_t len;
	char *buf = fs_read_file(path, 64u << 20, &len);

	if (buf == NULL)
		log_error(LOGC_HTTP, "%s: %s", path, strerror(errno));
	else if (dcm_kos_read(buf, len, &m, &e) != DCM_OK)
		log_error(LOGC_HTTP, "%s: %s", path, e.msg);
	free(buf);
	return m;
}

/*
 * Another DRIMbox names the manifest it read in the DMP
 * (KOS-SOPInstanceUID): it must be the one this drimbox publishes now for
 * the study (not replaced, not withdrawn) and reference what is asked
 * for; rq->kos gets it, and only what it references is served. 0 (also
 * when the header is absent), or -1 with why (an HTTP 403).
 */
static int manifest_of(struct dw_request *rq, char *why, size_t cap)
{
	const char *uid = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
	                                              "KOS-SOPInstanceUID");
	char *published;
	json_t *payload, *k;
	size_t i;
	const char *path = NULL;

	rq->kos = NULL;
	if (uid == NULL)
		return 0;
	published = index_job_published(rq->env->ix, rq->study);
	payload = published ? json_loads(published, 0, NULL) : NULL;
	free(published);
	json_array_foreach(json_object_get(payload, "kos"), i, k)
	{
		const char *sop = json_string_value(json_object_get(k, "sop"));
		const char *st = json_string_value(json_object_get(k, "study"));

		if (sop && st && strcmp(sop, uid) == 0 &&
		    strcmp(st, rq->study) == 0 &&
		    json_is_true(json_object_get(k, "sent")))
			path = json_string_value(json_object_get(k, "kos"));
	}
	rq->kos = path ? read_kos_file(path) : NULL;
	json_decref(payload);
	if (rq->kos == NULL) {
		snprintf(why, cap,
		         "KOS-SOPInstanceUID: not a manifest this drimbox "
		         "publishes for study %s",
		         rq->study);
		return -1;
	}
	for (i = 0; rq->series && i < rq->kos->nseries; i++)
		if (strcmp(rq->kos->series[i].uid, rq->series) == 0)
			break;
	if ((rq->series && i == rq->kos->nseries) ||
	    (rq->sop && !referenced(rq->kos, rq->series, rq->sop))) {
		snprintf(why, cap, "the manifest does not reference this %s",
		         rq->sop ? "instance" : "series");
		dcm_manifest_free(rq->kos);
		rq->kos = NULL;
		return -1;
	}
	return 0;
}

enum MHD_Result wado_handle(struct dw_request *rq)
{
	struct items items = { NULL, 0 };
	char why[256];
	enum MHD_Result rc;
	const char *t = rq->tail;
	int known = dw_ensure_study(rq, rq->study);

	if (known < 0)
		return dw_error(rq->conn, 502,
		                "study %s is not indexed and the PACS cannot "
		                "be asked",
		                rq->study);
	if (known == 0)
		return dw_error(rq->conn, 404, "no study %s", rq->study);
	if (manifest_of(rq, why, sizeof(why)) != 0) {
		dw_audit(rq, "refused", why);
		return dw_error(rq->conn, 403, "%s", why);
	}
	dw_audit(rq, "ok", NULL);
	if (list_items(rq, &items) != 0) {
		dcm_manifest_free(rq->kos);
		return dw_error(rq->conn, 500, "index unreadable");
	}
	if (items.n == 0) {
		rc = dw_error(rq->conn, 404, "no such %s",
		              rq->sop ? "instance" : "series");
	} else if (t[0] == '\0') {
		rc = retrieve(rq, &items);
	} else if (strcmp(t, "metadata") == 0) {
		rc = metadata(rq, &items);
	} else if (strcmp(t, "rendered") == 0 || strcmp(t, "thumbnail") == 0) {
		rc = rendered(rq, &items, 1, t[0] == 't');
	} else if (rq->sop != NULL && strncmp(t, "bulkdata/", 9) == 0) {
		rc = bulkdata(rq, &items, t + 9);
	} else if (rq->sop != NULL && strncmp(t, "frames/", 7) == 0) {
		const char *r = strchr(t + 7, '/');
		char one[16];
		unsigned fr[1];

		if (r == NULL) {
			rc = frames(rq, &items, t + 7);
		} else if ((strcmp(r, "/rendered") == 0 ||
		            strcmp(r, "/thumbnail") == 0) &&
		           (size_t)(r - t - 7) < sizeof(one)) {
			memcpy(one, t + 7, (size_t)(r - t - 7));
			one[r - t - 7] = '\0';
			rc = parse_frames(one, fr, 1) == 1
			             ? rendered(rq, &items, fr[0], r[1] == 't')
			             : dw_error(rq->conn, 400,
			                        "one frame number expected");
		} else {
			rc = dw_error(rq->conn, 404, "no such resource");
		}
	} else {
		rc = dw_error(rq->conn, 404, "no such resource");
	}
	items_clear(&items);
	dcm_manifest_free(rq->kos);
	return rc;
}
