/*
 * multipart.c - see multipart.h. The bytes fed are appended to a window;
 * the parser consumes what it can and keeps the rest, at most one
 * delimiter's length of content (a delimiter may straddle two chunks) or
 * one header block. The window starts with a virtual CRLF so that the
 * first delimiter, which needs none before it, is found like the others.
 */
#include "multipart.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HEADERS_MAX (16 * 1024)
#define BOUNDARY_MAX 70

enum mp_state { PREAMBLE, AFTER_DELIM, HEADERS, BODY, DONE, FAILED };

struct mp_parser {
	struct mp_callbacks cb;
	void *ctx;
	char delim[BOUNDARY_MAX + 5]; /* "\r\n--" boundary */
	size_t dlen;
	enum mp_state state;
	char *buf; /* the window: unconsumed bytes */
	size_t len, cap;
	char error[128];
};

struct mp_parser *mp_new(const char *boundary, const struct mp_callbacks *cb,
                         void *ctx)
{
	size_t n = strlen(boundary);
	struct mp_parser *m;

	if (n == 0 || n > BOUNDARY_MAX)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->cb = *cb;
	m->ctx = ctx;
	m->dlen = (size_t)snprintf(m->delim, sizeof(m->delim), "\r\n--%s",
	                           boundary);
	m->cap = 64 * 1024;
	m->buf = malloc(m->cap);
	if (m->buf == NULL) {
		free(m);
		return NULL;
	}
	memcpy(m->buf, "\r\n", 2);
	m->len = 2;
	return m;
}

void mp_free(struct mp_parser *m)
{
	if (m == NULL)
		return;
	free(m->buf);
	free(m);
}

static int fail(struct mp_parser *m, const char *why)
{
	snprintf(m->error, sizeof(m->error), "%s", why);
	m->state = FAILED;
	return -1;
}

/*
 * Runs the state machine over the window; returns how many bytes were
 * consumed, or -1 on failure.
 */
static long step(struct mp_parser *m)
{
	char *p = m->buf, *end = m->buf + m->len, *hit;

	for (;;) {
		size_t left = (size_t)(end - p);

		switch (m->state) {
		case PREAMBLE:
			hit = memmem(p, left, m->delim, m->dlen);
			if (hit == NULL) { /* keep what may start one */
				if (left >= m->dlen)
					p = end - (m->dlen - 1);
				return p - m->buf;
			}
			p = hit + m->dlen;
			m->state = AFTER_DELIM;
			break;
		case AFTER_DELIM: {
			char *q = p;

			if (left < 2)
				return p - m->buf;
			if (p[0] == '-' && p[1] == '-') {
				m->state = DONE; /* the epilogue is ignored */
				return end - m->buf;
			}
			while (q < end && (*q == ' ' || *q == '\t'))
				q++; /* transport padding */
			if ((size_t)(end - q) < 2)
				return p - m->buf;
			if (q[0] != '\r' || q[1] != '\n')
				return fail(m, "a delimiter is not followed "
				               "by a line end");
			p = q + 2;
			m->state = HEADERS;
			break;
		}
		case HEADERS: {
			size_t hlen;

			if (left >= 2 && p[0] == '\r' && p[1] == '\n') {
				hlen = 0; /* a part without headers */
				hit = p;
			} else {
				hit = memmem(p, left, "\r\n\r\n", 4);
				if (hit == NULL) {
					if (left > HEADERS_MAX)
						return fail(m,
						            "a part's headers "
						            "are too long");
					return p - m->buf;
				}
				hlen = (size_t)(hit - p) + 2;
				hit += 2;
			}
			{
				char save = p[hlen];
				int rc;

				p[hlen] = '\0';
				rc = m->cb.begin ? m->cb.begin(m->ctx, p) : 0;
				p[hlen] = save;
				if (rc != 0)
					return fail(m, "part refused");
			}
			p = hit + 2;
			m->state = BODY;
			break;
		}
		case BODY:
			hit = memmem(p, left, m->delim, m->dlen);
			if (hit == NULL) {
				size_t keep = m->dlen - 1, give;

				if (left <= keep)
					return p - m->buf;
				give = left - keep;
				if (m->cb.data && m->cb.data(m->ctx, p, give))
					return fail(m, "part refused");
				p += give;
				return p - m->buf;
			}
			if (hit > p && m->cb.data &&
			    m->cb.data(m->ctx, p, (size_t)(hit - p)))
				return fail(m, "part refused");
			if (m->cb.end && m->cb.end(m->ctx))
				return fail(m, "part refused");
			p = hit + m->dlen;
			m->state = AFTER_DELIM;
			break;
		case DONE:
			return end - m->buf;
		case FAILED:
			return -1;
		}
	}
}

int mp_feed(struct mp_parser *m, const char *p, size_t n)
{
	long used;

	if (m->state == FAILED)
		return -1;
	if (m->state == DONE)
		return 0;
	if (m->len + n > m->cap) {
		size_t cap = m->cap;
		char *nb;

		while (cap < m->len + n)
			cap *= 2;
		nb = realloc(m->buf, cap);
		if (nb == NULL)
			return fail(m, "out of memory");
		m->buf = nb;
		m->cap = cap;
	}
	memcpy(m->buf + m->len, p, n);
	m->len += n;
	used = step(m);
	if (used < 0)
		return -1;
	memmove(m->buf, m->buf + used, m->len - (size_t)used);
	m->len -= (size_t)used;
	return 0;
}

int mp_complete(const struct mp_parser *m)
{
	return m->state == DONE;
}

const char *mp_error(const struct mp_parser *m)
{
	return m->error;
}

int mp_param(const char *value, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);
	const char *p = value;

	while ((p = strchr(p, ';')) != NULL) {
		const char *v;
		size_t n;

		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, name, nlen) != 0)
			continue;
		v = p + nlen;
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v != '=')
			continue;
		v++;
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v == '"') {
			const char *q = strchr(++v, '"');

			if (q == NULL)
				return -1;
			n = (size_t)(q - v);
		} else {
			n = strcspn(v, "; \t\r\n");
		}
		if (n == 0 || n >= cap)
			return -1;
		memcpy(out, v, n);
		out[n] = '\0';
		return 0;
	}
	return -1;
}

int mp_header(const char *headers, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);

	for (const char *line = headers; *line;) {
		const char *eol = strstr(line, "\r\n");
		size_t llen = eol ? (size_t)(eol - line) : strlen(line);

		if (llen > nlen && line[nlen] == ':' &&
		    strncasecmp(line, name, nlen) == 0) {
			const char *v = line + nlen + 1;
			size_t n = llen - nlen - 1;

			while (n > 0 && isspace((unsigned char)*v))
				v++, n--;
			while (n > 0 && isspace((unsigned char)v[n - 1]))
				n--;
			if (n >= cap)
				return -1;
			memcpy(out, v, n);
			out[n] = '\0';
			return 0;
		}
		line += llen + (eol ? 2 : 0);
	}
	return -1;
}
