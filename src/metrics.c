/*
 * metrics.c - counters for GET /metrics (Prometheus text format 0.0.4).
 *
 * HTTP counters are lock-free atomics indexed by route and status. The
 * rarer events (HL7 messages, DMP transactions) go to a small table of
 * label pairs under a mutex; a label pair beyond its capacity is counted
 * as "other", so a sender inventing message types cannot grow it.
 */
#include "metrics.h"
#include "index.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const route_names[MR__COUNT] = {
	"health", "ready",    "metrics",  "auth",  "conso",
	"viewer", "iid",      "qido",     "wado",  "metadata",
	"frames", "rendered", "bulkdata", "other",
};

/* Upper bounds of the latency histogram, in seconds (then +Inf). */
static const double buckets[] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
	                          0.25,  0.5,   1,    2.5,   5,    10 };
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))
#define STATUS_MIN 100
#define STATUS_MAX 599

static struct {
	atomic_uint_fast64_t requests[MR__COUNT][STATUS_MAX - STATUS_MIN + 1];
	atomic_uint_fast64_t le[MR__COUNT][NBUCKETS + 1]; /* not cumulative */
	atomic_uint_fast64_t micros[MR__COUNT];
	atomic_uint_fast64_t bytes;
	atomic_uint_fast64_t cache_hits, cache_misses;
	atomic_uint_fast64_t retrievals[2], retrieved, retrieved_bytes;
	atomic_uint_fast64_t retrieval_micros;
	atomic_uint_fast64_t pulls[2], pulled, pulled_bytes;
} m;

/* A counter by a pair of labels. */
#define PAIRS_MAX 48
struct pair {
	char a[24], b[16];
	uint64_t n;
};
struct pairs {
	pthread_mutex_t lock;
	struct pair p[PAIRS_MAX];
	size_t n;
};
static struct pairs hl7 = { PTHREAD_MUTEX_INITIALIZER, { { "", "", 0 } }, 0 };
static struct pairs dmp = { PTHREAD_MUTEX_INITIALIZER, { { "", "", 0 } }, 0 };

enum metrics_route metrics_route(const char *url, const char *root)
{
	size_t n = strlen(root);
	const char *last;

	if (strcmp(url, "/health") == 0)
		return MR_HEALTH;
	if (strcmp(url, "/ready") == 0)
		return MR_READY;
	if (strcmp(url, "/metrics") == 0)
		return MR_METRICS;
	if (strncmp(url, "/auth/", 6) == 0)
		return MR_AUTH;
	if (strncmp(url, "/conso", 6) == 0 && (url[6] == '/' || !url[6]))
		return MR_CONSO;
	if (strncmp(url, "/viewer", 7) == 0 && (url[7] == '/' || !url[7]))
		return MR_VIEWER;
	if (strcmp(url, "/IHEInvokeImageDisplay") == 0)
		return MR_IID;
	if (strncmp(url, root, n) != 0 || (url[n] != '/' && url[n] != '\0'))
		return MR_OTHER;
	url += n;
	if (strstr(url, "/metadata"))
		return MR_METADATA;
	if (strstr(url, "/rendered") || strstr(url, "/thumbnail"))
		return MR_RENDERED;
	if (strstr(url, "/frames/"))
		return MR_FRAMES;
	if (strstr(url, "/bulkdata"))
		return MR_BULKDATA;
	last = strrchr(url, '/');
	if (last == NULL)
		return MR_OTHER;
	/* a collection is searched (QIDO-RS); a resource is retrieved */
	if (strcmp(last, "/studies") == 0 || strcmp(last, "/series") == 0 ||
	    strcmp(last, "/instances") == 0)
		return MR_QIDO;
	return strncmp(url, "/studies/", 9) == 0 ? MR_WADO : MR_OTHER;
}

void metrics_http(enum metrics_route route, unsigned status, double seconds)
{
	size_t b = 0;

	if ((unsigned)route >= MR__COUNT)
		route = MR_OTHER;
	if (status < STATUS_MIN || status > STATUS_MAX)
		status = 500;
	atomic_fetch_add(&m.requests[route][status - STATUS_MIN], 1);
	while (b < NBUCKETS && seconds > buckets[b])
		b++;
	atomic_fetch_add(&m.le[route][b], 1);
	atomic_fetch_add(&m.micros[route],
	                 seconds > 0 ? (uint64_t)(seconds * 1e6) : 0);
}

