/*
 * conso.c - see conso.h. The session's data (JSON in the index) holds the
 * patient, the call's focus, the professional and, once the DMP answered,
 * the exams: one per KOS manifest, with the report found beside it. The
 * state of an exam (remote, pulling, local, importing, imported, failed)
 * is not stored with the session: it is read from the index, the
 * retriever and the import jobs, which every session shares.
 */
#include "conso.h"
#include "audit.h"
#include "auth.h"
#include "cache.h"
#include "config.h"
#include "dcm.h"
#include "dicomweb.h"
#include "dmp.h"
#include "index.h"
#include "log.h"
#include "pacs.h"
#include "remote.h"
#include "retrieve.h"
#include "token.h"
#include "web.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CONSO "/conso"
#define API CONSO "/api/"
#define COOKIE "drimbox_conso"
#define FORM_VALUE_MAX 256
#define IMPORT_ATTEMPTS 5

/*
 * A session's listing being asked of the DMP (by the thread a new session
 * starts, or by a request), so that another asker waits for it instead of
 * asking again; or one that failed in the background, its reason kept for
 * the page's first asker.
 */
struct listing {
	char hash[65]; /* the session's; "" = free */
	int failed;
	unsigned status;
	char err[400];
	time_t at;
};
#define LISTINGS_MAX 32
#define LISTING_FAILURE_KEPT 120 /* seconds */

struct conso {
	const struct config *cfg;
	struct index *ix;
	struct cache *cache;
	const struct pacs *pacs;
	struct retriever *rt;
	struct remote *remote;
	pthread_t worker;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int stop;
	int background; /* listing and prefetch threads running */
	/* listings asked of the DMP, guarded by lock */
	struct listing listing[LISTINGS_MAX];
	pthread_cond_t listed;
};

int conso_handles(const char *url)
{
	return strcmp(url, CONSO) == 0 ||
	       strncmp(url, CONSO "/", strlen(CONSO "/")) == 0;
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* Sends a JSON value (its reference taken over). */
static enum MHD_Result send_json(struct MHD_Connection *conn, json_t *v)
{
	char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;

	json_decref(v);
	if (text == NULL)
		return dw_error(conn, 500, "out of memory");
	return dw_send_json(conn, text, strlen(text), "application/json", NULL);
}

/* ---- tokens and sessions ------------------------------------------------ */

/* The session of the request's cookie: its data and its hash. */
static json_t *session_of(struct conso *c, struct MHD_Connection *conn,
                          char hash[65])
{
	return web_cookie_row(c->ix, conn, COOKIE, "session", hash);
}

static int session_save(struct conso *c, const char *hash, json_t *s)
{
	char *text = json_dumps(s, JSON_COMPACT);
	int rc = text ? index_token_set(c->ix, hash, "session", text) : -1;

	free(text);
	return rc;
}

/* ---- the contextual call ------------------------------------------------ */

struct form {
	json_t *fields; /* name -> value */
	int too_long;
};

static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *filename,
                                const char *ctype, const char *encoding,
                                const char *data, uint64_t off, size_t size)
{
	struct form *f = cls;
	const char *had = jstr(f->fields, key);
	char buf[FORM_VALUE_MAX + 1];

	(void)kind;
	(void)filename;
	(void)ctype;
	(void)encoding;
	if (off + size > FORM_VALUE_MAX || strlen(had) != off) {
		f->too_long = 1;
		return MHD_YES;
	}
	snprintf(buf, sizeof(buf), "%s%.*s", had, (int)size, data);
	json_object_set_new(f->fields, key, json_string(buf));
	return MHD_YES;
}

