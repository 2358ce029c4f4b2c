/*
 * drimbox_audit.c - `drimbox audit`: the audit trail of a time range as
 * CSV or JSON, and the check of its hash chain; `drimbox stats`: the
 * usage statistics file, one line per contextual call with the status of
 * each exchange it caused. Both read the index beside the daemon.
 */
#include "cli.h"
#include "index.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM[:SS][Z]", UTC, in ms: 0, or -1. A day
 * alone is its start, or with end its end (--to 2026-11-22: that day
 * included).
 */
static int parse_time(const char *s, int end_of_day, int64_t *ms)
{
	int day = 1;

	struct tm tm;
	const char *end;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%d", &tm);
	if (end != NULL && *end == 'T') {
		day = 0;
		const char *e2 = strptime(end + 1, "%H:%M:%S", &tm);

		end = e2 ? e2 : strptime(end + 1, "%H:%M", &tm);
		if (end != NULL && *end == 'Z')
			end++;
	}
	if (end == NULL || *end != '\0')
		return -1;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	*ms = ((int64_t)t + (day && end_of_day ? 86400 : 0)) * 1000;
	return 0;
}

static void iso(int64_t ms, char *out, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char s[32];

	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, cap, "%s.%03dZ", s, (int)(ms % 1000));
}

/* A CSV field (RFC 4180): quoted when it holds a comma, quote or EOL. */
static void csv(FILE *f, const char *v, int last)
{
	if (strpbrk(v, ",\"\r\n") == NULL) {
		fputs(v, f);
	} else {
		fputc('"', f);
		for (; *v; v++) {
			if (*v == '"')
				fputc('"', f);
			fputc(*v, f);
		}
		fputc('"', f);
	}
	fputc(last ? '\n' : ',', f);
}

/* --from, --to, --json: the range and the form; 0, or -1 (usage). */
static int range_args(int argc, char **argv, int first, int64_t *from,
                      int64_t *to, int *as_json)
{
	*from = 0;
	*to = INT64_MAX;
	*as_json = 0;
	for (int i = first; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			*as_json = 1;
		else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc &&
		         parse_time(argv[i + 1], 0, from) == 0)
			i++;
		else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc &&
		         parse_time(argv[i + 1], 1, to) == 0)
			i++;
		else
			return -1;
	}
	return 0;
}

static int print_row(void *ctx, const struct idx_audit *r)
{
	json_t *out = ctx;
	char at[40], id[24];

	iso(r->at, at, sizeof(at));
	if (out != NULL)
		return json_array_append_new(
		        out,
		        json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
		                  "s:s, s:s, s:s}",
		                  "id", (json_int_t)r->id, "time", at, "actor",
		                  r->actor, "action", r->action, "study",
		                  r->study, "series", r->series, "source",
		                  r->source, "outcome", r->outcome, "call",
		                  r->call, "detail", r->detail, "hash",
		                  r->hash));
	snprintf(id, sizeof(id), "%lld", (long long)r->id);
	csv(stdout, id, 0);
	csv(stdout, at, 0);
	csv(stdout, r->actor, 0);
	csv(stdout, r->action, 0);
	csv(stdout, r->study, 0);
	csv(stdout, r->series, 0);
	csv(stdout, r->source, 0);
	csv(stdout, r->outcome, 0);
	csv(stdout, r->call, 0);
	csv(stdout, r->detail, 0);
	csv(stdout, r->hash, 1);
	return 0;
}

static int verify(struct index *ix)
{
	int64_t n, bad;
	char head[65];
	int rc = index_audit_verify(ix, &n, head, &bad);

	if (rc < 0) {
		fprintf(stderr, "drimbox: cannot read the audit trail\n");
		return 1;
	}
	if (rc == 1) {
		printf("audit trail BROKEN at row %lld: it was changed, or a "
		       "row before it was inserted or removed (%lld rows "
		       "intact before it)\n",
		       (long long)bad, (long long)n);
		return 1;
	}
	printf("audit trail intact: %lld rows, last hash %s\n", (long long)n,
	       n ? head : "-");
	return 0;
}

int cli_audit(const struct config *cfg, int argc, char **argv)
{
	int is_verify = argc > 1 && strcmp(argv[1], "verify") == 0;
	struct index *ix = NULL;
	json_t *out = NULL;
	int64_t from, to;
	int as_json, rc;

	if ((is_verify && argc != 2) ||
	    (!is_verify && range_args(argc, argv, 1, &from, &to, &as_json))) {
		fprintf(stderr,
		        "usage: drimbox audit [--from T] [--to T] "
		        "[--json] | drimbox audit verify\n"
		        "T: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], UTC\n");
		return 2;
	}
	if (cli_open_index(cfg, &ix) != 0)
		return 1;
	if (is_verify) {
		rc = verify(ix);
		index_close(ix);
		return rc;
	}
	if (as_json)
		out = json_array();
	else
		puts("id,time,actor,action,study,series,source,outcome,call,"
		     "detail,hash");
	rc = index_audit_rows(ix, from, to, print_row, out);
	if (rc == 0 && out != NULL) {
		json_dumpf(out, stdout, JSON_INDENT(1));
		putchar('\n');
	}
	json_decref(out);
	index_close(ix);
	if (rc != 0)
		fprintf(stderr, "drimbox: cannot read the audit trail\n");
	return rc == 0 ? 0 : 1;
}

