/*
 * multipart.h - a streaming parser of multipart/related bodies (RFC 2046,
 * RFC 2387): WADO-RS responses from another DRIMbox and MTOM replies from
 * the DMP. Bytes are fed as they arrive, in chunks of any size; each part's
 * headers are handed over whole, its content piece by piece, so that a
 * part of any size is never held in memory.
 */
#ifndef DRIMBOX_MULTIPART_H
#define DRIMBOX_MULTIPART_H

#include <stddef.h>

struct mp_callbacks {
	/* A part begins; headers is its header block (CRLF-separated
	 * lines, NUL-terminated, may be empty). Non-zero aborts. */
	int (*begin)(void *ctx, const char *headers);
	/* Some of its content. Non-zero aborts. */
	int (*data)(void *ctx, const char *p, size_t n);
	/* The part is complete. Non-zero aborts. */
	int (*end)(void *ctx);
};

struct mp_parser;

/*
 * A parser of a body delimited by boundary (without the leading "--");
 * NULL when the boundary is empty, longer than 70 characters (RFC 2046),
 * or memory runs out.
 */
struct mp_parser *mp_new(const char *boundary, const struct mp_callbacks *cb,
                         void *ctx);

/*
 * Parses n more bytes. 0, or -1 when the body is malformed or a callback
 * aborted (mp_error says which); after -1 the parser takes nothing more.
 */
int mp_feed(struct mp_parser *m, const char *p, size_t n);

/* 1 when the closing delimiter has been seen (the body is complete). */
int mp_complete(const struct mp_parser *m);

/* Why mp_feed failed ("" when it did not). */
const char *mp_error(const struct mp_parser *m);

void mp_free(struct mp_parser *m);

/*
 * The value of parameter name (e.g. "boundary", "type") of a header value
 * such as a Content-Type, unquoted, into out. 0, or -1 when absent or too
 * long.
 */
int mp_param(const char *value, const char *name, char *out, size_t cap);

/*
 * The value of header name (case-insensitive) in a header block, trimmed,
 * into out. 0, or -1 when absent or too long.
 */
int mp_header(const char *headers, const char *name, char *out, size_t cap);

#endif
