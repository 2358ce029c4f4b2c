/*
 * metrics.h - the daemon's counters, exposed by GET /metrics in the
 * Prometheus text format (version 0.0.4).
 *
 * The counters are process-wide atomics with fixed label sets (a route, a
 * status code, an HL7 type, a DMP transaction: each from a short closed
 * list), so recording never allocates nor locks and the exposition has a
 * bounded size. Gauges that the daemon already knows elsewhere (cache
 * size, job queue, PACS link) are read when the page is written.
 */
#ifndef DRIMBOX_METRICS_H
#define DRIMBOX_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct index;

/* The HTTP routes, as counted (metrics_route names them). */
enum metrics_route {
	MR_HEALTH,
	MR_READY,
	MR_METRICS,
	MR_AUTH,
	MR_CONSO,
	MR_VIEWER,
	MR_IID,
	MR_QIDO,
	MR_WADO,
	MR_METADATA,
	MR_FRAMES,
	MR_RENDERED,
	MR_BULKDATA,
	MR_OTHER,
	MR__COUNT
};

/* The route of a request path (dicomweb_root is where DICOMweb lives). */
enum metrics_route metrics_route(const char *url, const char *dicomweb_root);

/* A request answered: its route, HTTP status and duration in seconds. */
void metrics_http(enum metrics_route route, unsigned status, double seconds);

/* Response body bytes handed to the HTTP server. */
void metrics_http_bytes(uint64_t n);

/* Instances asked over WADO-RS: cached then (hits) or not (misses). */
void metrics_cache(uint64_t hits, uint64_t misses);

/* A PACS retrieval ended: instances and bytes received, its duration. */
void metrics_retrieval(int ok, uint64_t instances, uint64_t bytes,
                       double seconds);

/* A DMP transaction ("ITI-41", "ITI-18", ...) and its outcome. */
void metrics_dmp(const char *transaction, const char *outcome);

/* An HL7 message: its MSH-9 (e.g. "ORU^R01^ORU_R01") and the ACK code. */
void metrics_hl7(const char *type, const char *ack);

/* A pull from another DRIMbox ended: instances and bytes received. */
void metrics_remote(int ok, uint64_t instances, uint64_t bytes);

/* Gauges read when the page is written. */
struct metrics_gauges {
	uint64_t cache_bytes, cache_max_bytes;
	int pacs_reachable;     /* 1, 0, or -1 when there is no monitor */
	int64_t pacs_last_echo; /* unix seconds, 0 when never */
	int64_t started;        /* unix seconds */
	const char *version;
};

/*
 * The exposition (malloc'd, NUL-terminated; *len its length), or NULL
 * when out of memory. The job queue's counts are read from ix (NULL: none
 * written; unreadable: drimbox_jobs_readable 0).
 */
char *metrics_write(const struct metrics_gauges *g, struct index *ix,
                    size_t *len);

#endif
