/*
 * http.c - see http.h. Parses and validates the path (UIDs, resource
 * names), then hands the request to the QIDO or WADO handlers. libmicro-
 * httpd has already percent-decoded the path, so "%2e%2e" arrives as "..",
 * which no UID accepts.
 */
#include "http.h"
#include "audit.h"
#include "auth.h"
#include "cache.h"
#include "config.h"
#include "conso.h"
#include "dicomweb.h"
#include "fsutil.h"
#include "health.h"
#include "index.h"
#include "log.h"
#include "metrics.h"
#include "monitor.h"
#include "pacs.h"
#include "remote.h"
#include "web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define URL_MAX 2048
/*
 * Request headers, all together.  Past about 56 KiB (the 64 KiB connection
 * pool less the request line and bookkeeping) libmicrohttpd answers 431
 * itself, with an HTML body; below, a JSON reason comes from here.
 */
#define HEADERS_MAX (16 * 1024)

struct http {
	struct http_env env;
	struct MHD_Daemon *mhd;
	atomic_ulong requests; /* numbers requests for the log */
	const char *scheme;    /* "http" or "https" */
	char *cert, *key;      /* PEM, with HTTPS */
	char *client_ca;       /* PEM: DRIMboxes must present a certificate */
	time_t started;
	atomic_int running;      /* MHD_start_daemon has returned */
	atomic_flag start_noted; /* start_error holds a message */
	char start_error[200];   /* why libmicrohttpd could not start */
};

/* gzip of buf (level 1: fast, JSON still shrinks ~10x); NULL on failure. */
static char *gzip(const char *buf, size_t len, size_t *out_len)
{
	z_stream z;
	size_t cap = compressBound((uLong)len) + 32;
	char *out = malloc(cap);

	memset(&z, 0, sizeof(z));
	if (out == NULL || deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8,
	                                Z_DEFAULT_STRATEGY) != Z_OK) {
		free(out);
		return NULL;
	}
	z.next_in = (Bytef *)buf;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
		deflateEnd(&z);
		free(out);
		return NULL;
	}
	*out_len = z.total_out;
	deflateEnd(&z);
	return out;
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind,
                                       const char *key, const char *value)
{
	size_t *total = cls;

	(void)kind;
	*total += strlen(key) + (value ? strlen(value) : 0) + 4;
	return MHD_YES;
}

static size_t headers_size(struct MHD_Connection *conn)
{
	size_t total = 0;

	MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_size,
	                          &total);
	return total;
}

int dw_accepts_coding(struct MHD_Connection *conn, const char *coding)
{
	const char *ae = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                             "Accept-Encoding");
	size_t n = strlen(coding);

	for (const char *p = ae; p && *p;) {
		p += strspn(p, " \t,");
		if (strncasecmp(p, coding, n) == 0 &&
		    strchr(" \t,;", p[n] ? p[n] : ',')) {
			const char *end = strchr(p, ','), *qv = strstr(p, "q=");

			return !(qv && (end == NULL || qv < end) &&
			         strtod(qv + 2, NULL) <= 0.0);
		}
		p = strchr(p, ',');
	}
	return 0;
}

int dw_not_modified(struct MHD_Connection *conn, const char *etag,
                    enum MHD_Result *rc)
{
	const char *inm = etag ? MHD_lookup_connection_value(
	                                 conn, MHD_HEADER_KIND, "If-None-Match")
	                       : NULL;
	struct MHD_Response *resp;

	if (inm == NULL || strcmp(inm, etag) != 0)
		return 0;
	resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	*rc = MHD_NO;
	if (resp != NULL) {
		MHD_add_response_header(resp, "ETag", etag);
		*rc = MHD_queue_response(conn, 304, resp);
		MHD_destroy_response(resp);
	}
	return 1;
}

