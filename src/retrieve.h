/*
 * retrieve.h - retrieval of studies, series and instances from the PACS into
 * the cache, each in its own thread. Identical requests made while one is in
 * flight share it; every requester sees its progress (instances, bytes)
 * as the storage handler reports instances landing in the cache.
 */
#ifndef DRIMBOX_RETRIEVE_H
#define DRIMBOX_RETRIEVE_H

#include "dcm.h"

#include <limits.h>
#include <stdint.h>

struct pacs;
struct store;
struct retriever;

struct retrieve_status {
	long expected; /* sub-operations announced by the PACS; -1 unknown */
	long received; /* instances cached by this retrieval */
	long failed;   /* sub-operations the PACS reported failed */
	uint64_t bytes;
	double elapsed; /* seconds since the retrieval started */
	int done;
	int ok; /* when done: 1 on success */
	char error[256];
};

/*
 * A retriever over the PACS link; registers itself as the store's
 * observer. p and s outlive it. NULL on allocation failure.
 */
struct retriever *retriever_new(const struct pacs *p, struct store *s);

/*
 * Studies that the index says another DRIMbox holds are pulled from it
 * (remote.h) instead of the PACS. Set before the first retrieval.
 */
struct remote;
void retriever_set_remote(struct retriever *r, struct remote *remote);

/*
 * Asks the retrievals in flight to stop (C-CANCEL at their next response)
 * and refuses new ones; requesters then return soon with an error.
 */
void retriever_cancel(struct retriever *r);

/*
 * Waits for the retrieval threads and for the store to commit what it
 * holds, then frees. Call after retriever_cancel(), once no
 * retriever_fetch() is running and no instance can arrive any more
 * (storage SCP stopped).
 */
void retriever_free(struct retriever *r);

typedef void (*retrieve_cb)(void *ctx, const struct retrieve_status *st);

struct retrieval;

/*
 * Starts a retrieval of a study (series NULL), one series (sop NULL) or one
 * instance, or joins the identical one in flight, without waiting. Returns
 * a handle the caller releases with retrieval_release(); NULL with err
 * when it cannot start.
 */
struct retrieval *retriever_start(struct retriever *r, const char *study,
                                  const char *series, const char *sop,
                                  char *err, size_t errlen);

/*
 * 1 with st filled (the first one found) when a retrieval of the study is
 * in flight, 0 otherwise.
 */
int retriever_progress(struct retriever *r, const char *study,
                       struct retrieve_status *st);

/* How many retrievals of single instances are in flight. */
int retriever_instances_running(struct retriever *r);

/*
 * Waits until more than `arrived` instances have arrived (see
 * retrieval_arrived), the retrieval is done, or timeout_ms passed; copies
 * its status to st.
 */
void retrieval_wait(struct retrieval *h, size_t arrived, int timeout_ms,
                    struct retrieve_status *st);

/*
 * An instance a retrieval has received: complete in tmp, its temporary
 * file, until the store renames it into the cache (open tmp, and if it is
 * gone, the cache path: the file is in one or the other).
 */
struct retrieval_item {
	char sop[65], series[65], ts[65];
	char tmp[PATH_MAX];
};

/*
 * Copies into out (up to max) the instances the retrieval has received,
 * in the order they arrived, starting with the from-th (received is
 * not yet durable: status.received counts those); returns how many.
 */
size_t retrieval_arrived(struct retrieval *h, size_t from,
                         struct retrieval_item *out, size_t max);

void retrieval_release(struct retrieval *h);

/*
 * Retrieves a study (series NULL) or one series, joining an identical
 * retrieval already in flight. cb (may be NULL) gets a snapshot at most
 * every interval_ms and a last one when done. final gets the outcome.
 * Returns 0 on success, -1 on failure (final->error says why).
 */
int retriever_fetch(struct retriever *r, const char *study, const char *series,
                    int interval_ms, retrieve_cb cb, void *ctx,
                    struct retrieve_status *final);

#endif
