/*
 * index_qido.c - QIDO-RS queries on the index: each matching key becomes
 * a parameterised condition on a column (the SQL text is built only from
 * the fixed table below; values are always bound). Wildcards are GLOB on
 * SQLite and LIKE on PostgreSQL, both case-sensitive as PS3.4 wants;
 * fuzzy person-name matching ignores case on both.
 */
#include "index.h"
#include "index_internal.h"
#include "log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum match_kind { K_UID, K_STR, K_PN, K_DATE, K_TIME, K_INT, K_MULTI };

struct key {
	uint32_t tag;
	enum idx_level level; /* level of the table holding it */
	const char *column;
	enum match_kind kind;
};

static const struct key keys[] = {
	{ 0x0020000D, IDX_STUDY, "st.uid", K_UID },
	{ 0x00100020, IDX_STUDY, "p.patient_id", K_STR },
	{ 0x00100021, IDX_STUDY, "p.issuer", K_STR },
	{ 0x00100010, IDX_STUDY, "p.name", K_PN },
	{ 0x00100030, IDX_STUDY, "p.birth_date", K_DATE },
	{ 0x00100040, IDX_STUDY, "p.sex", K_STR },
	{ 0x00080020, IDX_STUDY, "st.study_date", K_DATE },
	{ 0x00080030, IDX_STUDY, "st.study_time", K_TIME },
	{ 0x00080050, IDX_STUDY, "st.accession", K_STR },
	{ 0x00081030, IDX_STUDY, "st.description", K_STR },
	{ 0x00080061, IDX_STUDY, "st.modalities", K_MULTI },
	{ 0x00080090, IDX_STUDY, "st.referring", K_PN },
	{ 0x00200010, IDX_STUDY, "st.study_id", K_STR },
	{ 0x0020000E, IDX_SERIES, "se.uid", K_UID },
	{ 0x00080060, IDX_SERIES, "se.modality", K_STR },
	{ 0x00200011, IDX_SERIES, "se.number", K_INT },
	{ 0x0008103E, IDX_SERIES, "se.description", K_STR },
	{ 0x00180015, IDX_SERIES, "se.body_part", K_STR },
	{ 0x00080018, IDX_INSTANCE, "i.uid", K_UID },
	{ 0x00080016, IDX_INSTANCE, "i.sop_class", K_UID },
	{ 0x00200013, IDX_INSTANCE, "i.number", K_INT },
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))
#define UID_LIST_MAX 64
#define SQL_MAX 8192
#define BINDS_MAX 256

static const struct key *find_key(enum idx_level level, uint32_t tag)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].tag == tag && keys[i].level <= level)
			return &keys[i];
	return NULL;
}

int index_qido_supports(enum idx_level level, uint32_t tag)
{
	return find_key(level, tag) != NULL;
}

/* A statement being built: SQL text and its bound values. */
struct build {
	char sql[SQL_MAX];
	size_t len;
	const char *bind[BINDS_MAX]; /* text values; owned by bufs or caller */
	char *owned[BINDS_MAX];
	size_t nbind, nowned;
	int overflow;
	int pg; /* PostgreSQL's dialect */
};

static void add(struct build *b, const char *fmt, const char *col)
{
	int n = snprintf(b->sql + b->len, sizeof(b->sql) - b->len, fmt, col);

	if (n < 0 || (size_t)n >= sizeof(b->sql) - b->len)
		b->overflow = 1;
	else
		b->len += (size_t)n;
}

static void bind(struct build *b, const char *v)
{
	if (b->nbind == BINDS_MAX)
		b->overflow = 1;
	else
		b->bind[b->nbind++] = v;
}

/* Binds a string this build owns (freed with the build). */
static void bind_owned(struct build *b, char *v)
{
	if (v == NULL || b->nowned == BINDS_MAX) {
		free(v);
		b->overflow = 1;
		return;
	}
	b->owned[b->nowned++] = v;
	bind(b, v);
}

static int has_wildcard(const char *v)
{
	return strpbrk(v, "*?") != NULL;
}

