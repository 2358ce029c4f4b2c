/*
 * remote.c - see remote.h. One libcurl multi handle runs the transfers of
 * a pull (up to remote_parallel at once) on the calling thread. Each
 * response is parsed as it arrives (multipart.c); a part is written to a
 * temporary file in the cache, read back with DCMTK, checked against what
 * was asked for (study, series, an instance of the manifest not received
 * yet) and only then handed to the store, which publishes it atomically.
 */
#include "remote.h"
#include "audit.h"
#include "auth.h"
#include "config.h"
#include "dcm.h"
#include "grow.h"
#include "index.h"
#include "log.h"
#include "multipart.h"
#include "store.h"
#include "whitelist.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* What the puller asks for: the compressed syntaxes first (the source
 * sends what it holds when it is among them), then uncompressed. */
#define PART "multipart/related; type=\"application/dicom\"; "
#define ACCEPT                                                                 \
	"Accept: " PART "transfer-syntax=1.2.840.10008.1.2.4.80, " PART        \
	"transfer-syntax=1.2.840.10008.1.2.4.70; q=0.9, " PART                 \
	"transfer-syntax=1.2.840.10008.1.2.4.90; q=0.8, " PART                 \
	"transfer-syntax=1.2.840.10008.1.2.4.91; q=0.7, " PART                 \
	"transfer-syntax=1.2.840.10008.1.2.4.50; q=0.6, " PART                 \
	"transfer-syntax=1.2.840.10008.1.2.4.51; q=0.6, " PART                 \
	"transfer-syntax=1.2.840.10008.1.2.5; q=0.6, " PART                    \
	"transfer-syntax=1.2.840.10008.1.2.1; q=0.4"

/* Parts over this size are checked without loading their pixel data. */
#define LOAD_ALL_MAX (64u << 20)

struct remote {
	const struct config *cfg;
	struct index *ix;
	struct store *store;
	struct dcm_store_handler fill;
	pthread_mutex_t lock; /* guards wl, wl_mtime and recent */
	struct whitelist *wl;
	struct timespec wl_mtime;
	/* recent studies: the outcome of their last pull and who asked for
	 * them (a session hash, their RPPS, the contextual call), guarded by
	 * lock */
	struct recent {
		char study[65], error[300], session[65], actor[64], call[24];
	} recent[64];
	unsigned next_recent;
	struct auth *auth; /* NULL: requests carry no token */
};

/* The entry of a study, or NULL; lock held. */
static struct recent *recent_find(struct remote *r, const char *study)
{
	for (size_t i = 0; i < sizeof(r->recent) / sizeof(r->recent[0]); i++)
		if (strcmp(r->recent[i].study, study) == 0)
			return &r->recent[i];
	return NULL;
}

/* The entry of a study, made (the oldest replaced) when new; lock held. */
static struct recent *recent_of(struct remote *r, const char *study)
{
	struct recent *e = recent_find(r, study);

	if (e != NULL)
		return e;
	e = &r->recent[r->next_recent++ %
	               (sizeof(r->recent) / sizeof(r->recent[0]))];
	memset(e, 0, sizeof(*e));
	snprintf(e->study, sizeof(e->study), "%s", study);
	return e;
}

void remote_set_session(struct remote *r, const char *study,
                        const char *session, const char *actor,
                        const char *call)
{
	struct recent *e;

	pthread_mutex_lock(&r->lock);
	e = recent_of(r, study);
	snprintf(e->session, sizeof(e->session), "%s", session);
	snprintf(e->actor, sizeof(e->actor), "%s", actor);
	snprintf(e->call, sizeof(e->call), "%s", call);
	pthread_mutex_unlock(&r->lock);
}

/* "Authorization: Bearer ..." of who asked for the study: 0, or -1 err. */
static int bearer_of(struct remote *r, const char *study, char *out, size_t cap,
                     char *err, size_t errlen)
{
	char session[65] = "";
	struct recent *e;
	int w;

	pthread_mutex_lock(&r->lock);
	if ((e = recent_find(r, study)) != NULL)
		snprintf(session, sizeof(session), "%s", e->session);
	pthread_mutex_unlock(&r->lock);
	if (session[0] == '\0') {
		snprintf(err, errlen,
		         "no signed-in professional has asked for this study "
		         "since drimbox started: open it again");
		return -1;
	}
	w = snprintf(out, cap, "Authorization: Bearer ");
	return auth_session_token(r->auth, session, out + w, cap - (size_t)w,
	                          err, errlen);
}

