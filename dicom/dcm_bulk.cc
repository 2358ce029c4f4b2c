/*
 * dcm_bulk.cc - bulk data by tag path: the raw value of one element,
 * reached through sequences and items, loaded lazily from the file.
 */
#include "dcmtk/config/osconfig.h"

#include "dcm.h"
#include "dcm_internal.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcsequen.h"

#include <cstdlib>
#include <cstring>

using dcmi::fail;

namespace
{

/* Reads 8 hex digits at p as a tag; false when malformed. */
bool read_tag(const char *p, size_t n, DcmTagKey &key)
{
	char buf[9];

	if (n != 8 || std::strspn(p, "0123456789abcdefABCDEF") < 8)
		return false;
	std::memcpy(buf, p, 8);
	buf[8] = '\0';
	unsigned long v = std::strtoul(buf, nullptr, 16);
	key.set((Uint16)(v >> 16), (Uint16)(v & 0xffff));
	return true;
}

} // namespace

extern "C" int dcm_bulk(const char *path, const char *tag_path, void **out,
                        size_t *len, struct dcm_err *err)
{
	if (!path || !tag_path || !out || !len)
		return fail(err, DCM_ERR_ARG, "bad arguments");
	try {
		DcmFileFormat ff;
		OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange,
		                            4096, ERM_fileOnly);
		if (c.bad())
			return fail(err,
			            c == EC_InvalidFilename ? DCM_ERR_IO
			                                    : DCM_ERR_PARSE,
			            "%s: %s", path, c.text());
		DcmItem *item = ff.getDataset();
		const char *p = tag_path;
		for (;;) {
			const char *slash = std::strchr(p, '/');
			size_t n = slash ? (size_t)(slash - p) : std::strlen(p);
			DcmTagKey key;
			if (!read_tag(p, n, key))
				return fail(err, DCM_ERR_ARG,
				            "malformed bulk data path");
			if (slash == nullptr) {
				DcmElement *el = nullptr;
				if (item->findAndGetElement(key, el, OFFalse)
				            .bad() ||
				    el == nullptr)
					return fail(err, DCM_ERR_NOT_FOUND,
					            "no such element");
				if (el->ident() == EVR_SQ)
					return fail(
					        err, DCM_ERR_ARG,
					        "a sequence has no bulk data");
				if (key == DCM_PixelData) {
					DcmPixelData *px = OFstatic_cast(
					        DcmPixelData *, el);
					E_TransferSyntax xfer = EXS_Unknown;
					const DcmRepresentationParameter *rp;
					px->getOriginalRepresentationKey(xfer,
					                                 rp);
					if (DcmXfer(xfer).isEncapsulated())
						return fail(
						        err,
						        DCM_ERR_UNSUPPORTED,
						        "encapsulated pixel "
						        "data: use frames");
				}
				if (el->loadAllDataIntoMemory().bad())
					return fail(err, DCM_ERR_IO,
					            "cannot read the value");
				Uint32 size = el->getLength();
				Uint8 *bytes = nullptr;
				/* the value in memory is in host (little)
				 * endian order, whatever its VR */
				if (size > 0 &&
				    el->getUint8Array(bytes).bad()) {
					Uint16 *w = nullptr;
					if (el->getUint16Array(w).bad())
						return fail(
						        err,
						        DCM_ERR_UNSUPPORTED,
						        "value not readable "
						        "as bytes");
					bytes = reinterpret_cast<Uint8 *>(w);
				}
				void *copy = std::malloc(size ? size : 1);
				if (copy == nullptr)
					return fail(err, DCM_ERR_NOMEM,
					            "out of memory");
				if (size)
					std::memcpy(copy, bytes, size);
				*out = copy;
				*len = size;
				return DCM_OK;
			}
			/* a sequence, then an item index */
			const char *idx = slash + 1;
			const char *next = std::strchr(idx, '/');
			char *end = nullptr;
			unsigned long i = std::strtoul(idx, &end, 10);
			if (next == nullptr || end != next || end == idx)
				return fail(err, DCM_ERR_ARG,
				            "malformed bulk data path");
			DcmItem *sub = nullptr;
			if (item->findAndGetSequenceItem(key, sub, (long)i)
			            .bad() ||
			    sub == nullptr)
				return fail(err, DCM_ERR_NOT_FOUND,
				            "no such item");
			item = sub;
			p = next + 1;
		}
	} catch (...) {
		return fail(err, DCM_ERR_INTERNAL,
		            "exception reading bulk data");
	}
}
