/*
 * dicomweb.h - shared by the HTTP server and its DICOMweb handlers
 * (http.c, qido.c, wado.c): one request, parsed, and the helpers that
 * answer it.
 */
#ifndef DRIMBOX_DICOMWEB_H
#define DRIMBOX_DICOMWEB_H

#include "http.h"

#include <jansson.h>
#include <microhttpd.h>

struct auth_user;
struct dcm_manifest;

/* A DICOMweb request: the path split into its resource parts. */
struct dw_request {
	const struct http_env *env;
	struct MHD_Connection *conn;
	char base[512]; /* "http://host:port/dicomweb" for URLs we return */
	const char *study, *series, *sop; /* UIDs from the path, or NULL */
	const char *tail;                 /* what follows the resource: "", */
	/* "metadata", "frames/1,2", "rendered", "thumbnail", "bulkdata/..." */
	int qido;  /* /studies, /series, /instances (search) */
	int level; /* enum idx_level of a search or of the resource */
	/* another DRIMbox's request names the manifest it read
	 * (KOS-SOPInstanceUID): only what it references is served. Owned by
	 * the request, then by the stream that takes the request over. */
	struct dcm_manifest *kos;
	const struct auth_user *who; /* NULL with auth = none */
};

/*
 * Records the request in the audit trail (once per ten minutes for the
 * same reader, study and series): a search, a professional's view, or a
 * study served to another DRIMbox (a Bearer token).
 */
void dw_audit(const struct dw_request *rq, const char *outcome,
              const char *detail);

/* Sends {"error": msg} with status; returns what MHD_queue_response did. */
enum MHD_Result dw_error(struct MHD_Connection *conn, unsigned status,
                         const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/*
 * Sends a JSON body (taken over: freed here) as content_type, gzipped when
 * the client accepts it; with an ETag and immutable caching when etag is
 * non-NULL (and 304 when If-None-Match matches).
 */
enum MHD_Result dw_send_json(struct MHD_Connection *conn, char *body,
                             size_t len, const char *content_type,
                             const char *etag);

/*
 * Answers 304 (into *rc) and returns 1 when the request's If-None-Match
 * is etag; 0 otherwise.
 */
int dw_not_modified(struct MHD_Connection *conn, const char *etag,
                    enum MHD_Result *rc);

/*
 * 1 when s[0..n) is a UID: digits and dots, 1 to 64 characters, no empty
 * component (s[n] is read: a separator or the end of the string).
 */
int dw_is_uid(const char *s, size_t n);

/* 1 when the Accept-Encoding header lists coding with a q above 0. */
int dw_accepts_coding(struct MHD_Connection *conn, const char *coding);

/* QIDO-RS search (qido.c). */
enum MHD_Result qido_handle(struct dw_request *rq);

/* WADO-RS retrieve, metadata, frames, rendered (wado.c). */
enum MHD_Result wado_handle(struct dw_request *rq);

/*
 * Makes sure the index knows a study: when it does not, asks the PACS
 * (C-FIND) and indexes it. 1 known, 0 unknown to the PACS too, -1 when the
 * PACS could not be asked.
 */
int dw_ensure_study(struct dw_request *rq, const char *study);

#endif