void remote_note_error(struct remote *r, const char *study, const char *error)
{
	pthread_mutex_lock(&r->lock);
	snprintf(recent_of(r, study)->error, sizeof(r->recent[0].error), "%s",
	         error ? error : "");
	pthread_mutex_unlock(&r->lock);
}

void remote_last_error(struct remote *r, const char *study, char *out,
                       size_t cap)
{
	struct recent *e;

	pthread_mutex_lock(&r->lock);
	e = recent_find(r, study);
	snprintf(out, cap, "%s", e ? e->error : "");
	pthread_mutex_unlock(&r->lock);
}

/* Reads the whitelist again when its file changed (lock held). */
static void reload(struct remote *r)
{
	struct wl_trust t = { r->cfg->whitelist_trust, r->cfg->whitelist_crl,
		              r->cfg->whitelist_signer_cn,
		              r->cfg->whitelist_signer_ou };
	struct whitelist *wl = NULL;
	struct stat st;
	char err[512];

	if (r->cfg->whitelist_file[0] == '\0' ||
	    stat(r->cfg->whitelist_file, &st) != 0 ||
	    (st.st_mtim.tv_sec == r->wl_mtime.tv_sec &&
	     st.st_mtim.tv_nsec == r->wl_mtime.tv_nsec))
		return;
	r->wl_mtime = st.st_mtim;
	if (whitelist_load(r->cfg->whitelist_file, &t, &wl, err, sizeof(err)) !=
	    0) {
		log_error(LOGC_MAIN, "whitelist %s refused: %s%s",
		          r->cfg->whitelist_file, err,
		          r->wl ? "; the last good list stays in use" : "");
		return;
	}
	log_info(LOGC_MAIN, "whitelist %s: %zu DRIMboxes, generated %s",
	         r->cfg->whitelist_file, wl->n, wl->generated);
	whitelist_free(r->wl);
	r->wl = wl;
}

struct remote *remote_new(const struct config *cfg, struct index *ix,
                          struct store *s, struct auth *auth)
{
	struct remote *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->cfg = cfg;
	r->ix = ix;
	r->store = s;
	r->auth = auth;
	store_fill_handler(s, &r->fill);
	pthread_mutex_init(&r->lock, NULL);
	reload(r);
	return r;
}

