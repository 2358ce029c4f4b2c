/*
 * drimbox.c - the command-line tool. echo and find talk to the PACS
 * directly; status, sync and fetch ask the running daemon over its control
 * socket; ls reads the index (read-only, beside the daemon).
 */
#include "cli.h"
#include "config.h"
#include "dcm.h"
#include "dmp.h"
#include "index.h"
#include "log.h"
#include "pacs.h"
#include "whitelist.h"

#include <curl/curl.h>
#include <jansson.h>
#include <libxml/parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONF DRIMBOX_SYSCONFDIR "/drimbox.conf"
#define REPLY_MAX (4u << 20) /* the control API's answers are small */

static void usage(FILE *out)
{
	fputs("usage: drimbox [-c FILE] COMMAND [ARGS]\n"
	      "  status [--json]                 the daemon's state\n"
	      "  echo                            C-ECHO the PACS\n"
	      "  find [-L study|series|image] [KEY=VALUE...]\n"
	      "                                  C-FIND in the PACS (KEY: "
	      "keyword or GGGGEEEE)\n"
	      "  sync [--days N | --all] [--study UID] [--full]\n"
	      "                                  index the PACS (via the "
	      "daemon)\n"
	      "  fetch STUDY_UID [--series UID]  retrieve into the cache\n"
	      "  ls [--json] [STUDY_UID]         what the index holds\n"
	      "  jobs [--json] [-n N]            the job queue (publications"
	      "...)\n"
	      "  jobs retry ID                   run a parked job again "
	      "(after fixing its cause)\n"
	      "  messages [--json] [-n N]        the HL7 messages received, "
	      "and the answers\n"
	      "  whitelist [FILE]                verify the DRIM-M whitelist "
	      "(default whitelist_file)\n"
	      "  audit [--from T] [--to T] [--json]\n"
	      "                                  the audit trail (CSV; T: "
	      "YYYY-MM-DD[THH:MM[:SS]], UTC)\n"
	      "  audit verify                    check the audit trail's "
	      "hash chain\n"
	      "  stats [--from T] [--to T] [--json]\n"
	      "                                  the usage statistics: one "
	      "line per contextual call\n"
	      "FILE defaults to $DRIMBOX_CONF, then " DEFAULT_CONF ".\n",
	      out);
}

/* ---- control socket client --------------------------------------------- */

struct reply {
	char *buf;
	size_t len;
	int too_big;
	/* streaming: called with each complete line */
	int (*line_cb)(void *ctx, const char *line);
	void *line_ctx;
};

static size_t on_data(char *p, size_t sz, size_t n, void *ctx)
{
	struct reply *r = ctx;
	size_t len = sz * n;
	char *nb;

	if (r->len + len + 1 > REPLY_MAX) {
		r->too_big = 1;
		return 0;
	}
	nb = realloc(r->buf, r->len + len + 1);
	if (nb == NULL)
		return 0;
	r->buf = nb;
	memcpy(r->buf + r->len, p, len);
	r->len += len;
	r->buf[r->len] = '\0';
	if (r->line_cb) {
		char *nl;

		while ((nl = memchr(r->buf, '\n', r->len)) != NULL) {
			size_t used = (size_t)(nl - r->buf) + 1;

			*nl = '\0';
			if (r->line_cb(r->line_ctx, r->buf) != 0)
				return 0;
			memmove(r->buf, nl + 1, r->len - used + 1);
			r->len -= used;
		}
	}
	return len;
}

/*
 * Calls the daemon; returns the HTTP status (0 when it cannot be reached,
 * with the reason on stderr). r->buf holds the body (caller frees).
 */
static long call(const struct config *cfg, const char *method, const char *path,
                 struct reply *r)
{
	char url[1024];
	long status = 0;
	CURL *h = curl_easy_init();
	CURLcode rc;

