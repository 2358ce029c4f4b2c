/*
 * accept.c - see accept.h. Grammar (RFC 9110 12.5.1, simplified to what
 * clients send): range *( ";" param ) *( "," range ), param = token "="
 * ( token / quoted-string ), whitespace around separators.
 */
#include "accept.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct cursor {
	const char *p;
};

static void skip_ws(struct cursor *c)
{
	while (*c->p == ' ' || *c->p == '\t')
		c->p++;
}

static int is_tchar(int ch)
{
	return ch != 0 &&
	       (isalnum(ch) || strchr("!#$%&'*+-.^_`|~/", ch) != NULL);
}

/* Reads a token (or quoted string when quoted_ok) into buf. */
static int read_value(struct cursor *c, char *buf, size_t cap, int quoted_ok)
{
	size_t n = 0;

	if (quoted_ok && *c->p == '"') {
		c->p++;
		while (*c->p && *c->p != '"') {
			if (*c->p == '\\' && c->p[1])
				c->p++;
			if (n + 1 >= cap)
				return -1;
			buf[n++] = *c->p++;
		}
		if (*c->p != '"')
			return -1;
		c->p++;
	} else {
		while (is_tchar((unsigned char)*c->p)) {
			if (n + 1 >= cap)
				return -1;
			buf[n++] = *c->p++;
		}
	}
	buf[n] = '\0';
	return 0;
}

/* q = 0(.ddd)? / 1(.000)? as an integer 0..1000, -1 when invalid. */
static int parse_q(const char *v)
{
	int q = 0, scale = 100;

	if (v[0] != '0' && v[0] != '1')
		return -1;
	q = (v[0] - '0') * 1000;
	if (v[1] == '\0')
		return q;
	if (v[1] != '.')
		return -1;
	for (const char *p = v + 2; *p; p++) {
		if (!isdigit((unsigned char)*p) || scale == 0)
			return -1;
		q += (*p - '0') * scale;
		scale /= 10;
	}
	return q > 1000 ? -1 : q;
}

static int parse_range(struct cursor *c, struct accept_range *r)
{
	char name[32], value[128];

	memset(r, 0, sizeof(*r));
	r->q = 1000;
	skip_ws(c);
	if (read_value(c, r->media, sizeof(r->media), 0) != 0 ||
	    strchr(r->media, '/') == NULL)
		return -1;
	for (char *p = r->media; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	skip_ws(c);
	while (*c->p == ';') {
		c->p++;
		skip_ws(c);
		if (read_value(c, name, sizeof(name), 0) != 0 ||
		    name[0] == '\0')
			return -1;
		skip_ws(c);
		if (*c->p != '=')
			return -1;
		c->p++;
		skip_ws(c);
		if (read_value(c, value, sizeof(value), 1) != 0)
			return -1;
		skip_ws(c);
		if (strcasecmp(name, "q") == 0) {
			r->q = parse_q(value);
			if (r->q < 0)
				return -1;
		} else if (strcasecmp(name, "type") == 0) {
			if (strlen(value) >= sizeof(r->type))
				return -1;
			memcpy(r->type, value, strlen(value) + 1);
			for (char *p = r->type; *p; p++)
				*p = (char)tolower((unsigned char)*p);
		} else if (strcasecmp(name, "transfer-syntax") == 0) {
			if (strlen(value) >= sizeof(r->ts))
				return -1;
			memcpy(r->ts, value, strlen(value) + 1);
		}
		/* other parameters (charset, profile...) are ignored */
	}
	return 0;
}

int accept_parse(const char *header, struct accept *out, char *err,
                 size_t errlen)
{
	struct cursor c = { header ? header : "" };

	memset(out, 0, sizeof(*out));
	if (strlen(c.p) > ACCEPT_HEADER_MAX) {
		snprintf(err, errlen, "Accept header too long");
		return -1;
	}
	skip_ws(&c);
	if (*c.p == '\0') {
		snprintf(out->r[0].media, sizeof(out->r[0].media), "*/*");
		out->r[0].q = 1000;
		out->n = 1;
		return 0;
	}
	for (;;) {
		/* empty list elements are allowed: "a, ,b," */
		while (*c.p == ',' || *c.p == ' ' || *c.p == '\t')
			c.p++;
		if (*c.p == '\0')
			break;
		if (out->n == ACCEPT_MAX) {
			snprintf(err, errlen,
			         "Accept header: more than %d media ranges",
			         ACCEPT_MAX);
			return -1;
		}
		if (parse_range(&c, &out->r[out->n]) != 0) {
			snprintf(err, errlen,
			         "Accept header: malformed media range near "
			         "'%.20s'",
			         c.p);
			return -1;
		}
		if (out->r[out->n].q > 0)
			out->n++;
		skip_ws(&c);
		if (*c.p != ',' && *c.p != '\0') {
			snprintf(err, errlen,
			         "Accept header: unexpected '%.20s'", c.p);
			return -1;
		}
	}
	/* Stable sort by q, descending (n is small). */
	for (size_t i = 1; i < out->n; i++) {
		struct accept_range t = out->r[i];
		size_t j = i;

		while (j > 0 && out->r[j - 1].q < t.q) {
			out->r[j] = out->r[j - 1];
			j--;
		}
		out->r[j] = t;
	}
	return 0;
}

int accept_media_matches(const struct accept_range *r, const char *media)
{
	const char *slash;

	if (strcmp(r->media, "*/*") == 0 || strcasecmp(r->media, media) == 0)
		return 1;
	slash = strchr(media, '/');
	return slash != NULL && strcmp(r->media + (slash - media), "/*") == 0 &&
	       strncasecmp(r->media, media, (size_t)(slash - media)) == 0;
}