static enum MHD_Result send_body(struct MHD_Connection *conn, unsigned status,
                                 char *body, size_t len,
                                 const char *content_type, const char *etag)
{
	struct MHD_Response *resp;
	enum MHD_Result rc;
	int gz = 0;

	if (dw_not_modified(conn, etag, &rc)) {
		free(body);
		return rc;
	}
	if (len > 1024 && dw_accepts_coding(conn, "gzip")) {
		size_t zlen;
		char *z = gzip(body, len, &zlen);

		if (z != NULL) {
			free(body);
			body = z;
			len = zlen;
			gz = 1;
		}
	}
	resp = MHD_create_response_from_buffer(len, body,
	                                       MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(body);
		return MHD_NO;
	}
	metrics_http_bytes(len);
	MHD_add_response_header(resp, "Content-Type", content_type);
	if (gz)
		MHD_add_response_header(resp, "Content-Encoding", "gzip");
	MHD_add_response_header(resp, "Vary", "Accept-Encoding");
	if (etag != NULL) {
		MHD_add_response_header(resp, "ETag", etag);
		MHD_add_response_header(resp, "Cache-Control",
		                        "private, max-age=31536000, immutable");
	}
	rc = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

enum MHD_Result dw_send_json(struct MHD_Connection *conn, char *body,
                             size_t len, const char *content_type,
                             const char *etag)
{
	return send_body(conn, 200, body, len, content_type, etag);
}

enum MHD_Result dw_error(struct MHD_Connection *conn, unsigned status,
                         const char *fmt, ...)
{
	char msg[512];
	json_t *o;
	char *body;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (status >= 500)
		log_error(LOGC_HTTP, "%u %s", status, msg);
	else
		log_info(LOGC_HTTP, "%u %s", status, msg);
	o = json_pack("{s:s}", "error", msg);
	body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (body == NULL)
		return MHD_NO;
	return send_body(conn, status, body, strlen(body), "application/json",
	                 NULL);
}

void dw_audit(const struct dw_request *rq, const char *outcome,
              const char *detail)
{
	const char *action = rq->qido && rq->study == NULL            ? "search"
	                     : rq->who && rq->who->session[0] == '\0' ? "serve"
	                                                              : "view";
	char peer[64];

	audit_peer(rq->conn, peer, sizeof(peer));
	audit_once(&(struct audit_event){ rq->who ? rq->who->id : NULL, action,
	                                  rq->study, rq->series, peer, outcome,
	                                  NULL, detail });
}

int dw_ensure_study(struct dw_request *rq, const char *study)
{
	struct pacs_sync_stats st;
	char err[300];
	long n = 0;

	if (index_study_instances(rq->env->ix, study, &n, NULL) == 0 && n > 0)
		return 1;
	if (pacs_sync(rq->env->pacs, rq->env->ix, NULL, study, 1, NULL, &st,
	              err, sizeof(err)) != 0) {
		log_warn(LOGC_HTTP, "study=%s: PACS look-up failed: %s", study,
		         err);
		return -1;
	}
	return st.studies > 0;
}

int dw_is_uid(const char *s, size_t n)
{
	if (n == 0 || n > 64 || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] == '.' && s[i + 1] != '.')))
			return 0;
	return 1;
}

#define SEGS_MAX 9 /* .../instances/{sop}/frames/{n}/rendered */

/*
 * Fills rq from a path relative to the DICOMweb root, the UIDs copied into
 * ids (3 x 65) and the tail (sub-resource) into tail. Returns NULL, or a
 * reason for a 400 ("... UID ...") or a 404.
 */
