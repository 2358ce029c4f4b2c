/*
 * test_multipart.c - the multipart/related parser: a body fed whole or a
 * byte at a time gives the same parts (delimiters straddling chunks), a
 * part without headers, the closing delimiter, and malformed bodies.
 */
#include "multipart.h"
#include "testutil.h"

struct seen {
	char headers[4][256];
	char data[4][256];
	size_t len[4];
	int parts, ended;
};

static int on_begin(void *ctx, const char *headers)
{
	struct seen *s = ctx;

	if (s->parts == 4)
		return 1;
	snprintf(s->headers[s->parts++], sizeof(s->headers[0]), "%s", headers);
	return 0;
}

static int on_data(void *ctx, const char *p, size_t n)
{
	struct seen *s = ctx;
	size_t *len = &s->len[s->parts - 1];

	if (*len + n >= sizeof(s->data[0]))
		return 1;
	memcpy(s->data[s->parts - 1] + *len, p, n);
	*len += n;
	return 0;
}

static int on_end(void *ctx)
{
	((struct seen *)ctx)->ended++;
	return 0;
}

static const struct mp_callbacks cb = { on_begin, on_data, on_end };

static const char body[] =
        "preamble\r\n--b0undary\r\nContent-Type: application/dicom\r\n"
        "Content-ID: <one>\r\n\r\nDICM\r\n--b0und\0ary-not\r\n"
        "--b0undary\r\n\r\nno headers\r\n--b0undary--\r\nepilogue";

/* Parses body in chunks of `step` bytes (0: whole); 0 or -1. */
static int parse(size_t step, struct seen *s)
{
	struct mp_parser *m = mp_new("b0undary", &cb, s);
	size_t len = sizeof(body) - 1;
	int rc = 0;

	memset(s, 0, sizeof(*s));
	for (size_t at = 0; at < len && rc == 0; at += step ? step : len)
		rc = mp_feed(m, body + at,
		             step && at + step < len ? step : len - at);
	if (rc == 0 && !mp_complete(m))
		rc = -1;
	mp_free(m);
	return rc;
}

static void multipart_parts_are_the_same_in_any_chunks(void)
{
	static const char first[] = "DICM\r\n--b0und\0ary-not";
	struct seen s;

	for (size_t step = 0; step < 40; step += step < 3 ? 1 : 7) {
		CHECK(parse(step, &s) == 0);
		CHECK(s.parts == 2 && s.ended == 2);
		CHECK(s.len[0] == sizeof(first) - 1 &&
		      memcmp(s.data[0], first, s.len[0]) == 0);
		CHECK(strstr(s.headers[0], "Content-ID: <one>") != NULL);
		CHECK(s.headers[1][0] == '\0');
		CHECK(s.len[1] == 10 &&
		      memcmp(s.data[1], "no headers", 10) == 0);
	}
}

static void multipart_reads_headers_and_parameters(void)
{
	char v[64];

	CHECK(mp_header("A: 1\r\nContent-Type:  application/dicom \r\n",
	                "content-type", v, sizeof(v)) == 0);
	CHECK(strcmp(v, "application/dicom") == 0);
	CHECK(mp_header("A: 1\r\n", "B", v, sizeof(v)) == -1);
	CHECK(mp_param("multipart/related; type=\"application/dicom\"; "
	               "boundary=abc",
	               "boundary", v, sizeof(v)) == 0);
	CHECK(strcmp(v, "abc") == 0);
	CHECK(mp_param("multipart/related;boundary=\"a b\";start=\"<x>\"",
	               "start", v, sizeof(v)) == 0);
	CHECK(strcmp(v, "<x>") == 0);
	CHECK(mp_param("multipart/related", "boundary", v, sizeof(v)) == -1);
}

static void multipart_refuses_malformed_bodies(void)
{
	struct seen s;
	struct mp_parser *m;
	static const char bad[] = "--b\r\nheader without end";
	static const char cut[] = "--b\r\n\r\ndata without its delimiter";
	char big[20000];

	CHECK(mp_new("", &cb, &s) == NULL);
	memset(&s, 0, sizeof(s));
	m = mp_new("b", &cb, &s);
	CHECK(mp_feed(m, "--bXY\r\n", 7) == -1); /* no line end after it */
	CHECK(strlen(mp_error(m)) > 0);
	mp_free(m);
	memset(&s, 0, sizeof(s));
	m = mp_new("b", &cb, &s);
	memset(big, 'h', sizeof(big));
	CHECK(mp_feed(m, bad, sizeof(bad) - 1) == 0);
	CHECK(mp_feed(m, big, sizeof(big)) == -1); /* endless headers */
	mp_free(m);
	memset(&s, 0, sizeof(s));
	m = mp_new("b", &cb, &s);
	CHECK(mp_feed(m, cut, sizeof(cut) - 1) == 0);
	CHECK(!mp_complete(m)); /* a body cut short is not complete */
	mp_free(m);
}

int main(void)
{
	RUN(multipart_parts_are_the_same_in_any_chunks);
	RUN(multipart_reads_headers_and_parameters);
	RUN(multipart_refuses_malformed_bodies);
	return test_failures ? 1 : 0;
}
