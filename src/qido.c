/*
 * qido.c - QIDO-RS (PS3.18 10.6): matching keys, includefield,
 * fuzzymatching, limit and offset from the query string; answered from the
 * index as a DICOM JSON array. A study the index does not know is looked
 * up in the PACS first.
 */
#include "config.h"
#include "dcm.h"
#include "dicomweb.h"
#include "index.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FILTERS_MAX 32
#define INCLUDES_MAX 64
#define LIMIT_MAX 10000 /* and the default: more gives a Warning */
#define OFFSET_MAX 100000000L
#define VALUE_MAX 1024

struct params {
	struct idx_filter filters[FILTERS_MAX];
	size_t nfilters;
	uint32_t includes[INCLUDES_MAX];
	size_t nincludes;
	int include_all, fuzzy, limit_given;
	long limit, offset;
	char error[256]; /* first error found, or "" */
};

static void param_error(struct params *p, const char *fmt, const char *arg)
{
	if (p->error[0] == '\0')
		snprintf(p->error, sizeof(p->error), fmt, arg);
}

static int parse_long(const char *v, long max, long *out)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < 0 || n > max)
		return -1;
	*out = n;
	return 0;
}

static void add_includes(struct params *p, const char *v)
{
	char buf[VALUE_MAX], *save = NULL, *tok;

	snprintf(buf, sizeof(buf), "%s", v);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		uint32_t tag;

		if (strcmp(tok, "all") == 0) {
			p->include_all = 1;
		} else if (dcm_tag_lookup(tok, &tag) != DCM_OK) {
			param_error(p,
			            "includefield: unknown attribute '%.64s'",
			            tok);
		} else if (p->nincludes < INCLUDES_MAX) {
			p->includes[p->nincludes++] = tag;
		}
	}
}

static enum MHD_Result on_param(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *value)
{
	struct params *p = cls;
	uint32_t tag;

	(void)kind;
	if (value == NULL)
		value = "";
	if (strlen(value) >= VALUE_MAX) {
		param_error(p, "%s: value too long", key);
	} else if (strcmp(key, "includefield") == 0) {
		add_includes(p, value);
	} else if (strcmp(key, "fuzzymatching") == 0) {
		p->fuzzy = strcasecmp(value, "true") == 0;
	} else if (strcmp(key, "limit") == 0) {
		if (parse_long(value, LIMIT_MAX, &p->limit) != 0 ||
		    p->limit == 0)
			param_error(p,
			            "limit: '%.32s' is not an integer "
			            "1..10000",
			            value);
		p->limit_given = 1;
	} else if (strcmp(key, "offset") == 0) {
		if (parse_long(value, OFFSET_MAX, &p->offset) != 0)
			param_error(p,
			            "offset: '%.32s' is not an integer "
			            "0..100000000",
			            value);
	} else if (dcm_tag_lookup(key, &tag) != DCM_OK) {
		param_error(p, "unknown query parameter '%.64s'", key);
	} else if (p->nfilters == FILTERS_MAX) {
		param_error(p, "%s", "too many matching keys");
	} else {
		p->filters[p->nfilters].tag = tag;
		p->filters[p->nfilters++].value = value;
	}
	return MHD_YES;
}

/* ---- DICOM JSON building --------------------------------------------- */

struct result;
static int keep(const struct result *r, uint32_t tag);

static void put(const struct result *r, json_t *o, uint32_t tag, const char *vr,
                json_t *value)
{
	if (!keep(r, tag)) {
		json_decref(value);
		return;
	}
	char key[9];
	json_t *attr = json_pack("{s:s}", "vr", vr);

	snprintf(key, sizeof(key), "%08X", tag);
	if (value != NULL)
		json_object_set_new(attr, "Value", json_pack("[o]", value));
	json_object_set_new(o, key, attr);
}

static void put_str(const struct result *r, json_t *o, uint32_t tag,
                    const char *vr, const char *v)
{
	put(r, o, tag, vr, v && *v ? json_string(v) : NULL);
}

static void put_pn(const struct result *r, json_t *o, uint32_t tag,
                   const char *v)
{
	put(r, o, tag, "PN",
	    v && *v ? json_pack("{s:s}", "Alphabetic", v) : NULL);
}

static void put_int(const struct result *r, json_t *o, uint32_t tag,
                    const char *vr, long v)
{
	put(r, o, tag, vr, v >= 0 ? json_integer(v) : NULL);
}

/* A multi-valued CS ("CT\MR") as several values. */
static void put_multi(const struct result *r, json_t *o, uint32_t tag,
                      const char *v)
{
	char key[9], buf[256], *save = NULL, *tok;
	json_t *attr, *vals;

	if (!keep(r, tag))
		return;
	attr = json_pack("{s:s}", "vr", "CS");
	vals = json_array();
	snprintf(buf, sizeof(buf), "%s", v ? v : "");
	for (tok = strtok_r(buf, "\\", &save); tok;
	     tok = strtok_r(NULL, "\\", &save))
		json_array_append_new(vals, json_string(tok));
	if (json_array_size(vals) > 0)
		json_object_set_new(attr, "Value", vals);
	else
		json_decref(vals);
	snprintf(key, sizeof(key), "%08X", tag);
	json_object_set_new(o, key, attr);
}