	if (h == NULL)
		return 0;
	snprintf(url, sizeof(url), "http://drimboxd%s", path);
	curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, cfg->control_socket);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	else if (rc == CURLE_COULDNT_CONNECT)
		fprintf(stderr,
		        "drimbox: the daemon is not running (no answer on "
		        "%s)\n",
		        cfg->control_socket);
	else
		fprintf(stderr, "drimbox: %s: %s\n", cfg->control_socket,
		        r->too_big ? "answer too large"
		                   : curl_easy_strerror(rc));
	curl_easy_cleanup(h);
	return status;
}

/* Parses a JSON reply; prints the daemon's error for non-2xx. */
static json_t *call_json(const struct config *cfg, const char *method,
                         const char *path)
{
	struct reply r = { NULL, 0, 0, NULL, NULL };
	long status = call(cfg, method, path, &r);
	json_t *j = NULL;

	if (status != 0) {
		j = json_loadb(r.buf ? r.buf : "", r.len, 0, NULL);
		if (j == NULL) {
			fprintf(stderr, "drimbox: bad answer from daemon\n");
		} else if (status / 100 != 2) {
			const char *e =
			        json_string_value(json_object_get(j, "error"));
			fprintf(stderr, "drimbox: %s\n", e ? e : "failed");
			json_decref(j);
			j = NULL;
		}
	}
	free(r.buf);
	return j;
}

static json_int_t jint(json_t *o, const char *path)
{
	char key[64];
	const char *dot = strchr(path, '.');

	if (dot) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		return jint(json_object_get(o, key), dot + 1);
	}
	return json_integer_value(json_object_get(o, path));
}

static const char *jstr(json_t *o, const char *k1, const char *k2)
{
	const char *s = json_string_value(
	        json_object_get(k2 ? json_object_get(o, k1) : o, k2 ? k2 : k1));
	return s ? s : "";
}

/* "ready   yes" or "ready   NO: pacs (why), dmp (why)". */
static void print_ready(json_t *r)
{
	const char *name;
	json_t *c;
	int first = 1;

	if (r == NULL)
		return;
	if (json_is_true(json_object_get(r, "ready"))) {
		printf("ready    yes (index writable, PACS answers%s)\n",
		       json_object_get(json_object_get(r, "checks"), "dmp")
		               ? ", DMP reachable"
		               : "");
		return;
	}
	printf("ready    NO:");
	json_object_foreach(json_object_get(r, "checks"), name, c)
	{
		if (json_is_true(json_object_get(c, "ok")))
			continue;
		printf("%s %s (%s)", first ? "" : ",", name,
		       jstr(c, "error", NULL));
		first = 0;
	}
	putchar('\n');
}

/* The job queue: what waits, per kind and state, and since when. */
static void print_jobs(json_t *jobs)
{
	size_t i;
	json_t *v;

	if (json_array_size(jobs) == 0) {
		printf("jobs     none waiting\n");
		return;
	}
	printf("jobs     ");
	json_array_foreach(jobs, i, v)
	{
		long long age = (long long)jint(v, "oldest_age");

		printf("%s%lld %s %s (oldest %lld%s)", i ? ", " : "",
		       (long long)jint(v, "count"), jstr(v, "kind", NULL),
		       jstr(v, "state", NULL), age >= 3600 ? age / 3600 : age,
		       age >= 3600 ? " h" : " s");
	}
	putchar('\n');
}

