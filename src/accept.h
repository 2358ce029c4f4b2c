/*
 * accept.h - the HTTP Accept header as DICOMweb uses it (PS3.18 8.7):
 * media ranges with parameters (type=, transfer-syntax=, quoted or not)
 * and q-values, ordered by preference. Bounded: at most ACCEPT_MAX ranges,
 * longer headers are rejected.
 */
#ifndef DRIMBOX_ACCEPT_H
#define DRIMBOX_ACCEPT_H

#include <stddef.h>

#define ACCEPT_MAX 16
#define ACCEPT_HEADER_MAX 4096

struct accept_range {
	char media[64]; /* "multipart/related", "application/dicom"... */
	char type[64];  /* type= parameter of multipart/related, or "" */
	char ts[65];    /* transfer-syntax= parameter, "*" or a UID, or "" */
	int q;          /* quality x 1000, 0..1000 */
};

struct accept {
	struct accept_range r[ACCEPT_MAX];
	size_t n; /* in order of preference: q descending, then as written */
};

/*
 * Parses an Accept header (NULL or "" gives one range accepting any
 * media). Returns 0,
 * or -1 with a reason in err for a header that is too long, has too many
 * ranges, or is malformed.
 */
int accept_parse(const char *header, struct accept *out, char *err,
                 size_t errlen);

/* True when range r accepts media (with the wildcards of RFC 9110). */
int accept_media_matches(const struct accept_range *r, const char *media);

#endif
