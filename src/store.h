/*
 * store.h - where received instances land: the storage handler given to
 * the DICOM bridge (storage SCP and C-GET). Each instance is published in
 * the cache and described in the index (with its DICOM JSON), then
 * announced to an observer (the retriever); the cache bound is enforced.
 *
 * One committer thread commits everything, in batches (one file-system
 * sync, one directory sync per series, one index transaction). Instances
 * sent by the PACS fill the cache: the PACS keeps them, so they are
 * answered at once; store_flush() waits for their commit. Instances from
 * any other sender are answered once durable and indexed.
 */
#ifndef DRIMBOX_STORE_H
#define DRIMBOX_STORE_H

#include "dcm.h"

#include <stdint.h>

struct cache;
struct index;
struct store;

/*
 * Told of each instance from the PACS twice: when it has landed, complete
 * in its temporary file tmp_path (not yet durable; the file may be renamed
 * into the cache at any moment after), and when it is durably cached and
 * indexed (tmp_path NULL).  The first call always comes before the second.
 */
typedef void (*store_observer)(void *ctx, const struct dcm_instance_info *i,
                               const char *tmp_path);

/*
 * A new store over cache and index (both outlive it), treating pacs_aet's
 * instances as cache fill; starts the committer thread. NULL on failure.
 */
struct store *store_new(struct cache *c, struct index *ix,
                        const char *pacs_aet);

/* Commits what is queued, stops the committer thread, frees. */
void store_free(struct store *s);

/* Sets (or with NULL clears) the observer. */
void store_set_observer(struct store *s, store_observer cb, void *ctx);

/* Fills h so that the bridge hands received instances to s. */
void store_handler(struct store *s, struct dcm_store_handler *h);

/*
 * Fills h so that instances handed to it are cache fill whatever their
 * sender (another DRIMbox's, pulled over WADO-RS: it keeps them).
 */
void store_fill_handler(struct store *s, struct dcm_store_handler *h);

/* Waits until every instance received before the call is committed. */
void store_flush(struct store *s);

/*
 * How many received instances could not be stored so far (a full disk,
 * an unparsable file), and the reason of the last one into why (may be
 * NULL): a retrieval that fails says why the cache refused.
 */
unsigned long store_refusals(struct store *s, char *why, size_t len);

#endif