static int cmd_status(const struct config *cfg, int argc, char **argv)
{
	int as_json = argc > 1 && strcmp(argv[1], "--json") == 0;
	json_t *j = call_json(cfg, "GET", "/status");
	json_t *pacs, *arr, *v;
	size_t i;

	if (j == NULL)
		return 1;
	if (as_json) {
		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
		return 0;
	}
	pacs = json_object_get(j, "pacs");
	printf("drimboxd %s  AE %s  DICOM port %lld  up %lld s\n",
	       jstr(j, "version", NULL), jstr(j, "aet", NULL),
	       (long long)jint(j, "dicom_port"), (long long)jint(j, "uptime"));
	printf("PACS     %s@%s:%lld (%s)  %s%s%s\n", jstr(pacs, "aet", NULL),
	       jstr(pacs, "host", NULL), (long long)jint(pacs, "port"),
	       jstr(pacs, "retrieve", NULL),
	       json_is_true(json_object_get(pacs, "reachable")) ? "reachable"
	                                                        : "UNREACHABLE",
	       *jstr(pacs, "last_error", NULL) ? ": " : "",
	       jstr(pacs, "last_error", NULL));
	printf("index    %lld patients, %lld studies, %lld series, %lld "
	       "instances (%lld cached)\n",
	       (long long)jint(j, "index.patients"),
	       (long long)jint(j, "index.studies"),
	       (long long)jint(j, "index.series"),
	       (long long)jint(j, "index.instances"),
	       (long long)jint(j, "index.cached"));
	printf("cache    %.1f MB of %.1f MB\n",
	       (double)jint(j, "cache.bytes") / 1e6,
	       (double)jint(j, "cache.max_bytes") / 1e6);
	print_ready(json_object_get(j, "ready"));
	print_jobs(json_object_get(j, "jobs"));
	arr = json_object_get(j, "recent_problems");
	printf("problems %s\n",
	       json_array_size(arr) ? "(latest last)" : "none");
	json_array_foreach(arr, i, v) printf("  %s\n", json_string_value(v));
	json_decref(j);
	return 0;
}

/* True when s is 1..max characters, all from chars. */
static int only(const char *s, const char *chars, size_t max)
{
	size_t n = strlen(s);

	return n > 0 && n <= max && strspn(s, chars) == n;
}

static int cmd_sync(const struct config *cfg, int argc, char **argv)
{
	const char *days = NULL, *study = NULL;
	int all = 0, full = 0;
	char path[256];
	json_t *j;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0)
			all = 1;
		else if (strcmp(argv[i], "--full") == 0)
			full = 1;
		else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc &&
		         only(argv[i + 1], "0123456789", 5))
			days = argv[++i];
		else if (strcmp(argv[i], "--study") == 0 && i + 1 < argc &&
		         only(argv[i + 1], "0123456789.", 64))
			study = argv[++i];
		else {
			usage(stderr);
			return 2;
		}
	}
	snprintf(path, sizeof(path), "/sync?full=%d%s%s%s%s%s", full,
	         all ? "&all=1" : "", days ? "&days=" : "", days ? days : "",
	         study ? "&study=" : "", study ? study : "");
	j = call_json(cfg, "POST", path);
	if (j == NULL)
		return 1;
	printf("synced: %lld studies listed, %lld refreshed, %lld series, "
	       "%lld instances, %lld skipped\n",
	       (long long)jint(j, "studies"), (long long)jint(j, "refreshed"),
	       (long long)jint(j, "series"), (long long)jint(j, "instances"),
	       (long long)jint(j, "skipped"));
	json_decref(j);
	return 0;
}

struct fetch_view {
	int tty;
	json_t *last;
};

static int on_progress_line(void *ctx, const char *line)
{
	struct fetch_view *v = ctx;
	json_t *j = json_loads(line, 0, NULL);
	double secs, mb;
	json_int_t expected;

	if (j == NULL)
		return 0; /* ignore what we cannot read */
	json_decref(v->last);
	v->last = j;
	if (!v->tty)
		return 0;
	secs = json_real_value(json_object_get(j, "elapsed"));
	mb = (double)jint(j, "bytes") / 1e6;
	expected = jint(j, "expected");
	fprintf(stderr, "\r  instances %lld", (long long)jint(j, "received"));
	if (expected > 0)
		fprintf(stderr, "/%lld", (long long)expected);
	fprintf(stderr, "  %.1f MB  %.1f MB/s   ", mb,
	        secs > 0 ? mb / secs : 0.0);
	return 0;
}