static int all_digits(const char *s, size_t n)
{
	if (strlen(s) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

/* An INS OID: NIR, NIA and their test ranges (urn:oid: optional). */
static const char *ins_oid(const char *system)
{
	static const char *const oids[] = { "1.2.250.1.213.1.4.8",
		                            "1.2.250.1.213.1.4.9",
		                            "1.2.250.1.213.1.4.10",
		                            "1.2.250.1.213.1.4.11" };

	if (strncasecmp(system, "urn:oid:", 8) == 0)
		system += 8;
	for (size_t i = 0; i < sizeof(oids) / sizeof(*oids); i++)
		if (strcmp(system, oids[i]) == 0)
			return oids[i];
	return NULL;
}

/* Whether the patient was informed and does not object (or -1: bad). */
static int informed(const char *v)
{
	static const char *const yes[] = { "true", "1", "oui", "yes" };
	static const char *const no[] = { "false", "0", "non", "no" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return 1;
		if (strcasecmp(v, no[i]) == 0)
			return 0;
	}
	return -1;
}

json_t *conso_call_data(const struct config *cfg, json_t *f, const char **why)
{
	static const char *const required[] = {
		"Patient.identifier.value",
		"Patient.identifier.system",
		"Patient.name.family",
		"Patient.name.given",
		"Patient.gender",
		"Patient.birthDate",
		"Address.district",
		"InformationEtOppositionConsultation",
		"PatientID",
		"PatientIDIssuer",
	};
	const char *g = jstr(f, "Patient.gender"),
	           *b = jstr(f, "Patient.birthDate");
	const char *study = jstr(f, "StudyInstanceUID"), *oid, *sex;
	char prof[256], *rpps, *family, *given, *save = NULL;
	int inf;

	for (size_t i = 0; i < sizeof(required) / sizeof(*required); i++)
		if (jstr(f, required[i])[0] == '\0') {
			*why = required[i];
			return NULL;
		}
	oid = ins_oid(jstr(f, "Patient.identifier.system"));
	if (!all_digits(jstr(f, "Patient.identifier.value"), 15) ||
	    oid == NULL) {
		*why = "Patient.identifier (an INS: 15 digits, an INS OID)";
		return NULL;
	}
	sex = strcasecmp(g, "M") == 0 || strcasecmp(g, "male") == 0     ? "M"
	      : strcasecmp(g, "F") == 0 || strcasecmp(g, "female") == 0 ? "F"
	      : strcasecmp(g, "U") == 0 || strcasecmp(g, "unknown") == 0 ||
	                      strcasecmp(g, "other") == 0
	              ? "U"
	              : NULL;
	if (sex == NULL) {
		*why = "Patient.gender";
		return NULL;
	}
	if (strlen(b) != 10 || b[4] != '-' || b[7] != '-' ||
	    !isdigit((unsigned char)b[0]) || !isdigit((unsigned char)b[9])) {
		*why = "Patient.birthDate (YYYY-MM-DD)";
		return NULL;
	}
	inf = informed(jstr(f, "InformationEtOppositionConsultation"));
	if (inf < 0) {
		*why = "InformationEtOppositionConsultation (true or false)";
		return NULL;
	}
	if (study[0] && !dw_is_uid(study, strlen(study))) {
		*why = "StudyInstanceUID";
		return NULL;
	}
	snprintf(prof, sizeof(prof), "%s", cfg->conso_professional);
	rpps = strtok_r(prof, "^", &save);
	family = rpps ? strtok_r(NULL, "^", &save) : NULL;
	given = family ? strtok_r(NULL, "^", &save) : NULL;
	return json_pack(
	        "{s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b}, "
	        "s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}, s:{s:s, s:s, s:s}}",
	        "patient", "ins", jstr(f, "Patient.identifier.value"),
	        "ins_oid", oid, "family", jstr(f, "Patient.name.family"),
	        "given", jstr(f, "Patient.name.given"), "gender", sex,
	        "birth_date", b, "district", jstr(f, "Address.district"), "pid",
	        jstr(f, "PatientID"), "pid_issuer", jstr(f, "PatientIDIssuer"),
	        "informed", inf, "focus", "study_uid", study, "modality",
	        jstr(f, "Modality"), "accession", jstr(f, "AccessionNumber"),
	        "accession_issuer", jstr(f, "AccessionNumberIssuer"),
	        "study_date", jstr(f, "StudyDate"), "region",
	        jstr(f, "AnatomicRegion"), "situation", jstr(f, "Situation"),
	        "author", "id", rpps ? rpps : "", "family",
	        family ? family : "", "given", given ? given : "");
}

/* A refusal: an HTML page for a person, JSON for a program. */
static enum MHD_Result refuse(struct MHD_Connection *conn, unsigned status,
                              const char *msg)
{
	const char *accept =
	        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
	char *page;
	int n;

	if (accept == NULL || strstr(accept, "text/html") == NULL)
		return dw_error(conn, status, "%s", msg);
	n = asprintf(&page,
	             "<!doctype html><html lang=\"fr\"><meta charset=\"utf-8\">"
	             "<title>drimbox</title><h1>drimbox</h1><p>%s</p></html>",
	             msg);
	if (n < 0)
		return MHD_NO;
	return web_send_page(conn, status, page, (size_t)n, "no-store");
}

/* A contextual call, its session or an import in the audit trail. */
/* (once: a refusal anyone may cause, one row per ten minutes and peer) */
static void audit_conso(struct MHD_Connection *conn, json_t *s,
                        const char *action, const char *study,
                        const char *outcome, const char *detail, int once)
{
	char peer[64] = "";
	struct audit_event e;

	if (conn != NULL)
		audit_peer(conn, peer, sizeof(peer));
	e = (struct audit_event){ jstr(json_object_get(s, "author"), "id"),
		                  action,
		                  study,
		                  NULL,
		                  peer,
		                  outcome,
		                  jstr(s, "call"),
		                  detail };
	if (once)
		audit_once(&e);
	else
		audit(&e);
}

static enum MHD_Result contextual_call(struct conso *c,
                                       struct MHD_Connection *conn,
                                       const char *body, size_t len)
{
	struct form f = { json_object(), 0 };
	struct MHD_PostProcessor *pp =
	        MHD_create_post_processor(conn, 4096, on_field, &f);
	const char *why = NULL;
	char token[64], hash[65], loc[128], msg[200], *text = NULL;
	json_t *data = NULL;
	time_t now = time(NULL);
	enum MHD_Result rc;

	if (pp == NULL) {
		json_decref(f.fields);
		return refuse(conn, 415,
		              "a contextual call is a form "
		              "(application/x-www-form-urlencoded)");
	}
	if (MHD_post_process(pp, body, len) != MHD_YES || f.too_long) {
		rc = refuse(conn, 400,
		            "the form is malformed or a value is "
		            "too long");
		goto out;
	}
	data = conso_call_data(c->cfg, f.fields, &why);
	if (data == NULL) {
		snprintf(msg, sizeof(msg),
		         "contextual call: %s missing or "
		         "invalid",
		         why);
		log_warn(LOGC_HTTP, "%s", msg);
		audit_conso(conn, NULL, "call", NULL, "refused", msg, 1);
		rc = refuse(conn, 400, msg);
		goto out;
	}
	if (token_new(token) != 0) {
		rc = dw_error(conn, 500, "no randomness");
		goto out;
	}
	token_hash(token, hash);
	/* the call's name in the audit trail and the statistics: the start
	 * of its token's hash (it tells nothing of the token) */
	json_object_set_new(data, "call", json_stringn(hash, 16));
	text = json_dumps(data, JSON_COMPACT);
	if (text == NULL) {
		rc = dw_error(conn, 500, "out of memory");
		goto out;
	}
	if (index_token_put(c->ix, hash, "context", text, now,
	                    now + c->cfg->conso_context_seconds) != 0) {
		rc = dw_error(conn, 503, "the index cannot record the call");
		goto out;
	}
	log_info(LOGC_HTTP, "contextual call for patient %s",
	         jstr(json_object_get(data, "patient"), "pid"));
	snprintf(msg, sizeof(msg), "patient %s",
	         jstr(json_object_get(data, "patient"), "ins"));
	audit_conso(conn, data, "call", NULL, "ok", msg, 0);
	snprintf(loc, sizeof(loc), CONSO "/?ctx=%s", token);
	rc = web_redirect(conn, 303, loc);
out:
	free(text);
	json_decref(data);
	json_decref(f.fields);
	MHD_destroy_post_processor(pp);
	return rc;
}

static void background(struct conso *c, json_t *s, const char *hash,
                       json_t *exams);

/*
 * Names the signed-in professional in a new session: the DMP requests'
 * VIHF and the pulls from other DRIMboxes are theirs.
 */
static void sign_session(struct conso *c, json_t *s, const char *hash,
                         const struct auth_user *who)
{
	json_object_set_new(s, "author",
	                    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id",
	                              who->id, "family", who->family, "given",
	                              who->given, "profession", who->profession,
	                              "specialty", who->specialty, "sector",
	                              who->sector));
	json_object_set_new(s, "login", json_string(who->session));
	if (session_save(c, hash, s) != 0)
		log_error(LOGC_HTTP, "session: cannot record the professional");
}

/* GET /conso/?ctx=...: the context becomes this browser's session. */
static enum MHD_Result redeem(struct conso *c, struct MHD_Connection *conn,
                              const char *ctx, const struct auth_user *who)
{
	char token[64], chash[65], shash[65], cookie[200], *data = NULL;
	struct MHD_Response *resp;
	json_t *s;
	time_t now = time(NULL);
	enum MHD_Result rc;
	int found;

	if (strlen(ctx) > 64)
		return refuse(conn, 400, "invalid context");
	token_hash(ctx, chash);
	if (token_new(token) != 0)
		return dw_error(conn, 500, "no randomness");
	token_hash(token, shash);
	found = index_context_redeem(c->ix, chash, shash, now,
	                             now + c->cfg->conso_session_minutes * 60,
	                             &data);
	if (found == 1 && (s = json_loads(data, 0, NULL)) != NULL) {
		if (who != NULL) /* the signed-in professional consults */
			sign_session(c, s, shash, who);
		audit_conso(conn, s, "consult", NULL, "ok", NULL, 0);
		background(c, s, shash, NULL);
		json_decref(s);
	}
	free(data);
	if (found < 0)
		return dw_error(conn, 503, "the index cannot open the session");
	if (found == 0)
		return refuse(conn, 404,
		              "Ce lien a expiré ou a déjà servi : rouvrez "
		              "drimbox depuis votre logiciel.");
	snprintf(cookie, sizeof(cookie),
	         COOKIE "=%s; Path=" CONSO "; HttpOnly; SameSite=Strict%s",
	         token,
	         strncmp(c->cfg->public_url, "https:", 6) == 0 ? "; Secure"
	                                                       : "");
	resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Set-Cookie", cookie);
	MHD_add_response_header(resp, "Location", CONSO "/");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	rc = MHD_queue_response(conn, 303, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* ---- the exams ---------------------------------------------------------- */

/* A reference of a document entry ("value^^^...^type"), by its type. */
static const char *reference(json_t *doc, const char *type, char *out,
                             size_t cap)
{
	size_t i;
	json_t *v;

	out[0] = '\0';
	json_array_foreach(json_object_get(doc, "references"), i, v)
	{
		const char *s = json_string_value(v), *t = strrchr(s, '^');

		if (t && strcmp(t + 1, type) == 0) {
			snprintf(out, cap, "%.*s", (int)strcspn(s, "^"), s);
			break;
		}
	}
	return out;
}

/* The exams of the DMP's documents: one per manifest, with its report. */
static json_t *exams_of(json_t *docs)
{
	json_t *exams = json_array(), *d, *r, *ev;
	size_t i, k;

	json_array_foreach(docs, i, d)
	{
		char study[80], acc[80], racc[80], rstudy[80],
		        modality[64] = "", region[128] = "";
		const char *entry = jstr(d, "entry"), *inst;
		json_t *report = json_null();

		if (strcmp(jstr(d, "type"), "IMG-KOS") != 0)
			continue;
		reference(d, "urn:ihe:iti:xds:2016:studyInstanceUID", study,
		          sizeof(study));
		reference(d, "urn:ihe:iti:xds:2013:accession", acc,
		          sizeof(acc));
		json_array_foreach(json_object_get(d, "events"), k, ev)
		{
			if (strcmp(jstr(ev, "scheme"), "1.2.250.1.213.1.1.5."
			                               "618") == 0)
				snprintf(modality, sizeof(modality), "%s",
				         jstr(ev, "code"));
			else
				snprintf(region, sizeof(region), "%s",
				         jstr(ev, "display"));
		}
		json_array_foreach(docs, k, r)
		{
			if (strcmp(jstr(r, "type"), "IMG-KOS") == 0 ||
			    strcmp(jstr(r, "mime"), "text/xml") != 0)
				continue;
			reference(r, "urn:ihe:iti:xds:2016:studyInstanceUID",
			          rstudy, sizeof(rstudy));
			reference(r, "urn:ihe:iti:xds:2013:accession", racc,
			          sizeof(racc));
			if ((study[0] && strcmp(rstudy, study) == 0) ||
			    (acc[0] && strcmp(racc, acc) == 0)) {
				json_decref(report);
				report = json_pack("{s:s, s:s}", "unique",
				                   jstr(r, "unique"),
				                   "repository",
				                   jstr(r, "repository"));
			}
		}
		inst = jstr(d, "institution"); /* an XON: its name first */
		if (!dw_is_uid(study, strlen(study)))
			continue; /* a manifest that names no study */
		json_array_append_new(
		        exams,
		        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s%, s:s, s:s, "
		                  "s:s, s:s%, s:o}",
		                  "id",
		                  strncmp(entry, "urn:uuid:", 9) == 0
		                          ? entry + 9
		                          : entry,
		                  "unique", jstr(d, "unique"), "repository",
		                  jstr(d, "repository"), "study_uid", study,
		                  "accession", acc, "date",
		                  jstr(d, "service_start")[0]
		                          ? jstr(d, "service_start")
		                          : jstr(d, "creation"),
		                  (size_t)8, "modality", modality, "region",
		                  region, "description", jstr(d, "title"),
		                  "source", inst, (size_t)strcspn(inst, "^"),
		                  "report", report));
	}
	return exams;
}

static struct listing *listing_of(struct conso *c, const char *hash)
{
	for (size_t i = 0; i < LISTINGS_MAX; i++)
		if (strcmp(c->listing[i].hash, hash) == 0)
			return &c->listing[i];
	return NULL;
}

/* A free slot (a failure nobody came for is dropped after a while). */
static struct listing *listing_claim(struct conso *c, const char *hash)
{
	time_t now = time(NULL);

	for (size_t i = 0; i < LISTINGS_MAX; i++) {
		struct listing *l = &c->listing[i];

		if (l->hash[0] == '\0' ||
		    (l->failed && now - l->at > LISTING_FAILURE_KEPT)) {
			*l = (struct listing){ .at = now };
			snprintf(l->hash, sizeof(l->hash), "%s", hash);
			return l;
		}
	}
	return NULL;
}

/* The exams another asker listed: from the saved session. */
static json_t *saved_exams(struct conso *c, json_t *s, const char *hash)
{
	char *data = NULL;
	json_t *saved = NULL, *exams = NULL;

	if (index_token_get(c->ix, hash, "session", time(NULL), &data) == 1)
		saved = json_loads(data, 0, NULL);
	free(data);
	exams = json_object_get(saved, "exams");
	if (exams != NULL)
		json_object_set(s, "exams", exams);
	json_incref(exams);
	json_decref(saved);
	return exams;
}

/* 1 when docs holds the document entry. */
static int has_entry(json_t *docs, const char *entry)
{
	size_t i;
	json_t *d;

	json_array_foreach(docs, i, d)
	{
		if (strcmp(jstr(d, "entry"), entry) == 0)
			return 1;
	}
	return 0;
}

/*
 * The documents of the exam the call named by its accession number
 * (FindDocumentsByReferenceId), whatever their type, added to docs: the
 * exam the physician opened drimbox for is listed even when its
 * documents are coded otherwise. Its failure leaves the list as it is.
 */
static void add_focus_documents(struct conso *c, json_t *s, json_t *docs)
{
	json_t *focus = json_object_get(s, "focus"), *more = NULL, *d;
	const char *acc = jstr(focus, "accession");
	const char *issuer = jstr(focus, "accession_issuer");
	char ref[300], err[300];
	size_t i;

	if (acc[0] == '\0')
		return;
	snprintf(ref, sizeof(ref), "%s^^^%s%s%s^urn:ihe:iti:xds:2013:accession",
	         acc, issuer[0] ? "&" : "", issuer, issuer[0] ? "&ISO" : "");
	if (dmp_find_documents(c->cfg, s, ref, &more, err, sizeof(err)) !=
	    DMP_OK) {
		log_warn(LOGC_DMP, "the documents of accession %s: %s", acc,
		         err);
		json_decref(more);
		return;
	}
	json_array_foreach(more, i, d)
	{
		if (!has_entry(docs, jstr(d, "entry")))
			json_array_append(docs, d);
	}
	json_decref(more);
}

/*
 * Asks the DMP for the session's exams (TD0.2, TD0.3 when the patient was
 * informed, ITI-18) and keeps them in the session; l is the session's
 * listing slot (or NULL), released here, or kept with the failure when
 * keep_failure (a listing in the background: its failure is for the
 * page's next asker, not to be asked again at once).
 */
static json_t *ask_dmp(struct conso *c, json_t *s, const char *hash,
                       struct listing *l, int keep_failure, unsigned *status,
                       char *err, size_t errlen)
{
	json_t *docs = NULL, *exams = NULL;
	enum dmp_outcome o = dmp_patient_check(c->cfg, s, err, errlen);

	if (o == DMP_OK && json_is_true(json_object_get(
	                           json_object_get(s, "patient"), "informed")))
		o = dmp_authorize(c->cfg, s, err, errlen);
	if (o == DMP_OK)
		o = dmp_find_documents(c->cfg, s, NULL, &docs, err, errlen);
	if (o == DMP_OK)
		add_focus_documents(c, s, docs);
	if (o != DMP_OK) {
		*status = o == DMP_RETRY ? 502 : 403;
	} else {
		exams = exams_of(docs);
		json_decref(docs);
		json_object_set(s, "exams", exams);
		if (session_save(c, hash, s) != 0)
			log_warn(LOGC_HTTP,
			         "the session's exams could not be kept");
	}
	pthread_mutex_lock(&c->lock);
	if (l != NULL && exams == NULL && keep_failure) {
		l->failed = 1;
		l->status = *status;
		snprintf(l->err, sizeof(l->err), "%s", err);
		l->at = time(NULL);
	} else if (l != NULL) {
		l->hash[0] = '\0';
	}
	pthread_cond_broadcast(&c->listed);
	pthread_mutex_unlock(&c->lock);
	return exams;
}

/*
 * The session's exams: asked of the DMP the first time, kept in the
 * session after; one asker at a time per session (another waits and
 * reads what the first got). *loaded: 1 when this call asked the DMP.
 */
static json_t *load_exams(struct conso *c, json_t *s, const char *hash,
                          int *loaded, unsigned *status, char *err,
                          size_t errlen)
{
	json_t *exams = json_object_get(s, "exams");
	struct listing *l;
	int waited = 0;

	*loaded = 0;
	if (exams != NULL)
		return json_incref(exams);
	pthread_mutex_lock(&c->lock);
	while ((l = listing_of(c, hash)) != NULL && !l->failed) {
		waited = 1;
		pthread_cond_wait(&c->listed, &c->lock);
	}
	if (l != NULL) { /* failed in the background: told once */
		*status = l->status;
		snprintf(err, errlen, "%s", l->err);
		l->hash[0] = '\0';
		pthread_mutex_unlock(&c->lock);
		return NULL;
	}
	if (waited && (exams = saved_exams(c, s, hash)) != NULL) {
		pthread_mutex_unlock(&c->lock);
		return exams;
	}
	l = listing_claim(c, hash);
	pthread_mutex_unlock(&c->lock);
	exams = ask_dmp(c, s, hash, l, 0, status, err, errlen);
	*loaded = exams != NULL;
	return exams;
}

/* How far an exam is: from the import jobs, the retriever, the cache. */
struct progress {
	long total, cached;
};

static void exam_state(struct conso *c, json_t *e)
{
	const char *study = jstr(e, "study_uid");
	struct progress p = { 0, 0 };
	struct retrieve_status st;
	char subject[100], error[300] = "", *payload = NULL, state[16] = "";
	const char *out;
	json_t *pl = NULL;
	int pulling;

	snprintf(subject, sizeof(subject), "import:%s", study);
	/* before the counts: a pull ends only once what it received is
	 * committed, so counts read after it ended are complete */
	pulling = retriever_progress(c->rt, study, &st) == 1;
	(void)index_study_instances(c->ix, study, &p.total, &p.cached);
	if (index_job_latest(c->ix, subject, state, sizeof(state), &payload,
	                     error, sizeof(error)) == 1)
		pl = json_loads(payload, 0, NULL);
	free(payload);
	if (strcmp(state, "done") == 0)
		out = "imported";
	else if (strcmp(state, "queued") == 0 || strcmp(state, "running") == 0)
		out = "importing";
	else if (strcmp(state, "failed") == 0)
		out = "failed";
	else if (pulling)
		out = "pulling";
	else if (p.total > 0 && p.cached == p.total)
		out = "local";
	else {
		remote_last_error(c->remote, study, error, sizeof(error));
		out = error[0] ? "failed" : "remote";
	}
	json_object_set_new(e, "state", json_string(out));
	json_object_set_new(e, "received", json_integer(p.cached));
	json_object_set_new(e, "expected",
	                    json_integer(p.total ? p.total : -1));
	json_object_set_new(
	        e, "import_sent",
	        json_integer(json_integer_value(json_object_get(pl, "sent"))));
	json_object_set_new(
	        e, "import_total",
	        json_integer(json_integer_value(json_object_get(pl, "total"))));
	json_object_set_new(e, "error", json_string(error));
	json_decref(pl);
}

static json_t *find_exam(json_t *exams, const char *id)
{
	size_t i;
	json_t *e;

	json_array_foreach(exams, i, e)
	{
		if (strcmp(jstr(e, "id"), id) == 0)
			return e;
	}
	return NULL;
}

/*
 * Readies an exam for viewing: its manifest from the DMP, every series'
 * RetrieveURL checked against the whitelist, the study recorded in the
 * index as held by its source. 0, or an HTTP status with err.
 */
static unsigned prepare(struct conso *c, json_t *s, json_t *e, char *err,
                        size_t errlen)
{
	const char *study = jstr(e, "study_uid");
	struct dcm_manifest *m = NULL;
	struct dcm_err de = { "" };
	char *kos = NULL;
	size_t len = 0, n = 0;
	unsigned status = 0;
	enum dmp_outcome o;

	/* pulls of it present the token of who asked */
	if (jstr(s, "login")[0] != '\0')
		remote_set_session(c->remote, study, jstr(s, "login"),
		                   jstr(json_object_get(s, "author"), "id"),
		                   jstr(s, "call"));
	/* as the list names it: a manifest the source replaced is read again */
	if (remote_holds_manifest(c->remote, study, jstr(e, "unique")))
		return 0;
	o = dmp_retrieve_document(c->cfg, s, jstr(e, "repository"),
	                          jstr(e, "unique"), &kos, &len, err, errlen);
	if (o != DMP_OK)
		return o == DMP_RETRY ? 502 : 403;
	if (dcm_kos_read(kos, len, &m, &de) != DCM_OK) {
		snprintf(err, errlen,
		         "the manifest from the DMP is not a "
		         "KOS: %s",
		         de.msg);
		status = 502;
		goto out;
	}
	for (size_t i = 0; i < m->nseries; i++) {
		n += m->series[i].ninst;
		if (strcmp(m->series[i].study_uid, study) != 0) {
			snprintf(err, errlen,
			         "the manifest names another "
			         "study");
			status = 502;
			goto out;
		}
		if (remote_url_allowed(c->remote, m->series[i].retrieve_url,
		                       err, errlen) != 0) {
			status = 403;
			goto out;
		}
	}
	{
		struct idx_patient pat = { m->patient_id, m->patient_issuer,
			                   m->patient_name, NULL, NULL };
		struct idx_study st = { study,
			                m->study_date,
			                NULL,
			                m->accession,
			                m->description[0]
			                        ? m->description
			                        : jstr(e, "description"),
			                jstr(e, "modality"),
			                NULL,
			                NULL,
			                (long)m->nseries,
			                (long)n };
		struct idx_series *se = calloc(m->nseries, sizeof(*se));
		struct idx_instance *in = calloc(n ? n : 1, sizeof(*in));
		size_t *off = calloc(m->nseries + 1, sizeof(*off)), k = 0;
		struct idx_remote *rs = calloc(m->nseries, sizeof(*rs));
		int rc = -1;

		if (se && in && off && rs) {
			for (size_t i = 0; i < m->nseries; i++) {
				const struct dcm_manifest_series *ms =
				        &m->series[i];

				se[i] = (struct idx_series){
					ms->uid,
					jstr(e, "modality")[0] ? jstr(e, "modal"
					                                 "ity")
					                       : NULL,
					NULL,
					NULL,
					-1,
					(long)ms->ninst
				};
				rs[i] = (struct idx_remote){ ms->uid, study,
					                     ms->retrieve_url,
					                     m->sop_uid };
				off[i] = k;
				for (size_t j = 0; j < ms->ninst; j++)
					in[k++] = (struct idx_instance){
						ms->inst[j].sop_uid,
						ms->inst[j].sop_class, -1,
						(long)j
					};
			}
			off[m->nseries] = k;
			/* the series first: a study indexed without them
			 * would be looked for in the PACS */
			rc = index_remote_put(c->ix, rs, m->nseries,
			                      (int64_t)time(NULL));
			if (rc == 0)
				rc = index_sync_study(c->ix, &pat, &st, se,
				                      m->nseries, in, off);
		}
		free(se);
		free(in);
		free(off);
		free(rs);
		if (rc != 0) {
			snprintf(err, errlen,
			         "the index cannot record the "
			         "study");
			status = 503;
		}
	}
	if (status == 0)
		log_info(LOGC_HTTP,
		         "study=%s: manifest %s, %zu series, %zu instances at "
		         "%s",
		         study, m->sop_uid, m->nseries, n,
		         m->series[0].retrieve_url);
out:
	dcm_manifest_free(m);
	free(kos);
	return status;
}

/*
 * Starts pulling a prepared study in the background. The last error is
 * cleared first: a pull that fails at once (the source refuses the
 * connection) notes its error before retriever_start returns.
 */
static void start_pull(struct conso *c, const char *study)
{
	char err[200];
	struct retrieval *h;

	remote_note_error(c->remote, study, NULL);
	h = retriever_start(c->rt, study, NULL, NULL, err, sizeof(err));
	if (h == NULL)
		remote_note_error(c->remote, study, err);
	retrieval_release(h);
}

/* Counts what is not cached yet. */
static long uncached(struct conso *c, const char *study)
{
	struct progress p = { 0, 0 };

	(void)index_study_instances(c->ix, study, &p.total, &p.cached);
	return p.total - p.cached;
}

static enum MHD_Result view(struct conso *c, struct MHD_Connection *conn,
                            json_t *s, json_t *e)
{
	char err[400] = "", loc[200];
	unsigned status = prepare(c, s, e, err, sizeof(err));

	if (status != 0) {
		remote_note_error(c->remote, jstr(e, "study_uid"), err);
		log_warn(LOGC_HTTP, "view study=%s: %s", jstr(e, "study_uid"),
		         err);
		return dw_error(conn, status, "%s", err);
	}
	if (uncached(c, jstr(e, "study_uid")) > 0)
		start_pull(c, jstr(e, "study_uid"));
	snprintf(loc, sizeof(loc), "/viewer/?study=%s", jstr(e, "study_uid"));
	return send_json(conn, json_pack("{s:s}", "viewer", loc));
}

static enum MHD_Result import(struct conso *c, struct MHD_Connection *conn,
                              json_t *s, json_t *e)
{
	char err[400] = "", subject[100], state[16] = "", *payload = NULL;
	unsigned status = prepare(c, s, e, err, sizeof(err));
	json_t *pl;
	int64_t id;
	char *text;

	if (status != 0) {
		remote_note_error(c->remote, jstr(e, "study_uid"), err);
		return dw_error(conn, status, "%s", err);
	}
	snprintf(subject, sizeof(subject), "import:%s", jstr(e, "study_uid"));
	if (index_job_latest(c->ix, subject, state, sizeof(state), &payload,
	                     NULL, 0) == 1 &&
	    (strcmp(state, "queued") == 0 || strcmp(state, "running") == 0)) {
		free(payload);
		return dw_error(conn, 409, "this exam is being imported");
	}
	free(payload);
	pl = json_pack("{s:s, s:i, s:i, s:s, s:O?, s:s}", "study",
	               jstr(e, "study_uid"), "sent", 0, "total", 0, "login",
	               jstr(s, "login"), "author", json_object_get(s, "author"),
	               "call", jstr(s, "call"));
	if (pl && strcmp(c->cfg->conso_import_ids, "local") == 0) {
		/* filed under the patient the call named */
		json_t *p = json_object_get(s, "patient");

		json_object_set_new(pl, "ids",
		                    json_pack("{s:s, s:s, s:s, s:s}",
		                              "patient_id", jstr(p, "pid"),
		                              "issuer", jstr(p, "pid_issuer"),
		                              "ins", jstr(p, "ins"), "ins_oid",
		                              jstr(p, "ins_oid")));
	}
	text = pl ? json_dumps(pl, JSON_COMPACT) : NULL;
	json_decref(pl);
	id = text ? index_job_add(c->ix, "import", text, subject) : -1;
	free(text);
	if (id < 0)
		return dw_error(conn, 503, "the import could not be queued");
	pthread_mutex_lock(&c->lock);
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
	log_info(LOGC_JOBS, "import of study=%s queued as job %lld",
	         jstr(e, "study_uid"), (long long)id);
	{
		char body[64];
		int n = snprintf(body, sizeof(body), "{\"job\": %lld}",
		                 (long long)id);
		struct MHD_Response *resp = MHD_create_response_from_buffer(
		        (size_t)n, body, MHD_RESPMEM_MUST_COPY);
		enum MHD_Result rc;

		if (resp == NULL)
			return MHD_NO;
		MHD_add_response_header(resp, "Content-Type",
		                        "application/json");
		rc = MHD_queue_response(conn, 202, resp);
		MHD_destroy_response(resp);
		return rc;
	}
}

/* The PDF a CDA report carries (its nonXMLBody), or the CDA itself. */
static enum MHD_Result report(struct conso *c, struct MHD_Connection *conn,
                              json_t *s, json_t *e)
{
	json_t *r = json_object_get(e, "report");
	char err[300] = "", *cda = NULL;
	size_t len = 0;
	xmlDocPtr doc = NULL;
	xmlChar *b64 = NULL;
	unsigned char *pdf = NULL;
	struct MHD_Response *resp;
	enum MHD_Result rc;
	int n = -1;

	if (!json_is_object(r))
		return dw_error(conn, 404,
		                "the DMP has no report for this "
		                "exam");
	if (dmp_retrieve_document(c->cfg, s, jstr(r, "repository"),
	                          jstr(r, "unique"), &cda, &len, err,
	                          sizeof(err)) != DMP_OK)
		return dw_error(conn, 502, "%s", err);
	doc = len <= INT32_MAX
	              ? xmlReadMemory(cda, (int)len, NULL, NULL,
	                              XML_PARSE_NONET | XML_PARSE_NOERROR |
	                                      XML_PARSE_NOWARNING |
	                                      XML_PARSE_HUGE)
	              : NULL;
	for (xmlNodePtr x = doc ? xmlDocGetRootElement(doc) : NULL; x;) {
		xmlNodePtr next = NULL;

		if (xmlStrcmp(x->name, BAD_CAST "text") == 0 && x->parent &&
		    xmlStrcmp(x->parent->name, BAD_CAST "nonXMLBody") == 0) {
			b64 = xmlNodeGetContent(x);
			break;
		}
		for (xmlNodePtr k = x->children; k && !next; k = k->next)
			if (k->type == XML_ELEMENT_NODE &&
			    (xmlStrcmp(k->name, BAD_CAST "component") == 0 ||
			     xmlStrcmp(k->name, BAD_CAST "nonXMLBody") == 0 ||
			     xmlStrcmp(k->name, BAD_CAST "text") == 0))
				next = k;
		x = next;
	}
	if (b64 != NULL) {
		size_t cap = (size_t)xmlStrlen(b64) / 4 * 3 + 3, w = 0;
		EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
		int out = 0;

		pdf = malloc(cap);
		if (pdf && ctx) {
			EVP_DecodeInit(ctx);
			if (EVP_DecodeUpdate(ctx, pdf, &out, b64,
			                     xmlStrlen(b64)) >= 0) {
				w = (size_t)out;
				if (EVP_DecodeFinal(ctx, pdf + w, &out) > 0)
					n = (int)(w + (size_t)out);
			}
		}
		EVP_ENCODE_CTX_free(ctx);
	}
	xmlFree(b64);
	xmlFreeDoc(doc);
	if (n > 0) {
		free(cda);
		resp = MHD_create_response_from_buffer((size_t)n, pdf,
		                                       MHD_RESPMEM_MUST_FREE);
		pdf = NULL;
	} else {
		resp = MHD_create_response_from_buffer(len, cda,
		                                       MHD_RESPMEM_MUST_FREE);
	}
	free(pdf);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type",
	                        n > 0 ? "application/pdf" : "text/xml");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	rc = MHD_queue_response(conn, 200, resp);
	MHD_destroy_response(resp);
	return rc;
}

/*
 * A session's background work: its exams asked of the DMP as soon as the
 * session opens (while the browser loads the page), then the most recent
 * exams pulled (prefetch).
 */
struct background {
	struct conso *c;
	json_t *s, *exams;   /* exams NULL: to be listed first, */
	struct listing *own; /* in this slot */
	char hash[65];
};

static int by_date_desc(const void *a, const void *b)
{
	return strcmp(jstr(*(json_t *const *)b, "date"),
	              jstr(*(json_t *const *)a, "date"));
}

static void prefetch(struct conso *c, json_t *s, json_t *exams)
{
	size_t n = json_array_size(exams), k = 0;
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	char err[400];

	for (size_t i = 0; v && i < n; i++)
		v[i] = json_array_get(exams, i);
	if (v)
		qsort(v, n, sizeof(*v), by_date_desc);
	for (size_t i = 0; v && i < n && k < (size_t)c->cfg->conso_prefetch;
	     i++, k++) {
		const char *study = jstr(v[i], "study_uid");

		if (prepare(c, s, v[i], err, sizeof(err)) != 0) {
			remote_note_error(c->remote, study, err);
			continue;
		}
		if (uncached(c, study) > 0)
			start_pull(c, study);
	}
	free(v);
}

static void *background_thread(void *arg)
{
	struct background *p = arg;
	char err[400];
	unsigned status;

	log_set_context("session");
	if (p->exams == NULL)
		p->exams = ask_dmp(p->c, p->s, p->hash, p->own, 1, &status, err,
		                   sizeof(err));
	if (p->exams != NULL && p->c->cfg->conso_prefetch > 0)
		prefetch(p->c, p->s, p->exams);
	json_decref(p->s);
	json_decref(p->exams);
	pthread_mutex_lock(&p->c->lock);
	p->c->background--;
	pthread_cond_broadcast(&p->c->wake);
	pthread_mutex_unlock(&p->c->lock);
	free(p);
	return NULL;
}

/*
 * Starts a session's background work: listing and prefetch (exams NULL),
 * or the prefetch of exams just listed. Nothing when there is nothing to
 * do or no thread to be had (the page then lists by itself).
 */
static void background(struct conso *c, json_t *s, const char *hash,
                       json_t *exams)
{
	struct background *p;
	pthread_attr_t attr;
	pthread_t t;

	if (exams != NULL &&
	    (c->cfg->conso_prefetch == 0 || json_array_size(exams) == 0))
		return;
	p = malloc(sizeof(*p));
	if (p == NULL)
		return;
	*p = (struct background){ c, json_deep_copy(s), json_incref(exams),
		                  NULL, "" };
	snprintf(p->hash, sizeof(p->hash), "%s", hash);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&c->lock);
	/* the slot is the session's before the page can ask */
	if (exams == NULL && (p->own = listing_claim(c, hash)) == NULL) {
		pthread_mutex_unlock(&c->lock);
		json_decref(p->s);
		free(p);
		pthread_attr_destroy(&attr);
		return;
	}
	c->background++;
	pthread_mutex_unlock(&c->lock);
	if (pthread_create(&t, &attr, background_thread, p) != 0) {
		pthread_mutex_lock(&c->lock);
		if (p->own != NULL)
			p->own->hash[0] = '\0';
		c->background--;
		pthread_cond_broadcast(&c->listed);
		pthread_mutex_unlock(&c->lock);
		json_decref(p->s);
		json_decref(p->exams);
		free(p);
	}
	pthread_attr_destroy(&attr);
}

