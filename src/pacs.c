/*
 * pacs.c - see pacs.h. One association per operation; sync queries
 * collect each level's matches before asking the next level (a C-FIND
 * cannot be nested in another's callback on one association).
 */
#include "pacs.h"
#include "attrs.h"
#include "config.h"
#include "index.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#define T_PATIENT_NAME DCM_TAG(0x0010, 0x0010)
#define T_PATIENT_ID DCM_TAG(0x0010, 0x0020)
#define T_ISSUER DCM_TAG(0x0010, 0x0021)
#define T_BIRTH DCM_TAG(0x0010, 0x0030)
#define T_SEX DCM_TAG(0x0010, 0x0040)
#define T_STUDY_DATE DCM_TAG(0x0008, 0x0020)
#define T_STUDY_TIME DCM_TAG(0x0008, 0x0030)
#define T_ACCESSION DCM_TAG(0x0008, 0x0050)
#define T_MODALITIES DCM_TAG(0x0008, 0x0061)
#define T_REFERRING DCM_TAG(0x0008, 0x0090)
#define T_STUDY_DESC DCM_TAG(0x0008, 0x1030)
#define T_STUDY_UID DCM_TAG(0x0020, 0x000D)
#define T_STUDY_ID DCM_TAG(0x0020, 0x0010)
#define T_NUM_SERIES DCM_TAG(0x0020, 0x1206)
#define T_NUM_STUDY_INST DCM_TAG(0x0020, 0x1208)
#define T_SERIES_UID DCM_TAG(0x0020, 0x000E)
#define T_MODALITY DCM_TAG(0x0008, 0x0060)
#define T_SERIES_NUMBER DCM_TAG(0x0020, 0x0011)
#define T_SERIES_DESC DCM_TAG(0x0008, 0x103E)
#define T_BODY_PART DCM_TAG(0x0018, 0x0015)
#define T_NUM_SERIES_INST DCM_TAG(0x0020, 0x1209)
#define T_SOP_UID DCM_TAG(0x0008, 0x0018)
#define T_SOP_CLASS DCM_TAG(0x0008, 0x0016)
#define T_INSTANCE_NUMBER DCM_TAG(0x0020, 0x0013)

void pacs_init(struct pacs *p, const struct config *cfg)
{
	p->peer.host = cfg->pacs_host;
	p->peer.port = (int)cfg->pacs_port;
	p->peer.called_aet = cfg->pacs_aet;
	p->peer.calling_aet = cfg->dicom_aet;
	p->peer.timeout_s = (int)cfg->pacs_timeout;
	p->use_get = strcmp(cfg->pacs_retrieve, "get") == 0;
	p->dest_aet = cfg->dicom_aet;
}

static int fail(char *err, size_t errlen, const char *what, int st,
                const struct dcm_err *e)
{
	snprintf(err, errlen, "%s: %s: %s", what, dcm_strerror(st), e->msg);
	return -1;
}

int pacs_echo(const struct pacs *p, char *err, size_t errlen)
{
	struct dcm_assoc *as = NULL;
	struct dcm_err e = { "" };
	int st;

	st = dcm_assoc_open(&p->peer, DCM_SVC_ECHO, &as, &e);
	if (st == DCM_OK)
		st = dcm_echo(as, &e);
	dcm_assoc_close(as);
	return st == DCM_OK ? 0 : fail(err, errlen, "C-ECHO", st, &e);
}

int pacs_find(const struct pacs *p, enum dcm_level level,
              const struct dcm_ds *query, dcm_find_cb cb, void *ctx, char *err,
              size_t errlen)
{
	struct dcm_assoc *as = NULL;
	struct dcm_err e = { "" };
	int st;

	st = dcm_assoc_open(&p->peer, DCM_SVC_FIND, &as, &e);
	if (st == DCM_OK)
		st = dcm_find(as, level, query, cb, ctx, &e);
	dcm_assoc_close(as);
	return st == DCM_OK ? 0 : fail(err, errlen, "C-FIND", st, &e);
}