void metrics_http_bytes(uint64_t n)
{
	atomic_fetch_add(&m.bytes, n);
}

void metrics_cache(uint64_t hits, uint64_t misses)
{
	atomic_fetch_add(&m.cache_hits, hits);
	atomic_fetch_add(&m.cache_misses, misses);
}

void metrics_retrieval(int ok, uint64_t instances, uint64_t bytes,
                       double seconds)
{
	atomic_fetch_add(&m.retrievals[ok != 0], 1);
	atomic_fetch_add(&m.retrieved, instances);
	atomic_fetch_add(&m.retrieved_bytes, bytes);
	atomic_fetch_add(&m.retrieval_micros,
	                 seconds > 0 ? (uint64_t)(seconds * 1e6) : 0);
}

void metrics_remote(int ok, uint64_t instances, uint64_t bytes)
{
	atomic_fetch_add(&m.pulls[ok != 0], 1);
	atomic_fetch_add(&m.pulled, instances);
	atomic_fetch_add(&m.pulled_bytes, bytes);
}

/* A label value as counted: [A-Za-z0-9^_.-], else (or too long) "other". */
static void label(char *out, size_t cap, const char *v)
{
	size_t n = v ? strlen(v) : 0;

	if (n == 0 || n >= cap ||
	    strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	              "0123456789^_.-") != n)
		v = "other";
	snprintf(out, cap, "%s", v);
}

static void pair_add(struct pairs *t, const char *a, const char *b)
{
	char la[sizeof(t->p[0].a)], lb[sizeof(t->p[0].b)];
	size_t i;

	label(la, sizeof(la), a);
	label(lb, sizeof(lb), b);
	pthread_mutex_lock(&t->lock);
	for (i = 0; i < t->n; i++)
		if (strcmp(t->p[i].a, la) == 0 && strcmp(t->p[i].b, lb) == 0)
			break;
	if (i == t->n && t->n == PAIRS_MAX) {
		/* full: the pair is counted as ("other", b), kept in the
		 * last slot */
		snprintf(la, sizeof(la), "other");
		for (i = 0; i < t->n; i++)
			if (strcmp(t->p[i].a, la) == 0 &&
			    strcmp(t->p[i].b, lb) == 0)
				break;
		if (i == t->n)
			i = t->n - 1;
	}
	if (i == t->n) {
		t->n++;
		snprintf(t->p[i].a, sizeof(t->p[i].a), "%s", la);
		snprintf(t->p[i].b, sizeof(t->p[i].b), "%s", lb);
	}
	t->p[i].n++;
	pthread_mutex_unlock(&t->lock);
}

void metrics_dmp(const char *transaction, const char *outcome)
{
	pair_add(&dmp, transaction, outcome);
}

void metrics_hl7(const char *type, const char *ack)
{
	char t[24];
	const char *caret;

	/* MSH-9 "ORU^R01^ORU_R01": the message type and event */
	snprintf(t, sizeof(t), "%s", type ? type : "");
	caret = strchr(t, '^');
	if (caret && (caret = strchr(caret + 1, '^')) != NULL)
		t[caret - t] = '\0';
	pair_add(&hl7, t, ack);
}

/* The page being written: a growing buffer; a failed growth sticks. */
struct page {
	char *s;
	size_t len, cap;
	int oom;
};

__attribute__((format(printf, 2, 3))) static void put(struct page *p,
                                                      const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(p->s + p->len, p->cap - p->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			p->oom = 1;
			return;
		}
		if ((size_t)n < p->cap - p->len) {
			p->len += (size_t)n;
			return;
		}
		size_t cap = p->cap * 2 + (size_t)n;
		char *s = realloc(p->s, cap);

		if (s == NULL) {
			p->oom = 1;
			return;
		}
		p->s = s;
		p->cap = cap;
	}
}