struct result {
	struct dw_request *rq;
	const struct params *p;
	enum idx_level level;
	json_t *array;
	long count;
	int full_metadata; /* instance attributes beyond the image tags */
};

/* Every attribute of an instance's DICOM JSON except bulk data. */
static void merge_metadata(const struct result *r, json_t *o,
                           const char *metadata)
{
	json_t *md = json_loads(metadata, 0, NULL), *v;
	const char *k;

	json_object_foreach(md, k, v)
	{
		if (json_object_get(v, "BulkDataURI") == NULL &&
		    keep(r, (uint32_t)strtoul(k, NULL, 16)))
			json_object_set(o, k, v);
	}
	json_decref(md);
}

/*
 * The first number of attribute `tag` in DICOM JSON text, found without
 * parsing it all (the text is ours: compact, as dcm_ds_to_json writes
 * it). -1 when absent.
 */
static long json_first_number(const char *json, const char *tag)
{
	char key[16];
	const char *p, *end;

	snprintf(key, sizeof(key), "\"%s\":{", tag);
	p = strstr(json, key);
	if (p == NULL)
		return -1;
	end = strchr(p, '}');
	p = strstr(p, "\"Value\":[");
	if (p == NULL || end == NULL || p > end)
		return -1;
	return strtol(p + 9, NULL, 10);
}