/* ---- sync -------------------------------------------------------------- */

/*
 * Text buffers hold a value's maximum length in characters as UTF-8 (up to
 * 4 bytes each): LO 64 -> 257, SH 16 -> 65, PN 3 x 64 -> 1024.
 */
struct study_row {
	char uid[65], pid[257], issuer[257], name[1024], birth[17], sex[17];
	char date[17], time[17], acc[65], desc[257], mods[65], ref[1024];
	char sid[65];
	long nseries, ninst;
};

struct series_row {
	char uid[65], modality[17], desc[257], body[65];
	long number, ninst;
};

struct inst_row {
	char uid[65], cls[65];
	long number;
};

/* A growable array of fixed-size rows. */
struct rows {
	void *v;
	size_t n, cap, size;
	long skipped;
};

static void *rows_add(struct rows *r)
{
	if (r->n == r->cap) {
		size_t nc = r->cap ? r->cap * 2 : 32;
		void *nv = realloc(r->v, nc * r->size);

		if (nv == NULL)
			return NULL;
		r->v = nv;
		r->cap = nc;
	}
	memset((char *)r->v + r->n * r->size, 0, r->size);
	return (char *)r->v + r->n++ * r->size;
}

/* A required UID: present, fitting and non-empty. */
static int get_uid(const struct dcm_ds *ds, uint32_t tag, char *buf)
{
	return dcm_ds_get_string(ds, tag, buf, 65) == DCM_OK && buf[0] != '\0';
}

static int on_study(void *ctx, const struct dcm_ds *m)
{
	struct rows *r = ctx;
	struct study_row *s = rows_add(r);

	if (s == NULL)
		return 1;
	if (!get_uid(m, T_STUDY_UID, s->uid)) {
		log_warn(LOGC_PACS,
		         "C-FIND study match without StudyInstanceUID: "
		         "skipped");
		r->n--;
		r->skipped++;
		return 0;
	}
	attr_str(m, T_PATIENT_ID, s->pid, sizeof(s->pid));
	attr_str(m, T_ISSUER, s->issuer, sizeof(s->issuer));
	attr_str(m, T_PATIENT_NAME, s->name, sizeof(s->name));
	attr_str(m, T_BIRTH, s->birth, sizeof(s->birth));
	attr_str(m, T_SEX, s->sex, sizeof(s->sex));
	attr_str(m, T_STUDY_DATE, s->date, sizeof(s->date));
	attr_str(m, T_STUDY_TIME, s->time, sizeof(s->time));
	attr_str(m, T_ACCESSION, s->acc, sizeof(s->acc));
	attr_str(m, T_STUDY_DESC, s->desc, sizeof(s->desc));
	attr_str(m, T_MODALITIES, s->mods, sizeof(s->mods));
	attr_str(m, T_REFERRING, s->ref, sizeof(s->ref));
	attr_str(m, T_STUDY_ID, s->sid, sizeof(s->sid));
	s->nseries = attr_long(m, T_NUM_SERIES);
	s->ninst = attr_long(m, T_NUM_STUDY_INST);
	return 0;
}

static int on_series(void *ctx, const struct dcm_ds *m)
{
	struct rows *r = ctx;
	struct series_row *s = rows_add(r);

	if (s == NULL)
		return 1;
	if (!get_uid(m, T_SERIES_UID, s->uid)) {
		log_warn(LOGC_PACS, "C-FIND series match without "
		                    "SeriesInstanceUID: skipped");
		r->n--;
		r->skipped++;
		return 0;
	}
	attr_str(m, T_MODALITY, s->modality, sizeof(s->modality));
	attr_str(m, T_SERIES_DESC, s->desc, sizeof(s->desc));
	attr_str(m, T_BODY_PART, s->body, sizeof(s->body));
	s->number = attr_long(m, T_SERIES_NUMBER);
	s->ninst = attr_long(m, T_NUM_SERIES_INST);
	return 0;
}