static void head(struct page *p, const char *name, const char *type,
                 const char *help)
{
	put(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define LOAD(x) ((unsigned long long)atomic_load(&(x)))

/* A metric without labels. */
static void one(struct page *p, const char *name, const char *type,
                const char *help, unsigned long long v)
{
	head(p, name, type, help);
	put(p, "%s %llu\n", name, v);
}

/* A counter by outcome="ok"|"failed". */
static void by_outcome(struct page *p, const char *name, const char *help,
                       unsigned long long ok, unsigned long long failed)
{
	head(p, name, "counter", help);
	put(p, "%s{outcome=\"ok\"} %llu\n%s{outcome=\"failed\"} %llu\n", name,
	    ok, name, failed);
}

static void write_http(struct page *p)
{
	head(p, "drimbox_http_requests_total", "counter",
	     "HTTP requests answered, by route and status.");
	for (int r = 0; r < MR__COUNT; r++)
		for (int s = 0; s <= STATUS_MAX - STATUS_MIN; s++)
			if (LOAD(m.requests[r][s]))
				put(p,
				    "drimbox_http_requests_total{route=\"%s\","
				    "status=\"%d\"} %llu\n",
				    route_names[r], s + STATUS_MIN,
				    LOAD(m.requests[r][s]));
	head(p, "drimbox_http_request_duration_seconds", "histogram",
	     "Time from a request's headers to the end of its answer.");
	for (int r = 0; r < MR__COUNT; r++) {
		unsigned long long cum = 0;

		for (size_t b = 0; b < NBUCKETS; b++) {
			cum += LOAD(m.le[r][b]);
			put(p,
			    "drimbox_http_request_duration_seconds_bucket{"
			    "route=\"%s\",le=\"%g\"} %llu\n",
			    route_names[r], buckets[b], cum);
		}
		cum += LOAD(m.le[r][NBUCKETS]);
		put(p,
		    "drimbox_http_request_duration_seconds_bucket{route=\"%s\","
		    "le=\"+Inf\"} %llu\n"
		    "drimbox_http_request_duration_seconds_sum{route=\"%s\"} "
		    "%.6f\n"
		    "drimbox_http_request_duration_seconds_count{route=\"%s\"} "
		    "%llu\n",
		    route_names[r], cum, route_names[r],
		    (double)LOAD(m.micros[r]) / 1e6, route_names[r], cum);
	}
	head(p, "drimbox_http_response_bytes_total", "counter",
	     "Response body bytes sent (before TLS).");
	put(p, "drimbox_http_response_bytes_total %llu\n", LOAD(m.bytes));
}

static void write_pairs(struct page *p, struct pairs *t, const char *name,
                        const char *la, const char *lb)
{
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n; i++)
		put(p, "%s{%s=\"%s\",%s=\"%s\"} %llu\n", name, la, t->p[i].a,
		    lb, t->p[i].b, (unsigned long long)t->p[i].n);
	pthread_mutex_unlock(&t->lock);
}

/* The job counts of one page: (kind, state) pairs, few by construction. */
#define JOBS_MAX 64
struct jobs_seen {
	int64_t count[JOBS_MAX], oldest[JOBS_MAX];
	char kind[JOBS_MAX][24], state[JOBS_MAX][16];
	size_t n;
};

static void add_job_count(void *ctx, const struct idx_job_count *c)
{
	struct jobs_seen *s = ctx;

	if (s->n == JOBS_MAX)
		return;
	label(s->kind[s->n], sizeof(s->kind[0]), c->kind);
	label(s->state[s->n], sizeof(s->state[0]), c->state);
	s->count[s->n] = c->count;
	s->oldest[s->n] = c->oldest;
	s->n++;
}

static void write_jobs(struct page *p, struct index *ix)
{
	struct jobs_seen *s = calloc(1, sizeof(*s));
	time_t now = time(NULL);
	int ok = s != NULL && index_jobs_summary(ix, add_job_count, s) == 0;

	head(p, "drimbox_jobs", "gauge", "Jobs not done, by kind and state.");
	for (size_t i = 0; ok && i < s->n; i++)
		put(p, "drimbox_jobs{kind=\"%s\",state=\"%s\"} %lld\n",
		    s->kind[i], s->state[i], (long long)s->count[i]);
	head(p, "drimbox_job_oldest_age_seconds", "gauge",
	     "Age of the oldest job not done, by kind and state.");
	for (size_t i = 0; ok && i < s->n; i++)
		put(p,
		    "drimbox_job_oldest_age_seconds{kind=\"%s\",state=\"%s\"} "
		    "%lld\n",
		    s->kind[i], s->state[i],
		    (long long)(now > s->oldest[i] ? now - s->oldest[i] : 0));
	head(p, "drimbox_jobs_readable", "gauge",
	     "1 when the job queue could be read for this page.");
	put(p, "drimbox_jobs_readable %d\n", ok);
	free(s);
}

char *metrics_write(const struct metrics_gauges *g, struct index *ix,
                    size_t *len)
{
	struct page p = { malloc(16384), 0, 16384, 0 };
	unsigned long long hits = LOAD(m.cache_hits),
	                   misses = LOAD(m.cache_misses);

	if (p.s == NULL)
		return NULL;
	head(&p, "drimbox_build_info", "gauge", "The running version.");
	put(&p, "drimbox_build_info{version=\"%s\"} 1\n", g->version);
	head(&p, "drimbox_start_time_seconds", "gauge",
	     "When the daemon started (unix seconds).");
	put(&p, "drimbox_start_time_seconds %lld\n", (long long)g->started);
	write_http(&p);

	one(&p, "drimbox_cache_bytes", "gauge", "Bytes in the image cache.",
	    (unsigned long long)g->cache_bytes);
	one(&p, "drimbox_cache_max_bytes", "gauge",
	    "The cache's limit (cache_max_mb).",
	    (unsigned long long)g->cache_max_bytes);
	head(&p, "drimbox_cache_requests_total", "counter",
	     "Instances served over WADO-RS: from the cache (hit) or "
	     "waited for from the PACS (miss).");
	put(&p,
	    "drimbox_cache_requests_total{result=\"hit\"} %llu\n"
	    "drimbox_cache_requests_total{result=\"miss\"} %llu\n",
	    hits, misses);
	head(&p, "drimbox_cache_hit_ratio", "gauge",
	     "Hits over all cache requests since start (0 before any).");
	put(&p, "drimbox_cache_hit_ratio %.4f\n",
	    hits + misses ? (double)hits / (double)(hits + misses) : 0.0);

	if (g->pacs_reachable >= 0) {
		one(&p, "drimbox_pacs_reachable", "gauge",
		    "1 when the PACS answered the last C-ECHO.",
		    (unsigned long long)g->pacs_reachable);
		one(&p, "drimbox_pacs_last_echo_seconds", "gauge",
		    "When the PACS was last C-ECHOed (unix seconds).",
		    (unsigned long long)g->pacs_last_echo);
	}
	by_outcome(&p, "drimbox_pacs_retrievals_total",
	           "Retrievals (C-MOVE/C-GET) from the PACS, by outcome.",
	           LOAD(m.retrievals[1]), LOAD(m.retrievals[0]));
	one(&p, "drimbox_pacs_retrieved_instances_total", "counter",
	    "Instances received from the PACS.", LOAD(m.retrieved));
	one(&p, "drimbox_pacs_retrieved_bytes_total", "counter",
	    "Bytes received from the PACS (MB/s: the rate of this over "
	    "the rate of drimbox_pacs_retrieval_seconds_total).",
	    LOAD(m.retrieved_bytes));
	head(&p, "drimbox_pacs_retrieval_seconds_total", "counter",
	     "Time spent in retrievals from the PACS.");
	put(&p, "drimbox_pacs_retrieval_seconds_total %.6f\n",
	    (double)LOAD(m.retrieval_micros) / 1e6);

	by_outcome(
	        &p, "drimbox_remote_pulls_total",
	        "Pulls of a study from another DRIMbox (WADO-RS), by outcome.",
	        LOAD(m.pulls[1]), LOAD(m.pulls[0]));
	one(&p, "drimbox_remote_pulled_instances_total", "counter",
	    "Instances received from other DRIMboxes.", LOAD(m.pulled));
	one(&p, "drimbox_remote_pulled_bytes_total", "counter",
	    "Bytes received from other DRIMboxes.", LOAD(m.pulled_bytes));

	head(&p, "drimbox_dmp_calls_total", "counter",
	     "Requests to the DMP, by transaction and outcome.");
	write_pairs(&p, &dmp, "drimbox_dmp_calls_total", "transaction",
	            "outcome");
	head(&p, "drimbox_hl7_messages_total", "counter",
	     "HL7 messages received, by type and the ACK code answered.");
	write_pairs(&p, &hl7, "drimbox_hl7_messages_total", "type", "ack");

	if (ix != NULL)
		write_jobs(&p, ix);
	if (p.oom) {
		free(p.s);
		return NULL;
	}
	*len = p.len;
	return p.s;
}
