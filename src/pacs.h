/*
 * pacs.h - the link to the PACS: C-ECHO, C-FIND, the incremental sync of
 * the PACS into the index (study > series > image), and retrieval of a
 * study or series by C-MOVE (to our storage SCP) or C-GET.
 */
#ifndef DRIMBOX_PACS_H
#define DRIMBOX_PACS_H

#include "dcm.h"

#include <stdatomic.h>
#include <stddef.h>

struct config;
struct index;

struct pacs {
	struct dcm_peer peer;
	int use_get;          /* pacs_retrieve = get */
	const char *dest_aet; /* our AE, the C-MOVE destination */
};

/* Fills p from cfg; p points into cfg, which must outlive it. */
void pacs_init(struct pacs *p, const struct config *cfg);

/* C-ECHO; 0, or -1 with the reason in err. */
int pacs_echo(const struct pacs *p, char *err, size_t errlen);

/* C-FIND at a level on a new association, a callback per match. */
int pacs_find(const struct pacs *p, enum dcm_level level,
              const struct dcm_ds *query, dcm_find_cb cb, void *ctx, char *err,
              size_t errlen);

struct pacs_sync_stats {
	long studies;   /* studies listed by the PACS */
	long refreshed; /* studies whose series and images were queried */
	long series, instances;
	long skipped; /* matches missing a required key, skipped */
};

/*
 * Indexes the PACS's studies whose StudyDate is on or after date_from
 * (YYYYMMDD), or all of them when date_from is NULL; with study_uid, only
 * that study. Studies whose instance count already matches the index are
 * not queried further unless full is set. When *cancel (may be NULL)
 * becomes non-zero, stops between two studies. 0, or -1 with err.
 */
int pacs_sync(const struct pacs *p, struct index *ix, const char *date_from,
              const char *study_uid, int full, const atomic_int *cancel,
              struct pacs_sync_stats *stats, char *err, size_t errlen);

/*
 * Retrieves the selection: C-MOVE to dest_aet (instances then reach our
 * storage SCP), or C-GET with instances through h. 0, or -1 with err.
 */
int pacs_retrieve(const struct pacs *p, const struct dcm_selection *sel,
                  const struct dcm_store_handler *h, dcm_progress_cb cb,
                  void *ctx, struct dcm_progress *final, char *err,
                  size_t errlen);

#endif