static const char *parse_path(const char *path, struct dw_request *rq,
                              char ids[3][65], char *tail, size_t tail_cap)
{
	static const char *const levels[] = { "studies", "series",
		                              "instances" };
	const char *seg[SEGS_MAX];
	size_t len[SEGS_MAX], n = 0, i;
	const char *p = path;

	/* Split "/a/b/c" into segments; the tail after them is kept whole. */
	while (*p == '/' && n < SEGS_MAX) {
		const char *end = strchr(p + 1, '/');

		seg[n] = p + 1;
		len[n] = end ? (size_t)(end - p - 1) : strlen(p + 1);
		n++;
		p = end ? end : p + strlen(p);
	}
	if (n == 0 || *p != '\0')
		return "no such resource";
#define IS(k, word)                                                            \
	(len[k] == strlen(word) && strncmp(seg[k], word, len[k]) == 0)
	/* /series and /instances: searches across studies */
	if (n == 1 && (IS(0, "series") || IS(0, "instances"))) {
		rq->qido = 1;
		rq->level = IS(0, "series") ? IDX_SERIES : IDX_INSTANCE;
		return NULL;
	}
	/* walk studies/{uid}/series/{uid}/instances/{uid} */
	for (i = 0; i < 3 && 2 * i < n; i++) {
		if (!IS(2 * i, levels[i])) {
			if (i == 1 && IS(2, "instances") && n == 3) {
				rq->qido = 1; /* /studies/{st}/instances */
				rq->level = IDX_INSTANCE;
				return NULL;
			}
			break;
		}
		if (2 * i + 1 == n) { /* search at this level */
			rq->qido = 1;
			rq->level = (int)i;
			return NULL;
		}
		if (!dw_is_uid(seg[2 * i + 1], len[2 * i + 1]))
			return "malformed UID in the path";
		memcpy(ids[i], seg[2 * i + 1], len[2 * i + 1]);
		ids[i][len[2 * i + 1]] = '\0';
		if (i == 0)
			rq->study = ids[0];
		else if (i == 1)
			rq->series = ids[1];
		else
			rq->sop = ids[2];
	}
#undef IS
	if (i == 0)
		return "no such resource";
	rq->level = (int)i - 1;
	/* what follows the resource: "", "metadata", "frames/1,2"... */
	if (2 * i >= n) {
		tail[0] = '\0';
	} else {
		const char *t = seg[2 * i];

		if (strlen(t) >= tail_cap)
			return "no such resource";
		memcpy(tail, t, strlen(t) + 1);
	}
	rq->tail = tail;
	return NULL;
}

/* A request body kept for its handler. */
#define BODY_MAX (64 * 1024)
struct body {
	size_t len;
	int too_big;
	char data[BODY_MAX];
};

/* A request's state, from its first call to on_completed. */
struct req {
	struct timespec t0;
	enum metrics_route route;
	struct body *body; /* a consumer's POST, else NULL */
};

static void on_completed(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode why)
{
	struct req *r = *state;
	const union MHD_ConnectionInfo *ci;
	struct timespec t1;

	(void)cls;
	(void)why;
	if (r == NULL)
		return;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* no status: the connection ended before an answer was queued */
	if (ci != NULL && ci->http_status != 0)
		metrics_http(r->route, ci->http_status,
		             (double)(t1.tv_sec - r->t0.tv_sec) +
		                     (double)(t1.tv_nsec - r->t0.tv_nsec) /
		                             1e9);
	free(r->body);
	free(r);
	*state = NULL;
}
/* GET /health: the server answers (public, for load balancers). */
static enum MHD_Result health(struct MHD_Connection *conn)
{
	char *b = strdup("{\"status\":\"ok\"}");

	return b ? dw_send_json(conn, b, strlen(b), "application/json", NULL)
	         : MHD_NO;
}

/*
 * GET /ready: 200 when every check passes, else 503; the checks in JSON
 * (public, for load balancers and Docker's health check).
 */
static enum MHD_Result ready(struct http *h, struct MHD_Connection *conn)
{
	json_t *o = health_ready(h->env.health);
	int ok = json_is_true(json_object_get(o, "ready"));
	char *b = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (b == NULL)
		return MHD_NO;
	return send_body(conn, ok ? 200 : 503, b, strlen(b), "application/json",
	                 NULL);
}

/* 1 when the peer's address is one of metrics_allowed. */
static int may_scrape(const struct config *cfg, struct MHD_Connection *conn)
{
	char peer[64];
	const char *p = cfg->metrics_allowed;
	size_t n;

	audit_peer(conn, peer, sizeof(peer));
	if (strncmp(peer, "::ffff:", 7) == 0)
		memmove(peer, peer + 7, strlen(peer + 7) + 1);
	n = strlen(peer);
	while (n > 0 && *p) {
		size_t len;

		p += strspn(p, " ,");
		len = strcspn(p, " ,");
		if (len == n && strncmp(p, peer, n) == 0)
			return 1;
		p += len;
	}
	return 0;
}

/* GET /metrics: the Prometheus exposition, to metrics_allowed only. */
static enum MHD_Result metrics(struct http *h, struct MHD_Connection *conn)
{
	struct metrics_gauges g = { cache_bytes(h->env.cache),
		                    cache_max_bytes(h->env.cache),
		                    -1,
		                    0,
		                    (int64_t)h->started,
		                    DRIMBOX_VERSION };
	struct monitor_state ms;
	size_t len;
	char *page;

