/*
 * web.c - see web.h. The viewer's files are served from viewer_dir as they
 * are on disk (sendfile), or their precompressed .br / .gz twin when the
 * client accepts it; names carrying esbuild's content hash are cached for
 * a year, the others revalidate by ETag. index.html gets the DICOMweb root
 * written into it, so that the page needs no request to find its API.
 */
#include "web.h"
#include "config.h"
#include "dicomweb.h"
#include "fsutil.h"
#include "index.h"
#include "log.h"
#include "metrics.h"
#include "token.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VIEWER "/viewer"
#define IID "/IHEInvokeImageDisplay"
#define IID_UIDS_MAX 8

int web_handles(const char *url)
{
	return strcmp(url, IID) == 0 || strcmp(url, VIEWER) == 0 ||
	       strncmp(url, VIEWER "/", strlen(VIEWER "/")) == 0;
}

/* The media type of a file, from its name's extension. */
static const char *media_type(const char *name)
{
	static const char *const types[][2] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },
		{ ".wasm", "application/wasm" },
		{ ".json", "application/json" },
		{ ".txt", "text/plain; charset=utf-8" },
		{ ".svg", "image/svg+xml" },
		{ ".png", "image/png" },
		{ ".ico", "image/x-icon" },
	};
	const char *dot = strrchr(name, '.');

	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i][0]) == 0)
			return types[i][1];
	return "application/octet-stream";
}

/* esbuild's "-XXXXXXXX." content hash in a file name: immutable. */
static int hashed(const char *name)
{
	const char *dash = strrchr(name, '-');

	if (dash == NULL || strlen(dash) < 10 || dash[9] != '.')
		return 0;
	for (int i = 1; i <= 8; i++)
		if (!isupper((unsigned char)dash[i]) &&
		    !isdigit((unsigned char)dash[i]))
			return 0;
	return 1;
}

/*
 * A path below /viewer/ that may name a file: no empty, "." or ".."
 * segment, nothing hidden, no backslash. "" is index.html.
 */
int web_safe_path(const char *rel)
{
	if (strlen(rel) > 200 || strchr(rel, '\\') != NULL)
		return 0;
	for (const char *seg = rel; *seg;) {
		const char *end = strchrnul(seg, '/');

		if (end == seg || seg[0] == '.')
			return 0;
		seg = *end ? end + 1 : end;
	}
	return 1;
}

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status,
                             struct MHD_Response *resp)
{
	enum MHD_Result rc;

	if (resp == NULL)
		return MHD_NO;
	rc = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* An HTML page (taken over: freed here). */
enum MHD_Result web_send_page(struct MHD_Connection *conn, unsigned status,
                              char *page, size_t len, const char *cache)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	        len, page, MHD_RESPMEM_MUST_FREE);

	if (resp == NULL) {
		free(page);
		return MHD_NO;
	}
	metrics_http_bytes(len);
	MHD_add_response_header(resp, "Content-Type",
	                        "text/html; charset=utf-8");
	MHD_add_response_header(resp, "Cache-Control", cache);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	return queue(conn, status, resp);
}

/* index.html with the DICOMweb root in place of %DICOMWEB_ROOT%. */
static enum MHD_Result send_index(const struct config *cfg,
                                  struct MHD_Connection *conn)
{
	static const char mark[] = "%DICOMWEB_ROOT%";
	size_t rootlen = strlen(cfg->dicomweb_root), len;
	char path[CONFIG_STR_MAX + 16], *page, *grown, *at;

	snprintf(path, sizeof(path), "%s/index.html", cfg->viewer_dir);
	page = fs_read_file(path, 1 << 20, &len);
	if (page == NULL) {
		log_error(LOGC_HTTP, "viewer not found in %s (viewer_dir): %s",
		          cfg->viewer_dir, strerror(errno));
		return dw_error(conn, 404, "no such file");
	}
	grown = realloc(page, len + rootlen + 1);
	if (grown == NULL) {
		free(page);
		return dw_error(conn, 500, "out of memory");
	}
	page = grown;
	/* the root is a path of URL characters (config checks it); it
	 * replaces the mark in place, the rest of the page moving along */
	at = strstr(page, mark);
	if (at != NULL) {
		memmove(at + rootlen, at + strlen(mark),
		        len - (size_t)(at - page) - strlen(mark) + 1);
		memcpy(at, cfg->dicomweb_root, rootlen);
		len = len - strlen(mark) + rootlen;
	}
	return web_send_page(conn, 200, page, len, "no-cache");
}

