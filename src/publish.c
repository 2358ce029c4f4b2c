/*
 * publish.c - see publish.h. A job's outcome is always written back to
 * the index: done, queued again for later (the PACS is unreachable, the
 * images have not arrived), or parked with its reason (the exam is not the
 * report's, the images never came). A crash while running leaves the job
 * "running": it is queued again at the next start.
 */
#include "publish.h"
#include "audit.h"
#include "config.h"
#include "dcm.h"
#include "dmp.h"
#include "fsutil.h"
#include "grow.h"
#include "index.h"
#include "log.h"
#include "pacs.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define KINDS "publish,replace,unpublish,iocm"
#define KOS_CLASS "1.2.840.10008.5.1.4.1.1.88.59"
#define FIRST_RETRY_S 5

struct publisher {
	const struct config *cfg;
	struct index *ix;
	const struct pacs *pacs;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int woken, stop; /* guarded by lock */
	atomic_int cancel;
};

/* One instance of the exam, as the index holds it after the sync. */
struct inst {
	char series[65], sop[65], cls[65];
};

struct exam {
	struct inst *v;
	size_t n, cap;
	int failed;
	/* study and patient, as the PACS has them */
	char patient_id[65], name[256], birth[17], accession[65];
	char date[17], time[17], study_id[17], description[256], referring[256];
};

/* What a run decided. */
struct outcome {
	const char *state; /* done, queued, parked */
	const char *parked_for;
	int64_t not_before;
	char reason[512];
};

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