/* DICOM wildcard value -> GLOB pattern ('[' escaped as "[[]"). */
static char *to_glob(const char *v)
{
	char *out = malloc(strlen(v) * 3 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (; *v; v++) {
		if (*v == '[') {
			memcpy(o, "[[]", 3);
			o += 3;
		} else {
			*o++ = *v;
		}
	}
	*o = '\0';
	return out;
}

/* A new string prefix + v + suffix; NULL on ENOMEM. */
static char *concat3(const char *prefix, const char *v, const char *suffix)
{
	size_t a = strlen(prefix), n = strlen(v), c = strlen(suffix);
	char *out = malloc(a + n + c + 1);

	if (out != NULL) {
		memcpy(out, prefix, a);
		memcpy(out + a, v, n);
		memcpy(out + a + n, suffix, c + 1);
	}
	return out;
}

/*
 * DICOM value -> LIKE pattern: '*' -> '%', '?' -> '_', LIKE's own
 * characters escaped with '\'; prefix and suffix added as they are.
 */
static char *to_like(const char *prefix, const char *v, const char *suffix)
{
	size_t a = strlen(prefix), c = strlen(suffix);
	char *out = malloc(a + 2 * strlen(v) + c + 1), *o;

	if (out == NULL)
		return NULL;
	memcpy(out, prefix, a);
	o = out + a;
	for (; *v; v++) {
		if (*v == '%' || *v == '_' || *v == '\\')
			*o++ = '\\';
		*o++ = *v == '*' ? '%' : *v == '?' ? '_' : *v;
	}
	memcpy(o, suffix, c + 1);
	return out;
}

static int valid_digits(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]) && s[i] != '.')
			return 0;
	return 1;
}

/* Splits "a-b" (either side may be empty) into two bound values. */
static int add_range(struct build *b, const struct key *k, const char *v,
                     size_t min, size_t max, char *err, size_t errlen)
{
	const char *dash = strchr(v, '-');
	char lo[32] = "", hi[32] = "";

	if (dash == NULL) {
		if (!valid_digits(v, min, max))
			goto bad;
		add(b, " AND %s = ?", k->column);
		bind(b, v);
		return 0;
	}
	if ((size_t)(dash - v) >= sizeof(lo) || strlen(dash + 1) >= sizeof(hi))
		goto bad;
	memcpy(lo, v, (size_t)(dash - v));
	memcpy(hi, dash + 1, strlen(dash + 1) + 1);
	if ((lo[0] && !valid_digits(lo, min, max)) ||
	    (hi[0] && !valid_digits(hi, min, max)) || (!lo[0] && !hi[0]))
		goto bad;
	if (lo[0]) {
		add(b, " AND %s >= ?", k->column);
		bind_owned(b, strdup(lo));
	}
	if (hi[0]) {
		/* "20240131" includes that whole day, "1200" the minute */
		add(b, " AND %s <= ?", k->column);
		bind_owned(b, concat3("", hi, "\x7f"));
	}
	return 0;
bad:
	snprintf(err, errlen, "%08X: '%.40s' is not a valid date or time range",
	         k->tag, v);
	return -1;
}

static int add_uid_list(struct build *b, const struct key *k, const char *v,
                        char *err, size_t errlen)
{
	char *copy = strdup(v), *save = NULL, *tok;
	size_t n = 0;

	if (copy == NULL) {
		b->overflow = 1;
		return 0;
	}
	add(b, " AND %s IN (", k->column);
	for (tok = strtok_r(copy, ",\\", &save); tok;
	     tok = strtok_r(NULL, ",\\", &save)) {
		if (!valid_digits(tok, 1, 64) || ++n > UID_LIST_MAX) {
			snprintf(err, errlen, "%08X: '%.70s' is not a UID list",
			         k->tag, v);
			free(copy);
			return -1;
		}
		add(b, n > 1 ? ", ?" : "?", "");
		bind_owned(b, strdup(tok));
	}
	free(copy);
	if (n == 0) {
		snprintf(err, errlen, "%08X: empty UID list", k->tag);
		return -1;
	}
	add(b, ")", "");
	return 0;
}