static enum MHD_Result api(struct conso *c, struct MHD_Connection *conn,
                           const char *path, const char *method,
                           const struct auth_user *who)
{
	char hash[65], err[400] = "", id[64];
	json_t *s = session_of(c, conn, hash), *exams, *e, *out;
	const char *action = NULL, *x;
	unsigned status = 0;
	enum MHD_Result rc;
	int loaded;

	if (s == NULL)
		return dw_error(conn, 401,
		                "no session, or it expired: open "
		                "drimbox again from your software");
	if (who != NULL && strcmp(jstr(s, "login"), who->session) != 0) {
		json_decref(s);
		return dw_error(conn, 403,
		                "this patient was opened by another sign-in");
	}
	if (strcmp(path, "session") == 0 && strcmp(method, "GET") == 0) {
		out = json_pack("{s:O, s:O, s:{s:s}}", "patient",
		                json_object_get(s, "patient"), "focus",
		                json_object_get(s, "focus"), "professional",
		                "name",
		                jstr(json_object_get(s, "author"), "family"));
		json_decref(s);
		return send_json(conn, out);
	}
	exams = load_exams(c, s, hash, &loaded, &status, err, sizeof(err));
	if (exams == NULL) {
		json_decref(s);
		return dw_error(conn, status, "DMP: %s", err);
	}
	if (loaded)
		background(c, s, hash, exams);
	if (strcmp(path, "exams") == 0 && strcmp(method, "GET") == 0) {
		size_t i;

		json_array_foreach(exams, i, e) exam_state(c, e);
		rc = send_json(conn, json_pack("{s:O}", "exams", exams));
		goto done;
	}
	/* exams/{id}/{view|import|report} */
	x = strncmp(path, "exams/", 6) == 0 ? path + 6 : NULL;
	if (x != NULL && strchr(x, '/') != NULL &&
	    (size_t)(strchr(x, '/') - x) < sizeof(id)) {
		snprintf(id, sizeof(id), "%.*s", (int)(strchr(x, '/') - x), x);
		action = strchr(x, '/') + 1;
	}
	e = action ? find_exam(exams, id) : NULL;
	if (e == NULL) {
		rc = dw_error(conn, 404, "no such exam");
	} else if (strcmp(action, "report") == 0 &&
	           strcmp(method, "GET") == 0) {
		rc = report(c, conn, s, e);
	} else if (strcmp(method, "POST") != 0 ||
	           (strcmp(action, "view") != 0 &&
	            strcmp(action, "import") != 0)) {
		rc = dw_error(conn, 404, "no such resource");
	} else if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                       "X-Requested-With") == NULL) {
		/* a form of another site cannot set it */
		rc = dw_error(conn, 403, "X-Requested-With required");
	} else if (strcmp(action, "view") == 0) {
		rc = view(c, conn, s, e);
	} else {
		rc = import(c, conn, s, e);
	}
