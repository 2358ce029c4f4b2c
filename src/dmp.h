/*
 * dmp.h - the DMP client: ITI-41 (TD2.1) publication of a KOS manifest,
 * over SOAP 1.2 + WS-Addressing + MTOM/XOP, with the VIHF (a SAML 2
 * assertion signed with xmlsec1) in wsse:Security, by libcurl (TLS with a
 * client certificate when configured).
 */
#ifndef DRIMBOX_DMP_H
#define DRIMBOX_DMP_H

#include <jansson.h>
#include <stddef.h>

struct config;

/* Once, before threads: initialises xmlsec1. 0, or -1 with err. */
int dmp_global_init(char *err, size_t errlen);
void dmp_global_cleanup(void);

/*
 * Opens a connection to dmp_url (TCP, and TLS with the DMP's settings)
 * within timeout seconds and closes it: 0, or -1 with why. For readiness.
 */
int dmp_ping(const struct config *cfg, long timeout, char *err, size_t errlen);

/* What the DMP answered. */
enum dmp_outcome {
	DMP_OK,        /* registered (or already, by the same unique id) */
	DMP_RETRY,     /* not reached, or a transient fault: try again */
	DMP_PERMANENT, /* refused for what was sent: retrying cannot help */
};

/*
 * Publishes (ITI-41) the KOS file at kos_path (SOP Instance UID kos_sop)
 * of the report described by payload (a job's: patient, document, author,
 * legal, studies, orders, meta) for study study_uid, replacing (RPLC) the
 * entry `replaces` when not NULL. ss_unique is the submission set's unique
 * id (the same for every attempt). timing (may be NULL) gets how long the
 * steps took. err says why when not DMP_OK.
 */
struct dmp_timing {
	double sign_s, send_s; /* signing the VIHF; the HTTP exchange */
};

enum dmp_outcome dmp_publish(const struct config *cfg, json_t *payload,
                             const char *study_uid, const char *kos_path,
                             const char *kos_sop, const char *ss_unique,
                             const char *replaces, struct dmp_timing *timing,
                             char *err, size_t errlen);

/*
 * The entry UUIDs (up to max) of the approved KOS manifests the DMP holds
 * for the patient and study (ITI-18 FindDocumentsByReferenceId).
 */
enum dmp_outcome dmp_find_manifests(const struct config *cfg, json_t *payload,
                                    const char *study_uid, char (*entries)[80],
                                    size_t max, size_t *n, char *err,
                                    size_t errlen);

/*
 * Whether the DMP holds a document with this unique id (ITI-18
 * GetDocuments): a send whose reply was lost may have registered it.
 */
enum dmp_outcome dmp_registered(const struct config *cfg, json_t *payload,
                                const char *unique, int *found, char *err,
                                size_t errlen);

/* Deletes an entry (ITI-57, status Deleted). */
enum dmp_outcome dmp_delete(const struct config *cfg, json_t *payload,
                            const char *entry, const char *ss_unique, char *err,
                            size_t errlen);

/*
 * The consumer's transactions. who is {"patient": {"ins", "ins_oid"},
 * "author": the professional consulting {"id", "family", "given"}}: the
 * VIHF names them.
 */

/* TD0.2: the patient's DMP exists and is open. */
enum dmp_outcome dmp_patient_check(const struct config *cfg, json_t *who,
                                   char *err, size_t errlen);

/* TD0.3: records that the patient was informed and does not object. */
enum dmp_outcome dmp_authorize(const struct config *cfg, json_t *who, char *err,
                               size_t errlen);

/*
 * TD3.1 (ITI-18): the patient's approved documents: with reference NULL,
 * FindDocuments of the imaging manifests (typeCode IMG-KOS) and reports
 * (18748-4); else FindDocumentsByReferenceId of every document naming
 * that reference ("ACN^^^&OID&ISO^urn:ihe:iti:xds:2013:accession"). *docs
 * a JSON array of {"entry", "unique", "repository", "mime", "type",
 * "title", "creation", "service_start", "institution", "references":
 * [...], "events": [{"code", "scheme", "display"}]}.
 */
enum dmp_outcome dmp_find_documents(const struct config *cfg, json_t *who,
                                    const char *reference, json_t **docs,
                                    char *err, size_t errlen);

/* TD3.2 (ITI-43): a document's bytes (*data malloc'd, *len). */
enum dmp_outcome dmp_retrieve_document(const struct config *cfg, json_t *who,
                                       const char *repository,
                                       const char *unique, char **data,
                                       size_t *len, char *err, size_t errlen);

/*
 * Reads a DMP reply as received (ctype: its Content-Type, SOAP or MTOM;
 * http: its status) as ITI-18's are read: the outcome, and with DMP_OK the
 * document entries it lists (*docs, the caller frees). For the fuzzing
 * harness (tests/fuzz), which feeds it what a hostile DMP could send.
 */
enum dmp_outcome dmp_read_reply(const char *ctype, const char *body, size_t len,
                                long http, json_t **docs, char *err,
                                size_t errlen);

#endif
