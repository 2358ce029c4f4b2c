/*
 * qr.h - the studies pulled from other DRIMboxes, offered to the site's
 * workstations (qr_workstations) as a DICOM query/retrieve SCP: C-FIND
 * from the index, C-MOVE to the workstation named, C-GET; what is not
 * cached yet is pulled first.
 */
#ifndef DRIMBOX_QR_H
#define DRIMBOX_QR_H

#include "dcm.h"

struct config;
struct index;
struct cache;
struct retriever;
struct remote;

struct qr;

/*
 * The handler for the SCP (h->find NULL when no workstation is
 * configured). NULL on allocation failure, or with err when
 * qr_workstations cannot be read.
 */
struct qr *qr_new(const struct config *cfg, struct index *ix,
                  const struct cache *cache, struct retriever *rt,
                  struct remote *remote, struct dcm_qr_handler *h, char *err,
                  size_t errlen);
void qr_free(struct qr *q);

/* 1 when aet is one of the workstations (q may be NULL). */
int qr_workstation(const struct qr *q, const char *aet);

#endif
