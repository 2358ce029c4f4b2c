/*
 * intake.c - see intake.h. The rules, in the order they are applied:
 *
 *   AR  the frame or the message cannot be read, its type or version is
 *       not one we handle, MSH-10 is empty;
 *   AE  it can be read but lacks what a publication needs (PID, an INS,
 *       ORC-1, the CDA in OBX-5 as base64 XML, a study in the CDA) or
 *       contradicts itself (the CDA's patient is not PID-3's INS);
 *   AA  accepted and journaled: a job is queued (publish for NW,
 *       replace for RO, unpublish for CA), or parked when the identity is
 *       not qualified (PID-32 is not VALI), or none when DESTDMP is N.
 * A message with a qualified identity releases the jobs parked for the
 * same patient (same local id), under that identity.
 */
#include "intake.h"
#include "cda.h"
#include "config.h"
#include "hl7.h"
#include "index.h"
#include "log.h"
#include "metrics.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* HL7 table 0357 error codes used here */
#define E_SEQUENCE 100
#define E_REQUIRED 101
#define E_DATA_TYPE 102
#define E_TABLE 103
#define E_TYPE 200
#define E_VERSION 203
#define E_INTERNAL 207

#define MAX_IDS 32 /* repetitions of PID-3 read */

struct intake {
	const struct config *cfg;
	struct index *ix;
	void (*queued)(void *ctx);
	void *queued_ctx;
	atomic_ulong seq; /* numbers our acknowledgements */
};

/* What was decided about one message. */
struct decision {
	enum hl7_ack_code outcome;
	int code;
	char reason[512];
	char type[64], control_id[128], sender[192];
	const char *kind; /* job to create, or NULL */
	char *payload;
	char subject[256];
	const char *parked_for;
	char park_reason[512];
	int release; /* a qualified identity: release parked jobs */
	char *patient_json;
};

struct patient {
	char ins[64], ins_oid[64], ipp[64], ipp_oid[64], status[16];
	char family[128], given[128], birth[16], sex[4];
};

static const char *const ins_oids[] = {
	"1.2.250.1.213.1.4.8",  /* INS-NIR */
	"1.2.250.1.213.1.4.9",  /* INS-NIA */
	"1.2.250.1.213.1.4.10", /* INS-NIR, test */
	"1.2.250.1.213.1.4.11", /* INS-NIR, demonstration */
};

static int is_ins_oid(const char *oid)
{
	for (size_t i = 0; i < sizeof(ins_oids) / sizeof(*ins_oids); i++)
		if (strcmp(oid, ins_oids[i]) == 0)
			return 1;
	return 0;
}

__attribute__((format(printf, 4, 5))) static int
refuse(struct decision *d, enum hl7_ack_code outcome, int code, const char *fmt,
       ...)
{
	va_list ap;

	d->outcome = outcome;
	d->code = code;
	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
	va_end(ap);
	return -1;
}

#define GET(m, seg, f, r, c, s, buf)                                           \
	hl7_get(m, seg, f, r, c, s, buf, sizeof(buf))

/* PID: the INS (required), the local id, the identity's status. */
static int read_patient(const struct hl7_msg *m, struct patient *p,
                        struct decision *d)
{
	const struct hl7_seg *pid = hl7_segment(m, "PID", 1);
	int reps;

	memset(p, 0, sizeof(*p));
	if (pid == NULL)
		return refuse(d, HL7_AE, E_SEQUENCE, "no PID segment");
	reps = hl7_reps(m, pid, 3);
	if (reps > MAX_IDS)
		return refuse(d, HL7_AE, E_DATA_TYPE,
		              "PID-3 has %d repetitions (%d at most)", reps,
		              MAX_IDS);
	for (int r = 1; r <= reps; r++) {
		char id[64], oid[64], type[16];

		GET(m, pid, 3, r, 1, 0, id);
		GET(m, pid, 3, r, 4, 2, oid);
		GET(m, pid, 3, r, 5, 0, type);
		if (strcmp(type, "INS") == 0 || is_ins_oid(oid)) {
			if (!is_ins_oid(oid))
				return refuse(d, HL7_AE, E_TABLE,
				              "PID-3: INS %s with assigning "
				              "authority '%s', not an INS OID "
				              "(1.2.250.1.213.1.4.8 to .11)",
				              id, oid);
			snprintf(p->ins, sizeof(p->ins), "%s", id);
			snprintf(p->ins_oid, sizeof(p->ins_oid), "%s", oid);
		} else if (strcmp(type, "PI") == 0 && p->ipp[0] == '\0') {
			snprintf(p->ipp, sizeof(p->ipp), "%s", id);
			snprintf(p->ipp_oid, sizeof(p->ipp_oid), "%s", oid);
		}
	}
	if (p->ins[0] == '\0')
		return refuse(d, HL7_AE, E_REQUIRED,
		              "PID-3 holds no INS (an identifier of type INS "
		              "under an INS OID): the DMP needs one");
	GET(m, pid, 5, 1, 1, 0, p->family);
	GET(m, pid, 5, 1, 2, 0, p->given);
	GET(m, pid, 7, 1, 1, 0, p->birth);
	GET(m, pid, 8, 1, 1, 0, p->sex);
	GET(m, pid, 32, 1, 1, 0, p->status);
	return 0;
}

