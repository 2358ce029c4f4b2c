/*
 * audit.h - the audit trail's writer: who did what to which study, from
 * where, with what outcome (rows of the index, chained by hashes; see
 * index_audit_add()). Process-wide, like the logger: opened once by the
 * daemon before its threads start; with none open, audit() does nothing
 * (the command-line tool, unit tests).
 */
#ifndef DRIMBOX_AUDIT_H
#define DRIMBOX_AUDIT_H

#include <stddef.h>
#include <stdint.h>

struct index;
struct MHD_Connection;

/* What happened; NULL or "" for what does not apply. */
struct audit_event {
	const char *actor;  /* RPPS, "ris" or "drimbox" */
	const char *action; /* see docs/admin.md, "Audit trail" */
	const char *study, *series;
	const char *source;  /* the client's address, a DRIMbox, a PACS */
	const char *outcome; /* ok, refused, failed */
	const char *call;    /* the contextual call it serves */
	const char *detail;
};

/* Starts writing to ix (NULL stops). Call before threads start. */
void audit_open(struct index *ix);

/*
 * Appends e to the trail; a failure is logged (the action it records has
 * happened and goes on). Returns 0 or -1.
 */
int audit(const struct audit_event *e);

/*
 * Like audit(), but once per ten minutes for the same actor, action,
 * study, series, source and outcome: reading a study is hundreds of
 * requests, and one row says it.
 */
int audit_once(const struct audit_event *e);

/* The client address of an HTTP connection, as text, in out. */
void audit_peer(struct MHD_Connection *conn, char *out, size_t cap);

/* Milliseconds since the epoch. */
int64_t audit_now_ms(void);

#endif
