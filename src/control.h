/*
 * control.h - the local control API of drimboxd, HTTP + JSON on a Unix
 * socket readable only by its owner (the drimbox command's way in):
 *   GET  /status                      daemon, PACS link, index and cache
 *   POST /sync?days=N|all=1[&study=UID][&full=1]
 *   POST /fetch?study=UID[&series=UID]  NDJSON progress lines, streamed
 */
#ifndef DRIMBOX_CONTROL_H
#define DRIMBOX_CONTROL_H

#include <stddef.h>

struct cache;
struct config;
struct index;
struct monitor;
struct health;
struct pacs;
struct retriever;

/* What the handlers reach; everything outlives the control server. */
struct control_env {
	const struct config *cfg;
	struct index *ix;
	struct cache *cache;
	const struct pacs *pacs;
	struct retriever *retriever;
	struct monitor *monitor;
	struct health *health; /* the readiness checks */
	int dicom_port;        /* the port the storage SCP listens on */
};

struct control;

/*
 * Listens on env->cfg->control_socket (refusing to start if another daemon
 * answers there; a stale socket file is replaced). NULL with err on
 * failure.
 */
struct control *control_start(const struct control_env *env, char *err,
                              size_t errlen);

/* Stops serving, waits for the handlers, removes the socket file. */
void control_stop(struct control *c);

/*
 * Says every listener of the daemon is up: until then /status answers 503
 * "drimboxd is starting" (so `drimbox status` succeeding means drimboxd
 * takes DICOM, HTTP and HL7 connections).
 */
void control_set_up(struct control *c);

#endif
