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

/* What the DMP answered. */
enum dmp_outcome {
	DMP_OK,        /* registered (or already, by the same unique id) */
	DMP_RETRY,     /* not reached, or a transient fault: try again */
	DMP_PERMANENT, /* refused for what was sent: retrying cannot help */
};

/*
 * Publishes the KOS file at kos_path (SOP Instance UID kos_sop) of the
 * report described by payload (a job's: patient, document, author, legal,
 * studies, orders, meta) for study study_uid. ss_unique is the submission
 * set's unique id (kept by the caller so that a retry sends the same).
 * err says why when not DMP_OK.
 */
enum dmp_outcome dmp_publish(const struct config *cfg, json_t *payload,
                             const char *study_uid, const char *kos_path,
                             const char *kos_sop, const char *ss_unique,
                             char *err, size_t errlen);

#endif