done:
	json_decref(exams);
	json_decref(s);
	return rc;
}

enum MHD_Result conso_handle(struct conso *c, struct MHD_Connection *conn,
                             const char *url, const char *method,
                             const struct auth_user *who, const char *body,
                             size_t len)
{
	const char *rel = url + strlen(CONSO);
	const char *ctx;
	enum MHD_Result rc;
	int missing;

	if (strcmp(url, CONSO) == 0) {
		if (strcmp(method, "POST") == 0)
			return contextual_call(c, conn, body ? body : "", len);
		return web_redirect(conn, 301, CONSO "/");
	}
	if (strncmp(url, API, strlen(API)) == 0)
		return api(c, conn, url + strlen(API), method, who);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return dw_error(conn, 405, "method %s not allowed", method);
	rel++; /* past "/" */
	ctx = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ctx");
	if (*rel == '\0' && ctx != NULL)
		return redeem(c, conn, ctx, who);
	if (!web_safe_path(rel))
		return dw_error(conn, 404, "no such file");
	{
		char dir[CONFIG_STR_MAX + 8];

		snprintf(dir, sizeof(dir), "%s/conso", c->cfg->web_dir);
		rc = web_file(conn, dir, *rel ? rel : "index.html", &missing);
	}
	return missing ? dw_error(conn, 404, "no such file") : rc;
}

