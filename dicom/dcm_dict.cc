/*
 * dcm_dict.cc - look-ups in DCMTK's data dictionary: tag by keyword.
 */
#include "dcmtk/config/osconfig.h"

#include "dcm.h"

#include "dcmtk/dcmdata/dctag.h"

#include <cstdlib>
#include <cstring>

extern "C" int dcm_tag_lookup(const char *name, uint32_t *tag)
{
	try {
		size_t n = name ? std::strlen(name) : 0;

		if (n == 8 &&
		    std::strspn(name, "0123456789abcdefABCDEF") == 8) {
			*tag = (uint32_t)std::strtoul(name, nullptr, 16);
			return DCM_OK;
		}
		if (n == 0 || n > 64)
			return DCM_ERR_NOT_FOUND;
		DcmTag t;
		if (DcmTag::findTagFromName(name, t).bad())
			return DCM_ERR_NOT_FOUND;
		*tag = DCM_TAG(t.getGroup(), t.getElement());
		return DCM_OK;
	} catch (...) {
		return DCM_ERR_INTERNAL;
	}
}
