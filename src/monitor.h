/*
 * monitor.h - supervises the PACS link in a background thread: C-ECHO at
 * start-up and after every failure with exponential backoff (1 s doubling
 * up to pacs_retry_max), and the periodic incremental sync of the PACS
 * into the index. The daemon keeps running whatever the PACS does.
 */
#ifndef DRIMBOX_MONITOR_H
#define DRIMBOX_MONITOR_H

#include <stddef.h>
#include <time.h>

struct config;
struct index;
struct pacs;
struct monitor;

struct monitor_state {
	int reachable;        /* last C-ECHO succeeded */
	time_t last_echo;     /* time of the last C-ECHO attempt */
	time_t last_sync;     /* time of the last successful sync */
	char last_error[300]; /* last PACS error, "" if none */
};

/* Starts the thread; NULL with err on failure. All outlive the monitor. */
struct monitor *monitor_start(const struct config *cfg, const struct pacs *p,
                              struct index *ix, char *err, size_t errlen);

/* Stops the thread (interrupting a backoff wait) and frees. */
void monitor_stop(struct monitor *m);

void monitor_get(struct monitor *m, struct monitor_state *out);

/*
 * The state, after a C-ECHO made now when the last one is older than
 * max_age seconds (and no other such check is under way: then the last
 * known state). For readiness probes.
 */
void monitor_check(struct monitor *m, long max_age, struct monitor_state *out);

/* Records the outcome of a PACS operation made elsewhere (a sync). */
void monitor_report(struct monitor *m, int ok, const char *error);

#endif