static int cmd_fetch(const struct config *cfg, int argc, char **argv)
{
	struct fetch_view v = { isatty(STDERR_FILENO), NULL };
	struct reply r = { NULL, 0, 0, on_progress_line, &v };
	char path[256];
	long status;
	int rc = 1;

	if (argc == 2)
		snprintf(path, sizeof(path), "/fetch?study=%.64s", argv[1]);
	else if (argc == 4 && strcmp(argv[2], "--series") == 0)
		snprintf(path, sizeof(path), "/fetch?study=%.64s&series=%.64s",
		         argv[1], argv[3]);
	else {
		usage(stderr);
		return 2;
	}
	status = call(cfg, "POST", path, &r);
	if (v.tty)
		fputc('\n', stderr);
	if (status == 200 && v.last &&
	    json_is_true(json_object_get(v.last, "done"))) {
		double secs =
		        json_real_value(json_object_get(v.last, "elapsed"));
		double mb = (double)jint(v.last, "bytes") / 1e6;

		if (json_is_true(json_object_get(v.last, "ok"))) {
			printf("fetched %lld instances, %.1f MB in %.2f s "
			       "(%.1f MB/s)\n",
			       (long long)jint(v.last, "received"), mb, secs,
			       secs > 0 ? mb / secs : 0.0);
			rc = 0;
		} else {
			fprintf(stderr, "drimbox: fetch failed: %s\n",
			        jstr(v.last, "error", NULL));
		}
	} else if (status != 0) {
		json_t *j = json_loadb(r.buf ? r.buf : "", r.len, 0, NULL);

		fprintf(stderr, "drimbox: fetch failed: %s\n",
		        j ? jstr(j, "error", NULL) : "no final status");
		json_decref(j);
	}
	json_decref(v.last);
	free(r.buf);
	return rc;
}

/* ---- direct PACS commands --------------------------------------------- */

