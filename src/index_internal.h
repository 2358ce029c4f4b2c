/*
 * index_internal.h - shared by the files of the index module only
 * (index.c, index_qido.c, index_jobs.c, index_conso.c, index_audit.c):
 * connections from the pool, and what the backend and the node are.
 */
#ifndef DRIMBOX_INDEX_INTERNAL_H
#define DRIMBOX_INDEX_INTERNAL_H

#include "db.h"

struct index;

/* A connection of the pool (waits for one); NULL on error (logged). */
struct dbc *index_conn(struct index *ix);
/* Gives it back. */
void index_done(struct index *ix, struct dbc *c);

enum db_backend index_backend(const struct index *ix);

/* A connection in a transaction; NULL on error (logged). */
struct dbc *index_tx_begin(struct index *ix);
/*
 * Commits when rc >= 0, rolls back otherwise, and gives the connection
 * back; rc, or -1 when the commit failed.
 */
int index_tx_end(struct index *ix, struct dbc *c, int rc);

/*
 * PostgreSQL: a lock on key until the transaction ends, so that nodes doing
 * the same check-then-write take turns (SQLite's BEGIN IMMEDIATE already
 * serialises every writer: nothing to do). 0 or -1.
 */
int index_key_lock(struct index *ix, struct dbc *c, const char *key);

/* Whether sql (one text parameter) selects a row: 1, 0, or -1. */
int index_any_row(struct index *ix, const char *sql, const char *value);

/* This node's job lease in seconds (index_set_node). */
int index_lease(const struct index *ix);

/*
 * The claims (owner tokens) this process runs now, whose leases the
 * renewal thread extends: added when claimed, dropped when the run ends.
 */
#define INDEX_CLAIMS_MAX 64
int index_claim_hold(struct index *ix, const char *owner);
void index_claim_drop(struct index *ix, const char *owner);
/* Copies them into owners; how many. */
int index_claims_held(struct index *ix, char owners[][128]);

#endif