/* ---- the import worker -------------------------------------------------- */

struct files {
	char (*rel)[256];
	char (*series)[65];
	size_t n, cap;
};

static int add_file(void *ctx, const struct idx_row *row)
{
	struct files *f = ctx;

	if (row->cache_path == NULL)
		return 0;
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 256;
		void *a = realloc(f->rel, cap * sizeof(*f->rel));

		if (a == NULL)
			return 1;
		f->rel = a;
		a = realloc(f->series, cap * sizeof(*f->series));
		if (a == NULL)
			return 1;
		f->series = a;
		f->cap = cap;
	}
	snprintf(f->rel[f->n], sizeof(f->rel[0]), "%s", row->cache_path);
	snprintf(f->series[f->n], sizeof(f->series[0]), "%s", row->series_uid);
	f->n++;
	return 0;
}

static int count_match(void *ctx, const struct dcm_ds *match)
{
	(void)match;
	(*(long *)ctx)++;
	return 0;
}

/* Instances of a series the PACS lists (C-FIND); -1 when it cannot. */
static long pacs_count(struct conso *c, const char *study, const char *series,
                       char *err, size_t errlen)
{
	struct dcm_ds *q = dcm_ds_new();
	long n = 0;

	if (q == NULL ||
	    dcm_ds_set_string(q, DCM_TAG(0x0008, 0x0052), "IMAGE") != DCM_OK ||
	    dcm_ds_set_string(q, DCM_TAG(0x0020, 0x000D), study) != DCM_OK ||
	    dcm_ds_set_string(q, DCM_TAG(0x0020, 0x000E), series) != DCM_OK ||
	    dcm_ds_set_string(q, DCM_TAG(0x0008, 0x0018), "") != DCM_OK ||
	    pacs_find(c->pacs, DCM_LEVEL_IMAGE, q, count_match, &n, err,
	              errlen) != 0)
		n = -1;
	dcm_ds_free(q);
	return n;
}

