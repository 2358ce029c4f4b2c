/*
 * hl7.c - see hl7.h. Parsing splits the text into segments and fields once
 * (offsets into the message's own copy); repetitions, components and
 * sub-components are found by scanning the field when asked for.
 */
#include "hl7.h"
#include "grow.h"
#include "utf8.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct span {
	size_t off, len;
};

struct hl7_seg {
	char id[4];
	size_t first; /* index of its first field in msg->fields */
	int nfields;  /* fields after the id (for MSH: from MSH-2) */
	int is_msh;
};

struct hl7_msg {
	char *text; /* UTF-8 */
	size_t len;
	char fs, cs, rs, ec, ss; /* field, component, repetition, escape, sub */
	struct hl7_seg *segs;
	int nsegs;
	struct span *fields;
	size_t nfields, capfields;
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t len,
                                                          const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* ---- charset ---------------------------------------------------------- */

/* ISO 8859-1 (or -15, for its few differing letters) to UTF-8. */
static char *latin_to_utf8(const char *s, size_t len, int latin9,
                           size_t *out_len)
{
	char *out = malloc(len * 3 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned c = (unsigned char)s[i];
		unsigned cp = c;

		if (latin9) {
			static const struct {
				unsigned char from;
				unsigned short to;
			} diff[] = { { 0xA4, 0x20AC }, { 0xA6, 0x0160 },
				     { 0xA8, 0x0161 }, { 0xB4, 0x017D },
				     { 0xB8, 0x017E }, { 0xBC, 0x0152 },
				     { 0xBD, 0x0153 }, { 0xBE, 0x0178 } };

			for (size_t k = 0; k < sizeof(diff) / sizeof(*diff);
			     k++)
				if (diff[k].from == c)
					cp = diff[k].to;
		}
		if (cp < 0x80) {
			*o++ = (char)cp;
		} else if (cp < 0x800) {
			*o++ = (char)(0xC0 | cp >> 6);
			*o++ = (char)(0x80 | (cp & 0x3F));
		} else {
			*o++ = (char)(0xE0 | cp >> 12);
			*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
			*o++ = (char)(0x80 | (cp & 0x3F));
		}
	}
	*o = '\0';
	*out_len = (size_t)(o - out);
	return out;
}

/* ---- splitting ------------------------------------------------------- */

static int add_field(struct hl7_msg *m, size_t off, size_t len)
{
	if (GROW(m->fields, m->nfields, m->capfields, 256) != 0)
		return -1;
	m->fields[m->nfields++] = (struct span){ off, len };
	return 0;
}

static int is_delim_char(char c)
{
	return c > ' ' && c < 0x7F && !(c >= '0' && c <= '9') &&
	       !(c >= 'A' && c <= 'Z') && !(c >= 'a' && c <= 'z');
}

/* Delimiters from "MSH|^~\&|"; -1 when they are not usable. */
static int read_delimiters(struct hl7_msg *m, char *err, size_t errlen)
{
	const char *t = m->text;
	size_t n = 0;

	if (m->len < 8 || strncmp(t, "MSH", 3) != 0) {
		set_err(err, errlen, "the message does not start with MSH");
		return -1;
	}
	m->fs = t[3];
	while (4 + n < m->len && t[4 + n] != m->fs && t[4 + n] != '\r' &&
	       t[4 + n] != '\n')
		n++;
	if (n < 4 || 4 + n >= m->len || t[4 + n] != m->fs) {
		set_err(err, errlen,
		        "MSH-2 does not hold the four encoding characters");
		return -1;
	}
	m->cs = t[4], m->rs = t[5], m->ec = t[6], m->ss = t[7];
	{
		char d[5] = { m->fs, m->cs, m->rs, m->ec, m->ss };

		for (int i = 0; i < 5; i++) {
			if (!is_delim_char(d[i]))
				goto bad;
			for (int j = 0; j < i; j++)
				if (d[i] == d[j])
					goto bad;
		}
	}
	return 0;
bad:
	set_err(err, errlen,
	        "MSH-1/MSH-2: delimiters must be distinct punctuation");
	return -1;
}

/* Splits the text into segments and fields. */
static int split(struct hl7_msg *m, char *err, size_t errlen)
{
	const char *t = m->text;
	size_t pos = 0;
	int cap = 0;

	m->nsegs = 0;
	m->nfields = 0;
	while (pos < m->len) {
		size_t end = pos, f;
		struct hl7_seg *s;

		while (end < m->len && t[end] != '\r' && t[end] != '\n')
			end++;
		if (end == pos) { /* empty line (\r\n, or trailing) */
			pos++;
			continue;
		}
		if (m->nsegs == HL7_MAX_SEGMENTS) {
			set_err(err, errlen, "more than %d segments",
			        HL7_MAX_SEGMENTS);
			return -1;
		}
		if (m->nsegs == cap) {
			int ncap = cap ? cap * 2 : 32;
			struct hl7_seg *n =
			        realloc(m->segs, (size_t)ncap * sizeof(*n));

			if (n == NULL)
				goto nomem;
			m->segs = n;
			cap = ncap;
		}
		s = &m->segs[m->nsegs];
		if (end - pos < 3 || (end - pos > 3 && t[pos + 3] != m->fs)) {
			set_err(err, errlen,
			        "segment %d: no three-character id",
			        m->nsegs + 1);
			return -1;
		}
		for (int i = 0; i < 3; i++) {
			char c = t[pos + i];

			if (!((c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9'))) {
				set_err(err, errlen,
				        "segment %d: invalid segment id",
				        m->nsegs + 1);
				return -1;
			}
			s->id[i] = c;
		}
		s->id[3] = '\0';
		s->is_msh = strcmp(s->id, "MSH") == 0;
		if (s->is_msh && m->nsegs > 0) {
			set_err(err, errlen,
			        "segment %d: a second MSH (two messages in "
			        "one?)",
			        m->nsegs + 1);
			return -1;
		}
		s->first = m->nfields;
		s->nfields = 0;
		for (f = pos + 3; f < end;) {
			size_t start = f + 1, e = start;

			while (e < end && t[e] != m->fs)
				e++;
			if (s->nfields == HL7_MAX_FIELDS) {
				set_err(err, errlen,
				        "segment %s has more than %d fields",
				        s->id, HL7_MAX_FIELDS);
				return -1;
			}
			if (add_field(m, start, e - start) != 0)
				goto nomem;
			s->nfields++;
			f = e;
		}
		m->nsegs++;
		pos = end;
	}
	return 0;
nomem:
	set_err(err, errlen, "out of memory");
	return -1;
}

/* The field's span; 0 when absent. MSH-1 is the separator itself. */
static int field_span(const struct hl7_msg *m, const struct hl7_seg *s,
                      int field, struct span *out)
{
	int idx;

	if (s == NULL || field < 1)
		return 0;
	if (s->is_msh) {
		if (field == 1) {
			*out = (struct span){ 3, 1 };
			return 1;
		}
		idx = field - 2;
	} else {
		idx = field - 1;
	}
	if (idx >= s->nfields)
		return 0;
	*out = m->fields[s->first + (size_t)idx];
	return out->len > 0;
}

/* The n-th (from 1) piece of span split by sep; 0 when absent. */
static int piece(const char *t, struct span in, char sep, int n,
                 struct span *out)
{
	size_t p = in.off, end = in.off + in.len;

	for (int i = 1; i < n; i++) {
		while (p < end && t[p] != sep)
			p++;
		if (p == end)
			return 0;
		p++;
	}
	out->off = p;
	while (p < end && t[p] != sep)
		p++;
	out->len = p - out->off;
	return 1;
}

/* Locates field/rep/comp/sub (MSH-1 and MSH-2 are never split). */
static int locate(const struct hl7_msg *m, const struct hl7_seg *s, int field,
                  int rep, int comp, int sub, struct span *out)
{
	struct span sp;

	if (!field_span(m, s, field, &sp))
		return 0;
	if (s->is_msh && field <= 2) {
		*out = sp;
		return rep <= 1 && comp <= 1 && sub <= 1;
	}
	if (!piece(m->text, sp, m->rs, rep < 1 ? 1 : rep, &sp))
		return 0;
	if (comp > 0 && !piece(m->text, sp, m->cs, comp, &sp))
		return 0;
	if (comp > 0 && sub > 0 && !piece(m->text, sp, m->ss, sub, &sp))
		return 0;
	*out = sp;
	return sp.len > 0;
}

/* ---- escapes --------------------------------------------------------- */

static int hexval(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	                              : -1;
}

struct out {
	char *buf;
	size_t cap, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->cap)
		o->buf[o->len] = c;
	o->len++;
}

/* Unescapes t[sp] into o (HL7 v2.5 section 2.7). */
static void unescape(const struct hl7_msg *m, struct span sp, struct out *o)
{
	const char *t = m->text + sp.off;
	size_t n = sp.len;

	for (size_t i = 0; i < n; i++) {
		size_t e;

		if (t[i] != m->ec) {
			put(o, t[i]);
			continue;
		}
		for (e = i + 1; e < n && t[e] != m->ec; e++)
			;
		if (e == n || e == i + 1) { /* lone escape char: literal */
			put(o, t[i]);
			continue;
		}
		switch (t[i + 1]) {
		case 'F':
			put(o, m->fs);
			break;
		case 'S':
			put(o, m->cs);
			break;
		case 'T':
			put(o, m->ss);
			break;
		case 'R':
			put(o, m->rs);
			break;
		case 'E':
			put(o, m->ec);
			break;
		case 'X':
			for (size_t k = i + 2; k + 1 < e; k += 2) {
				int hi = hexval(t[k]), lo = hexval(t[k + 1]);

				if (hi >= 0 && lo >= 0)
					put(o, (char)(hi << 4 | lo));
			}
			break;
		case '.': /* formatting: a line break is all we keep */
			if (e - i == 4 && t[i + 2] == 'b' && t[i + 3] == 'r')
				put(o, '\n');
			break;
		default: /* \H\ \N\ highlighting, \Cxxyy\ charsets: dropped */
			break;
		}
		i = e;
	}
	if (o->cap > 0)
		o->buf[o->len < o->cap ? o->len : o->cap - 1] = '\0';
}

/* ---- public ---------------------------------------------------------- */

const struct hl7_seg *hl7_segment(const struct hl7_msg *m, const char *id,
                                  int nth)
{
	for (int i = 0; i < m->nsegs; i++)
		if (strcmp(m->segs[i].id, id) == 0 && --nth == 0)
			return &m->segs[i];
	return NULL;
}

const struct hl7_seg *hl7_next(const struct hl7_msg *m,
                               const struct hl7_seg *after, const char *id)
{
	for (int i = after ? (int)(after - m->segs) + 1 : 0; i < m->nsegs; i++)
		if (strcmp(m->segs[i].id, id) == 0)
			return &m->segs[i];
	return NULL;
}

int hl7_nsegments(const struct hl7_msg *m)
{
	return m->nsegs;
}

const struct hl7_seg *hl7_segment_at(const struct hl7_msg *m, int i)
{
	return i >= 0 && i < m->nsegs ? &m->segs[i] : NULL;
}

const char *hl7_seg_id(const struct hl7_seg *s)
{
	return s->id;
}

int hl7_reps(const struct hl7_msg *m, const struct hl7_seg *s, int field)
{
	struct span sp;
	int n = 1;

	if (!field_span(m, s, field, &sp))
		return 0;
	if (s->is_msh && field <= 2)
		return 1;
	for (size_t i = 0; i < sp.len; i++)
		n += m->text[sp.off + i] == m->rs;
	return n;
}

size_t hl7_get(const struct hl7_msg *m, const struct hl7_seg *s, int field,
               int rep, int comp, int sub, char *out, size_t cap)
{
	struct out o = { out, cap, 0 };
	struct span sp;

	if (cap > 0)
		out[0] = '\0';
	if (!locate(m, s, field, rep, comp, sub, &sp))
		return 0;
	if (s->is_msh && field <= 2) { /* never unescaped */
		for (size_t i = 0; i < sp.len; i++)
			put(&o, m->text[sp.off + i]);
		if (cap > 0)
			out[o.len < cap ? o.len : cap - 1] = '\0';
		return o.len;
	}
	unescape(m, sp, &o);
	/* \Xhh\ escapes may spell bytes that are not UTF-8, truncation may
	 * cut a character: what is returned is always valid UTF-8 */
	if (cap > 0)
		utf8_clean(out);
	return o.len;
}

const char *hl7_raw(const struct hl7_msg *m, const struct hl7_seg *s, int field,
                    int rep, int comp, size_t *len)
{
	struct span sp;

	*len = 0;
	if (!locate(m, s, field, rep, comp, 0, &sp))
		return NULL;
	*len = sp.len;
	return m->text + sp.off;
}

void hl7_free(struct hl7_msg *m)
{
	if (m == NULL)
		return;
	free(m->text);
	free(m->segs);
	free(m->fields);
	free(m);
}

struct hl7_msg *hl7_parse(const char *buf, size_t len, char *err, size_t errlen)
{
	struct hl7_msg *m = calloc(1, sizeof(*m));
	char charset[64];

	if (m == NULL || (m->text = malloc(len + 1)) == NULL) {
		set_err(err, errlen, "out of memory");
		hl7_free(m);
		return NULL;
	}
	while (len > 0 && (*buf == '\r' || *buf == '\n')) /* blank lines */
		buf++, len--;
	memcpy(m->text, buf, len);
	m->text[len] = '\0';
	m->len = len;
	if (memchr(buf, '\0', len) != NULL) {
		set_err(err, errlen, "the message holds a NUL byte");
		goto fail;
	}
	if (read_delimiters(m, err, errlen) != 0 || split(m, err, errlen) != 0)
		goto fail;
	hl7_get(m, &m->segs[0], 18, 1, 0, 0, charset, sizeof(charset));
	/*
	 * What RIS send does not always match MSH-18: an empty MSH-18 (ASCII)
	 * often comes with Latin-1, and "8859/1" with UTF-8 (the ANS
	 * demonstrator's sample). Text that is valid UTF-8 is read as such
	 * (Latin-1 accents are never valid UTF-8); Latin-1 is converted.
	 */
	if ((strncasecmp(charset, "8859/1", 6) == 0 || charset[0] == '\0') &&
	    !utf8_valid(m->text, m->len)) {
		int latin9 = strcasecmp(charset, "8859/15") == 0;
		size_t n;
		char *u = latin_to_utf8(m->text, m->len, latin9, &n);

		if (u == NULL) {
			set_err(err, errlen, "out of memory");
			goto fail;
		}
		free(m->text);
		m->text = u;
		m->len = n;
		if (split(m, err, errlen) != 0)
			goto fail;
	} else if (charset[0] != '\0' && strcasecmp(charset, "ASCII") != 0 &&
	           strcasecmp(charset, "UNICODE UTF-8") != 0 &&
	           strncasecmp(charset, "8859/1", 6) != 0) {
		set_err(err, errlen, "MSH-18: charset '%s' is not supported",
		        charset);
		goto fail;
	} else if (!utf8_valid(m->text, m->len)) {
		set_err(err, errlen,
		        "the text is not valid UTF-8 although MSH-18 says "
		        "'%s'",
		        charset);
		goto fail;
	}
	return m;
fail:
	hl7_free(m);
	return NULL;
}

/* ---- acknowledgements ------------------------------------------------ */

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->p, cap);