	if (!may_scrape(h->env.cfg, conn))
		return dw_error(conn, 403,
		                "metrics are served to metrics_allowed only");
	if (h->env.monitor != NULL) {
		monitor_get(h->env.monitor, &ms);
		g.pacs_reachable = ms.reachable;
		g.pacs_last_echo = (int64_t)ms.last_echo;
	}
	page = metrics_write(&g, h->env.ix, &len);
	if (page == NULL)
		return dw_error(conn, 503, "out of memory");
	return send_body(conn, 200, page, len,
	                 "text/plain; version=0.0.4; charset=utf-8", NULL);
}

/*
 * The subject (RFC 4514) of the client certificate of the connection,
 * verified against http_tls_client_ca (chain, dates): 0, or -1 with why.
 */
static int client_subject(struct MHD_Connection *conn, char *dn, size_t cap,
                          char *why, size_t whylen)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
	        conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	gnutls_session_t tls = ci ? (gnutls_session_t)ci->tls_session : NULL;
	const gnutls_datum_t *peers;
	gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t text = { NULL, 0 };
	unsigned n = 0, status = 0;
	int rc = -1;

	peers = tls ? gnutls_certificate_get_peers(tls, &n) : NULL;
	if (peers == NULL || n == 0) {
		snprintf(why, whylen, "a client certificate is required");
		return -1;
	}
	/* a certificate for TLS clients (extended key usage clientAuth) */
	gnutls_typed_vdata_st purpose = {
		GNUTLS_DT_KEY_PURPOSE_OID,
		(unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0
	};

	if (gnutls_certificate_verify_peers(tls, &purpose, 1, &status) != 0 ||
	    status != 0) {
		if (gnutls_certificate_verification_status_print(
		            status, GNUTLS_CRT_X509, &text, 0) == 0)
			snprintf(why, whylen,
			         "the client certificate is refused: %s",
			         (const char *)text.data);
		else
			snprintf(why, whylen,
			         "the client certificate is refused");
		gnutls_free(text.data);
		return -1;
	}
	if (gnutls_x509_crt_init(&crt) == 0 &&
	    gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) == 0 &&
	    gnutls_x509_crt_get_dn3(crt, &text, 0) == 0 && text.size < cap) {
		snprintf(dn, cap, "%s", (const char *)text.data);
		rc = 0;
	} else {
		snprintf(why, whylen, "the client certificate is unreadable");
	}
	gnutls_free(text.data);
	if (crt != NULL)
		gnutls_x509_crt_deinit(crt);
	return rc;
}

/*
 * Mutual TLS: another DRIMbox (a Bearer token) is served only with a
 * client certificate that verifies and whose subject the whitelist lists.
 * 0, or -1 with why.
 */