/* The ED OBX (the report), or NULL. */
static const struct hl7_seg *report_obx(const struct hl7_msg *m)
{
	const struct hl7_seg *obx;
	char type[8];

	for (obx = hl7_next(m, NULL, "OBX"); obx;
	     obx = hl7_next(m, obx, "OBX")) {
		GET(m, obx, 2, 1, 1, 0, type);
		if (strcmp(type, "ED") == 0)
			return obx;
	}
	return NULL;
}

/* OBX-11 of the report is C: a corrected result. */
static int corrected(const struct hl7_msg *m)
{
	char status[4];

	GET(m, report_obx(m), 11, 1, 1, 0, status);
	return strcmp(status, "C") == 0;
}

/* The base64 CDA of the first OBX of type ED; *xml malloc'd or NULL. */
static int read_cda(const struct hl7_msg *m, char **xml, size_t *len,
                    struct decision *d)
{
	const struct hl7_seg *obx = report_obx(m);
	char sub[16], enc[16];
	const char *b64;
	size_t n;
	EVP_ENCODE_CTX *ctx;
	unsigned char *out;
	int k, fin, total, ok;

	*xml = NULL;
	if (obx == NULL)
		return 0;
	GET(m, obx, 5, 1, 3, 0, sub);
	GET(m, obx, 5, 1, 4, 0, enc);
	if (strcasecmp(sub, "XML") != 0 || strcasecmp(enc, "Base64") != 0)
		return refuse(d, HL7_AE, E_DATA_TYPE,
		              "OBX-5 is '%s^%s', expected XML^Base64", sub,
		              enc);
	b64 = hl7_raw(m, obx, 5, 1, 5, &n);
	if (b64 == NULL || n == 0)
		return refuse(d, HL7_AE, E_REQUIRED,
		              "OBX-5 holds no report (empty data)");
	if (n > (size_t)INT32_MAX)
		return refuse(d, HL7_AE, E_DATA_TYPE, "OBX-5 is too large");
	out = malloc(n / 4 * 3 + 4);
	ctx = EVP_ENCODE_CTX_new();
	if (out == NULL || ctx == NULL) {
		free(out);
		EVP_ENCODE_CTX_free(ctx);
		return refuse(d, HL7_AE, E_INTERNAL, "out of memory");
	}
	EVP_DecodeInit(ctx);
	total = 0;
	/* RIS omit the final padding (the CI-SIS deletion sample does): it
	 * is supplied */
	ok = EVP_DecodeUpdate(ctx, out, &k, (const unsigned char *)b64,
	                      (int)n) >= 0;
	total += k;
	if (ok && n % 4 >= 2) {
		ok = EVP_DecodeUpdate(ctx, out + total, &k,
		                      (const unsigned char *)"==",
		                      (int)(4 - n % 4)) >= 0;
		total += k;
	}
	ok = ok && EVP_DecodeFinal(ctx, out + total, &fin) == 1;
	EVP_ENCODE_CTX_free(ctx);
	if (!ok) {
		free(out);
		return refuse(d, HL7_AE, E_DATA_TYPE,
		              "OBX-5 is not valid base64");
	}
	*xml = (char *)out;
	*len = (size_t)(total + fin);
	return 0;
}

static json_t *code_json(const struct cda_code *c)
{
	return c->code[0]
	               ? json_pack("{s:s, s:s, s:s}", "code", c->code, "system",
	                           c->system, "display", c->display)
	               : json_null();
}