/* Runs an import; 0 done, -1 to retry, -2 failed for good (err says). */
static int run_import(struct conso *c, const struct idx_claimed *j, char *err,
                      size_t errlen)
{
	json_t *pl = json_loads(j->payload, 0, NULL);
	const char *study = jstr(pl, "study");
	struct retrieve_status st;
	struct files f = { NULL, NULL, 0, 0 };
	struct dcm_assoc *as = NULL;
	struct dcm_err de = { "" };
	json_t *ids = json_object_get(pl, "ids");
	struct dcm_patient_ids pid = { jstr(ids, "patient_id"),
		                       jstr(ids, "issuer"), jstr(ids, "ins"),
		                       jstr(ids, "ins_oid") };
	int rc = -1;

	if (!dw_is_uid(study, strlen(study))) {
		snprintf(err, errlen, "the job names no study");
		rc = -2;
		goto out;
	}
	if (jstr(pl, "login")[0] != '\0') /* after a restart too */
		remote_set_session(c->remote, study, jstr(pl, "login"),
		                   jstr(json_object_get(pl, "author"), "id"),
		                   jstr(pl, "call"));
	if (uncached(c, study) > 0 &&
	    retriever_fetch(c->rt, study, NULL, 1000, NULL, NULL, &st) != 0) {
		snprintf(err, errlen, "pull: %s", st.error);
		remote_note_error(c->remote, study, st.error);
		goto out;
	}
	if (index_walk(c->ix, study, add_file, &f) != 0 || f.n == 0) {
		snprintf(err, errlen, "nothing cached to import");
		goto out;
	}
	if (dcm_assoc_open(&c->pacs->peer, DCM_SVC_STORE, &as, &de) != DCM_OK) {
		snprintf(err, errlen, "PACS: %s", de.msg);
		goto out;
	}
	for (size_t i = 0; i < f.n; i++) {
		char path[PATH_MAX];
		unsigned status = 0xFFFF;

		if (cache_abs_path(c->cache, f.rel[i], path, sizeof(path)) !=
		            0 ||
		    dcm_store_file_as(as, path, pid.patient_id[0] ? &pid : NULL,
		                      &status, &de) != DCM_OK ||
		    (status != 0 && (status & 0xF000) != 0xB000)) {
			snprintf(err, errlen, "C-STORE of %s: %s (status %04x)",
			         f.rel[i], de.msg, status);
			goto out;
		}
		if ((i + 1) % 16 == 0 || i + 1 == f.n) {
			char *text;

			json_object_set_new(pl, "sent",
			                    json_integer((json_int_t)i + 1));
			json_object_set_new(pl, "total",
			                    json_integer((json_int_t)f.n));
			text = json_dumps(pl, JSON_COMPACT);
			if (text)
				(void)index_job_payload(c->ix, j, text);
			free(text);
		}
	}
	dcm_assoc_close(as);
	as = NULL;
	/* the PACS must now list every instance of every series */
	for (size_t i = 0; i < f.n; i++) {
		long want = 0, got;

		if (i > 0 && strcmp(f.series[i], f.series[i - 1]) == 0)
			continue;
		for (size_t k = 0; k < f.n; k++)
			want += strcmp(f.series[k], f.series[i]) == 0;
		got = pacs_count(c, study, f.series[i], err, errlen);
		if (got < want) {
			if (got >= 0)
				snprintf(err, errlen,
				         "the PACS lists %ld of the %ld "
				         "instances "
				         "of series %s",
				         got, want, f.series[i]);
			goto out;
		}
	}
	log_info(LOGC_JOBS,
	         "job %lld: study=%s imported, %zu instances "
	         "checked in the PACS",
	         (long long)j->id, study, f.n);
	rc = 0;
out:
	if (as)
		dcm_assoc_close(as);
	audit_conso(NULL, pl, "import", study, rc == 0 ? "ok" : "failed",
	            rc == 0 ? NULL : err, 0);
	free(f.rel);
	free(f.series);
	json_decref(pl);
	return rc;
}