static int peer_allowed(struct http *h, struct MHD_Connection *conn, char *why,
                        size_t whylen)
{
	char dn[512], db[256];

	if (client_subject(conn, dn, sizeof(dn), why, whylen) != 0)
		return -1;
	if (h->env.remote == NULL ||
	    !remote_peer_listed(h->env.remote, dn, db, sizeof(db))) {
		snprintf(why, whylen,
		         "the client certificate '%.200s' is not a DRIMbox of "
		         "the whitelist",
		         dn);
		return -1;
	}
	log_debug(LOGC_HTTP, "DRIMbox %s (%s)", db, dn);
	return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
	struct http *h = cls;
	const struct config *cfg = h->env.cfg;
	struct dw_request rq;
	char ids[3][65], tail[256];
	size_t root = strlen(cfg->dicomweb_root);
	const char *host, *why;
	char ctx[32];
	struct auth_user user, *who = NULL;

	(void)version;
	(void)upload;
	if (*state == NULL) {
		struct req *r = calloc(1, sizeof(*r));

		if (r == NULL)
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &r->t0);
		r->route = metrics_route(url, cfg->dicomweb_root);
		/* a consumer's POST keeps its body (a form: small) */
		if (strcmp(method, "POST") == 0 && h->env.conso &&
		    conso_handles(url) &&
		    (r->body = calloc(1, sizeof(*r->body))) == NULL) {
			free(r);
			return MHD_NO;
		}
		*state = r;
		return MHD_YES;
	}
	if (*upload_size != 0) {
		if (((struct req *)*state)->body != NULL) {
			struct body *b = ((struct req *)*state)->body;

			if (b->len + *upload_size > BODY_MAX)
				b->too_big = 1;
			else {
				memcpy(b->data + b->len, upload, *upload_size);
				b->len += *upload_size;
			}
		}
		*upload_size = 0; /* other bodies are read and dropped */
		return MHD_YES;
	}
	snprintf(ctx, sizeof(ctx), "req=%lu",
	         atomic_fetch_add(&h->requests, 1) + 1);
	log_set_context(ctx);
	log_debug(LOGC_HTTP, "%s %s", method, url);
	if (strlen(url) > URL_MAX)
		return dw_error(conn, 414, "URL too long");
	if (headers_size(conn) > HEADERS_MAX)
		return dw_error(conn, 431, "request headers over %d bytes",
		                HEADERS_MAX);
	if (strcmp(url, "/health") == 0)
		return health(conn);
	if (strcmp(url, "/ready") == 0)
		return ready(h, conn);
	if (strcmp(url, "/metrics") == 0)
		return metrics(h, conn);
	if (auth_handles(url))
		return auth_handle(h->env.auth, conn, url);
	if (h->env.auth != NULL && !auth_public(url, method)) {
		char why[300];

		if (!auth_identify(h->env.auth, conn, &user, why, sizeof(why)))
			return auth_deny(h->env.auth, conn, url, method, why);
		who = &user;
		if (h->client_ca != NULL && user.session[0] == '\0' &&
		    peer_allowed(h, conn, why, sizeof(why)) != 0) {
			char peer[64];

			log_warn(LOGC_HTTP, "refused %s %s: %s", method, url,
			         why);
			audit_peer(conn, peer, sizeof(peer));
			audit_once(&(struct audit_event){
			        user.id, "serve", NULL, NULL, peer, "refused",
			        NULL, why });
			return dw_error(conn, 403, "%s", why);
		}
	}
	if (h->env.conso && conso_handles(url)) {
		struct body *b = ((struct req *)*state)->body;

		if (b && b->too_big)
			return dw_error(conn, 413, "body over %d bytes",
			                BODY_MAX);
		return conso_handle(h->env.conso, conn, url, method, who,
		                    b ? b->data : NULL, b ? b->len : 0);
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return dw_error(conn, 405, "method %s not allowed", method);
	if (web_handles(url))
		return web_handle(&h->env, conn, url);
	if (strncmp(url, cfg->dicomweb_root, root) != 0 ||
	    (url[root] != '/' && url[root] != '\0'))
		return dw_error(conn, 404, "no such resource");
	memset(&rq, 0, sizeof(rq));
	rq.env = &h->env;
	rq.conn = conn;
	rq.who = who;
	why = parse_path(url + root, &rq, ids, tail, sizeof(tail));
	if (why != NULL)
		return dw_error(conn, strstr(why, "UID") ? 400 : 404, "%s",
		                why);
	host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
	if (host == NULL || strlen(host) > 255 ||
	    strpbrk(host, " \"\\<>") != NULL)
		snprintf(rq.base, sizeof(rq.base), "%s://%s:%ld%s", h->scheme,
		         cfg->http_bind, cfg->http_port, cfg->dicomweb_root);
	else
		snprintf(rq.base, sizeof(rq.base), "%s://%s%s", h->scheme, host,
		         cfg->dicomweb_root);
	/* a program (another DRIMbox) with a token reads what a manifest
	 * this drimbox published references, nothing else */
	if (who != NULL && who->session[0] == '\0' &&
	    (rq.qido ||
	     MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                 "KOS-SOPInstanceUID") == NULL)) {
		dw_audit(&rq, "refused", "no KOS-SOPInstanceUID");
		return dw_error(conn, 403,
		                "a token reads only what a manifest this "
		                "drimbox published references: "
		                "KOS-SOPInstanceUID required");
	}
	if (rq.qido)
		dw_audit(&rq, "ok", NULL);
	return rq.qido ? qido_handle(&rq) : wado_handle(&rq);
}