static int add_filter(struct build *b, const struct key *k, const char *v,
                      int fuzzy, char *err, size_t errlen)
{
	if (v[0] == '\0' || strcmp(v, "*") == 0)
		return 0; /* universal matching */
	switch (k->kind) {
	case K_UID:
		return add_uid_list(b, k, v, err, errlen);
	case K_DATE:
		return add_range(b, k, v, 8, 8, err, errlen);
	case K_TIME:
		return add_range(b, k, v, 2, 16, err, errlen);
	case K_INT:
		if (!valid_digits(v, 1, 12) || strchr(v, '.')) {
			snprintf(err, errlen, "%08X: '%.40s' is not an integer",
			         k->tag, v);
			return -1;
		}
		add(b, " AND %s = CAST(? AS BIGINT)", k->column);
		bind(b, v);
		return 0;
	case K_MULTI:
		/* any value of a multi-valued attribute (CT\MR) */
		add(b,
		    b->pg ? " AND strpos('\\' || %s || '\\', ?) > 0"
		          : " AND instr('\\' || %s || '\\', ?) > 0",
		    k->column);
		bind_owned(b, concat3("\\", v, "\\"));
		return 0;
	case K_PN:
		if (fuzzy) {
			/* any word of any component starts with the value */
			char *a = to_like("", v, "%"),
			     *w = to_like("% ", v, "%"),
			     *c = to_like("%^", v, "%");
			add(b,
			    b->pg ? " AND (%1$s ILIKE ? ESCAPE '\\' OR %1$s "
			            "ILIKE ? ESCAPE '\\' OR %1$s ILIKE ? "
			            "ESCAPE "
			            "'\\')"
			          : " AND (%1$s LIKE ? ESCAPE '\\' OR %1$s "
			            "LIKE "
			            "? ESCAPE '\\' OR %1$s LIKE ? ESCAPE '\\')",
			    k->column);
			bind_owned(b, a);
			bind_owned(b, w);
			bind_owned(b, c);
			return 0;
		}
		/* exact or wildcard, as for strings */
		__attribute__((fallthrough));
	case K_STR:
		if (has_wildcard(v) && b->pg) {
			add(b, " AND %s LIKE ? ESCAPE '\\'", k->column);
			bind_owned(b, to_like("", v, ""));
		} else if (has_wildcard(v)) {
			add(b, " AND %s GLOB ?", k->column);
			bind_owned(b, to_glob(v));
		} else {
			add(b, " AND %s = ?", k->column);
			bind(b, v);
		}
		return 0;
	}
	return 0;
}

static const char *const select_cols =
        "SELECT st.uid, p.patient_id, p.issuer, p.name, p.birth_date, p.sex, "
        "st.study_date, st.study_time, st.accession, st.description, "
        "st.modalities, st.referring, st.study_id";

/* Counts are only computed at the level they describe (they cost a scan). */
static const char *const study_counts =
        ", (SELECT count(*) FROM series x WHERE x.study = st.id), "
        "(SELECT count(*) FROM instances y JOIN series z ON z.id = y.series "
        "WHERE z.study = st.id)";

static void build_query(struct build *b, const struct idx_query *q)
{
	add(b, "%s", select_cols);
	add(b, "%s", q->level == IDX_STUDY ? study_counts : ", NULL, NULL");
	if (q->level == IDX_SERIES)
		add(b, "%s",
		    ", se.uid, se.modality, se.description, se.body_part, "
		    "se.number, (SELECT count(*) FROM instances w WHERE "
		    "w.series = se.id)");
	else if (q->level == IDX_INSTANCE)
		add(b, "%s",
		    ", se.uid, se.modality, se.description, se.body_part, "
		    "se.number, NULL");
	if (q->level == IDX_INSTANCE)
		add(b, "%s",
		    ", i.uid, i.sop_class, i.transfer_syntax, i.metadata, "
		    "i.number, i.frames, i.cache_path, i.size, i.cached_at");
	add(b, "%s",
	    " FROM studies st LEFT JOIN patients p ON p.id = st.patient");
	if (q->level >= IDX_SERIES)
		add(b, "%s", " JOIN series se ON se.study = st.id");
	if (q->level == IDX_INSTANCE)
		add(b, "%s", " JOIN instances i ON i.series = se.id");
	add(b, "%s", " WHERE 1 = 1");
	if (q->study_uid) {
		add(b, "%s", " AND st.uid = ?");
		bind(b, q->study_uid);
	}
	if (q->series_uid && q->level >= IDX_SERIES) {
		add(b, "%s", " AND se.uid = ?");
		bind(b, q->series_uid);
	}
}

static const char *text(struct dbs *s, int col)
{
	return db_text(s, col);
}

static long num(struct dbs *s, int col)
{
	return db_long(s, col);
}

