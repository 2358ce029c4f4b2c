/*
 * dcm_common.cc - process-wide set-up of DCMTK (TCP_NODELAY, dictionary,
 * codecs, logging, reverse DNS) and the error helpers shared by the other
 * dcm_*.cc files.
 */
#include "dcmtk/config/osconfig.h"

#include "dcm_internal.h"

#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcrleerg.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpeg/djencode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/dcmjpls/djencode.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/oflog/oflog.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace dcmi
{

int fail(struct dcm_err *err, int status, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return status;
}

bool copy_str(char *dst, size_t cap, const char *src)
{
	if (!dst || cap == 0)
		return false;
	if (!src)
		src = "";
	size_t n = strlen(src);
	bool fits = n < cap;
	if (!fits) {
		n = cap - 1;
		/* never cut a UTF-8 sequence: back up to its first byte */
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
	return fits;
}

} // namespace dcmi

extern "C" const char *dcm_strerror(int status)
{
	switch (status) {
	case DCM_OK:
		return "DCM_OK";
	case DCM_ERR_ARG:
		return "DCM_ERR_ARG";
	case DCM_ERR_NOMEM:
		return "DCM_ERR_NOMEM";
	case DCM_ERR_IO:
		return "DCM_ERR_IO";
	case DCM_ERR_PARSE:
		return "DCM_ERR_PARSE";
	case DCM_ERR_NOT_FOUND:
		return "DCM_ERR_NOT_FOUND";
	case DCM_ERR_TOO_LONG:
		return "DCM_ERR_TOO_LONG";
	case DCM_ERR_CONNECT:
		return "DCM_ERR_CONNECT";
	case DCM_ERR_REJECTED:
		return "DCM_ERR_REJECTED";
	case DCM_ERR_NO_CONTEXT:
		return "DCM_ERR_NO_CONTEXT";
	case DCM_ERR_NETWORK:
		return "DCM_ERR_NETWORK";
	case DCM_ERR_FAILED:
		return "DCM_ERR_FAILED";
	case DCM_ERR_CANCELLED:
		return "DCM_ERR_CANCELLED";
	case DCM_ERR_INTERNAL:
		return "DCM_ERR_INTERNAL";
	case DCM_ERR_UNSUPPORTED:
		return "DCM_ERR_UNSUPPORTED";
	default:
		return "DCM_ERR_UNKNOWN";
	}
}

/*
 * Must run before any thread exists: setenv() and the codec registries are
 * not thread-safe. Idempotent enough to be called twice (DCMTK's
 * registrations ignore a second call).
 */
extern "C" int dcm_global_init(struct dcm_err *err)
{
	try {
		/* DCMTK reads it on every new socket; keep a user's value. */
		if (setenv("TCP_NODELAY", "1", 0) != 0)
			return dcmi::fail(err, DCM_ERR_INTERNAL,
			                  "setenv TCP_NODELAY failed");
		OFLog::configure(OFLogger::WARN_LOG_LEVEL);
		if (!dcmDataDict.isDictionaryLoaded())
			return dcmi::fail(err, DCM_ERR_INTERNAL,
			                  "DICOM data dictionary not loaded "
			                  "(check DCMDICTPATH)");
		dcmDisableGethostbyaddr.set(OFTrue);
		/*
		 * Encoders keep the SOP Instance UID: a transcoded copy
		 * served to a client is the same instance.
		 */
		DJDecoderRegistration::registerCodecs();
		DJEncoderRegistration::registerCodecs(ECC_lossyYCbCr,
		                                      EUC_never);
		DJLSDecoderRegistration::registerCodecs();
		/*
		 * The "raw" JPEG-LS encoder, not the "cooked" one: 3.6.7's
		 * cooked encoder pads an odd-length codestream by writing
		 * into its input buffer (fixed upstream in 2024), past its
		 * end when the codestream is longer than the frame (valgrind
		 * saw it on small frames). Near-lossless still goes through
		 * it: dcm_pixel.cc gives it no frame under 4 KiB.
		 */
		DJLSEncoderRegistration::registerCodecs(0, 0, 0, 0, OFFalse, 0,
		                                        OFTrue, EJLSUC_never);
		DcmRLEDecoderRegistration::registerCodecs();
		DcmRLEEncoderRegistration::registerCodecs();
		return DCM_OK;
	} catch (const std::bad_alloc &) {
		return dcmi::fail(err, DCM_ERR_NOMEM, "out of memory");
	} catch (...) {
		return dcmi::fail(err, DCM_ERR_INTERNAL,
		                  "exception in dcm_global_init");
	}
}

extern "C" void dcm_global_cleanup(void)
{
	try {
		DcmRLEEncoderRegistration::cleanup();
		DcmRLEDecoderRegistration::cleanup();
		DJLSEncoderRegistration::cleanup();
		DJLSDecoderRegistration::cleanup();
		DJEncoderRegistration::cleanup();
		DJDecoderRegistration::cleanup();
	} catch (...) {
	}
}