/*
 * libmicrohttpd's own messages. While it starts, the first one says why it
 * could not (a port in use, say); later ones (a client gone in the middle
 * of a reply) are only for debugging.
 */
static void on_mhd_message(void *cls, const char *fmt, va_list ap)
{
	struct http *h = cls;
	char msg[200];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '.'))
		msg[--n] = '\0';
	if (atomic_load(&h->running))
		log_debug(LOGC_HTTP, "libmicrohttpd: %s", msg);
	else if (!atomic_flag_test_and_set(&h->start_noted))
		memcpy(h->start_error, msg, n + 1);
}

static void free_http(struct http *h)
{
	free(h->cert);
	free(h->key);
	free(h->client_ca);
	free(h);
}

struct http *http_start(const struct http_env *env, char *err, size_t errlen)
{
	struct http *h = calloc(1, sizeof(*h));
	struct sockaddr_in sa;
	struct MHD_OptionItem tls_opts[5] = { { MHD_OPTION_END, 0, NULL } };
	unsigned tls = 0;
	size_t len;

	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_flag_clear(&h->start_noted);
	h->env = *env;
	h->started = time(NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)env->cfg->http_port);
	if (inet_pton(AF_INET, env->cfg->http_bind, &sa.sin_addr) != 1) {
		snprintf(err, errlen, "http_bind: '%s' is not an IPv4 address",
		         env->cfg->http_bind);
		free_http(h);
		return NULL;
	}
	h->scheme = "http";
	if (env->cfg->http_tls_cert[0]) {
		/* HTTPS only, TLS 1.2 or later */
		h->cert = fs_read_file(env->cfg->http_tls_cert, 1 << 20, &len);
		h->key = fs_read_file(env->cfg->http_tls_key, 1 << 20, &len);
		if (h->cert == NULL || h->key == NULL) {
			snprintf(err, errlen, "cannot read %s or %s: %s",
			         env->cfg->http_tls_cert,
			         env->cfg->http_tls_key, strerror(errno));
			free_http(h);
			return NULL;
		}
		tls_opts[0] =
		        (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0,
			                         h->cert };
		tls_opts[1] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY,
			                               0, h->key };
		tls_opts[2] = (struct MHD_OptionItem){
			MHD_OPTION_HTTPS_PRIORITIES, 0,
			(void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
		};
		if (env->cfg->http_tls_client_ca[0]) {
			/* asks every client for a certificate; DRIMboxes
			 * must present one (peer_allowed) */
			h->client_ca = fs_read_file(
			        env->cfg->http_tls_client_ca, 1 << 20, &len);
			if (h->client_ca == NULL) {
				snprintf(err, errlen, "cannot read %s: %s",
				         env->cfg->http_tls_client_ca,
				         strerror(errno));
				free_http(h);
				return NULL;
			}
		}
		tls_opts[3] = (struct MHD_OptionItem){
			h->client_ca ? MHD_OPTION_HTTPS_MEM_TRUST
			             : MHD_OPTION_END,
			0, h->client_ca
		};
		tls_opts[4] =
		        (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
		h->scheme = "https";
		tls = MHD_USE_TLS;
	}
	h->mhd = MHD_start_daemon(
	        MHD_USE_THREAD_PER_CONNECTION |
	                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
	                MHD_USE_TCP_FASTOPEN | MHD_USE_ERROR_LOG | tls,
	        (uint16_t)env->cfg->http_port, NULL, NULL, on_request, h,
	        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_message, h, MHD_OPTION_ARRAY,
	        tls_opts, MHD_OPTION_SOCK_ADDR, &sa,
	        MHD_OPTION_CONNECTION_LIMIT,
	        (unsigned)env->cfg->http_max_connections,
	        MHD_OPTION_CONNECTION_TIMEOUT, 120U,
	        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
	        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
	        MHD_OPTION_END);
	if (h->mhd == NULL) {
		snprintf(err, errlen,
		         "HTTP%s server on %s:%ld could not start%s%s",
		         tls ? "S" : "", env->cfg->http_bind,
		         env->cfg->http_port, h->start_error[0] ? ": " : "",
		         h->start_error);
		free_http(h);
		return NULL;
	}
	atomic_store(&h->running, 1);
	return h;
}

void http_stop(struct http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->mhd);
	free_http(h);
}
