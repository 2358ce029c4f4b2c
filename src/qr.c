/*
 * qr.c - see qr.h. A workstation is "AET@host:port"; only those listed
 * may query or retrieve, and only studies another DRIMbox holds are
 * answered (the site's own studies are its PACS's to offer).
 */
#include "qr.h"
#include "cache.h"
#include "config.h"
#include "grow.h"
#include "index.h"
#include "log.h"
#include "remote.h"
#include "retrieve.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKSTATIONS_MAX 32
#define QUERY_RETRIEVE_LEVEL 0x00080052

struct workstation {
	char aet[17], host[256];
	int port;
};

struct qr {
	const struct config *cfg;
	struct index *ix;
	const struct cache *cache;
	struct retriever *rt;
	struct remote *remote;
	struct workstation ws[WORKSTATIONS_MAX];
	size_t nws;
};

/* Parses "AET@host:port, ..."; -1 with err on a malformed entry. */
static int parse_workstations(struct qr *q, const char *list, char *err,
                              size_t errlen)
{
	char *copy = strdup(list), *save = NULL, *tok;
	int rc = 0;

	if (copy == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (tok = strtok_r(copy, ", ", &save); tok && rc == 0;
	     tok = strtok_r(NULL, ", ", &save)) {
		struct workstation *w = &q->ws[q->nws];
		char *at = strchr(tok, '@'), *colon = strrchr(tok, ':'), *end;
		long port = colon ? strtol(colon + 1, &end, 10) : 0;

		if (q->nws == WORKSTATIONS_MAX || at == NULL || colon < at ||
		    at == tok || at - tok > 16 || colon - at - 1 <= 0 ||
		    (size_t)(colon - at - 1) >= sizeof(w->host) || *end ||
		    port <= 0 || port > 65535) {
			snprintf(err, errlen,
			         "qr_workstations: '%.80s' is not "
			         "AET@host:port (at most %d)",
			         tok, WORKSTATIONS_MAX);
			rc = -1;
			break;
		}
		snprintf(w->aet, sizeof(w->aet), "%.*s", (int)(at - tok), tok);
		snprintf(w->host, sizeof(w->host), "%.*s",
		         (int)(colon - at - 1), at + 1);
		w->port = (int)port;
		q->nws++;
	}
	free(copy);
	return rc;
}

static const struct workstation *workstation(const struct qr *q,
                                             const char *aet)
{
	for (size_t i = 0; i < q->nws; i++)
		if (strcmp(q->ws[i].aet, aet) == 0)
			return &q->ws[i];
	return NULL;
}

static int refuse(struct dcm_err *err, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* err says why, and the log; -1. */
static int refuse(struct dcm_err *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	log_warn(LOGC_DICOM, "query/retrieve refused: %s", err->msg);
	return -1;
}

/* ---- C-FIND ------------------------------------------------------------ */

/* The keys answered, with the level they belong to. */
static const struct {
	uint32_t tag;
	enum idx_level level;
} answered[] = {
	{ 0x00100010, IDX_STUDY },    { 0x00100020, IDX_STUDY },
	{ 0x00100021, IDX_STUDY },    { 0x00100030, IDX_STUDY },
	{ 0x00100040, IDX_STUDY },    { 0x0020000D, IDX_STUDY },
	{ 0x00080020, IDX_STUDY },    { 0x00080030, IDX_STUDY },
	{ 0x00080050, IDX_STUDY },    { 0x00081030, IDX_STUDY },
	{ 0x00080061, IDX_STUDY },    { 0x00080090, IDX_STUDY },
	{ 0x00200010, IDX_STUDY },    { 0x00201206, IDX_STUDY },
	{ 0x00201208, IDX_STUDY },    { 0x0020000E, IDX_SERIES },
	{ 0x00080060, IDX_SERIES },   { 0x00200011, IDX_SERIES },
	{ 0x0008103E, IDX_SERIES },   { 0x00180015, IDX_SERIES },
	{ 0x00201209, IDX_SERIES },   { 0x00080018, IDX_INSTANCE },
	{ 0x00080016, IDX_INSTANCE }, { 0x00200013, IDX_INSTANCE },
};
#define NANSWERED (sizeof(answered) / sizeof(answered[0]))

/* A match's value of an answered key, as text (buf for numbers). */
static const char *value_of(const struct idx_match *m, uint32_t tag, char *buf,
                            size_t cap)
{
	long n = -1;

	switch (tag) {
	case 0x00100010:
		return m->patient_name;
	case 0x00100020:
		return m->patient_id;
	case 0x00100021:
		return m->issuer;
	case 0x00100030:
		return m->birth_date;
	case 0x00100040:
		return m->sex;
	case 0x0020000D:
		return m->study_uid;
	case 0x00080020:
		return m->study_date;
	case 0x00080030:
		return m->study_time;
	case 0x00080050:
		return m->accession;
	case 0x00081030:
		return m->study_description;
	case 0x00080061:
		return m->modalities;
	case 0x00080090:
		return m->referring;
	case 0x00200010:
		return m->study_id;
	case 0x0020000E:
		return m->series_uid;
	case 0x00080060:
		return m->modality;
	case 0x0008103E:
		return m->series_description;
	case 0x00180015:
		return m->body_part;
	case 0x00080018:
		return m->sop_uid;
	case 0x00080016:
		return m->sop_class;
	case 0x00201206:
		n = m->study_series;
		break;
	case 0x00201208:
		n = m->study_instances;
		break;
	case 0x00200011:
		n = m->series_number;
		break;
	case 0x00201209:
		n = m->series_instances;
		break;
	case 0x00200013:
		n = m->instance_number;
		break;
	}
	if (n < 0)
		return NULL;
	snprintf(buf, cap, "%ld", n);
	return buf;
}

struct find {
	struct qr *q;
	const struct dcm_ds *query;
	enum idx_level level;
	int patients; /* PATIENT level: one answer per patient */
	char level_name[16];
	/* the answers, told once the index is free: whether another
	 * DRIMbox holds a study is asked of the index too */
	struct answer {
		char study[65], patient[130];
		struct dcm_ds *ds;
		int told;
	} * v;
	size_t n, cap;
	int oom;
};

static int on_match(void *ctx, const struct idx_match *m)
{
	struct find *f = ctx;
	struct dcm_ds *a;
	char probe[8], num[24];

	if (GROW(f->v, f->n, f->cap, 32) != 0)
		return f->oom = 1;
	snprintf(f->v[f->n].patient, sizeof(f->v[0].patient), "%s^%s",
	         m->patient_id ? m->patient_id : "",
	         m->issuer ? m->issuer : "");
	if ((a = dcm_ds_new()) == NULL)
		return f->oom = 1;
	dcm_ds_set_string(a, 0x00080005, "ISO_IR 192");
	dcm_ds_set_string(a, QUERY_RETRIEVE_LEVEL, f->level_name);
	dcm_ds_set_string(a, 0x00080054, f->q->cfg->dicom_aet);
	for (size_t i = 0; i < NANSWERED; i++) {
		const char *v;
		int st = dcm_ds_get_string(f->query, answered[i].tag, probe,
		                           sizeof(probe));

		/* asked for, at this level or above */
		if (st == DCM_ERR_NOT_FOUND || answered[i].level > f->level ||
		    (f->patients && answered[i].tag >> 16 != 0x0010))
			continue;
		v = value_of(m, answered[i].tag, num, sizeof(num));
		dcm_ds_set_string(a, answered[i].tag, v ? v : "");
	}
	snprintf(f->v[f->n].study, sizeof(f->v[0].study), "%s", m->study_uid);
	f->v[f->n].told = 0;
	f->v[f->n++].ds = a;
	return 0;
}

static int find(void *ctx, const char *calling, const struct dcm_ds *query,
                void (*emit)(void *ectx, const struct dcm_ds *answer),
                void *ectx, struct dcm_err *err)
{
	struct qr *q = ctx;
	struct find f = { .q = q, .query = query };
	struct idx_filter filters[NANSWERED];
	char values[NANSWERED][256], why[200] = "";
	struct idx_query iq = { 0 };
	size_t n = 0;
	long answers = 0;
	int rc;

	if (workstation(q, calling) == NULL)
		return refuse(err, "AE '%s' is not in qr_workstations",
		              calling);
	if (dcm_ds_get_string(query, QUERY_RETRIEVE_LEVEL, f.level_name,
	                      sizeof(f.level_name)) != DCM_OK)
		return refuse(err, "no QueryRetrieveLevel");
	if (strcmp(f.level_name, "PATIENT") == 0)
		f.level = IDX_STUDY, f.patients = 1;
	else if (strcmp(f.level_name, "STUDY") == 0)
		f.level = IDX_STUDY;
	else if (strcmp(f.level_name, "SERIES") == 0)
		f.level = IDX_SERIES;
	else if (strcmp(f.level_name, "IMAGE") == 0)
		f.level = IDX_INSTANCE;
	else
		return refuse(err, "QueryRetrieveLevel '%s' is not known",
		              f.level_name);
	/* the keys with a value are matching keys */
	for (size_t i = 0; i < NANSWERED; i++) {
		int st = dcm_ds_get_string(query, answered[i].tag, values[n],
		                           sizeof(values[n]));

		if (st == DCM_ERR_TOO_LONG)
			return refuse(err, "%08X: the value is too long",
			              (unsigned)answered[i].tag);
		if (st != DCM_OK || values[n][0] == '\0' ||
		    strcmp(values[n], "*") == 0 ||
		    !index_qido_supports(f.level, answered[i].tag))
			continue;
		filters[n].tag = answered[i].tag;
		filters[n].value = values[n];
		n++;
	}
	iq.level = f.level;
	iq.filters = filters;
	iq.nfilters = n;
	rc = index_qido(q->ix, &iq, on_match, &f, why, sizeof(why));
	if (rc == 0 && f.oom) {
		snprintf(why, sizeof(why), "out of memory");
		rc = -1;
	}
	for (size_t i = 0; i < f.n; i++) {
		int told = 0; /* PATIENT level: once per patient */

		for (size_t k = 0; f.patients && k < i && !told; k++)
			told = f.v[k].told &&
			       strcmp(f.v[k].patient, f.v[i].patient) == 0;
		if (rc == 0 && !told && remote_holds(q->remote, f.v[i].study)) {
			emit(ectx, f.v[i].ds);
			f.v[i].told = 1;
			answers++;
		}
		dcm_ds_free(f.v[i].ds);
	}
	free(f.v);
	if (rc != 0)
		return refuse(err, "%s", rc == -1 ? why : "index unreadable");
	log_info(LOGC_DICOM, "C-FIND from %s at %s level: %ld answers", calling,
	         f.level_name, answers);
	return 0;
}

/* ---- C-MOVE, C-GET ----------------------------------------------------- */

struct pick {
	const struct qr *q;
	const char *series, *sops; /* NULL: every one */
	char **paths;
	size_t n, cap, uncached;
	int oom;
};

/* 1 when uid is one of the '\'-separated list. */
static int listed(const char *list, const char *uid)
{
	size_t n = strlen(uid);

	for (const char *p = list; p && *p;) {
		size_t len = strcspn(p, "\\");

		if (len == n && strncmp(p, uid, n) == 0)
			return 1;
		p += len + (p[len] == '\\');
	}
	return 0;
}

static int pick_row(void *ctx, const struct idx_row *row)
{
	struct pick *p = ctx;
	char path[4096];

	if (row->sop_uid == NULL ||
	    (p->series && !listed(p->series, row->series_uid)) ||
	    (p->sops && !listed(p->sops, row->sop_uid)))
		return 0;
	if (row->cache_path == NULL) {
		p->uncached++;
		return 0;
	}
	if (cache_abs_path(p->q->cache, row->cache_path, path, sizeof(path)) !=
	    0)
		return 0;
	if (GROW(p->paths, p->n, p->cap, 64) != 0)
		return p->oom = 1;
	if ((p->paths[p->n] = strdup(path)) == NULL)
		return p->oom = 1;
	p->n++;
	return 0;
}

static void pick_free(struct pick *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->paths[i]);
	free(p->paths);
	p->paths = NULL;
	p->n = p->cap = p->uncached = 0;
}

static int select_files(void *ctx, const char *calling,
                        const struct dcm_ds *query, char ***paths, size_t *n,
                        struct dcm_err *err)
{
	struct qr *q = ctx;
	char study[65], series[4096], sops[16384];
	struct pick p = { .q = q };
	struct retrieve_status rs;
	int st;

	*paths = NULL;
	*n = 0;
	if (workstation(q, calling) == NULL)
		return refuse(err, "AE '%s' is not in qr_workstations",
		              calling);
	if (dcm_ds_get_string(query, 0x0020000D, study, sizeof(study)) !=
	            DCM_OK ||
	    strchr(study, '\\') != NULL || study[0] == '\0')
		return refuse(err, "one StudyInstanceUID is required");
	if (!remote_holds(q->remote, study))
		return refuse(err,
		              "study %s was not pulled from another DRIMbox",
		              study);
	st = dcm_ds_get_string(query, 0x0020000E, series, sizeof(series));
	if (st == DCM_OK && series[0])
		p.series = series;
	if (st != DCM_ERR_TOO_LONG &&
	    (st = dcm_ds_get_string(query, 0x00080018, sops, sizeof(sops))) ==
	            DCM_OK &&
	    sops[0])
		p.sops = sops;
	if (st == DCM_ERR_TOO_LONG) /* never the whole study instead */
		return refuse(err, "too many UIDs in one request");
	if (index_walk(q->ix, study, pick_row, &p) != 0 || p.oom)
		goto broken;
	if (p.uncached > 0) { /* pulled first */
		pick_free(&p);
		if (retriever_fetch(q->rt, study,
		                    p.series && !strchr(p.series, '\\')
		                            ? p.series
		                            : NULL,
		                    1000, NULL, NULL, &rs) != 0)
			return refuse(err, "the pull failed: %s", rs.error);
		if (index_walk(q->ix, study, pick_row, &p) != 0 || p.oom)
			goto broken;
	}
	log_info(LOGC_DICOM, "retrieve by %s of study=%s: %zu instances",
	         calling, study, p.n);
	*paths = p.paths;
	*n = p.n;
	return 0;
broken:
	pick_free(&p);
	return refuse(err, "the index cannot be read");
}

static int destination(void *ctx, const char *calling, const char *dest,
                       char *host, size_t hostcap, int *port)
{
	const struct qr *q = ctx;
	const struct workstation *w = workstation(q, dest);

	if (w == NULL || workstation(q, calling) == NULL)
		return -1;
	snprintf(host, hostcap, "%s", w->host);
	*port = w->port;
	return 0;
}

struct qr *qr_new(const struct config *cfg, struct index *ix,
                  const struct cache *cache, struct retriever *rt,
                  struct remote *remote, struct dcm_qr_handler *h, char *err,
                  size_t errlen)
{
	struct qr *q = calloc(1, sizeof(*q));

	memset(h, 0, sizeof(*h));
	if (q == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	*q = (struct qr){
		.cfg = cfg, .ix = ix, .cache = cache, .rt = rt, .remote = remote
	};
	if (parse_workstations(q, cfg->qr_workstations, err, errlen) != 0) {
		free(q);
		return NULL;
	}
	if (q->nws > 0)
		*h = (struct dcm_qr_handler){ find, select_files, destination,
			                      q };
	return q;
}

int qr_workstation(const struct qr *q, const char *aet)
{
	return q != NULL && workstation(q, aet) != NULL;
}

void qr_free(struct qr *q)
{
	free(q);
}
