/*
 * fuzz.h - shared by the libFuzzer targets: the input as a NUL-terminated
 * string, and its split into a head line and the rest.
 */
#ifndef DRIMBOX_FUZZ_H
#define DRIMBOX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A malloc'd NUL-terminated copy of the input (NULL when out of memory). */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s != NULL) {
		memcpy(s, data, size);
		s[size] = '\0';
	}
	return s;
}

/*
 * Splits s at its first '\n': s becomes the head line, *rest what follows
 * (its length in *rest_len). 0, or -1 when there is no '\n'.
 */
static inline int fuzz_head(char *s, size_t size, char **rest, size_t *rest_len)
{
	char *nl = memchr(s, '\n', size);

	if (nl == NULL)
		return -1;
	*nl = '\0';
	*rest = nl + 1;
	*rest_len = size - (size_t)(nl + 1 - s);
	return 0;
}

#endif
