/*
 * http.h - the HTTP server of drimboxd (libmicrohttpd, a thread per
 * connection so that a response may wait for the PACS): DICOMweb under
 * dicomweb_root. Every error is a JSON body {"error": "..."} with a 4xx or
 * 5xx status; a client error is never a 500.
 */
#ifndef DRIMBOX_HTTP_H
#define DRIMBOX_HTTP_H

#include <stddef.h>

struct auth;
struct cache;
struct conso;
struct health;
struct monitor;
struct config;
struct index;
struct pacs;
struct retriever;

/* What the handlers reach; everything outlives the server. */
struct http_env {
	const struct config *cfg;
	struct index *ix;
	struct cache *cache;
	const struct pacs *pacs;
	struct retriever *retriever;
	struct conso *conso;     /* the consumer's pages, or NULL */
	struct auth *auth;       /* sign-in; NULL with auth = none */
	struct remote *remote;   /* the whitelist, for client certificates */
	struct monitor *monitor; /* the PACS link, for /metrics */
	struct health *health;   /* the checks of /ready */
};

struct http;

/* Listens on http_bind:http_port. NULL with err on failure. */
struct http *http_start(const struct http_env *env, char *err, size_t errlen);

/* Stops accepting, waits for the connections to end, frees. */
void http_stop(struct http *h);

#endif