static void read_match(struct dbs *s, enum idx_level level, struct idx_match *m)
{
	memset(m, 0, sizeof(*m));
	m->study_uid = text(s, 0);
	m->patient_id = text(s, 1);
	m->issuer = text(s, 2);
	m->patient_name = text(s, 3);
	m->birth_date = text(s, 4);
	m->sex = text(s, 5);
	m->study_date = text(s, 6);
	m->study_time = text(s, 7);
	m->accession = text(s, 8);
	m->study_description = text(s, 9);
	m->modalities = text(s, 10);
	m->referring = text(s, 11);
	m->study_id = text(s, 12);
	m->study_series = num(s, 13);
	m->study_instances = num(s, 14);
	m->series_number = m->series_instances = -1;
	m->instance_number = m->frames = -1;
	m->size = -1;
	m->cached_at = -1;
	if (level >= IDX_SERIES) {
		m->series_uid = text(s, 15);
		m->modality = text(s, 16);
		m->series_description = text(s, 17);
		m->body_part = text(s, 18);
		m->series_number = num(s, 19);
		m->series_instances = num(s, 20);
	}
	if (level == IDX_INSTANCE) {
		m->sop_uid = text(s, 21);
		m->sop_class = text(s, 22);
		m->transfer_syntax = text(s, 23);
		m->metadata = text(s, 24);
		m->instance_number = num(s, 25);
		m->frames = num(s, 26);
		m->cache_path = text(s, 27);
		m->size = m->cache_path ? num(s, 28) : -1;
		m->cached_at = m->cache_path ? num(s, 29) : -1;
	}
}

int index_qido(struct index *ix, const struct idx_query *q,
               int (*cb)(void *ctx, const struct idx_match *m), void *ctx,
               char *err, size_t errlen)
{
	/* NULLS FIRST: SQLite's order, said for PostgreSQL too */
	static const char *const order[] = {
		" ORDER BY st.study_date NULLS FIRST, st.study_time NULLS "
		"FIRST, st.uid",
		" ORDER BY st.study_date NULLS FIRST, st.uid, se.number NULLS "
		"FIRST, se.uid",
		" ORDER BY st.study_date NULLS FIRST, st.uid, se.number NULLS "
		"FIRST, se.uid, i.listed NULLS FIRST, i.number NULLS FIRST, "
		"i.uid",
	};
	struct build *b = malloc(sizeof(*b)); /* 12 KiB: not zeroed */
	struct dbc *c = NULL;
	struct dbs *s = NULL;
	struct idx_match m;
	int rc = -2, step;

	if (b == NULL)
		return -2;
	b->len = b->nbind = b->nowned = 0;
	b->overflow = 0;
	b->pg = index_backend(ix) == DB_POSTGRES;
	b->sql[0] = '\0';
	build_query(b, q);
	for (size_t i = 0; i < q->nfilters; i++) {
		const struct key *k = find_key(q->level, q->filters[i].tag);

		if (k == NULL) {
			snprintf(err, errlen,
			         "%08X is not supported as a matching key at "
			         "this level",
			         q->filters[i].tag);
			rc = -1;
			goto out;
		}
		if (add_filter(b, k, q->filters[i].value, q->fuzzy, err,
		               errlen) != 0) {
			rc = -1;
			goto out;
		}
	}
	add(b, "%s", order[q->level]);
	/* parameters, so that every page is the same prepared statement */
	add(b, "%s", " LIMIT ? OFFSET ?");
	if (b->overflow) {
		snprintf(err, errlen, "query too complex");
		rc = -1;
		goto out;
	}
	if ((c = index_conn(ix)) == NULL)
		goto out;
	if ((s = db_prepare(c, b->sql)) == NULL)
		goto unlock;
	for (size_t i = 0; i < b->nbind; i++)
		db_bind_str(s, (int)i + 1, b->bind[i]);
	db_bind_int(s, (int)b->nbind + 1, q->limit > 0 ? q->limit : INT64_MAX);
	db_bind_int(s, (int)b->nbind + 2, q->offset);
	rc = 0;
	while ((step = db_step(s)) == DB_ROW) {
		read_match(s, q->level, &m);
		if (cb(ctx, &m) != 0)
			break;
	}
	if (step == DB_ERROR)
		rc = -2;
	db_reset(s); /* the values are freed below */
unlock:
	index_done(ix, c);
out:
	for (size_t i = 0; i < b->nowned; i++)
		free(b->owned[i]);
	free(b);
	return rc;
}
