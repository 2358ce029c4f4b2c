/*
 * remote.h - pulling images from the DRIMbox that published them: the
 * series a manifest names (recorded in the index by the consumer) are
 * retrieved over WADO-RS from their RetrieveURL, only from DRIMboxes the
 * signed whitelist lists, several series at once, each part checked and
 * handed to the store as soon as it is complete. What is cached already is
 * not asked for again: an interrupted pull resumes with what is missing.
 */
#ifndef DRIMBOX_REMOTE_H
#define DRIMBOX_REMOTE_H

#include <stddef.h>

struct auth;
struct config;
struct index;
struct store;
struct remote;

/*
 * A puller; loads the whitelist when one is configured (a list that fails
 * its checks is refused and logged: every RetrieveURL is then refused).
 * With auth (not NULL), every request carries the access token of the
 * signed-in professional who asked for the study (remote_set_session).
 * NULL on allocation failure.
 */
struct remote *remote_new(const struct config *cfg, struct index *ix,
                          struct store *s, struct auth *auth);

/*
 * Records that the professional of that session (its hash; actor: their
 * RPPS, for the audit trail; call: the contextual call) asked for the
 * study: pulls of it present their token. The last few are remembered.
 */
void remote_set_session(struct remote *r, const char *study,
                        const char *session, const char *actor,
                        const char *call);
void remote_free(struct remote *r);

/*
 * 1 when dn (RFC 4514, as a client certificate names its subject) is the
 * DNCertificatOperateur of a DRIMbox of the whitelist (spaces around ','
 * and '=' and the case of attribute names ignored), with that DRIMbox's
 * host in db; 0 when not, or with no valid whitelist.
 */
int remote_peer_listed(struct remote *r, const char *dn, char *db, size_t cap);

/*
 * 0 when url may be retrieved: http(s), and its host listed in the
 * whitelist. The list is read again when its file changed; a new list
 * that fails its checks is refused and the last good one kept. -1 with
 * err otherwise.
 */
int remote_url_allowed(struct remote *r, const char *url, char *err,
                       size_t errlen);

/* 1 when the index names another DRIMbox as the holder of the study. */
int remote_holds(struct remote *r, const char *study);

/*
 * 1 when the study is recorded as held by another DRIMbox under that
 * manifest (its SOP Instance UID); 0 when not, or under another one.
 */
int remote_holds_manifest(struct remote *r, const char *study, const char *kos);

/*
 * Progress: expected instances once known; a non-zero return stops the
 * pull.
 */
typedef int (*remote_progress_cb)(void *ctx, long expected, long failed);

/*
 * Pulls what is not cached of a study (series and sop NULL), a series or
 * one instance. *completed gets the instances handed to the store,
 * *failed those refused or lost. 0 when everything asked for arrived, -1
 * with err otherwise.
 */
int remote_pull(struct remote *r, const char *study, const char *series,
                const char *sop, remote_progress_cb cb, void *ctx,
                long *completed, long *failed, char *err, size_t errlen);

/*
 * Records why getting a study failed (NULL or "": it did not); pulls
 * record their own outcome. The last few studies are remembered.
 */
void remote_note_error(struct remote *r, const char *study, const char *error);

/* Why the last pull of a study failed ("" when it did not, or unknown). */
void remote_last_error(struct remote *r, const char *study, char *out,
                       size_t cap);

#endif
