/*
 * fuzz_multipart.c - a multipart/related body to the streaming parser.
 * The input's first line is the boundary; the rest is the body, fed in
 * chunks whose size the boundary's length chooses. Each part's headers go
 * through mp_header, and the first line through mp_param as a
 * Content-Type.
 */
#include "fuzz.h"
#include "multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_begin(void *ctx, const char *headers)
{
	char v[256];

	(void)ctx;
	(void)mp_header(headers, "Content-Type", v, sizeof(v));
	(void)mp_header(headers, "Content-ID", v, sizeof(v));
	return 0;
}

static int on_data(void *ctx, const char *p, size_t n)
{
	size_t *total = ctx;

	if (n > 0)
		*total += (size_t)(unsigned char)p[n - 1];
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct mp_callbacks cb = { on_begin, on_data, NULL };
	char *s = fuzz_string(data, size), *body, v[128];
	size_t len, total = 0, chunk;
	struct mp_parser *mp;

	if (s == NULL || fuzz_head(s, size, &body, &len) != 0) {
		free(s);
		return 0;
	}
	(void)mp_param(s, "boundary", v, sizeof(v));
	(void)mp_param(s, "start", v, sizeof(v));
	mp = mp_new(s, &cb, &total);
	chunk = strlen(s) % 7 + 1;
	for (size_t at = 0; mp != NULL && at < len; at += chunk)
		if (mp_feed(mp, body + at,
		            len - at < chunk ? len - at : chunk) != 0) {
			(void)mp_error(mp);
			break;
		}
	if (mp != NULL)
		(void)mp_complete(mp);
	mp_free(mp);
	free(s);
	return 0;
}