enum MHD_Result web_file(struct MHD_Connection *conn, const char *dir,
                         const char *name, int *missing)
{
	static const char *const codings[][2] = { { "br", ".br" },
		                                  { "gzip", ".gz" } };
	const char *coding = NULL;
	char path[CONFIG_STR_MAX + 256], etag[64];
	struct MHD_Response *resp;
	struct stat st;
	int fd = -1;
	enum MHD_Result rc;

	*missing = 0;
	for (size_t i = 0; i < 2 && fd < 0; i++) {
		if (!dw_accepts_coding(conn, codings[i][0]))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s%s", dir, name,
		             codings[i][1]) >= (int)sizeof(path))
			return dw_error(conn, 404, "no such file");
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		coding = codings[i][0];
	}
	if (fd < 0) {
		coding = NULL;
		if (snprintf(path, sizeof(path), "%s/%s", dir, name) >=
		    (int)sizeof(path))
			return dw_error(conn, 404, "no such file");
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		*missing = 1;
		return MHD_YES;
	}
	snprintf(etag, sizeof(etag), "\"%llx-%llx%s\"",
	         (unsigned long long)st.st_size,
	         (unsigned long long)st.st_mtime, coding ? coding : "");
	if (dw_not_modified(conn, etag, &rc)) {
		close(fd);
		return rc;
	}
	resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
	if (resp == NULL) {
		close(fd);
		return MHD_NO;
	}
	metrics_http_bytes((uint64_t)st.st_size);
	MHD_add_response_header(resp, "Content-Type", media_type(name));
	if (coding != NULL)
		MHD_add_response_header(resp, "Content-Encoding", coding);
	MHD_add_response_header(resp, "Vary", "Accept-Encoding");
	MHD_add_response_header(resp, "ETag", etag);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Cache-Control",
	                        hashed(name)
	                                ? "public, max-age=31536000, immutable"
	                                : "no-cache");
	return queue(conn, 200, resp);
}

static enum MHD_Result viewer_file(const struct config *cfg,
                                   struct MHD_Connection *conn, const char *url)
{
	const char *rel = url + strlen(VIEWER "/");
	const char *name = *rel ? rel : "index.html";
	enum MHD_Result rc;
	int missing;

	if (!web_safe_path(rel))
		return dw_error(conn, 404, "no such file");
	if (strcmp(name, "index.html") == 0)
		return send_index(cfg, conn);
	rc = web_file(conn, cfg->viewer_dir, name, &missing);
	if (!missing)
		return rc;
	/* a route of the page's own (no file has a name without a dot): the
	 * page */
	if (strchr(strrchr(url, '/'), '.') == NULL)
		return send_index(cfg, conn);
	return dw_error(conn, 404, "no such file");
}

enum MHD_Result web_redirect(struct MHD_Connection *conn, unsigned status,
                             const char *location)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	        0, NULL, MHD_RESPMEM_PERSISTENT);

	if (resp != NULL) {
		MHD_add_response_header(resp, "Location", location);
		MHD_add_response_header(resp, "Cache-Control", "no-store");
	}
	return queue(conn, status, resp);
}

/* The IID parameters, names compared without case. */
struct iid {
	const char *request_type, *study_uid, *accession, *cda;
	int repeated;
};

static enum MHD_Result on_iid_arg(void *cls, enum MHD_ValueKind kind,
                                  const char *key, const char *value)
{
	struct iid *p = cls;
	const char **slot = NULL;

	(void)kind;
	if (strcasecmp(key, "requestType") == 0)
		slot = &p->request_type;
	else if (strcasecmp(key, "studyUID") == 0)
		slot = &p->study_uid;
	else if (strcasecmp(key, "accessionNumber") == 0)
		slot = &p->accession;
	else if (strcasecmp(key, "idCDA") == 0)
		slot = &p->cda;
	if (slot != NULL) {
		p->repeated |= *slot != NULL;
		*slot = value ? value : "";
	}
	return MHD_YES;
}

/*
 * 1 when the link's accession number names one of the publication's
 * orders: the number itself, or "root.number" with the order's issuer.
 */
static int accession_matches(json_t *payload, const char *given)
{
	json_t *orders = json_object_get(payload, "orders"), *o;
	size_t i, n = 0;

	json_array_foreach(orders, i, o)
	{
		const char *acc =
		        json_string_value(json_object_get(o, "accession"));
		const char *root =
		        json_string_value(json_object_get(o, "accession_root"));
		size_t al = acc ? strlen(acc) : 0, gl = strlen(given);

		if (al == 0)
			continue;
		n++;
		if (strcmp(given, acc) == 0)
			return 1;
		if (gl > al + 1 && strcmp(given + gl - al, acc) == 0 &&
		    given[gl - al - 1] == '.' &&
		    (root == NULL || *root == '\0' ||
		     (strlen(root) == gl - al - 1 &&
		      strncmp(given, root, gl - al - 1) == 0)))
			return 1;
	}
	return n == 0; /* nothing to compare with (an IOCM update) */
}

/*
 * A page for a person who clicked a link (Accept: text/html), the JSON
 * reason for a program.
 */