static json_t *person_json(const struct cda_person *p)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s}", "id",
	                 p->id, "id_root", p->id_root, "family", p->family,
	                 "given", p->given, "prefix", p->prefix, "role",
	                 code_json(&p->role), "org_id", p->org_id, "org_root",
	                 p->org_root, "org_name", p->org_name);
}

static json_t *patient_json(const struct patient *p)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "ins",
	                 p->ins, "ins_oid", p->ins_oid, "ipp", p->ipp,
	                 "ipp_oid", p->ipp_oid, "status", p->status, "family",
	                 p->family, "given", p->given, "birth", p->birth, "sex",
	                 p->sex);
}

/* The job's payload: everything the publication will need. */
static char *payload(const struct hl7_msg *m, const char *event,
                     const struct patient *p, const struct cda_info *c,
                     json_t *meta)
{
	const struct hl7_seg *txa = hl7_segment(m, "TXA", 1);
	char version[16], txa12[128], txa13[128];
	json_t *studies = json_array(), *orders = json_array(), *root;
	char *out;

	GET(m, hl7_segment(m, "MSH", 1), 12, 1, 1, 0, version);
	GET(m, txa, 12, 1, 1, 0, txa12);
	GET(m, txa, 13, 1, 1, 0, txa13);
	for (int i = 0; c && i < c->nevents; i++)
		for (int k = 0; k < c->event[i].nstudies; k++)
			json_array_append_new(
			        studies,
			        json_pack("{s:s, s:o, s:o, s:o, s:o, s:s, "
			                  "s:s, s:o}",
			                  "uid", c->event[i].study_uid[k],
			                  "code", code_json(&c->event[i].code),
			                  "ccam", code_json(&c->event[i].ccam),
			                  "modality",
			                  code_json(&c->event[i].modality),
			                  "region",
			                  code_json(&c->event[i].region),
			                  "start", c->event[i].start, "end",
			                  c->event[i].end, "performer",
			                  person_json(&c->event[i].performer)));
	for (const struct hl7_seg *ipc = c ? NULL : hl7_next(m, NULL, "IPC");
	     ipc; ipc = hl7_next(m, ipc, "IPC")) {
		char acc[64], uid[65];

		GET(m, ipc, 1, 1, 1, 0, acc);
		GET(m, ipc, 3, 1, 1, 0, uid);
		json_array_append_new(studies, json_pack("{s:s}", "uid", uid));
		json_array_append_new(orders,
		                      json_pack("{s:s, s:s, s:s, s:s}", "id",
		                                "", "id_root", "", "accession",
		                                acc, "accession_root", ""));
	}
	for (int i = 0; c && i < c->norders; i++)
		json_array_append_new(
		        orders,
		        json_pack("{s:s, s:s, s:s, s:s}", "id", c->order[i].id,
		                  "id_root", c->order[i].id_root, "accession",
		                  c->order[i].accession, "accession_root",
		                  c->order[i].accession_root));
	root = json_pack(
	        "{s:s, s:s, s:o, s:{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, "
	        "s:o, s:o, s:s}, s:o, s:o, s:o, s:o, s:O}",
	        "event", event, "version", version, "patient", patient_json(p),
	        "document", "id", c ? c->doc_id : "", "ext",
	        c ? c->doc_ext : "", "set_id", c ? c->set_id : "", "version",
	        (json_int_t)(c ? c->version : 0), "replaces",
	        c ? c->replaces : "", "title", c ? c->title : "",
	        "effective_time", c ? c->effective_time : "", "txa12", txa12,
	        "type", c ? code_json(&c->type) : json_null(),
	        "confidentiality",
	        c ? code_json(&c->confidentiality) : json_null(), "txa13",
	        txa13, "author", c ? person_json(&c->author) : json_null(),
	        "legal", c ? person_json(&c->legal) : json_null(), "studies",
	        studies, "orders", orders, "meta", meta);
	out = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	return out;
}

/* The MetaDMPMSS flags (OBX-3.3), as {code: "Y"|"N"}. */
static json_t *read_meta(const struct hl7_msg *m)
{
	const struct hl7_seg *obx;
	json_t *meta = json_object();

	for (obx = hl7_next(m, NULL, "OBX"); obx;
	     obx = hl7_next(m, obx, "OBX")) {
		char sys[32], code[64], value[16];

		GET(m, obx, 3, 1, 3, 0, sys);
		if (strcmp(sys, "MetaDMPMSS") != 0)
			continue;
		GET(m, obx, 3, 1, 1, 0, code);
		GET(m, obx, 5, 1, 1, 0, value);
		if (code[0])
			json_object_set_new(meta, code, json_string(value));
	}
	return meta;
}