static int cmd_echo(const struct config *cfg)
{
	struct pacs p;
	struct timespec t0, t1;
	char err[300];

	pacs_init(&p, cfg);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (pacs_echo(&p, err, sizeof(err)) != 0) {
		fprintf(stderr, "drimbox: %s@%s:%ld: %s\n", cfg->pacs_aet,
		        cfg->pacs_host, cfg->pacs_port, err);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("C-ECHO %s@%s:%ld OK (%.1f ms)\n", cfg->pacs_aet, cfg->pacs_host,
	       cfg->pacs_port,
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	               (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	return 0;
}

struct find_out {
	uint32_t keys[64];
	size_t nkeys;
	long matches;
};

static int on_match(void *ctx, const struct dcm_ds *m)
{
	struct find_out *o = ctx;
	char v[1024];

	for (size_t i = 0; i < o->nkeys; i++) {
		int st = dcm_ds_get_string(m, o->keys[i], v, sizeof(v));

		printf("%s%s", i ? "\t" : "",
		       st == DCM_OK || st == DCM_ERR_TOO_LONG ? v : "");
	}
	putchar('\n');
	o->matches++;
	return 0;
}

static int cmd_find(const struct config *cfg, int argc, char **argv)
{
	static const char *const defaults[][8] = {
		{ "StudyInstanceUID", "PatientID", "PatientName", "StudyDate",
		  "AccessionNumber", "ModalitiesInStudy", "StudyDescription",
		  NULL },
		{ "StudyInstanceUID", "SeriesInstanceUID", "Modality",
		  "SeriesNumber", "SeriesDescription",
		  "NumberOfSeriesRelatedInstances", NULL },
		{ "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
		  "SOPClassUID", "InstanceNumber", NULL },
	};
	enum dcm_level level = DCM_LEVEL_STUDY;
	struct find_out o;
	struct dcm_ds *q = dcm_ds_new();
	struct pacs p;
	char err[300];
	int i = 1, rc = 1;

	memset(&o, 0, sizeof(o));
	if (q == NULL)
		return 1;
	if (argc > 2 && strcmp(argv[1], "-L") == 0) {
		if (strcmp(argv[2], "series") == 0)
			level = DCM_LEVEL_SERIES;
		else if (strcmp(argv[2], "image") == 0)
			level = DCM_LEVEL_IMAGE;
		else if (strcmp(argv[2], "study") != 0)
			goto bad;
		i = 3;
	}
	for (const char *const *k = defaults[level]; *k; k++) {
		if (dcm_tag_lookup(*k, &o.keys[o.nkeys]) != DCM_OK)
			goto bad;
		dcm_ds_set_string(q, o.keys[o.nkeys++], "");
	}
	for (; i < argc; i++) {
		char key[128];
		const char *eq = strchr(argv[i], '=');
		uint32_t tag;
		size_t k;

		if (eq == NULL || (size_t)(eq - argv[i]) >= sizeof(key))
			goto bad;
		snprintf(key, sizeof(key), "%.*s", (int)(eq - argv[i]),
		         argv[i]);
		if (dcm_tag_lookup(key, &tag) != DCM_OK) {
			fprintf(stderr, "drimbox: unknown attribute '%s'\n",
			        key);
			goto out;
		}
		if (dcm_ds_set_string(q, tag, eq + 1) != DCM_OK) {
			fprintf(stderr, "drimbox: bad value for %s\n", key);
			goto out;
		}
		for (k = 0; k < o.nkeys && o.keys[k] != tag; k++)
			;
		if (k == o.nkeys && o.nkeys < 64)
			o.keys[o.nkeys++] = tag;
	}
	pacs_init(&p, cfg);
	if (pacs_find(&p, level, q, on_match, &o, err, sizeof(err)) != 0) {
		fprintf(stderr, "drimbox: %s\n", err);
		goto out;
	}
	fprintf(stderr, "%ld match%s\n", o.matches, o.matches == 1 ? "" : "es");
	rc = 0;
	goto out;
bad:
	usage(stderr);
	rc = 2;
out:
	dcm_ds_free(q);
	return rc;
}

/* ---- ls ------------------------------------------------------------------ */

/* The walk builds the JSON tree; text output is printed from it. */
struct ls_state {
	json_t *studies, *study, *series;
};

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

static int ls_row(void *ctx, const struct idx_row *r)
{
	struct ls_state *s = ctx;

	if (s->study == NULL ||
	    strcmp(jstr(s->study, "study_uid", NULL), r->study_uid) != 0) {
		s->study = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:[]}",
		                     "study_uid", r->study_uid, "patient_id",
		                     or_empty(r->patient_id), "patient_name",
		                     or_empty(r->patient_name), "study_date",
		                     or_empty(r->study_date), "accession",
		                     or_empty(r->accession), "modalities",
		                     or_empty(r->modalities), "series");
		s->series = NULL;
		if (json_array_append_new(s->studies, s->study) != 0)
			return -1;
	}
	if (r->series_uid == NULL)
		return 0;
	if (s->series == NULL ||
	    strcmp(jstr(s->series, "series_uid", NULL), r->series_uid) != 0) {
		s->series = json_pack(
		        "{s:s, s:s, s:s, s:[]}", "series_uid", r->series_uid,
		        "modality", or_empty(r->modality), "description",
		        or_empty(r->series_description), "instances");
		if (json_array_append_new(json_object_get(s->study, "series"),
		                          s->series) != 0)
			return -1;
	}
	if (r->sop_uid == NULL)
		return 0;
	return json_array_append_new(
	        json_object_get(s->series, "instances"),
	        json_pack("{s:s, s:b, s:o}", "sop_uid", r->sop_uid, "cached",
	                  r->cache_path != NULL, "path",
	                  r->cache_path ? json_string(r->cache_path)
	                                : json_null()));
}

/* Prints s cut or padded to width characters (UTF-8), then a space. */
static void column(const char *s, int width)
{
	int chars = 0;
	const char *p = s;

	for (; *p; p++) {
		if (((unsigned char)*p & 0xC0) == 0x80)
			continue; /* continuation byte */
		if (chars == width)
			break;
		chars++;
	}
	printf("%.*s%*s ", (int)(p - s), s, width - chars, "");
}

static void ls_print_text(json_t *studies)
{
	size_t i, j, k;
	json_t *st, *se, *in;

	printf("%-8s %-16s %-24s %-12s %-8s %4s %6s %6s  %s\n", "DATE",
	       "PATIENT", "NAME", "ACCESSION", "MOD", "SER", "INST", "CACHED",
	       "STUDY UID");
	json_array_foreach(studies, i, st)
	{
		long n_inst = 0, n_cached = 0;
		json_t *series = json_object_get(st, "series");

		json_array_foreach(series, j, se)
		{
			json_array_foreach(json_object_get(se, "instances"), k,
			                   in)
			{
				n_inst++;
				n_cached += json_is_true(
				        json_object_get(in, "cached"));
			}
		}
		column(jstr(st, "study_date", NULL), 8);
		column(jstr(st, "patient_id", NULL), 16);
		column(jstr(st, "patient_name", NULL), 24);
		column(jstr(st, "accession", NULL), 12);
		column(jstr(st, "modalities", NULL), 8);
		printf("%4zu %6ld %6ld  %s\n", json_array_size(series), n_inst,
		       n_cached, jstr(st, "study_uid", NULL));
	}
}

/* The index, read-only (the daemon may be running); 0 or -1 (said). */
int cli_open_index(const struct config *cfg, struct index **ix)
{
	char path[PATH_MAX], err[512];

	config_index_target(cfg, path, sizeof(path));
	if (cfg->index_url[0] == '\0' && access(path, F_OK) != 0) {
		fprintf(stderr, "drimbox: %s: no index yet (start drimboxd)\n",
		        path);
		return -1;
	}
	if (index_open(path, 1, 1, ix, err, sizeof(err)) != 0) {
		fprintf(stderr, "drimbox: %s\n", err);
		return -1;
	}
	return 0;
}

static int cmd_ls(const struct config *cfg, int argc, char **argv)
{
	struct ls_state s = { NULL, NULL, NULL };
	struct index *ix = NULL;
	const char *study = NULL;
	int as_json = 0, rc = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			as_json = 1;
		else if (study == NULL && argv[i][0] != '-')
			study = argv[i];
		else {
			usage(stderr);
			return 2;
		}
	}
	if (cli_open_index(cfg, &ix) != 0)
		return 1;
	s.studies = json_array();
	if (s.studies == NULL || index_walk(ix, study, ls_row, &s) != 0) {
		fprintf(stderr, "drimbox: cannot read the index\n");
		goto out;
	}
	if (as_json) {
		json_dumpf(s.studies, stdout, JSON_INDENT(1));
		putchar('\n');
	} else {
		ls_print_text(s.studies);
	}
	rc = 0;
out:
	json_decref(s.studies);
	index_close(ix);
	return rc;
}

