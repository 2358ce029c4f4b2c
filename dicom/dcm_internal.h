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
#include <vector>

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

/*
 * C-STORE of a Part 10 file on an association opened by someone else (the
 * C-GET sub-operations of the SCP), as dcm_store_file does.
 */
int store_on(T_ASC_Association *assoc, int timeout_s, const char *path,
             unsigned *dimse_status, struct dcm_err *err);

/* True for the Q/R FIND, MOVE and GET SOP classes (Study and Patient Root). */
bool qr_syntax(const char *abstract);

/* Answers a C-FIND, C-MOVE or C-GET request through h (dcm_qr.cc). */
OFCondition qr_serve(T_ASC_Association *assoc, T_ASC_PresentationContextID pcid,
                     T_DIMSE_Message *msg, const struct dcm_qr_handler *h,
                     const char *calling, const char *our_aet, int timeout_s);

/* The transfer syntaxes the SCP accepts, in preference order. */
extern const char *const kScpSyntaxes[];
extern const size_t kScpSyntaxCount;

/*
 * A text value of an element of item converted to UTF-8 from the item's
 * Specific Character Set; always valid UTF-8 (Latin-1 fallback).
 */
std::string text_utf8(DcmItem *item, const OFString &raw, DcmEVR vr);

/* ---- pixel data (dcm_pixel.cc), shared with dcm_render.cc ---- */

/* The Image Pixel module facts needed to cut and decode frames. */
struct PixelInfo {
	Uint16 rows = 0, cols = 0, spp = 1;
	Uint16 bits_alloc = 0, bits_stored = 0, high_bit = 0;
	Uint16 pixel_rep = 0, planar = 0;
	Uint32 frames = 1;
	OFString photometric;
	/* Bytes of one native frame (0 when BitsAllocated is not 8/16/32). */
	size_t frame_bytes() const;
};

/*
 * Loads the file at path with values longer than max_read left on disk
 * (read when accessed). *xfer receives the stored transfer syntax.
 */
int px_load(const char *path, Uint32 max_read, DcmFileFormat &ff,
            E_TransferSyntax *xfer, struct dcm_err *err);

/* Reads the pixel module of ds; DCM_ERR_ARG when there is no pixel data. */
int px_info(DcmItem *ds, PixelInfo &pi, struct dcm_err *err);

/*
 * Native little endian bytes of frame (1-based) of ds stored in xfer,
 * with colour samples arranged as the header's PlanarConfiguration says.
 * *photometric receives the photometric interpretation of these bytes
 * (RGB after a YBR JPEG or a JPEG 2000 MCT decode). Decodes only that
 * frame. DCM_ERR_NOT_FOUND out of range, DCM_ERR_UNSUPPORTED no codec.
 */
int px_native_frame(DcmDataset *ds, E_TransferSyntax xfer, const PixelInfo &pi,
                    unsigned frame, std::vector<Uint8> &out,
                    OFString *photometric, struct dcm_err *err);

} // namespace dcmi

#endif