/* ORC-1, or what the MDM event implies. */
static const char *order_control(const struct hl7_msg *m, const char *event,
                                 struct decision *d)
{
	char orc[8];

	GET(m, hl7_segment(m, "ORC", 1), 1, 1, 1, 0, orc);
	if (orc[0] == '\0')
		snprintf(orc, sizeof(orc), "%s",
		         strcmp(event, "T02") == 0   ? "NW"
		         : strcmp(event, "T10") == 0 ? "RO"
		         : strcmp(event, "T04") == 0 ? "CA"
		                                     : "");
	if (strcmp(orc, "NW") == 0)
		return "NW";
	if (strcmp(orc, "RO") == 0 || strcmp(orc, "XO") == 0)
		return "RO";
	if (strcmp(orc, "CA") == 0)
		return "CA";
	refuse(d, HL7_AE, orc[0] ? E_TABLE : E_REQUIRED,
	       orc[0] ? "ORC-1 '%s' is not NW, RO or CA"
	              : "ORC-1 (order control) is missing%s",
	       orc);
	return NULL;
}

static void judge(const struct hl7_msg *m, struct decision *d,
                  const struct patient *p, const char *orc,
                  const struct cda_info *cda);

/* The report is about PID-3's INS: one of the CDA patient's ids is it. */
static int same_patient(const struct cda_info *cda, const struct patient *p,
                        struct decision *d)
{
	const char *other = NULL;

	for (int i = 0; i < cda->npatient; i++) {
		if (!is_ins_oid(cda->patient[i].root))
			continue;
		if (strcmp(cda->patient[i].ext, p->ins) == 0)
			return 1;
		other = cda->patient[i].ext;
	}
	refuse(d, HL7_AE, E_DATA_TYPE,
	       other ? "the report's patient (CDA recordTarget INS %s) is not "
	               "PID-3's INS %s"
	             : "the report's patient (CDA recordTarget) has no INS%s; "
	               "PID-3's is %s",
	       other ? other : "", p->ins);
	return 0;
}

/*
 * Whether the report (OBX-3 of the ED OBX, or OBR-4) is an imaging report
 * (LOINC 18748-4): drimbox publishes imaging exams, not e.g. biology.
 */
static int imaging_report(const struct hl7_msg *m, struct decision *d)
{
	char code[32];

	GET(m, report_obx(m), 3, 1, 1, 0, code);
	if (code[0] == '\0')
		GET(m, hl7_segment(m, "OBR", 1), 4, 1, 1, 0, code);
	if (code[0] == '\0' || strcmp(code, "18748-4") == 0)
		return 1;
	refuse(d, HL7_AE, E_TABLE,
	       "the report is of type %s, not an imaging report (LOINC "
	       "18748-4)",
	       code);
	return 0;
}