static void *worker(void *arg)
{
	struct conso *c = arg;

	log_set_context("import");
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		struct idx_claimed j;
		char err[400] = "";
		int rc;
		time_t now = time(NULL);

		pthread_mutex_unlock(&c->lock);
		rc = index_job_claim(c->ix, "import", (int64_t)now, &j);
		if (rc == 1) {
			char ctx[40];
			int out, retry;

			snprintf(ctx, sizeof(ctx), "job=%lld", (long long)j.id);
			log_set_context(ctx);
			out = run_import(c, &j, err, sizeof(err));
			retry = out == -1 && j.attempts + 1 < IMPORT_ATTEMPTS;

			if (out != 0)
				log_error(LOGC_JOBS, "job %lld: import %s: %s",
				          (long long)j.id,
				          retry ? "to retry" : "failed", err);
			(void)index_job_finish(
			        c->ix, &j,
			        out == 0 ? "done"
			        : retry  ? "queued"
			                 : "failed",
			        (int64_t)now + 10 * (j.attempts + 1), NULL,
			        out == 0 ? NULL : err, NULL);
			free(j.payload);
			log_set_context("import");
		}
		pthread_mutex_lock(&c->lock);
		if (rc != 1 && !c->stop) {
			struct timespec until;

			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 2;
			pthread_cond_timedwait(&c->wake, &c->lock, &until);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct conso *conso_start(const struct config *cfg, struct index *ix,
                          struct cache *cache, const struct pacs *pacs,
                          struct retriever *rt, struct remote *remote,
                          char *err, size_t errlen)
{
	struct conso *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	*c = (struct conso){ .cfg = cfg,
		             .ix = ix,
		             .cache = cache,
		             .pacs = pacs,
		             .rt = rt,
		             .remote = remote };
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->wake, NULL);
	pthread_cond_init(&c->listed, NULL);
	if (pthread_create(&c->worker, NULL, worker, c) != 0) {
		snprintf(err, errlen, "cannot start the import worker");
		pthread_cond_destroy(&c->listed);
		pthread_cond_destroy(&c->wake);
		pthread_mutex_destroy(&c->lock);
		free(c);
		return NULL;
	}
	return c;
}

void conso_stop(struct conso *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = 1;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->worker, NULL);
	pthread_mutex_lock(&c->lock);
	while (c->background > 0)
		pthread_cond_wait(&c->wake, &c->lock);
	pthread_mutex_unlock(&c->lock);
	pthread_cond_destroy(&c->listed);
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
