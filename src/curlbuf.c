/*
 * curlbuf.c - see curlbuf.h.
 */
#include "curlbuf.h"

#include <stdlib.h>
#include <string.h>

size_t curlbuf_write(char *p, size_t sz, size_t n, void *ctx)
{
	struct curlbuf *b = ctx;
	size_t len = sz * n;
	char *nb;

	if (b->len + len > b->max) {
		b->too_big = 1;
		return 0;
	}
	nb = realloc(b->p, b->len + len + 1);
	if (nb == NULL)
		return 0;
	memcpy(nb + b->len, p, len);
	b->p = nb;
	b->len += len;
	b->p[b->len] = '\0';
	return len;
}