/* Reads and judges a parsed message (see the file comment). */
static void evaluate(const struct hl7_msg *m, struct decision *d)
{
	const struct hl7_seg *msh = hl7_segment(m, "MSH", 1);
	char type[16], event[16], version[16], *xml = NULL;
	struct cda_info *cda = NULL;
	struct patient p;
	const char *orc;
	size_t xml_len = 0;
	int is_oru, is_mdm, is_omi;

	GET(m, msh, 9, 1, 1, 0, type);
	GET(m, msh, 9, 1, 2, 0, event);
	GET(m, msh, 12, 1, 1, 0, version);
	is_oru = strcmp(type, "ORU") == 0 && strcmp(event, "R01") == 0;
	is_mdm = strcmp(type, "MDM") == 0 &&
	         (strcmp(event, "T02") == 0 || strcmp(event, "T10") == 0 ||
	          strcmp(event, "T04") == 0);
	/* an imaging order cancelled: the exam is withdrawn (referencing
	 * set, exam W) */
	is_omi = strcmp(type, "OMI") == 0 && strcmp(event, "O23") == 0;
	if (d->control_id[0] == '\0') {
		refuse(d, HL7_AR, E_REQUIRED,
		       "MSH-10 (message control id) is empty");
		return;
	}
	if (!is_oru && !is_mdm && !is_omi) {
		refuse(d, HL7_AR, E_TYPE,
		       "message type %s^%s is not handled (ORU^R01, "
		       "MDM^T02, MDM^T10, MDM^T04, OMI^O23 are)",
		       type, event);
		return;
	}
	if (((is_oru || is_omi) && strcmp(version, "2.5") != 0 &&
	     strcmp(version, "2.5.1") != 0) ||
	    (is_mdm && strcmp(version, "2.6") != 0)) {
		refuse(d, HL7_AR, E_VERSION,
		       "version %s is not handled for %s (ORU^R01, OMI^O23: "
		       "2.5, 2.5.1; MDM: 2.6)",
		       version, type);
		return;
	}
	if (read_patient(m, &p, d) != 0 ||
	    (orc = order_control(m, event, d)) == NULL)
		return;
	if (is_omi) {
		char uid[65];

		GET(m, hl7_segment(m, "IPC", 1), 3, 1, 1, 0, uid);
		if (strcmp(orc, "CA") != 0)
			refuse(d, HL7_AE, E_TABLE,
			       "OMI^O23 is handled for a cancellation (ORC-1 "
			       "CA) only, not %s",
			       orc);
		else if (uid[0] == '\0')
			refuse(d, HL7_AE, E_REQUIRED,
			       "OMI^O23: no IPC-3 (study instance UID)");
		else
			judge(m, d, &p, orc, NULL);
		return;
	}
	if (!imaging_report(m, d) || read_cda(m, &xml, &xml_len, d) != 0)
		return;
	if (xml != NULL) {
		char err[256];

		cda = malloc(sizeof(*cda)); /* 60 KiB */
		if (cda == NULL) {
			free(xml);
			refuse(d, HL7_AE, E_INTERNAL, "out of memory");
			return;
		}
		if (cda_parse(xml, xml_len, cda, err, sizeof(err)) != 0) {
			free(xml);
			free(cda);
			refuse(d, HL7_AE, E_DATA_TYPE, "OBX-5: %s", err);
			return;
		}
		free(xml);
	} else if (strcmp(orc, "CA") != 0) {
		refuse(d, HL7_AE, E_REQUIRED,
		       "no report: no OBX of type ED with the CDA");
		return;
	}
	judge(m, d, &p, orc, cda);
	free(cda);
}