/* ---- jobs and messages -------------------------------------------------- */

static const char *when(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || localtime_r(&tt, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(buf, len, "-");
	return buf;
}

static int job_row(void *ctx, const struct idx_job *j)
{
	json_t *out = ctx, *payload = json_loads(j->payload, 0, NULL);
	json_t *studies = json_object_get(payload, "studies");
	json_t *orders = json_object_get(payload, "orders");
	char at[32];

	if (json_is_array(out)) {
		json_array_append_new(
		        out,
		        json_pack("{s:I, s:s, s:s, s:i, s:I, s:I, s:I, s:s?, "
		                  "s:s?, s:s?, s:s?, s:O?}",
		                  "id", (json_int_t)j->id, "kind", j->kind,
		                  "state", j->state, "attempts",
		                  (int)j->attempts, "not_before",
		                  (json_int_t)j->not_before, "created_at",
		                  (json_int_t)j->created_at, "updated_at",
		                  (json_int_t)j->updated_at, "reason",
		                  j->last_error, "subject", j->subject,
		                  "parked_for", j->parked_for, "claim",
		                  j->owner, "payload", payload));
	} else {
		const char *acc =
		        jstr(json_array_get(orders, 0), "accession", NULL);
		const char *uid = jstr(json_array_get(studies, 0), "uid", NULL);

		printf("%6lld %-10s %-7s %3ld  %s  %-12s %s%s%s\n",
		       (long long)j->id, j->kind, j->state, j->attempts,
		       when(j->updated_at, at, sizeof(at)), acc[0] ? acc : "-",
		       uid[0] ? uid : "-", j->last_error ? "\n         " : "",
		       j->last_error ? j->last_error : "");
	}
	json_decref(payload);
	return 0;
}

static int message_row(void *ctx, const struct idx_hl7_row *r)
{
	json_t *out = ctx;
	char at[32];

	if (json_is_array(out))
		json_array_append_new(
		        out,
		        json_pack("{s:I, s:I, s:s?, s:s?, s:s?, s:I, s:s, "
		                  "s:s?, s:I}",
		                  "id", (json_int_t)r->id, "received_at",
		                  (json_int_t)r->received_at, "peer", r->peer,
		                  "control_id", r->control_id, "type", r->type,
		                  "size", (json_int_t)r->size, "outcome",
		                  r->outcome, "reason", r->reason, "job",
		                  (json_int_t)r->job));
	else
		printf("%6lld %s %-16s %-20s %s%s%s\n", (long long)r->id,
		       when(r->received_at, at, sizeof(at)),
		       r->type ? r->type : "-",
		       r->control_id ? r->control_id : "-", r->outcome,
		       r->reason ? "  " : "", r->reason ? r->reason : "");
	return 0;
}

/* drimbox jobs retry ID: the index is shared with the daemon (WAL). */
static int cmd_retry(const struct config *cfg, const char *arg)
{
	char path[PATH_MAX], err[512], *end;
	struct index *ix = NULL;
	long long id = strtoll(arg, &end, 10);
	int rc;

	if (*arg == '\0' || *end != '\0' || id <= 0) {
		fprintf(stderr, "drimbox: '%s' is not a job id\n", arg);
		return 2;
	}
	config_index_target(cfg, path, sizeof(path));
	if (index_open(path, 1, 0, &ix, err, sizeof(err)) != 0) {
		fprintf(stderr, "drimbox: %s\n", err);
		return 1;
	}
	rc = index_job_retry(ix, (int64_t)id);
	index_close(ix);
	if (rc < 0) {
		fprintf(stderr, "drimbox: cannot update the index\n");
		return 1;
	}
	if (rc == 0) {
		fprintf(stderr, "drimbox: no parked or failed job %lld\n", id);
		return 1;
	}
	printf("job %lld queued again\n", id);
	return 0;
}

/* drimbox jobs | messages [--json] [-n N] */
static int cmd_list(const struct config *cfg, int argc, char **argv)
{
	int jobs = strcmp(argv[0], "jobs") == 0, rc = 1;
	struct index *ix = NULL;
	json_t *out = NULL;
	long limit = 50;

	if (jobs && argc >= 2 && strcmp(argv[1], "retry") == 0) {
		if (argc != 3) {
			usage(stderr);
			return 2;
		}
		return cmd_retry(cfg, argv[2]);
	}

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			out = out ? out : json_array();
		} else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc &&
		           (limit = strtol(argv[i + 1], NULL, 10)) >= 0) {
			i++;
		} else {
			usage(stderr);
			json_decref(out);
			return 2;
		}
	}
	if (cli_open_index(cfg, &ix) != 0) {
		json_decref(out);
		return 1;
	}
	if ((jobs ? index_jobs(ix, limit, job_row, out)
	          : index_hl7_messages(ix, limit, message_row, out)) != 0) {
		fprintf(stderr, "drimbox: cannot read the index\n");
		goto done;
	}
	if (out != NULL) {
		json_dumpf(out, stdout, JSON_INDENT(1));
		putchar('\n');
	}
	rc = 0;
