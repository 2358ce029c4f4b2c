/*
 * curlbuf.h - a libcurl write callback collecting an answer into memory,
 * NUL-terminated, up to a bound (what the DMP and PSC answer).
 */
#ifndef DRIMBOX_CURLBUF_H
#define DRIMBOX_CURLBUF_H

#include <stddef.h>

struct curlbuf {
	char *p; /* malloc'd; NULL while empty */
	size_t len;
	size_t max;  /* a longer answer stops the transfer */
	int too_big; /* set when it did */
};

/* CURLOPT_WRITEFUNCTION, with CURLOPT_WRITEDATA a struct curlbuf. */
size_t curlbuf_write(char *p, size_t sz, size_t n, void *ctx);

#endif