/* The rest of evaluate(), once the CDA (if any: cda may be NULL) is read. */
static void judge(const struct hl7_msg *m, struct decision *d,
                  const struct patient *pp, const char *orc,
                  const struct cda_info *cda)
{
	struct patient p = *pp;
	json_t *meta, *pj;
	if (cda && !same_patient(cda, &p, d))
		return;
	if (cda && (cda->nevents == 0 || cda->event[0].nstudies == 0)) {
		refuse(d, HL7_AE, E_REQUIRED,
		       "the report names no study "
		       "(documentationOf/serviceEvent/id)");
		return;
	}
	meta = read_meta(m);
	{
		json_t *dest = json_object_get(meta, "DESTDMP");

		if (json_is_string(dest) &&
		    strcmp(json_string_value(dest), "N") == 0) {
			json_decref(meta);
			d->outcome = HL7_AA;
			snprintf(d->reason, sizeof(d->reason),
			         "DESTDMP=N: not for the DMP");
			return;
		}
	}
	d->outcome = HL7_AA;
	/* a corrected report (OBX-11 C, or a CDA naming the one it
	 * replaces) replaces, whatever ORC-1 says (referencing G1_MAJ-ORU) */
	d->kind = strcmp(orc, "CA") == 0 ? "unpublish"
	          : strcmp(orc, "RO") == 0 || corrected(m) ||
	                          (cda && cda->replaces[0])
	                  ? "replace"
	                  : "publish";
	d->payload = payload(m, orc, &p, cda, meta);
	json_decref(meta);
	if (p.ipp[0])
		snprintf(d->subject, sizeof(d->subject), "ipp:%s:%s", p.ipp_oid,
		         p.ipp);
	else
		snprintf(d->subject, sizeof(d->subject), "ins:%s:%s", p.ins_oid,
		         p.ins);
	if (strcmp(p.status, "VALI") != 0) {
		d->parked_for = "identity";
		snprintf(d->park_reason, sizeof(d->park_reason),
		         "identity not qualified (PID-32 '%s', not VALI): the "
		         "DMP is fed only under a qualified INS; released "
		         "when a message with a qualified identity arrives "
		         "for this patient",
		         p.status);
	} else {
		d->release = 1;
		pj = patient_json(&p);
		d->patient_json = pj ? json_dumps(pj, JSON_COMPACT) : NULL;
		json_decref(pj);
	}
	if (d->payload == NULL || (d->release && d->patient_json == NULL)) {
		d->kind = NULL;
		refuse(d, HL7_AE, E_INTERNAL, "out of memory");
	}
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;

	out[0] = '\0';
	if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1)
		return;
	for (unsigned i = 0; i < n && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

struct intake *intake_new(const struct config *cfg, struct index *ix,
                          void (*queued)(void *ctx), void *ctx)
{
	struct intake *in = calloc(1, sizeof(*in));

	if (in == NULL)
		return NULL;
	in->cfg = cfg;
	in->ix = ix;
	in->queued = queued;
	in->queued_ctx = ctx;
	return in;
}

void intake_free(struct intake *in)
{
	free(in);
}

char *intake_handle(void *ctx, const struct mllp_msg *msg, size_t *ack_len)
{
	struct intake *in = ctx;
	struct decision d;
	struct hl7_msg *m;
	char err[256], ack_id[64], digest[65];
	struct idx_new_job job;
	struct idx_hl7 rec;
	int64_t job_id = 0, duplicate = 0;
	int released = 0;
	char *ack;

	memset(&d, 0, sizeof(d));
	m = hl7_parse(msg->data, msg->len, err, sizeof(err));
	if (m != NULL) {
		const struct hl7_seg *msh = hl7_segment(m, "MSH", 1);

		char app[96], fac[96];

		GET(m, msh, 9, 1, 0, 0, d.type);
		GET(m, msh, 10, 1, 1, 0, d.control_id);
		GET(m, msh, 3, 1, 1, 0, app);
		GET(m, msh, 4, 1, 1, 0, fac);
		snprintf(d.sender, sizeof(d.sender), "%s^%s", app, fac);
	}
	if (msg->refusal != NULL)
		refuse(&d, HL7_AR, E_SEQUENCE, "%s", msg->refusal);
	else if (m == NULL)
		refuse(&d, HL7_AR, E_SEQUENCE, "unreadable message: %s", err);
	else
		evaluate(m, &d);
	sha256_hex(msg->data, msg->len, digest);
	rec = (struct idx_hl7){ msg->peer,
		                d.sender[0] ? d.sender : NULL,
		                d.control_id[0] ? d.control_id : NULL,
		                d.type[0] ? d.type : NULL,
		                digest,
		                msg->data,
		                msg->len,
		                msg->total,
		                d.outcome == HL7_AA   ? "AA"
		                : d.outcome == HL7_AE ? "AE"
		                                      : "AR",
		                d.reason[0] ? d.reason : NULL };
	job = (struct idx_new_job){ d.kind, d.payload, d.subject, d.parked_for,
		                    d.parked_for ? d.park_reason : NULL };
	if (index_journal_hl7(in->ix, &rec, d.kind ? &job : NULL,
	                      d.release ? d.subject : NULL, "identity",
	                      d.patient_json, &job_id, &released,
	                      &duplicate) != 0)
		/* not the message's fault: AR, the sender may resend it */
		refuse(&d, HL7_AR, E_INTERNAL,
		       "the message could not be journaled (database "
		       "error): send it again later");
	else if (duplicate)
		snprintf(d.reason, sizeof(d.reason),
		         "sent again (message %lld accepted before): no new "
		         "job",
		         (long long)duplicate);
	log_info(LOGC_HL7,
	         "peer=%s id=%s type=%s bytes=%zu -> %s%s%s%s%s job=%lld%s",
	         msg->peer, d.control_id, d.type, msg->total, rec.outcome,
	         d.reason[0] ? " (" : "", d.reason, d.reason[0] ? ")" : "",
	         d.parked_for ? " parked" : "", (long long)job_id,
	         released ? " released parked jobs" : "");
	metrics_hl7(d.type, rec.outcome);
	if ((job_id > 0 || released > 0) && in->queued)
		in->queued(in->queued_ctx);
	snprintf(ack_id, sizeof(ack_id), "DBX%ld%lu", (long)time(NULL),
	         atomic_fetch_add(&in->seq, 1) + 1);
	ack = hl7_ack(m, d.outcome, d.code, d.reason, in->cfg->hl7_application,
	              in->cfg->hl7_facility, ack_id, ack_len);
	hl7_free(m);
	free(d.payload);
	free(d.patient_json);
	return ack;
}