static int on_instance(void *ctx, const struct dcm_ds *m)
{
	struct rows *r = ctx;
	struct inst_row *s = rows_add(r);

	if (s == NULL)
		return 1;
	if (!get_uid(m, T_SOP_UID, s->uid)) {
		log_warn(LOGC_PACS, "C-FIND image match without "
		                    "SOPInstanceUID: skipped");
		r->n--;
		r->skipped++;
		return 0;
	}
	attr_str(m, T_SOP_CLASS, s->cls, sizeof(s->cls));
	s->number = attr_long(m, T_INSTANCE_NUMBER);
	return 0;
}

/* Builds a query with the given return keys (empty values). */
static struct dcm_ds *query_new(const uint32_t *keys, size_t n)
{
	struct dcm_ds *q = dcm_ds_new();

	for (size_t i = 0; q != NULL && i < n; i++)
		if (dcm_ds_set_string(q, keys[i], "") != DCM_OK) {
			dcm_ds_free(q);
			q = NULL;
		}
	return q;
}

static int find_rows(struct dcm_assoc *as, enum dcm_level level,
                     struct dcm_ds *q, dcm_find_cb cb, struct rows *out,
                     char *err, size_t errlen)
{
	struct dcm_err e = { "" };
	int st = dcm_find(as, level, q, cb, out, &e);

	if (st != DCM_OK)
		return fail(err, errlen, "C-FIND", st, &e);
	return 0;
}

/* Queries series and images of one study and records them. */
static int sync_one(struct dcm_assoc *as, struct index *ix,
                    const struct study_row *s, struct pacs_sync_stats *stats,
                    char *err, size_t errlen)
{
	static const uint32_t series_keys[] = {
		T_STUDY_UID,   T_SERIES_UID, T_MODALITY,        T_SERIES_NUMBER,
		T_SERIES_DESC, T_BODY_PART,  T_NUM_SERIES_INST,
	};
	static const uint32_t inst_keys[] = {
		T_STUDY_UID, T_SERIES_UID,      T_SOP_UID,
		T_SOP_CLASS, T_INSTANCE_NUMBER,
	};
	struct rows se = { NULL, 0, 0, sizeof(struct series_row), 0 };
	struct rows in = { NULL, 0, 0, sizeof(struct inst_row), 0 };
	struct idx_series *xs = NULL;
	struct idx_instance *xi = NULL;
	size_t *off = NULL;
	struct dcm_ds *q = query_new(series_keys, 7);
	int rc = -1;

	if (q == NULL || dcm_ds_set_string(q, T_STUDY_UID, s->uid) != DCM_OK)
		goto nomem;
	if (find_rows(as, DCM_LEVEL_SERIES, q, on_series, &se, err, errlen))
		goto out;
	off = calloc(se.n + 1, sizeof(*off));
	xs = calloc(se.n + 1, sizeof(*xs));
	if (off == NULL || xs == NULL)
		goto nomem;
	for (size_t i = 0; i < se.n; i++) {
		const struct series_row *r = (struct series_row *)se.v + i;

		dcm_ds_free(q);
		q = query_new(inst_keys, 5);
		if (q == NULL ||
		    dcm_ds_set_string(q, T_STUDY_UID, s->uid) != DCM_OK ||
		    dcm_ds_set_string(q, T_SERIES_UID, r->uid) != DCM_OK)
			goto nomem;
		off[i] = in.n;
		if (find_rows(as, DCM_LEVEL_IMAGE, q, on_instance, &in, err,
		              errlen))
			goto out;
		xs[i] = (struct idx_series){ r->uid,  r->modality, r->desc,
			                     r->body, r->number,   r->ninst };
	}
	off[se.n] = in.n;
	xi = calloc(in.n + 1, sizeof(*xi));
	if (xi == NULL)
		goto nomem;
	for (size_t j = 0; j < in.n; j++) {
		const struct inst_row *r = (struct inst_row *)in.v + j;

		xi[j] = (struct idx_instance){ r->uid, r->cls, r->number, -1 };
	}
	{
		struct idx_patient pat = { s->pid, s->issuer, s->name, s->birth,
			                   s->sex };
		struct idx_study st = { s->uid,     s->date, s->time, s->acc,
			                s->desc,    s->mods, s->ref,  s->sid,
			                s->nseries, s->ninst };

		if (index_sync_study(ix, &pat, &st, xs, se.n, xi, off) != 0) {
			snprintf(err, errlen, "index: cannot record study %s",
			         s->uid);
			goto out;
		}
	}
	stats->refreshed++;
	stats->series += (long)se.n;
	stats->instances += (long)in.n;
	stats->skipped += se.skipped + in.skipped;
	rc = 0;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
out:
	dcm_ds_free(q);
	free(se.v);
	free(in.v);
	free(xs);
	free(xi);
	free(off);
	return rc;
}

