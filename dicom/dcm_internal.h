/*
 * dcm_internal.h - private declarations shared by the dcm_*.cc files:
 * the dcm_ds wrapper, error helpers and the C-STORE receive path common to
 * the storage SCP and C-GET. Never included from C.
 */
#ifndef DRIMBOX_DCM_INTERNAL_H
#define DRIMBOX_DCM_INTERNAL_H

#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"

#include <memory>
#include <string>

#include "dcm.h"

/*
 * A dataset handle. Owned handles hold the DcmFileFormat (meta header +
 * dataset); borrowed ones (C-FIND matches) only point at a dataset owned by
 * DCMTK and are never freed through dcm_ds_free.
 */
struct dcm_ds {
	std::unique_ptr<DcmFileFormat> ff; /* NULL when borrowed */
	DcmDataset *ds = nullptr;          /* ff's dataset or borrowed */
};

namespace dcmi
{

/* Maximum PDU we announce for receiving (DCMTK's upper limit). */
constexpr Uint32 kMaxPdu = ASC_MAXIMUMPDUSIZE;

/* Fills err (if non-NULL) with a formatted reason; returns status. */
int fail(struct dcm_err *err, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Bounded copy, always NUL-terminated (cap > 0). Returns false if cut. */
bool copy_str(char *dst, size_t cap, const char *src);

/* Transfer syntax UID of a handle ("" when unknown). */
std::string ds_xfer(const dcm_ds *w);

/* Fills info from a dataset and the given transfer syntax UID. */
int instance_info(DcmDataset *ds, const std::string &xfer,
                  struct dcm_instance_info *info, struct dcm_err *err);

/* Block mode / timeout pair for DIMSE calls (timeout_s <= 0: blocking). */
inline T_DIMSE_BlockingMode block_mode(int timeout_s)
{
	return timeout_s > 0 ? DIMSE_NONBLOCKING : DIMSE_BLOCKING;
}

/*
 * Receives the data set of a C-STORE-RQ already read on assoc into a new
 * temp file of h->tmp_dir, parses it, calls h->stored() or h->rejected()
 * and sends the C-STORE-RSP. Returns the DCMTK condition of the network
 * exchange (bad = the association is no longer usable). *status (may be
 * NULL) receives the DIMSE status answered.
 */
OFCondition
receive_store(T_ASC_Association *assoc, T_ASC_PresentationContextID pcid,
              T_DIMSE_C_StoreRQ *req, const struct dcm_store_handler *h,
              const char *calling_aet, int timeout_s, unsigned *status);

/* The transfer syntaxes the SCP accepts, in preference order. */
extern const char *const kScpSyntaxes[];
extern const size_t kScpSyntaxCount;

/*
 * A text value of an element of item converted to UTF-8 from the item's
 * Specific Character Set; always valid UTF-8 (Latin-1 fallback).
 */
std::string text_utf8(DcmItem *item, const OFString &raw, DcmEVR vr);

} // namespace dcmi

#endif
