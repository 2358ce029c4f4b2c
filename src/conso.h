/*
 * conso.h - the consumer role. A RIS or a patient record POSTs a
 * contextual call (/conso, DRIM-M parameters) and gets a 303 to the
 * consumer page with an opaque, single-use, expiring context id; opening
 * it turns the context into a session (an HttpOnly cookie) bound to that
 * patient. The page's API (/conso/api/...) lists the patient's exams from
 * the DMP (TD0.2, TD0.3, ITI-18), prepares one for viewing (ITI-43 for its
 * manifest, whitelist check, the remote series recorded in the index: the
 * retriever then pulls them from the source DRIMbox) and imports it into
 * the PACS as a durable job (C-STORE, checked by C-FIND).
 */
#ifndef DRIMBOX_CONSO_H
#define DRIMBOX_CONSO_H

#include <jansson.h>
#include <microhttpd.h>
#include <stddef.h>

struct auth_user;
struct cache;
struct config;
struct index;
struct pacs;
struct retriever;
struct remote;
struct conso;

/* Starts the import worker. NULL with err on failure. */
struct conso *conso_start(const struct config *cfg, struct index *ix,
                          struct cache *cache, const struct pacs *pacs,
                          struct retriever *rt, struct remote *remote,
                          char *err, size_t errlen);

/* Stops the worker (a running import is resumed at the next start). */
void conso_stop(struct conso *c);

/* 1 when url belongs to the consumer (/conso, /conso/...). */
int conso_handles(const char *url);

/*
 * Answers a request (body: a POST's, else NULL). who is the signed-in
 * professional (NULL with auth = none): a session opened by them is
 * theirs alone, and its DMP requests and pulls carry their identity.
 */
enum MHD_Result conso_handle(struct conso *c, struct MHD_Connection *conn,
                             const char *url, const char *method,
                             const struct auth_user *who, const char *body,
                             size_t len);

/*
 * The DRIM-M parameters of a contextual call (fields: the form's, name to
 * string) checked and shaped as the session keeps them; NULL with why
 * (the parameter at fault) otherwise.
 */
json_t *conso_call_data(const struct config *cfg, json_t *fields,
                        const char **why);

#endif