done:
	json_decref(out);
	index_close(ix);
	return rc;
}

/* `whitelist [FILE]`: verifies the list and prints its DRIMboxes. */
static int cmd_whitelist(const struct config *cfg, int argc, char **argv)
{
	const struct wl_trust trust = { cfg->whitelist_trust,
		                        cfg->whitelist_crl,
		                        cfg->whitelist_signer_cn,
		                        cfg->whitelist_signer_ou };
	const char *file = argc > 1 ? argv[1] : cfg->whitelist_file;
	struct whitelist *wl;
	char err[512];
	int rc;

	if (argc > 2 || file[0] == '\0' || trust.anchors[0] == '\0') {
		fprintf(stderr,
		        "drimbox: whitelist [FILE], with whitelist_trust "
		        "(and whitelist_file or FILE) set\n");
		return 2;
	}
	xmlInitParser();
	if (dmp_global_init(err, sizeof(err)) != 0) {
		fprintf(stderr, "drimbox: %s\n", err);
		return 1;
	}
	rc = whitelist_load(file, &trust, &wl, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "drimbox: %s: REFUSED: %s\n", file, err);
	} else {
		printf("%s: signature valid, signed by %s, generated %s, %zu "
		       "DRIMboxes\n",
		       file, wl->signer, wl->generated, wl->n);
		for (size_t i = 0; i < wl->n; i++)
			printf("  %-4s %-40s %-40s %s\n", wl->domains[i].id,
			       wl->domains[i].db, wl->domains[i].vi,
			       wl->domains[i].name);
		whitelist_free(wl);
	}
	dmp_global_cleanup();
	return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct config cfg;
	const char *conf = getenv("DRIMBOX_CONF");
	char err[1024];
	struct dcm_err de;
	int rc;

	if (argc > 2 && strcmp(argv[1], "-c") == 0) {
		conf = argv[2];
		argc -= 2;
		argv += 2;
	}
	if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	config_defaults(&cfg);
	if (config_load(&cfg, conf ? conf : DEFAULT_CONF, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "drimbox: %s\n", err);
		return 1;
	}
	log_setup(LOG_WARN, stderr);
	argc--;
	argv++;
	if (strcmp(argv[0], "status") == 0 || strcmp(argv[0], "sync") == 0 ||
	    strcmp(argv[0], "fetch") == 0) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		rc = strcmp(argv[0], "status") == 0
		             ? cmd_status(&cfg, argc, argv)
		     : strcmp(argv[0], "sync") == 0
		             ? cmd_sync(&cfg, argc, argv)
		             : cmd_fetch(&cfg, argc, argv);
		curl_global_cleanup();
		return rc;
	}
	if (strcmp(argv[0], "ls") == 0)
		return cmd_ls(&cfg, argc, argv);
	if (strcmp(argv[0], "whitelist") == 0)
		return cmd_whitelist(&cfg, argc, argv);
	if (strcmp(argv[0], "jobs") == 0 || strcmp(argv[0], "messages") == 0)
		return cmd_list(&cfg, argc, argv);
	if (strcmp(argv[0], "audit") == 0)
		return cli_audit(&cfg, argc, argv);
	if (strcmp(argv[0], "stats") == 0)
		return cli_stats(&cfg, argc, argv);
	if (strcmp(argv[0], "echo") != 0 && strcmp(argv[0], "find") != 0) {
		usage(stderr);
		return 2;
	}
	if (dcm_global_init(&de) != DCM_OK) {
		fprintf(stderr, "drimbox: DICOM: %s\n", de.msg);
		return 1;
	}
	rc = strcmp(argv[0], "echo") == 0 ? cmd_echo(&cfg)
	                                  : cmd_find(&cfg, argc, argv);
	dcm_global_cleanup();
	return rc;
}