/* The image attributes a default instance search returns (PS3.18). */
static void put_image_tags(const struct result *r, json_t *o,
                           const char *metadata)
{
	static const struct {
		uint32_t tag;
		const char *hex, *vr;
	} t[] = {
		{ 0x00280010, "00280010", "US" },
		{ 0x00280011, "00280011", "US" },
		{ 0x00280100, "00280100", "US" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		long v = json_first_number(metadata, t[i].hex);

		if (v >= 0)
			put_int(r, o, t[i].tag, t[i].vr, v);
	}
}

/* True when an instance search needs more than put_image_tags() gives. */
static int needs_full_metadata(const struct params *p)
{
	static const uint32_t cheap[] = {
		0x00080005, 0x00080016, 0x00080018, 0x00080056, 0x00081190,
		0x00200013, 0x00280010, 0x00280011, 0x00280100, 0x00280008,
		0x0020000D, 0x0020000E, 0x00080060, 0x0008103E, 0x00200011,
	};

	if (p->include_all)
		return 1;
	for (size_t i = 0; i < p->nincludes; i++) {
		size_t j = 0;

		while (j < sizeof(cheap) / sizeof(cheap[0]) &&
		       cheap[j] != p->includes[i])
			j++;
		if (j == sizeof(cheap) / sizeof(cheap[0]))
			return 1;
	}
	return 0;
}

/* Everything the index holds for a match at its level. */
static json_t *match_all(struct result *r, const struct idx_match *m)
{
	json_t *o = json_object();
	char url[1024];

	put_str(r, o, 0x00080005, "CS", "ISO_IR 192");
	put_str(r, o, 0x00080056, "CS", "ONLINE");
	put_str(r, o, 0x0020000D, "UI", m->study_uid);
	put_str(r, o, 0x00080020, "DA", m->study_date);
	put_str(r, o, 0x00080030, "TM", m->study_time);
	put_str(r, o, 0x00080050, "SH", m->accession);
	put_multi(r, o, 0x00080061, m->modalities);
	put_pn(r, o, 0x00080090, m->referring);
	put_str(r, o, 0x00081030, "LO", m->study_description);
	put_pn(r, o, 0x00100010, m->patient_name);
	put_str(r, o, 0x00100020, "LO", m->patient_id);
	put_str(r, o, 0x00100021, "LO", m->issuer);
	put_str(r, o, 0x00100030, "DA", m->birth_date);
	put_str(r, o, 0x00100040, "CS", m->sex);
	put_str(r, o, 0x00200010, "SH", m->study_id);
	put_int(r, o, 0x00201206, "IS", m->study_series);
	put_int(r, o, 0x00201208, "IS", m->study_instances);
	if (r->level == IDX_STUDY) {
		snprintf(url, sizeof(url), "%s/studies/%s", r->rq->base,
		         m->study_uid);
		put_str(r, o, 0x00081190, "UR", url);
		return o;
	}
	put_str(r, o, 0x0020000E, "UI", m->series_uid);
	put_str(r, o, 0x00080060, "CS", m->modality);
	put_str(r, o, 0x0008103E, "LO", m->series_description);
	put_str(r, o, 0x00180015, "CS", m->body_part);
	put_int(r, o, 0x00200011, "IS", m->series_number);
	put_int(r, o, 0x00201209, "IS", m->series_instances);
	if (r->level == IDX_SERIES) {
		snprintf(url, sizeof(url), "%s/studies/%s/series/%s",
		         r->rq->base, m->study_uid, m->series_uid);
		put_str(r, o, 0x00081190, "UR", url);
		return o;
	}
	/* instance: its own metadata when cached, then the index's columns */
	if (m->metadata != NULL && r->full_metadata)
		merge_metadata(r, o, m->metadata);
	else if (m->metadata != NULL)
		put_image_tags(r, o, m->metadata);
	put_str(r, o, 0x00080018, "UI", m->sop_uid);
	put_str(r, o, 0x00080016, "UI", m->sop_class);
	put_int(r, o, 0x00200013, "IS", m->instance_number);
	if (m->frames > 1)
		put_int(r, o, 0x00280008, "IS", m->frames);
	snprintf(url, sizeof(url), "%s/studies/%s/series/%s/instances/%s",
	         r->rq->base, m->study_uid, m->series_uid, m->sop_uid);
	put_str(r, o, 0x00081190, "UR", url);
	return o;
}

/* PS3.18 Tables 10.6.3-3 to -5: what a search returns by default. */
static const uint32_t default_tags[3][24] = {
	{ 0x00080005, 0x00080020, 0x00080030, 0x00080050, 0x00080056,
	  0x00080061, 0x00080090, 0x00081190, 0x00100010, 0x00100020,
	  0x00100030, 0x00100040, 0x0020000D, 0x00200010, 0x00201206,
	  0x00201208, 0x00081030, 0 },
	{ 0x00080005, 0x00080060, 0x0008103E, 0x00081190, 0x0020000E,
	  0x00200011, 0x00201209, 0x0020000D, 0 },
	{ 0x00080005, 0x00080016, 0x00080018, 0x00080056, 0x00081190,
	  0x00200013, 0x00280010, 0x00280011, 0x00280100, 0x00280008,
	  0x0020000D, 0x0020000E, 0 },
};

static int keep(const struct result *r, uint32_t tag)
{
	const struct params *p = r->p;

	if (p->include_all)
		return 1;
	for (const uint32_t *t = default_tags[r->level]; *t; t++)
		if (*t == tag)
			return 1;
	for (size_t i = 0; i < p->nincludes; i++)
		if (p->includes[i] == tag)
			return 1;
	for (size_t i = 0; i < p->nfilters; i++)
		if (p->filters[i].tag == tag)
			return 1;
	return 0;
}

static int on_match(void *ctx, const struct idx_match *m)
{
	struct result *r = ctx;
	json_t *o = match_all(r, m);

	if (o == NULL)
		return -1;
	r->count++;
	return json_array_append_new(r->array, o);
}

/* The StudyInstanceUID a search is about, if exactly one. */
static const char *one_study(const struct dw_request *rq,
                             const struct params *p)
{
	if (rq->study)
		return rq->study;
	for (size_t i = 0; i < p->nfilters; i++)
		if (p->filters[i].tag == 0x0020000D &&
		    strpbrk(p->filters[i].value, ",\\*?") == NULL &&
		    p->filters[i].value[0] != '\0')
			return p->filters[i].value;
	return NULL;
}

enum MHD_Result qido_handle(struct dw_request *rq)
{
	struct params p;
	struct idx_query q;
	struct result r;
	const char *study;
	char err[256];
	char *body;
	int rc;

	memset(&p, 0, sizeof(p));
	MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, on_param,
	                          &p);
	if (p.error[0])
		return dw_error(rq->conn, 400, "%s", p.error);
	study = one_study(rq, &p);
	if (study != NULL) {
		int known = dw_ensure_study(rq, study);

		if (known < 0 && rq->study)
			return dw_error(rq->conn, 502,
			                "study %s: the PACS cannot be asked",
			                study);
		if (known == 0 && rq->study)
			return dw_error(rq->conn, 404, "no study %s", study);
	}
	memset(&q, 0, sizeof(q));
	q.level = (enum idx_level)rq->level;
	q.study_uid = rq->study;
	q.series_uid = rq->series;
	q.filters = p.filters;
	q.nfilters = p.nfilters;
	q.fuzzy = p.fuzzy;
	/* one more than asked tells whether there were more results */
	q.limit = (p.limit_given ? p.limit : LIMIT_MAX) + 1;
	q.offset = p.offset;
	memset(&r, 0, sizeof(r));
	r.rq = rq;
	r.p = &p;
	r.level = q.level;
	r.full_metadata = needs_full_metadata(&p);
	r.array = json_array();
	rc = index_qido(rq->env->ix, &q, on_match, &r, err, sizeof(err));
	if (rc != 0) {
		json_decref(r.array);
		return rc == -1 ? dw_error(rq->conn, 400, "%s", err)
		                : dw_error(rq->conn, 500, "index unreadable");
	}
	if (r.count == q.limit)
		json_array_remove(r.array, json_array_size(r.array) - 1);
	body = json_dumps(r.array, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(r.array);
	if (body == NULL)
		return dw_error(rq->conn, 500, "out of memory");
	if (r.count == q.limit && !p.limit_given)
		log_info(LOGC_HTTP, "search truncated at %d results",
		         LIMIT_MAX);
	return dw_send_json(rq->conn, body, strlen(body),
	                    "application/dicom+json", NULL);
}