int pacs_sync(const struct pacs *p, struct index *ix, const char *date_from,
              const char *study_uid, int full, const atomic_int *cancel,
              struct pacs_sync_stats *stats, char *err, size_t errlen)
{
	static const uint32_t study_keys[] = {
		T_STUDY_UID, T_PATIENT_ID, T_ISSUER,         T_PATIENT_NAME,
		T_BIRTH,     T_SEX,        T_STUDY_DATE,     T_STUDY_TIME,
		T_ACCESSION, T_STUDY_DESC, T_MODALITIES,     T_REFERRING,
		T_STUDY_ID,  T_NUM_SERIES, T_NUM_STUDY_INST,
	};
	struct rows studies = { NULL, 0, 0, sizeof(struct study_row), 0 };
	struct dcm_assoc *as = NULL;
	struct dcm_err e = { "" };
	struct dcm_ds *q = query_new(study_keys, 15);
	char range[32];
	int rc = -1, st;

	memset(stats, 0, sizeof(*stats));
	if (q == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (date_from != NULL) {
		snprintf(range, sizeof(range), "%s-", date_from);
		dcm_ds_set_string(q, T_STUDY_DATE, range);
	}
	if (study_uid != NULL)
		dcm_ds_set_string(q, T_STUDY_UID, study_uid);
	st = dcm_assoc_open(&p->peer, DCM_SVC_FIND, &as, &e);
	if (st != DCM_OK) {
		fail(err, errlen, "association", st, &e);
		goto out;
	}
	if (find_rows(as, DCM_LEVEL_STUDY, q, on_study, &studies, err, errlen))
		goto out;
	stats->studies = (long)studies.n;
	stats->skipped = studies.skipped;
	for (size_t i = 0; i < studies.n; i++) {
		const struct study_row *s = (struct study_row *)studies.v + i;
		long have = 0;

		if (cancel != NULL && atomic_load(cancel)) {
			snprintf(err, errlen, "sync cancelled");
			goto out;
		}
		if (!full && s->ninst > 0 &&
		    index_study_instances(ix, s->uid, &have, NULL) == 0 &&
		    have == s->ninst)
			continue;
		if (sync_one(as, ix, s, stats, err, errlen) != 0)
			goto out;
	}
	rc = 0;
out:
	dcm_assoc_close(as);
	dcm_ds_free(q);
	free(studies.v);
	return rc;
}

int pacs_retrieve(const struct pacs *p, const struct dcm_selection *sel,
                  const struct dcm_store_handler *h, dcm_progress_cb cb,
                  void *ctx, struct dcm_progress *final, char *err,
                  size_t errlen)
{
	struct dcm_assoc *as = NULL;
	struct dcm_err e = { "" };
	int st;

	st = dcm_assoc_open(&p->peer, p->use_get ? DCM_SVC_GET : DCM_SVC_MOVE,
	                    &as, &e);
	if (st == DCM_OK && p->use_get)
		st = dcm_get(as, sel, h, cb, ctx, final, &e);
	else if (st == DCM_OK)
		st = dcm_move(as, sel, p->dest_aet, cb, ctx, final, &e);
	dcm_assoc_close(as);
	return st == DCM_OK ? 0
	                    : fail(err, errlen, p->use_get ? "C-GET" : "C-MOVE",
	                           st, &e);
}
