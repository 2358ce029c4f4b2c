/*
 * attrs.h - reading optional attributes of a dataset the way the index
 * wants them: a string is what fits of its value ("" when absent), a
 * number is -1 when absent or unreadable.
 */
#ifndef DRIMBOX_ATTRS_H
#define DRIMBOX_ATTRS_H

#include "dcm.h"

#include <stddef.h>

static inline void attr_str(const struct dcm_ds *ds, uint32_t tag, char *buf,
                            size_t cap)
{
	int st = dcm_ds_get_string(ds, tag, buf, cap);

	if (st != DCM_OK && st != DCM_ERR_TOO_LONG)
		buf[0] = '\0';
}

static inline long attr_long(const struct dcm_ds *ds, uint32_t tag)
{
	long v;

	return dcm_ds_get_long(ds, tag, &v) == DCM_OK ? v : -1;
}

#endif
