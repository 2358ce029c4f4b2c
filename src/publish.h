/*
 * publish.h - the publication worker of the source role: runs the jobs the
 * HL7 intake queued (publish, replace), one at a time, from the durable
 * queue in the index. For each study of the report: index it from the
 * PACS (C-FIND, study > series > image), wait for its images if they are
 * not there yet (on a schedule, up to publish_wait_hours), check that the
 * exam is the report's (accession number, patient id, name, birth date),
 * and build its KOS manifest under data_dir/kos/.
 */
#ifndef DRIMBOX_PUBLISH_H
#define DRIMBOX_PUBLISH_H

#include <stddef.h>

struct config;
struct index;
struct pacs;
struct publisher;

/* Starts the worker thread (jobs left running by a crash are queued). */
struct publisher *publisher_start(const struct config *cfg, struct index *ix,
                                  const struct pacs *p, char *err,
                                  size_t errlen);

/* Wakes the worker: a job was queued. */
void publisher_wake(struct publisher *pb);

/* Stops the worker (after the job it is running), frees. */
void publisher_stop(struct publisher *pb);

#endif
