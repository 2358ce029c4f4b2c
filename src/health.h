/*
 * health.h - readiness, as GET /ready answers it and `drimbox status`
 * shows it: the index writable, the PACS answering C-ECHO, the DMP
 * reachable when one is configured.
 */
#ifndef DRIMBOX_HEALTH_H
#define DRIMBOX_HEALTH_H

#include <jansson.h>

struct config;
struct index;
struct monitor;
struct health;

/* All outlive it. NULL when out of memory. */
struct health *health_new(const struct config *cfg, struct index *ix,
                          struct monitor *monitor);
void health_free(struct health *h);

/*
 * Runs the checks (the PACS's C-ECHO when the last is older than 15 s, the
 * DMP's connection when the last is older than 30 s; one probe of each at
 * a time, others read its last result) and returns
 * {"ready": bool, "checks": {"index": {"ok": bool, "error": "..."},
 * "pacs": {...}, "dmp": {...}}} ("dmp" only when dmp_url is set), or NULL
 * when out of memory.
 */
json_t *health_ready(struct health *h);

#endif