void remote_free(struct remote *r)
{
	if (r == NULL)
		return;
	whitelist_free(r->wl);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/*
 * A distinguished name as compared: no spaces around ',' and '=', the
 * attribute names (before '=') in upper case.
 */
static void dn_norm(const char *dn, char *out, size_t cap)
{
	size_t n = 0;
	int name = 1;

	for (const char *p = dn; *p && n + 1 < cap; p++) {
		if (*p == ' ' &&
		    (n == 0 || out[n - 1] == ',' || out[n - 1] == '=' ||
		     p[1] == ',' || p[1] == '=' || p[1] == ' ' || p[1] == '\0'))
			continue;
		if (*p == '\\' && p[1] != '\0') { /* an escaped character */
			out[n++] = *p++;
			if (n + 1 < cap)
				out[n++] = *p;
			continue;
		}
		out[n++] = name ? (char)toupper((unsigned char)*p) : *p;
		if (*p == '=')
			name = 0;
		else if (*p == ',' || *p == '+')
			name = 1;
	}
	out[n] = '\0';
}

int remote_peer_listed(struct remote *r, const char *dn, char *db, size_t cap)
{
	char want[512], have[512];
	int found = 0;

	dn_norm(dn, want, sizeof(want));
	pthread_mutex_lock(&r->lock);
	reload(r);
	for (size_t i = 0; r->wl && i < r->wl->n && !found; i++) {
		dn_norm(r->wl->domains[i].cert_dn, have, sizeof(have));
		if (have[0] != '\0' && strcmp(have, want) == 0) {
			snprintf(db, cap, "%s", r->wl->domains[i].db);
			found = 1;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return found;
}

int remote_url_allowed(struct remote *r, const char *url, char *err,
                       size_t errlen)
{
	CURLU *u = curl_url();
	char *host = NULL, *scheme = NULL;
	int rc = -1;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(err, errlen, "the RetrieveURL '%.200s' is not a URL",
		         url);
		goto out;
	}
	if (strcasecmp(scheme, "http") != 0 &&
	    strcasecmp(scheme, "https") != 0) {
		snprintf(err, errlen, "the RetrieveURL '%.200s' is not http(s)",
		         url);
		goto out;
	}
	pthread_mutex_lock(&r->lock);
	reload(r);
	if (r->wl == NULL)
		snprintf(err, errlen,
		         "no valid whitelist: the DRIMbox %s cannot be "
		         "trusted",
		         host);
	else if (whitelist_find(r->wl, host) == NULL)
		snprintf(err, errlen, "the DRIMbox %s is not in the whitelist",
		         host);
	else
		rc = 0;
	pthread_mutex_unlock(&r->lock);
out:
	curl_free(host);
	curl_free(scheme);
	curl_url_cleanup(u);
	return rc;
}

static int found_one(void *ctx, const struct idx_remote *x)
{
	(void)ctx;
	(void)x;
	return 1;
}

int remote_holds(struct remote *r, const char *study)
{
	return index_remote_series(r->ix, study, found_one, NULL) == 1;
}

static int named_by(void *ctx, const struct idx_remote *x)
{
	return strcmp(x->kos_sop, ctx) == 0 ? 1 : 2;
}

int remote_holds_manifest(struct remote *r, const char *study, const char *kos)
{
	return index_remote_series(r->ix, study, named_by, (void *)kos) == 1;
}

/* ---- the plan: what to ask for ----------------------------------------- */

/* An instance of the pull: asked for, then received (or not). */
struct want {
	char sop[65], series[65];
	int got;
};

/* One request: a whole series, or one instance of it. */
struct req {
	char url[1200], kos[65], series[65];
};

struct plan {
	struct remote *r;
	const char *study, *series, *sop;
	struct want *w;
	size_t nw, capw;
	struct req *q;
	size_t nq, capq;
	struct rseries { /* the study's remote series */
		char series[65], url[1025], kos[65];
		size_t total; /* instances the index lists */
	} * rs;
	size_t nrs;
	int oom;
};

static int add_remote(void *ctx, const struct idx_remote *x)
{
	struct plan *p = ctx;
	struct rseries *n;

	if (p->series && strcmp(p->series, x->series_uid) != 0)
		return 0;
	n = realloc(p->rs, (p->nrs + 1) * sizeof(*n));
	if (n == NULL)
		return p->oom = 1;
	p->rs = n;
	n = &p->rs[p->nrs++];
	snprintf(n->series, sizeof(n->series), "%s", x->series_uid);
	snprintf(n->url, sizeof(n->url), "%s", x->url);
	snprintf(n->kos, sizeof(n->kos), "%s", x->kos_sop);
	n->total = 0;
	return 0;
}

/* Each instance the index lists for the remote series and lacks. */
static int add_missing(void *ctx, const struct idx_row *row)
{
	struct plan *p = ctx;
	size_t i = 0;

	if (row->sop_uid == NULL || row->series_uid == NULL)
		return 0;
	while (i < p->nrs && strcmp(p->rs[i].series, row->series_uid) != 0)
		i++;
	if (i == p->nrs)
		return 0; /* not a remote series */
	p->rs[i].total++;
	if (row->cache_path != NULL || (p->sop && strcmp(p->sop, row->sop_uid)))
		return 0;
	if (GROW(p->w, p->nw, p->capw, 256) != 0)
		return p->oom = 1;
	memset(&p->w[p->nw], 0, sizeof(p->w[0]));
	snprintf(p->w[p->nw].sop, 65, "%s", row->sop_uid);
	snprintf(p->w[p->nw].series, 65, "%s", row->series_uid);
	p->nw++;
	return 0;
}

static int add_req(struct plan *p, const char *url, const char *kos,
                   const char *series)
{
	if (GROW(p->q, p->nq, p->capq, 16) != 0)
		return -1;
	snprintf(p->q[p->nq].url, sizeof(p->q[0].url), "%s", url);
	snprintf(p->q[p->nq].kos, sizeof(p->q[0].kos), "%s", kos);
	snprintf(p->q[p->nq].series, sizeof(p->q[0].series), "%s", series);
	p->nq++;
	return 0;
}

/*
 * The series URL from a RetrieveURL: the series resource as it is, or a
 * study resource completed with the series.
 */
static void series_url(const char *url, const char *series, char *out,
                       size_t cap)
{
	size_t n = strlen(url);

	while (n > 0 && url[n - 1] == '/')
		n--;
	if (n > strlen(series) &&
	    strncmp(url + n - strlen(series), series, strlen(series)) == 0)
		snprintf(out, cap, "%.*s", (int)n, url);
	else
		snprintf(out, cap, "%.*s/series/%s", (int)n, url, series);
}

/* The middle one of a series' instances to get, in the index's order. */
static const struct want *middle_of(const struct plan *p, const char *series)
{
	size_t n = 0, m = 0;

	for (size_t k = 0; k < p->nw; k++)
		n += strcmp(p->w[k].series, series) == 0;
	for (size_t k = 0; k < p->nw; k++)
		if (strcmp(p->w[k].series, series) == 0 && m++ == n / 2)
			return &p->w[k];
	return NULL;
}

/*
 * One request per series whose instances are all missing; one per
 * missing instance of a series partly cached (and for a single instance).
 */
static int make_requests(struct plan *p, char *err, size_t errlen)
{
	for (size_t i = 0; i < p->nrs; i++) {
		size_t missing = 0;
		char url[1200], one[1300];

		for (size_t k = 0; k < p->nw; k++)
			missing += strcmp(p->w[k].series, p->rs[i].series) == 0;
		if (missing == 0)
			continue;
		if (remote_url_allowed(p->r, p->rs[i].url, err, errlen) != 0)
			return -1;
		series_url(p->rs[i].url, p->rs[i].series, url, sizeof(url));
		if (p->sop == NULL && missing == p->rs[i].total) {
			/* its middle instance first, on its own: a viewer
			 * shows it first (the series brings it again) */
			const struct want *mid = middle_of(p, p->rs[i].series);

			if (missing > 2 && mid != NULL) {
				snprintf(one, sizeof(one), "%s/instances/%s",
				         url, mid->sop);
				if (add_req(p, one, p->rs[i].kos,
				            p->rs[i].series) != 0)
					goto oom;
			}
			if (add_req(p, url, p->rs[i].kos, p->rs[i].series) != 0)
				goto oom;
			continue;
		}
		for (size_t k = 0; k < p->nw; k++) {
			if (strcmp(p->w[k].series, p->rs[i].series) != 0)
				continue;
			snprintf(one, sizeof(one), "%s/instances/%s", url,
			         p->w[k].sop);
			if (add_req(p, one, p->rs[i].kos, p->rs[i].series) != 0)
				goto oom;
		}
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* ---- the transfers ------------------------------------------------------ */

struct xfer {
	struct pull *pull;
	const struct req *q;
	CURL *easy;
	struct curl_slist *headers;
	struct mp_parser *mp;
	char ctype[512];
	int started;    /* the response's head was checked */
	char body[512]; /* an error response's start */
	size_t body_len;
	/* the part being received */
	int fd;
	char tmp[PATH_MAX];
	uint64_t bytes;
	int skip; /* not application/dicom: dropped */
	char error[300];
};

struct pull {
	struct remote *r;
	struct plan *plan;
	const char *host; /* for the log */
	long completed, failed;
	char error[300];                  /* the first failure */
	char bearer[AUTH_TOKEN_MAX + 32]; /* the Authorization header, or "" */
};

static void pull_fail(struct pull *pl, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Records the first failure of a pull. */
static void pull_fail(struct pull *pl, const char *fmt, ...)
{
	va_list ap;

	if (pl->error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(pl->error, sizeof(pl->error), fmt, ap);
	va_end(ap);
}

static int part_begin(void *ctx, const char *headers)
{
	struct xfer *x = ctx;
	char type[256] = "";

	(void)mp_header(headers, "Content-Type", type, sizeof(type));
	x->bytes = 0;
	x->skip = strncasecmp(type, "application/dicom", 17) != 0 ||
	          (type[17] != '\0' && type[17] != ';' && type[17] != ' ');
	if (x->skip) {
		log_warn(LOGC_HTTP, "%s: a part of type '%s' ignored",
		         x->q->url, type);
		x->pull->failed++;
		return 0;
	}
	snprintf(x->tmp, sizeof(x->tmp), "%s/remote-XXXXXX",
	         x->pull->r->fill.tmp_dir);
	x->fd = mkstemp(x->tmp);
	if (x->fd < 0) {
		snprintf(x->error, sizeof(x->error), "%.200s: %s", x->tmp,
		         strerror(errno));
		return 1;
	}
	return 0;
}

static int part_data(void *ctx, const char *p, size_t n)
{
	struct xfer *x = ctx;

	if (x->skip)
		return 0;
	x->bytes += n;
	while (n > 0) {
		ssize_t w = write(x->fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(x->error, sizeof(x->error), "cache: %s",
			         strerror(w < 0 ? errno : ENOSPC));
			return 1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The instance the part carries, if it is one that was asked for. */
static struct want *expected(struct pull *pl, const struct req *q,
                             const struct dcm_instance_info *in)
{
	if (strcmp(in->study_uid, pl->plan->study) != 0 ||
	    strcmp(in->series_uid, q->series) != 0)
		return NULL;
	for (size_t i = 0; i < pl->plan->nw; i++)
		if (strcmp(pl->plan->w[i].sop, in->sop_instance_uid) == 0)
			return &pl->plan->w[i];
	return NULL;
}

static int part_end(void *ctx)
{
	struct xfer *x = ctx;
	struct pull *pl = x->pull;
	struct dcm_instance_info in;
	struct dcm_err e = { "" };
	struct dcm_ds *ds = NULL;
	struct want *w;
	unsigned status;

	if (x->skip)
		return 0;
	close(x->fd);
	x->fd = -1;
	if (dcm_ds_read_file(x->tmp, x->bytes > LOAD_ALL_MAX ? 4096 : 0, &ds,
	                     &e) != DCM_OK ||
	    dcm_ds_instance_info(ds, &in, &e) != DCM_OK) {
		log_warn(LOGC_HTTP, "%s: a corrupt part refused: %s", x->q->url,
		         e.msg);
		pull_fail(pl,
		          "the source DRIMbox sent a corrupt instance "
		          "(refused, not cached): %s",
		          e.msg);
		goto refuse;
	}
	w = expected(pl, x->q, &in);
	if (w == NULL) {
		log_warn(LOGC_HTTP,
		         "%s: instance %s (series %s) was not asked for: "
		         "refused",
		         x->q->url, in.sop_instance_uid, in.series_uid);
		pull_fail(pl,
		          "the source DRIMbox sent instance %s, which was "
		          "not asked for (refused, not cached)",
		          in.sop_instance_uid);
		goto refuse;
	}
	if (w->got) { /* asked for twice (a series' middle instance) */
		dcm_ds_free(ds);
		unlink(x->tmp);
		return 0;
	}
	in.file_size = x->bytes;
	status = pl->r->fill.stored(pl->r->fill.ctx, ds, &in, x->tmp, pl->host);
	dcm_ds_free(ds);
	if (status != 0) {
		pl->failed++;
		return 0; /* the store logged why; the file is its own now */
	}
	w->got = 1;
	pl->completed++;
	return 0;
refuse:
	dcm_ds_free(ds);
	unlink(x->tmp);
	pl->failed++;
	return 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ctx)
{
	struct xfer *x = ctx;
	size_t len = sz * n;

	if (len > 13 && strncasecmp(p, "Content-Type:", 13) == 0)
		snprintf(x->ctype, sizeof(x->ctype), "%.*s",
		         (int)(len - 13 -
		               (len >= 2 && p[len - 2] == '\r' ? 2 : 1)),
		         p + 13);
	return len;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ctx)
{
	static const struct mp_callbacks cb = { part_begin, part_data,
		                                part_end };
	struct xfer *x = ctx;
	size_t len = sz * n;
	long http = 0;
	char boundary[128];

	if (!x->started) {
		x->started = 1;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &http);
		if (http == 200 && strcasestr(x->ctype, "multipart/related") &&
		    mp_param(x->ctype, "boundary", boundary,
		             sizeof(boundary)) == 0)
			x->mp = mp_new(boundary, &cb, x);
	}
	if (x->mp == NULL) { /* an error: keep its start for the message */
		size_t keep = sizeof(x->body) - 1 - x->body_len;

		keep = len < keep ? len : keep;
		memcpy(x->body + x->body_len, p, keep);
		x->body_len += keep;
		x->body[x->body_len] = '\0';
		return len;
	}
	if (mp_feed(x->mp, p, len) != 0) {
		if (x->error[0] == '\0')
			snprintf(x->error, sizeof(x->error), "%s",
			         mp_error(x->mp));
		return 0; /* stops the transfer */
	}
	return len;
}

static int xfer_start(struct xfer *x, struct pull *pl, const struct req *q,
                      CURLM *multi)
{
	char kos[120];

	memset(x, 0, sizeof(*x));
	x->pull = pl;
	x->q = q;
	x->fd = -1;
	x->easy = curl_easy_init();
	if (x->easy == NULL)
		return -1;
	snprintf(kos, sizeof(kos), "KOS-SOPInstanceUID: %s", q->kos);
	x->headers = curl_slist_append(NULL, ACCEPT);
	x->headers = curl_slist_append(x->headers, kos);
	if (pl->bearer[0])
		x->headers = curl_slist_append(x->headers, pl->bearer);
	curl_easy_setopt(x->easy, CURLOPT_URL, q->url);
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT,
	                 pl->r->cfg->remote_timeout);
	/* a source that stalls for remote_timeout seconds has failed */
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_TIME,
	                 pl->r->cfg->remote_timeout);
	curl_easy_setopt(x->easy, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(x->easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "drimbox");
	if (pl->r->cfg->remote_tls_cert[0]) { /* mutual TLS */
		curl_easy_setopt(x->easy, CURLOPT_SSLCERT,
		                 pl->r->cfg->remote_tls_cert);
		curl_easy_setopt(x->easy, CURLOPT_SSLKEY,
		                 pl->r->cfg->remote_tls_key);
	}
	if (pl->r->cfg->remote_tls_ca[0])
		curl_easy_setopt(x->easy, CURLOPT_CAINFO,
		                 pl->r->cfg->remote_tls_ca);
	return curl_multi_add_handle(multi, x->easy) == CURLM_OK ? 0 : -1;
}

/* Ends a transfer; its outcome goes to the pull. */
static void xfer_end(struct xfer *x, CURLM *multi, CURLcode rc)
{
	struct pull *pl = x->pull;
	long http = 0;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &http);
	if (x->fd >= 0) { /* cut in the middle of a part */
		close(x->fd);
		unlink(x->tmp);
	}
	if (x->error[0])
		pull_fail(pl, "%s: %s", x->q->url, x->error);
	else if (rc != CURLE_OK)
		pull_fail(pl, "the source DRIMbox does not answer (%s): %s",
		          curl_easy_strerror(rc), x->q->url);
	else if (http != 200) {
		pull_fail(pl, "the source DRIMbox refused %s: HTTP %ld %s",
		          x->q->url, http, x->body);
	} else if (x->mp == NULL)
		pull_fail(pl, "%s: %s", x->q->url,
		          "the answer is not multipart/related");
	else if (!mp_complete(x->mp))
		pull_fail(pl, "%s: %s", x->q->url, "the answer was cut short");
	curl_multi_remove_handle(multi, x->easy);
	curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	mp_free(x->mp);
	x->easy = NULL;
}

/* Runs the plan's requests, `parallel` at a time. */
static void run(struct pull *pl, remote_progress_cb cb, void *ctx)
{
	size_t par = (size_t)pl->r->cfg->remote_parallel, next = 0, active = 0;
	struct xfer *xs = calloc(par, sizeof(*xs));
	CURLM *multi = curl_multi_init();
	int stop = 0;

	if (xs == NULL || multi == NULL) {
		pull_fail(pl, "out of memory");
		goto out;
	}
	while (!stop && (next < pl->plan->nq || active > 0)) {
		CURLMsg *msg;
		int left, still;

		for (size_t i = 0; i < par && next < pl->plan->nq; i++) {
			if (xs[i].easy != NULL)
				continue;
			if (xfer_start(&xs[i], pl, &pl->plan->q[next++],
			               multi) != 0) {
				pull_fail(pl, "cannot start a transfer");
				stop = 1;
				break;
			}
			active++;
		}
		curl_multi_perform(multi, &still);
		while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
			struct xfer *x = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
			                  (char **)&x);
			xfer_end(x, multi, msg->data.result);
			active--;
		}
		if (cb && cb(ctx, (long)pl->plan->nw, pl->failed)) {
			pull_fail(pl, "stopped");
			stop = 1;
		}
		if (active > 0)
			curl_multi_poll(multi, NULL, 0, 200, NULL);
	}
	for (size_t i = 0; i < par; i++)
		if (xs[i].easy != NULL)
			xfer_end(&xs[i], multi, CURLE_ABORTED_BY_CALLBACK);
out:
	free(xs);
	curl_multi_cleanup(multi);
}

/*
 * A pull in the audit trail (once per ten minutes for a study or series
 * and its outcome: the viewer's instances are pulled one by one too).
 */
static void audit_pull(struct remote *r, const struct plan *p, int ok,
                       const char *err)
{
	char actor[64] = "", call[24] = "", host[256] = "";
	const char *u = p->nrs > 0 ? strstr(p->rs[0].url, "://") : NULL;
	struct recent *e;

	pthread_mutex_lock(&r->lock);
	if ((e = recent_find(r, p->study)) != NULL) {
		snprintf(actor, sizeof(actor), "%s", e->actor);
		snprintf(call, sizeof(call), "%s", e->call);
	}
	pthread_mutex_unlock(&r->lock);
	if (u != NULL)
		snprintf(host, sizeof(host), "%.*s", (int)strcspn(u + 3, "/"),
		         u + 3);
	audit_once(&(struct audit_event){ actor, "pull", p->study, p->series,
	                                  host, ok ? "ok" : "failed", call,
	                                  ok ? NULL : err });
}

int remote_pull(struct remote *r, const char *study, const char *series,
                const char *sop, remote_progress_cb cb, void *ctx,
                long *completed, long *failed, char *err, size_t errlen)
{
	struct plan p = {
		.r = r, .study = study, .series = series, .sop = sop
	};
	struct pull pl = { .r = r, .plan = &p, .host = "remote" };
	int rc = -1;

	*completed = *failed = 0;
	if (index_remote_series(r->ix, study, add_remote, &p) < 0 ||
	    index_walk(r->ix, study, add_missing, &p) < 0 || p.oom) {
		snprintf(err, errlen, "index: cannot plan the pull");
		goto out;
	}
	if (p.nrs == 0) {
		snprintf(err, errlen, "no DRIMbox holds this study");
		goto out;
	}
	if (make_requests(&p, err, errlen) != 0)
		goto out;
	if (r->auth != NULL &&
	    bearer_of(r, study, pl.bearer, sizeof(pl.bearer), err, errlen) != 0)
		goto out;
	log_info(LOGC_HTTP, "pull study=%s: %zu instances, %zu requests", study,
	         p.nw, p.nq);
	run(&pl, cb, ctx);
	*completed = pl.completed;
	*failed = pl.failed;
	for (size_t i = 0; i < p.nw && pl.error[0] == '\0'; i++)
		if (!p.w[i].got)
			snprintf(pl.error, sizeof(pl.error),
			         "instance %s was not sent by the source",
			         p.w[i].sop);
	if (pl.error[0]) {
		snprintf(err, errlen, "%s", pl.error);
		goto out;
	}
	rc = 0;
out:
	remote_note_error(r, study, rc == 0 ? "" : err);
	audit_pull(r, &p, rc == 0, err);
	free(p.w);
	free(p.q);
	free(p.rs);
	return rc;
}