static enum MHD_Result iid_refuse(struct MHD_Connection *conn, unsigned status,
                                  const char *title, const char *why)
{
	static const char page[] =
	        "<!doctype html><html lang=\"fr\"><head><meta "
	        "charset=\"utf-8\"><meta name=\"viewport\" "
	        "content=\"width=device-width\"><title>drimbox</title><style>"
	        "body{font:16px system-ui,sans-serif;margin:3em auto;max-width:"
	        "40em;padding:0 1em}p.why{color:#555}</style></head><body><h1>"
	        "%s</h1><p class=\"why\">%s</p><p>Visualisation non "
	        "diagnostique — drimbox</p></body></html>\n";
	const char *accept =
	        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
	char *body;
	int n;

	if (accept == NULL || strstr(accept, "text/html") == NULL)
		return dw_error(conn, status, "%s", why);
	log_info(LOGC_HTTP, "%u %s", status, why);
	/* why holds only UIDs, digits and fixed words: nothing to escape */
	n = asprintf(&body, page, title, why);
	if (n < 0)
		return MHD_NO;
	return web_send_page(conn, status, body, (size_t)n, "no-store");
}

static enum MHD_Result invoke_image_display(const struct http_env *env,
                                            struct MHD_Connection *conn)
{
	struct iid p = { 0 };
	char location[64 + IID_UIDS_MAX * 72], uid[65];
	size_t at, n = 0;

	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, on_iid_arg, &p);
	if (p.repeated)
		return iid_refuse(conn, 400, "Lien invalide",
		                  "a parameter is given twice");
	if (p.request_type == NULL || strcasecmp(p.request_type, "STUDY"))
		return iid_refuse(conn, 400, "Lien invalide",
		                  "requestType must be STUDY");
	if (p.study_uid == NULL || *p.study_uid == '\0')
		return iid_refuse(conn, 400, "Lien invalide",
		                  "studyUID is missing");
	if (p.accession != NULL &&
	    strspn(p.accession,
	           "0123456789abcdefghijklmnopqrstuvwxyz"
	           "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-_") != strlen(p.accession))
		return iid_refuse(conn, 400, "Lien invalide",
		                  "Accessionnumber holds characters that no "
		                  "accession number has");
	at = (size_t)snprintf(location, sizeof(location), "%s/?", VIEWER);
	/* IID separates the UIDs of several studies with commas (some
	 * viewers use ';'): each must be one this drimbox published */
	for (const char *s = p.study_uid; *s;) {
		size_t len = strcspn(s, ",;");
		json_t *payload;
		char *published;

		if (!dw_is_uid(s, len) || ++n > IID_UIDS_MAX)
			return iid_refuse(
			        conn, 400, "Lien invalide",
			        n > IID_UIDS_MAX
			                ? "too many studyUID values"
			                : "studyUID is not a UID list");
		memcpy(uid, s, len);
		uid[len] = '\0';
		published = index_job_published(env->ix, uid);
		payload = published ? json_loads(published, 0, NULL) : NULL;
		free(published);
		if (payload == NULL) {
			log_info(LOGC_HTTP,
			         "report link: study %s was not "
			         "published by this drimbox",
			         uid);
			return iid_refuse(
			        conn, 404, "Examen non disponible",
			        "this study was not published by this "
			        "drimbox, or its publication was "
			        "withdrawn");
		}
		if (p.accession != NULL && *p.accession &&
		    !accession_matches(payload, p.accession)) {
			json_decref(payload);
			return iid_refuse(conn, 404, "Examen non disponible",
			                  "the accession number is not the "
			                  "study's");
		}
		json_decref(payload);
		at += (size_t)snprintf(location + at, sizeof(location) - at,
		                       "%sstudy=%s", n > 1 ? "&" : "", uid);
		s += len + (s[len] != '\0');
	}
	log_info(LOGC_HTTP, "report link: study %.64s%s (report %.64s)",
	         p.study_uid, n > 1 ? " and others" : "",
	         p.cda ? p.cda : "not named");
	return web_redirect(conn, 302, location);
}

enum MHD_Result web_handle(const struct http_env *env,
                           struct MHD_Connection *conn, const char *url)
{
	if (strcmp(url, IID) == 0)
		return invoke_image_display(env, conn);
	if (strcmp(url, VIEWER) == 0) {
		/* the page's relative URLs need the trailing slash */
		const char *study = MHD_lookup_connection_value(
		        conn, MHD_GET_ARGUMENT_KIND, "study");
		char loc[128];

		if (study != NULL && dw_is_uid(study, strlen(study)))
			snprintf(loc, sizeof(loc), VIEWER "/?study=%s", study);
		else
			snprintf(loc, sizeof(loc), VIEWER "/");
		return web_redirect(conn, 301, loc);
	}
	return viewer_file(env->cfg, conn, url);
}

json_t *web_token_row(struct index *ix, const char *hash, const char *kind)
{
	char *data = NULL;
	json_t *row;

	if (index_token_get(ix, hash, kind, time(NULL), &data) != 1)
		return NULL;
	row = json_loads(data, 0, NULL);
	free(data);
	return row;
}

json_t *web_cookie_row(struct index *ix, struct MHD_Connection *conn,
                       const char *name, const char *kind, char hash[65])
{
	const char *tok =
	        MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, name);

	if (tok == NULL || strlen(tok) > 64)
		return NULL;
	token_hash(tok, hash);
	return web_token_row(ix, hash, kind);
}