		if (p == NULL) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* Appends s escaped for the standard delimiters |^~\&. */
static void sb_escaped(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		const char *esc = c == '|'    ? "\\F\\"
		                  : c == '^'  ? "\\S\\"
		                  : c == '&'  ? "\\T\\"
		                  : c == '~'  ? "\\R\\"
		                  : c == '\\' ? "\\E\\"
		                              : NULL;
		char hex[8];

		if (esc != NULL) {
			sb_str(b, esc);
		} else if (c < 0x20 || c == 0x7F) {
			/* control bytes (MLLP's own among them) never go out
			 * raw */
			snprintf(hex, sizeof(hex), "\\X%02X\\", c);
			sb_str(b, hex);
		} else {
			sb_add(b, s, 1);
		}
	}
}

/* Appends an unescaped value of m, re-escaped; nothing when m is NULL. */
static void sb_value(struct sbuf *b, const struct hl7_msg *m, int field,
                     int comp)
{
	char v[256];

	if (m == NULL)
		return;
	hl7_get(m, &m->segs[0], field, 1, comp, 0, v, sizeof(v));
	sb_escaped(b, v);
}

char *hl7_ack(const struct hl7_msg *m, enum hl7_ack_code code, int error_code,
              const char *text, const char *app, const char *facility,
              const char *control_id, size_t *len)
{
	static const char *const codes[] = { "AA", "AE", "AR" };
	struct sbuf b = { NULL, 0, 0, 0 };
	char now[32], num[16], version[16] = "2.5";
	time_t t = time(NULL);
	struct tm tm;

	if (m != NULL)
		hl7_get(m, &m->segs[0], 12, 1, 1, 0, version, sizeof(version));
	if (localtime_r(&t, &tm) == NULL ||
	    strftime(now, sizeof(now), "%Y%m%d%H%M%S", &tm) == 0)
		now[0] = '\0';
	sb_str(&b, "MSH|^~\\&|");
	sb_escaped(&b, app);
	sb_str(&b, "|");
	sb_escaped(&b, facility);
	sb_str(&b, "|");
	sb_value(&b, m, 3, 0);
	sb_str(&b, "|");
	sb_value(&b, m, 4, 0);
	sb_str(&b, "|");
	sb_str(&b, now);
	sb_str(&b, "||ACK^");
	sb_value(&b, m, 9, 2);
	sb_str(&b, "^ACK|");
	sb_escaped(&b, control_id);
	sb_str(&b, "|P|");
	sb_escaped(&b, version);
	sb_str(&b, "|||||FRA|UNICODE UTF-8\rMSA|");
	sb_str(&b, codes[code]);
	sb_str(&b, "|");
	sb_value(&b, m, 10, 0);
	sb_str(&b, "\r");
	if (code != HL7_AA) {
		snprintf(num, sizeof(num), "%d", error_code);
		sb_str(&b, "ERR|||");
		sb_str(&b, num);
		sb_str(&b, "^");
		sb_escaped(&b, text ? text : "");
		sb_str(&b, "^HL70357|E||||");
		sb_escaped(&b, text ? text : "");
		sb_str(&b, "\r");
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
