/*
 * intake.h - what drimbox does with an HL7 v2 message from the RIS: reads
 * it (ORU^R01 2.5, MDM^T02/T10/T04 2.6, the CDA report in OBX-5), decides
 * (accept, refuse, park), journals the message with that decision and the
 * publication job it creates in one synced transaction, and answers with
 * the acknowledgement (AA only once journaled).
 */
#ifndef DRIMBOX_INTAKE_H
#define DRIMBOX_INTAKE_H

#include "mllp.h"

struct config;
struct index;
struct intake;

/*
 * cfg and ix outlive it; queued(ctx) is called after a job was queued (may
 * be NULL). NULL when out of memory.
 */
struct intake *intake_new(const struct config *cfg, struct index *ix,
                          void (*queued)(void *ctx), void *ctx);
void intake_free(struct intake *in);

/* The MLLP handler (ctx: the intake): returns the acknowledgement. */
char *intake_handle(void *ctx, const struct mllp_msg *m, size_t *ack_len);

#endif