/* ---- statistics --------------------------------------------------------- */

/* The exchanges a contextual call causes, in the file's column order. */
static const char *const steps[] = { "TD0.2",  "TD0.3",   "ITI-18",
	                             "ITI-43", "WADO-RS", "C-STORE" };
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

struct call {
	char id[24], actor[64], at[40];
	int ok[NSTEPS], ko[NSTEPS];
	struct call *next;
};

struct calls {
	struct call *head, **tail;
	int oom;
};

/* The step of a row: its transaction, a pull or an import; -1 none. */
static int step_of(const struct idx_audit *r)
{
	if (strcmp(r->action, "pull") == 0)
		return 4;
	if (strcmp(r->action, "import") == 0)
		return 5;
	if (strcmp(r->action, "dmp") != 0)
		return -1;
	for (size_t i = 0; i < 4; i++) {
		size_t n = strlen(steps[i]);

		if (strncmp(r->detail, steps[i], n) == 0 &&
		    (r->detail[n] == '\0' || r->detail[n] == ':'))
			return (int)i;
	}
	return -1;
}

static int count_row(void *ctx, const struct idx_audit *r)
{
	struct calls *cs = ctx;
	struct call *c;
	int st;

	if (r->call[0] == '\0')
		return 0;
	for (c = cs->head; c != NULL; c = c->next)
		if (strcmp(c->id, r->call) == 0)
			break;
	if (c == NULL) {
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			cs->oom = 1;
			return 1;
		}
		snprintf(c->id, sizeof(c->id), "%s", r->call);
		iso(r->at, c->at, sizeof(c->at));
		*cs->tail = c;
		cs->tail = &c->next;
	}
	if (c->actor[0] == '\0')
		snprintf(c->actor, sizeof(c->actor), "%s", r->actor);
	st = step_of(r);
	if (st >= 0 && strcmp(r->outcome, "ok") == 0)
		c->ok[st]++;
	else if (st >= 0)
		c->ko[st]++;
	return 0;
}

int cli_stats(const struct config *cfg, int argc, char **argv)
{
	struct calls cs = { NULL, &cs.head, 0 };
	struct index *ix = NULL;
	json_t *out = NULL;
	int64_t from, to;
	int as_json, rc;

	if (range_args(argc, argv, 1, &from, &to, &as_json) != 0) {
		fprintf(stderr, "usage: drimbox stats [--from T] [--to T] "
		                "[--json]\n");
		return 2;
	}
	if (cli_open_index(cfg, &ix) != 0)
		return 1;
	rc = index_audit_rows(ix, from, to, count_row, &cs);
	index_close(ix);
	if (rc != 0) {
		fprintf(stderr, "drimbox: %s\n",
		        cs.oom ? "out of memory"
		               : "cannot read the audit trail");
		goto out;
	}
	if (as_json)
		out = json_array();
	else
		puts("time,call,rpps,TD0.2,TD0.3,ITI-18,ITI-43,WADO-RS,C-STORE,"
		     "status");
	for (struct call *c = cs.head; c != NULL; c = c->next) {
		json_t *o = out ? json_pack("{s:s, s:s, s:s}", "time", c->at,
		                            "call", c->id, "rpps", c->actor)
		                : NULL;
		int failed = 0;

		if (!out) {
			csv(stdout, c->at, 0);
			csv(stdout, c->id, 0);
			csv(stdout, c->actor, 0);
		}
		for (size_t i = 0; i < NSTEPS; i++) {
			/* OK, KO (one call failed), or empty: not called */
			const char *v = c->ko[i] ? "KO" : c->ok[i] ? "OK" : "";

			failed |= c->ko[i] != 0;
			if (o)
				json_object_set_new(o, steps[i],
				                    json_string(v));
			else
				csv(stdout, v, 0);
		}
		if (o) {
			json_object_set_new(o, "status",
			                    json_string(failed ? "KO" : "OK"));
			json_array_append_new(out, o);
		} else {
			csv(stdout, failed ? "KO" : "OK", 1);
		}
	}
	if (out != NULL) {
		json_dumpf(out, stdout, JSON_INDENT(1));
		putchar('\n');
	}
out:
	json_decref(out);
	while (cs.head != NULL) {
		struct call *n = cs.head->next;

		free(cs.head);
		cs.head = n;
	}
	return rc == 0 ? 0 : 1;
}