static int on_instance(void *ctx, const struct idx_match *m)
{
	struct exam *e = ctx;

	if (GROW(e->v, e->n, e->cap, 256) != 0) {
		e->failed = 1;
		return -1;
	}
	if (e->n == 0) {
		copy(e->patient_id, sizeof(e->patient_id), m->patient_id);
		copy(e->name, sizeof(e->name), m->patient_name);
		copy(e->birth, sizeof(e->birth), m->birth_date);
		copy(e->accession, sizeof(e->accession), m->accession);
		copy(e->date, sizeof(e->date), m->study_date);
		copy(e->time, sizeof(e->time), m->study_time);
		copy(e->study_id, sizeof(e->study_id), m->study_id);
		copy(e->description, sizeof(e->description),
		     m->study_description);
		copy(e->referring, sizeof(e->referring), m->referring);
	}
	copy(e->v[e->n].series, sizeof(e->v[0].series), m->series_uid);
	copy(e->v[e->n].sop, sizeof(e->v[0].sop), m->sop_uid);
	copy(e->v[e->n].cls, sizeof(e->v[0].cls), m->sop_class);
	e->n++;
	return 0;
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

__attribute__((format(printf, 3, 4))) static void
park(struct outcome *o, const char *why, const char *fmt, ...)
{
	va_list ap;

	o->state = "parked";
	o->parked_for = why;
	va_start(ap, fmt);
	vsnprintf(o->reason, sizeof(o->reason), fmt, ap);
	va_end(ap);
}

/* Queued again, after 5 s doubling with each attempt up to max_s. */
__attribute__((format(printf, 4, 5))) static void
retry(struct outcome *o, long max_s, long attempts, const char *fmt, ...)
{
	long delay = FIRST_RETRY_S;
	va_list ap;

	for (long i = 0; i < attempts && delay < max_s; i++)
		delay *= 2;
	delay = delay < max_s ? delay : max_s;
	o->state = "queued";
	o->not_before = (int64_t)time(NULL) + delay;
	va_start(ap, fmt);
	vsnprintf(o->reason, sizeof(o->reason), fmt, ap);
	va_end(ap);
}

/* The family name of a DICOM PN or HL7 XPN: what is before the first ^. */
static void family(const char *name, char *out, size_t cap)
{
	size_t n = strcspn(name, "^=");

	snprintf(out, cap, "%.*s", (int)n, name);
}

/*
 * Whether the exam in the PACS is the report's: accession number, patient
 * id (the INS or the local id), family name and birth date. 0, or -1 with
 * the outcome parked.
 */
static int same_exam(const struct exam *e, json_t *payload, const char *study,
                     struct outcome *o)
{
	json_t *patient = json_object_get(payload, "patient");
	json_t *orders = json_object_get(payload, "orders"), *ord;
	char pacs_family[128], report_family[128];
	int have_acc = 0, acc_ok = 0;
	size_t i;

	json_array_foreach(orders, i, ord)
	{
		const char *acc = jstr(ord, "accession");

		if (acc[0]) {
			have_acc = 1;
			acc_ok |= strcmp(acc, e->accession) == 0;
		}
	}
	if (have_acc && !acc_ok) {
		park(o, "mismatch",
		     "study %s: the PACS has accession number '%s', not the "
		     "report's",
		     study, e->accession);
		return -1;
	}
	if (strcmp(e->patient_id, jstr(patient, "ins")) != 0 &&
	    strcmp(e->patient_id, jstr(patient, "ipp")) != 0) {
		park(o, "mismatch",
		     "study %s: the PACS's patient id '%s' is neither the "
		     "report's INS (%s) nor its local id (%s)",
		     study, e->patient_id, jstr(patient, "ins"),
		     jstr(patient, "ipp"));
		return -1;
	}
	family(e->name, pacs_family, sizeof(pacs_family));
	family(jstr(patient, "family"), report_family, sizeof(report_family));
	if (pacs_family[0] && report_family[0] &&
	    strcasecmp(pacs_family, report_family) != 0) {
		park(o, "mismatch",
		     "study %s: the PACS's patient is '%s', the report's '%s'",
		     study, pacs_family, report_family);
		return -1;
	}
	if (e->birth[0] && jstr(patient, "birth")[0] &&
	    strncmp(e->birth, jstr(patient, "birth"), 8) != 0) {
		park(o, "mismatch",
		     "study %s: the PACS's patient was born %s, the report's "
		     "%s",
		     study, e->birth, jstr(patient, "birth"));
		return -1;
	}
	return 0;
}

/* The INS issuer's name (IssuerOfPatientID) for its OID. */
static const char *ins_issuer(const char *oid)
{
	return strcmp(oid, "1.2.250.1.213.1.4.9") == 0 ? "ASIP-SANTE-INS-NIA"
	                                               : "ASIP-SANTE-INS-NIR";
}

static int by_series(const void *a, const void *b)
{
	return strcmp(((const struct inst *)a)->series,
	              ((const struct inst *)b)->series);
}

/*
 * Writes the KOS of the exam to path (through a temporary file, synced);
 * 0, or -1 with err.
 */
static int build_kos(const struct publisher *pb, struct exam *e,
                     json_t *payload, const char *study, const char *path,
                     char *sop, char *err, size_t errlen)
{
	json_t *patient = json_object_get(payload, "patient");
	json_t *orders = json_object_get(payload, "orders"), *ord;
	size_t nreq = json_array_size(orders), nser = 0, i;
	struct dcm_kos_request *req = calloc(nreq ? nreq : 1, sizeof(*req));
	struct dcm_kos_series *ser = calloc(e->n, sizeof(*ser));
	struct dcm_kos_instance *inst = calloc(e->n, sizeof(*inst));
	char(*urls)[512] = calloc(e->n, sizeof(*urls));
	char name[300], tmp[PATH_MAX];
	struct dcm_err de = { "" };
	struct dcm_kos k;
	int rc = -1;

	if (req == NULL || ser == NULL || inst == NULL || urls == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	json_array_foreach(orders, i, ord)
	{
		req[i].accession = jstr(ord, "accession");
		req[i].accession_oid = jstr(ord, "accession_root");
		req[i].placer_order = jstr(ord, "id");
		req[i].placer_oid = jstr(ord, "id_root");
	}
	qsort(e->v, e->n, sizeof(*e->v), by_series);
	for (size_t j = 0; j < e->n; j++) {
		inst[j] = (struct dcm_kos_instance){ e->v[j].cls, e->v[j].sop };
		if (nser == 0 ||
		    strcmp(ser[nser - 1].uid, e->v[j].series) != 0) {
			snprintf(urls[nser], sizeof(urls[0]),
			         "%s%s/studies/%s/series/%s",
			         pb->cfg->public_url, pb->cfg->dicomweb_root,
			         study, e->v[j].series);
			ser[nser] = (struct dcm_kos_series){ e->v[j].series,
				                             urls[nser],
				                             &inst[j], 0 };
			nser++;
		}
		ser[nser - 1].ninst++;
	}
	snprintf(name, sizeof(name), "%s^%s", jstr(patient, "family"),
	         jstr(patient, "given"));
	memset(&k, 0, sizeof(k));
	k.patient_id = jstr(patient, "ins");
	k.patient_issuer = ins_issuer(jstr(patient, "ins_oid"));
	k.patient_issuer_oid = jstr(patient, "ins_oid");
	k.patient_name = name;
	k.birth_date = jstr(patient, "birth");
	k.sex = jstr(patient, "sex");
	k.study_uid = study;
	k.study_date = e->date;
	k.study_time = e->time;
	k.study_id = e->study_id;
	k.study_description = e->description;
	k.referring = e->referring;
	k.accession = e->accession;
	k.series_number = 9999;
	k.instance_number = 1;
	k.description = jstr(json_object_get(payload, "document"), "title");
	k.manufacturer = "drimbox";
	k.req = req;
	k.nreq = nreq;
	k.series = ser;
	k.nseries = nser;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		snprintf(err, errlen, "path too long");
		goto out;
	}
	if (dcm_kos_write(&k, tmp, sop, &de) != DCM_OK) {
		snprintf(err, errlen, "KOS: %s", de.msg);
		unlink(tmp);
		goto out;
	}
	if (fs_sync_path(tmp) != 0 || rename(tmp, path) != 0) {
		snprintf(err, errlen, "the manifest: %s", strerror(errno));
		unlink(tmp);
		goto out;
	}
	/* the rename itself is durable once the directory is synced */
	{
		char dir[PATH_MAX];
		const char *slash = strrchr(path, '/');

		snprintf(dir, sizeof(dir), "%.*s",
		         slash ? (int)(slash - path) : 1, slash ? path : ".");
		if (fs_sync_path(dir) != 0) {
			snprintf(err, errlen, "the manifest's directory: %s",
			         strerror(errno));
			goto out;
		}
	}
	rc = 0;
out:
	free(req);
	free(ser);
	free(inst);
	free(urls);
	return rc;
}

/* The manifest already built for a study in an earlier run, or NULL. */
static json_t *built_for(json_t *payload, const char *study)
{
	json_t *kos = json_object_get(payload, "kos"), *k;
	size_t i;

	json_array_foreach(kos, i, k) if (strcmp(jstr(k, "study"), study) ==
	                                  0) return k;
	return NULL;
}

/*
 * Finds a study's exam, checks it and builds its manifest, recorded in
 * the payload (and the payload saved) before anything is sent: a run
 * after a crash sends the same manifest again, never a second one.
 * 0, 1 when a rejection note withdrew every instance, or -1 with o set.
 */
static int prepare(struct publisher *pb, const struct idx_claimed *j,
                   json_t *payload, const char *uid, const char *dir,
                   struct outcome *o)
{
	long wait_s = pb->cfg->publish_wait_hours * 3600L;
	struct pacs_sync_stats stats;
	struct idx_query q = { .level = IDX_INSTANCE, .study_uid = uid };
	struct exam e;
	char err[256], path[PATH_MAX], sop[65], *saved;
	struct timespec t0;
	double cfind_s;
	json_t *kos;
	int rc = -1;

	memset(&e, 0, sizeof(e));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (pacs_sync(pb->pacs, pb->ix, NULL, uid, 1, &pb->cancel, &stats, err,
	              sizeof(err)) != 0) {
		retry(o, pb->cfg->publish_retry_max, j->attempts,
		      "study %s: PACS: %s", uid, err);
		return -1;
	}
	cfind_s = seconds_since(&t0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (index_qido(pb->ix, &q, on_instance, &e, err, sizeof(err)) != 0 ||
	    e.failed) {
		retry(o, pb->cfg->publish_retry_max, j->attempts,
		      "study %s: index unreadable", uid);
		goto out;
	}
	/* instances a rejection note withdrew (an iocm job) are left out */
	{
		json_t *rejected = json_object_get(payload, "rejected"), *r;
		size_t kept = 0, ri;

		for (size_t n = 0; n < e.n; n++) {
			/* key object documents (rejection notes, manifests)
			 * are not part of what a manifest shows */
			int drop = strcmp(e.v[n].cls, KOS_CLASS) == 0;

			json_array_foreach(rejected, ri, r) drop |=
			        strcmp(json_string_value(r)
			                       ? json_string_value(r)
			                       : "",
			               e.v[n].sop) == 0;
			if (!drop)
				e.v[kept++] = e.v[n];
		}
		if (kept == 0 && e.n > 0 && json_array_size(rejected) > 0) {
			/* every instance withdrawn */
			e.n = 0;
			rc = 1;
			goto out;
		}
		e.n = kept;
	}
	if (e.n == 0) {
		if ((int64_t)time(NULL) - j->created_at < wait_s)
			retry(o, pb->cfg->publish_retry_max, j->attempts,
			      "study %s is not in the PACS yet (waiting up to "
			      "%ld h for its images)",
			      uid, pb->cfg->publish_wait_hours);
		else
			park(o, "exam",
			     "study %s was not found in the PACS within %ld h",
			     uid, pb->cfg->publish_wait_hours);
		goto out;
	}
	if (same_exam(&e, payload, uid, o) != 0)
		goto out;
	if ((size_t)snprintf(path, sizeof(path), "%s/job%lld-%s.dcm", dir,
	                     (long long)j->id, uid) >= sizeof(path)) {
		park(o, "kos", "study %s: path too long", uid);
		goto out;
	}
	if (build_kos(pb, &e, payload, uid, path, sop, err, sizeof(err)) != 0) {
		park(o, "kos", "study %s: %s", uid, err);
		goto out;
	}
	log_info(LOGC_JOBS, "job=%lld study=%s: KOS %s (%zu instances)",
	         (long long)j->id, uid, sop, e.n);
	kos = json_object_get(payload, "kos");
	if (!json_is_array(kos)) {
		kos = json_array();
		json_object_set_new(payload, "kos", kos);
	}
	/* how long it took: C-FIND (the sync), then checks and the KOS */
	json_array_append_new(
	        kos,
	        json_pack("{s:s, s:s, s:s, s:I, s:b, s:{s:f, s:f}}", "study",
	                  uid, "kos", path, "sop", sop, "instances",
	                  (json_int_t)e.n, "sent", 0, "seconds", "cfind",
	                  cfind_s, "kos", seconds_since(&t0)));
	saved = json_dumps(payload, JSON_COMPACT);
	if (saved == NULL || index_job_payload(pb->ix, j, saved) != 0) {
		free(saved);
		retry(o, pb->cfg->publish_retry_max, j->attempts,
		      "study %s: the job could not be saved", uid);
		goto out;
	}
	free(saved);
	rc = 0;
out:
	free(e.v);
	return rc;
}

/* Saves the payload (a step's result); 0, or -1 with o set to retry. */
static int save(struct publisher *pb, const struct idx_claimed *j,
                json_t *payload, struct outcome *o)
{
	char *saved = json_dumps(payload, JSON_COMPACT);
	int rc = saved ? index_job_payload(pb->ix, j, saved) : -1;

	free(saved);
	if (rc != 0)
		retry(o, pb->cfg->publish_retry_max, j->attempts,
		      "the job could not be saved");
	return rc;
}

/*
 * The manifest the DMP already holds for the study (a corrected or re-sent
 * report replaces it), recorded in k with the payload saved; 0, or -1
 * with o set.
 */
static int previous_manifest(struct publisher *pb, const struct idx_claimed *j,
                             json_t *payload, const char *study, json_t *k,
                             struct outcome *o)
{
	char entries[8][80], err[512];
	size_t n = 0;

	switch (dmp_find_manifests(pb->cfg, payload, study, entries, 8, &n, err,
	                           sizeof(err))) {
	case DMP_OK:
		break;
	case DMP_RETRY:
		retry(o, pb->cfg->publish_retry_max, j->attempts,
		      "study %s: %s", study, err);
		return -1;
	case DMP_PERMANENT:
		park(o, "dmp", "study %s: %s", study, err);
		return -1;
	}
	json_object_set_new(k, "replaces",
	                    n > 0 ? json_string(entries[n - 1]) : json_null());
	json_object_set_new(k, "replaces_checked", json_true());
	return save(pb, j, payload, o);
}

/*
 * Deletes (ITI-57) every approved manifest the DMP holds for a study; adds
 * their number to *deleted (may be NULL). 0, or -1 with o set.
 */
static int withdraw(struct publisher *pb, const struct idx_claimed *j,
                    json_t *payload, const char *study, size_t *deleted,
                    struct outcome *o)
{
	char entries[8][80], err[512], ss_unique[128];
	size_t n = 0;
	enum dmp_outcome r = dmp_find_manifests(
	        pb->cfg, payload, study, entries, 8, &n, err, sizeof(err));

	for (size_t e = 0; r == DMP_OK && e < n; e++) {
		/* the same for every attempt at deleting this entry */
		uint64_t h = 14695981039346656037ULL; /* FNV-1a */

		for (const char *p = entries[e]; *p; p++)
			h = (h ^ (unsigned char)*p) * 1099511628211ULL;
		snprintf(ss_unique, sizeof(ss_unique), "%s.3.%lld.%llu",
		         pb->cfg->dmp_source_oid, (long long)j->id,
		         (unsigned long long)(h >> 1));
		r = dmp_delete(pb->cfg, payload, entries[e], ss_unique, err,
		               sizeof(err));
		if (r == DMP_OK && deleted)
			(*deleted)++;
	}
	if (r == DMP_RETRY)
		retry(o, pb->cfg->publish_retry_max, j->attempts,
		      "study %s: %s", study, err);
	else if (r == DMP_PERMANENT)
		park(o, "dmp", "study %s: %s", study, err);
	return r == DMP_OK ? 0 : -1;
}

/* Unpublishes every manifest of the report's studies (ITI-57); sets o. */
static void run_unpublish(struct publisher *pb, const struct idx_claimed *j,
                          json_t *payload, struct outcome *o)
{
	json_t *studies = json_object_get(payload, "studies"), *st;
	size_t i, deleted = 0;

	if (pb->cfg->dmp_url[0] == '\0') {
		park(o, "dmp", "no DMP is configured (dmp_url)");
		return;
	}
	json_array_foreach(studies, i,
	                   st) if (withdraw(pb, j, payload, jstr(st, "uid"),
	                                    &deleted, o) != 0) return;
	o->state = "done";
	snprintf(o->reason, sizeof(o->reason), "%zu manifest(s) deleted",
	         deleted);
}

/* Publishes (or replaces) what the report names; sets o. */
static void run_publish(struct publisher *pb, const struct idx_claimed *j,
                        json_t *payload, struct outcome *o)
{
	json_t *studies = json_object_get(payload, "studies"), *st;
	char dir[PATH_MAX], paths[1024] = "";
	size_t i;

	snprintf(dir, sizeof(dir), "%s/kos", pb->cfg->data_dir);
	if (fs_mkdirs(dir) != 0) {
		retry(o, pb->cfg->publish_retry_max, j->attempts, "%s: %s", dir,
		      strerror(errno));
		return;
	}
	json_array_foreach(studies, i, st)
	{
		const char *uid = jstr(st, "uid");
		char err[512], ss_unique[128];
		struct dmp_timing timing = { 0, 0 };
		json_t *k = built_for(payload, uid);

		if (k == NULL) {
			int pr = prepare(pb, j, payload, uid, dir, o);

			if (pr == 1) { /* nothing left to show: withdrawn */
				if (withdraw(pb, j, payload, uid, NULL, o) != 0)
					break;
				continue;
			}
			if (pr != 0 || (k = built_for(payload, uid)) == NULL)
				break;
		}
		if (strlen(paths) + strlen(jstr(k, "kos")) + 2 < sizeof(paths))
			strcat(strcat(paths, paths[0] ? " " : ""),
			       jstr(k, "kos"));
		if (json_is_true(json_object_get(k, "sent")) ||
		    pb->cfg->dmp_url[0] == '\0')
			continue;
		/* sent before, its reply lost (a crash, a timeout)? */
		if (json_is_true(json_object_get(k, "attempted"))) {
			int found = 0;
			enum dmp_outcome r =
			        dmp_registered(pb->cfg, payload, jstr(k, "sop"),
			                       &found, err, sizeof(err));

			if (r != DMP_OK) {
				if (r == DMP_RETRY)
					retry(o, pb->cfg->publish_retry_max,
					      j->attempts, "study %s: %s", uid,
					      err);
				else
					park(o, "dmp", "study %s: %s", uid,
					     err);
				break;
			}
			if (found) {
				json_object_set_new(k, "sent", json_true());
				continue;
			}
		}
		/* what it replaces is decided once, and kept for retries */
		if (!json_is_true(json_object_get(k, "replaces_checked")) &&
		    previous_manifest(pb, j, payload, uid, k, o) != 0)
			break;
		/* the same for every attempt of this job and study */
		snprintf(ss_unique, sizeof(ss_unique), "%s.2.%lld.%zu",
		         pb->cfg->dmp_source_oid, (long long)j->id, i + 1);
		json_object_set_new(k, "attempted", json_true());
		if (save(pb, j, payload, o) != 0)
			break;
		switch (dmp_publish(
		        pb->cfg, payload, uid, jstr(k, "kos"), jstr(k, "sop"),
		        ss_unique,
		        json_string_value(json_object_get(k, "replaces")),
		        &timing, err, sizeof(err))) {
		case DMP_OK:
			json_object_set_new(k, "sent", json_true());
			json_object_set_new(json_object_get(k, "seconds"),
			                    "sign", json_real(timing.sign_s));
			json_object_set_new(json_object_get(k, "seconds"),
			                    "submit", json_real(timing.send_s));
			continue;
		case DMP_RETRY:
			retry(o, pb->cfg->publish_retry_max, j->attempts,
			      "study %s: %s", uid, err);
			break;
		case DMP_PERMANENT:
			park(o, "dmp", "study %s: %s", uid, err);
			break;
		}
		break;
	}
	if (o->state != NULL)
		return;
	if (pb->cfg->dmp_url[0] == '\0')
		park(o, "dmp",
		     "manifest built (%s); no DMP is configured (dmp_url)",
		     paths);
	else
		o->state = "done";
}

/*
 * A rejection note for a study: the publication that sent its manifest is
 * done again without the rejected instances (replacing the manifest), or,
 * when none is left, the manifest is withdrawn. The job's payload becomes
 * that publication's (saved), so that a retry goes on from there.
 */
static void run_iocm(struct publisher *pb, const struct idx_claimed *j,
                     json_t *payload, struct outcome *o)
{
	const char *study = jstr(payload, "study");
	json_t *pub, *studies, *st;
	char *text;
	size_t i;

	if (json_object_get(payload, "patient") == NULL) { /* first run */
		/* a publication of the study still to run goes first: this
		 * note then applies to what it sends */
		if (index_job_pending_for(pb->ix, study) != 0) {
			retry(o, pb->cfg->publish_retry_max, j->attempts,
			      "study %s: its publication has not run yet",
			      study);
			return;
		}
		text = index_job_published(pb->ix, study);
		if (text == NULL) {
			o->state = "done";
			snprintf(o->reason, sizeof(o->reason),
			         "no manifest of this drimbox for study %s",
			         study);
			return;
		}
		pub = json_loads(text, 0, NULL);
		free(text);
		if (pub == NULL) {
			park(o, "payload", "unreadable publication payload");
			return;
		}
		studies = json_array();
		json_array_foreach(json_object_get(pub, "studies"), i,
		                   st) if (strcmp(jstr(st, "uid"), study) == 0)
		        json_array_append(studies, st);
		json_object_set_new(pub, "studies", studies);
		json_object_set_new(pub, "kos", json_array());
		/* withdrawn instances add up, note after note */
		if (!json_is_array(json_object_get(pub, "rejected")))
			json_object_set_new(pub, "rejected", json_array());
		json_array_extend(json_object_get(pub, "rejected"),
		                  json_object_get(payload, "rejected"));
		json_object_set(pub, "study",
		                json_object_get(payload, "study"));
		json_object_update(payload, pub);
		json_decref(pub);
		json_object_set_new(payload, "kos", json_array());
		if (save(pb, j, payload, o) != 0)
			return;
	}
	run_publish(pb, j, payload, o);
}

/* A job's final outcome in the audit trail, one row per study. */
static void audit_job(const struct idx_claimed *j, json_t *payload,
                      const struct outcome *o)
{
	json_t *studies = json_object_get(payload, "studies"), *st;
	const char *actor = jstr(json_object_get(payload, "author"), "id");
	const char *outcome = strcmp(o->state, "done") == 0 ? "ok" : "failed";
	const char *why = o->reason[0] ? o->reason : NULL;
	size_t i;

	if (strcmp(o->state, "done") != 0 && strcmp(o->state, "parked") != 0)
		return; /* tried again later */
	if (jstr(payload, "study")[0] != '\0' || json_array_size(studies) == 0)
		audit(&(struct audit_event){ actor, j->kind,
		                             jstr(payload, "study"), NULL, NULL,
		                             outcome, NULL, why });
	else
		json_array_foreach(studies, i, st) audit(&(struct audit_event){
		        actor, j->kind, jstr(st, "uid"), NULL, NULL, outcome,
		        NULL, why });
}

static void run(struct publisher *pb, const struct idx_claimed *j)
{
	json_t *payload = json_loads(j->payload, 0, NULL);
	struct outcome o = { NULL, NULL, 0, "" };
	char *updated = NULL;

	if (payload == NULL) {
		park(&o, "payload", "the job's payload is not JSON");
	} else if (strcmp(j->kind, "unpublish") == 0) {
		run_unpublish(pb, j, payload, &o);
	} else if (strcmp(j->kind, "iocm") == 0) {
		run_iocm(pb, j, payload, &o);
		updated = json_dumps(payload, JSON_COMPACT);
	} else {
		run_publish(pb, j, payload, &o);
		updated = json_dumps(payload, JSON_COMPACT);
	}
	if (o.state == NULL) /* nothing decided: never left running */
		park(&o, "internal", "the run decided nothing");
	log_info(LOGC_JOBS, "job=%lld kind=%s -> %s%s%s", (long long)j->id,
	         j->kind, o.state, o.reason[0] ? ": " : "", o.reason);
	audit_job(j, payload, &o);
	if (index_job_finish(pb->ix, j, o.state, o.not_before, o.parked_for,
	                     o.reason[0] ? o.reason : NULL, updated) != 0)
		log_error(LOGC_JOBS, "job=%lld: its outcome could not be saved",
		          (long long)j->id);
	free(updated);
	json_decref(payload);
}

static void *worker(void *arg)
{
	struct publisher *pb = arg;

	log_set_context("publish");
	for (;;) {
		struct idx_claimed j;
		struct timespec until;
		int got;

		pthread_mutex_lock(&pb->lock);
		if (pb->stop) {
			pthread_mutex_unlock(&pb->lock);
			break;
		}
		pb->woken = 0;
		pthread_mutex_unlock(&pb->lock);
		got = index_job_claim(pb->ix, KINDS, (int64_t)time(NULL), &j);
		if (got == 1) {
			char ctx[40];

			snprintf(ctx, sizeof(ctx), "job=%lld", (long long)j.id);
			log_set_context(ctx);
			run(pb, &j);
			log_set_context("publish");
			free(j.payload);
			continue;
		}
		/* nothing due: sleep until woken or for a second */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_mutex_lock(&pb->lock);
		while (!pb->stop && !pb->woken &&
		       pthread_cond_timedwait(&pb->wake, &pb->lock, &until) !=
		               ETIMEDOUT)
			;
		pthread_mutex_unlock(&pb->lock);
	}
	return NULL;
}

struct publisher *publisher_start(const struct config *cfg, struct index *ix,
                                  const struct pacs *p, char *err,
                                  size_t errlen)
{
	struct publisher *pb = calloc(1, sizeof(*pb));

	if (pb == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pb->cfg = cfg;
	pb->ix = ix;
	pb->pacs = p;
	pthread_mutex_init(&pb->lock, NULL);
	pthread_cond_init(&pb->wake, NULL);
	if (pthread_create(&pb->thread, NULL, worker, pb) != 0) {
		snprintf(err, errlen, "cannot start the publication thread");
		pthread_cond_destroy(&pb->wake);
		pthread_mutex_destroy(&pb->lock);
		free(pb);
		return NULL;
	}
	return pb;
}

void publisher_wake(struct publisher *pb)
{
	if (pb == NULL)
		return;
	pthread_mutex_lock(&pb->lock);
	pb->woken = 1;
	pthread_cond_signal(&pb->wake);
	pthread_mutex_unlock(&pb->lock);
}

void publisher_stop(struct publisher *pb)
{
	if (pb == NULL)
		return;
	pthread_mutex_lock(&pb->lock);
	pb->stop = 1;
	pthread_cond_signal(&pb->wake);
	pthread_mutex_unlock(&pb->lock);
	atomic_store(&pb->cancel, 1);
	pthread_join(pb->thread, NULL);
	pthread_cond_destroy(&pb->wake);
	pthread_mutex_destroy(&pb->lock);
	free(pb);
}
