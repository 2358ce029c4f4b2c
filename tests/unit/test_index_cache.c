/*
 * test_index_cache.c - the index (schema, sync upserts, cached rows, LRU)
 * and the cache (atomic publish, eviction, start-up check) together, on a
 * real SQLite file and a real directory.
 */
#include "cache.h"
#include "index.h"
#include "log.h"
#include "testutil.h"

#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dir;

struct walk_count {
	long rows, cached;
};

static int count_row(void *ctx, const struct idx_row *r)
{
	struct walk_count *w = ctx;

	w->rows++;
	w->cached += r->cache_path != NULL;
	return 0;
}

static int put(struct index *ix, const char *study, const char *series,
               const char *sop, const char *rel, uint64_t size);

static struct index *open_index(const char *name)
{
	char path[256], err[256];
	struct index *ix = NULL;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (index_open(path, 1, 0, &ix, err, sizeof(err)) != 0)
		fprintf(stderr, "index_open: %s\n", err);
	return ix;
}

static void index_creates_schema_and_reopens_at_same_version(void)
{
	struct index *ix = open_index("a.db");

	CHECK(ix != NULL);
	CHECK(index_schema_version(ix) >= 1);
	index_close(ix);
	ix = open_index("a.db");
	CHECK(ix != NULL && index_schema_version(ix) >= 1);
	index_close(ix);
}

static void index_sync_records_levels_and_prunes_vanished_instances(void)
{
	struct index *ix = open_index("b.db");
	struct idx_patient pat = { "279035121518989", "ASIP-SANTE-INS-NIR",
		                   "PAT^UN", "19790328", "F" };
	struct idx_study st = { "1.2.3", "20240101", NULL, "ACC1", "CT",
		                "CT",    NULL,       NULL, 2,      3 };
	struct idx_series se[2] = { { "1.2.3.1", "CT", "A", NULL, 1, 2 },
		                    { "1.2.3.2", "CT", "B", NULL, 2, 1 } };
	struct idx_instance in[3] = { { "1.2.3.1.1",
		                        "1.2.840.10008.5.1.4.1.1.2", 1, -1 },
		                      { "1.2.3.1.2", NULL, 2, -1 },
		                      { "1.2.3.2.1", NULL, 1, -1 } };
	size_t off[3] = { 0, 2, 3 };
	struct idx_counts c;
	long n = 0;

	CHECK(ix != NULL);
	CHECK(index_sync_study(ix, &pat, &st, se, 2, in, off) == 0);
	CHECK(index_counts(ix, &c) == 0);
	CHECK(c.patients == 1 && c.studies == 1 && c.series == 2 &&
	      c.instances == 3 && c.cached == 0);
	CHECK(index_study_instances(ix, "1.2.3", &n, NULL) == 0 && n == 3);
	{
		long total = -1, cached = -1;

		CHECK(index_study_instances(ix, "1.2.3", &total, &cached) ==
		              0 &&
		      total == 3 && cached == 0);
		CHECK(put(ix, "1.2.3", "1.2.3.1", "1.2.3.1.1", "r/1.dcm", 10) ==
		      0);
		CHECK(index_study_instances(ix, "1.2.3", &total, &cached) ==
		              0 &&
		      total == 3 && cached == 1);
		CHECK(index_study_instances(ix, "9.9", &total, &cached) == 0 &&
		      total == 0 && cached == 0);
	}
	/* The PACS now lists only one instance in the first series. */
	off[1] = 1;
	in[1] = in[2];
	off[2] = 2;
	CHECK(index_sync_study(ix, &pat, &st, se, 2, in, off) == 0);
	CHECK(index_counts(ix, &c) == 0 && c.instances == 2);
	index_close(ix);
}

static int put(struct index *ix, const char *study, const char *series,
               const char *sop, const char *rel, uint64_t size)
{
	struct idx_put p = {
		.pat = { "IPP1", "", "X^Y", NULL, NULL },
		.st = { .uid = study, .num_series = -1, .num_instances = -1 },
		.se = { .uid = series, .number = -1, .num_instances = -1 },
		.c = { sop, "1.2.840.10008.5.1.4.1.1.2", 1, rel,
		       "1.2.840.10008.1.2.1", size, 1, "{}" },
	};

	int64_t added = 0;
	int rc = index_put_cached(ix, &p, 1, &added);

	return rc != 0 ? rc : added == (int64_t)size ? 0 : 1;
}

/* Appends the last component of each instance's UID to ctx (a string). */
static int last_components(void *ctx, const struct idx_row *row)
{
	char *out = ctx;

	if (row->sop_uid != NULL)
		snprintf(out + strlen(out), 64 - strlen(out), "%s ",
		         strrchr(row->sop_uid, '.') + 1);
	return 0;
}

static void index_keeps_a_manifest_order_as_instances_arrive(void)
{
	struct index *ix = open_index("m.db");
	struct idx_patient pat = { "IPP1", "", "X^Y", NULL, NULL };
	struct idx_study st = { "7.7", NULL, NULL, NULL, NULL,
		                NULL,  NULL, NULL, 1,    3 };
	struct idx_series se = { "7.7.1", NULL, NULL, NULL, -1, 3 };
	/* a remote series as its manifest lists it: numbers not known yet */
	struct idx_instance in[3] = { { "7.7.1.10", NULL, -1, 0 },
		                      { "7.7.1.9", NULL, -1, 1 },
		                      { "7.7.1.11", NULL, -1, 2 } };
	size_t off[2] = { 0, 3 };
	char order[64] = "";

	CHECK(ix != NULL);
	CHECK(index_sync_study(ix, &pat, &st, &se, 1, in, off) == 0);
	CHECK(index_walk(ix, "7.7", last_components, order) == 0);
	CHECK(strcmp(order, "10 9 11 ") == 0);
	/* the first one arrives (InstanceNumber 1): it stays in its place,
	 * not behind those whose number is still unknown */
	CHECK(put(ix, "7.7", "7.7.1", "7.7.1.10", "r/10.dcm", 10) == 0);
	order[0] = '\0';
	CHECK(index_walk(ix, "7.7", last_components, order) == 0);
	CHECK(strcmp(order, "10 9 11 ") == 0);
	index_close(ix);
}

/* Writes a file of size bytes in the cache's temp dir, publishes it. */
static int publish(struct cache *c, struct index *ix, const char *study,
                   const char *series, const char *sop, size_t size)
{
	char tmp[512], rel[256], err[256];
	FILE *f;
	int rc;

	snprintf(tmp, sizeof(tmp), "%s/x.tmp", cache_tmp_dir(c));
	f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	for (size_t i = 0; i < size; i++)
		fputc('D', f);
	fclose(f);
	rc = cache_place(c, tmp, 0, study, series, sop, rel, sizeof(rel), err,
	                 sizeof(err));
	if (rc == 0)
		rc = cache_sync_dir(c, rel, err, sizeof(err));
	if (rc == 0)
		rc = put(ix, study, series, sop, rel, size);
	if (rc == 0)
		cache_added(c, (int64_t)size);
	return rc;
}

static void cache_rejects_non_uid_path_components(void)
{
	struct index *ix = open_index("c.db");
	struct cache *c = NULL;
	char cdir[256], rel[256], err[256], tmp[300];

	snprintf(cdir, sizeof(cdir), "%s/cache-c", dir);
	CHECK(cache_open(cdir, 1 << 20, ix, &c, NULL, err, sizeof(err)) == 0);
	snprintf(tmp, sizeof(tmp), "%s/y.tmp", cache_tmp_dir(c));
	test_write(tmp, "data");
	CHECK(cache_place(c, tmp, 0, "../etc", "1.2", "1.3", rel, sizeof(rel),
	                  err, sizeof(err)) == -1);
	CHECK(cache_place(c, tmp, 0, "1.2", "1.2.", "1.3/..", rel, sizeof(rel),
	                  err, sizeof(err)) == -1);
	cache_close(c);
	index_close(ix);
}

static void cache_evicts_least_recently_used_series_within_bound(void)
{
	struct index *ix = open_index("d.db");
	struct cache *c = NULL;
	struct walk_count w = { 0, 0 };
	char cdir[256], err[256], path[512];
	struct stat sb;

	snprintf(cdir, sizeof(cdir), "%s/cache-d", dir);
	CHECK(cache_open(cdir, 2500, ix, &c, NULL, err, sizeof(err)) == 0);
	CHECK(publish(c, ix, "1.1", "1.1.1", "1.1.1.1", 1000) == 0);
	CHECK(publish(c, ix, "1.1", "1.1.1", "1.1.1.2", 1000) == 0);
	usleep(2000);
	CHECK(publish(c, ix, "1.2", "1.2.1", "1.2.1.1", 1000) == 0);
	CHECK(cache_bytes(c) == 3000);
	CHECK(cache_enforce_bound(c) == 1);
	CHECK(cache_bytes(c) == 1000);
	/* The older series is gone from disk and from the index. */
	snprintf(path, sizeof(path), "%s/1.1/1.1.1/1.1.1.1.dcm", cdir);
	CHECK(stat(path, &sb) != 0);
	snprintf(path, sizeof(path), "%s/1.2/1.2.1/1.2.1.1.dcm", cdir);
	CHECK(stat(path, &sb) == 0);
	CHECK(index_walk(ix, NULL, count_row, &w) == 0);
	CHECK(w.rows == 3 && w.cached == 1);
	cache_close(c);
	index_close(ix);
}

static void cache_check_removes_temp_orphans_and_rows_without_file(void)
{
	struct index *ix = open_index("e.db");
	struct cache *c = NULL;
	struct cache_check_report rep;
	char cdir[256], err[256], path[512];
	uint64_t bytes = 0;

	snprintf(cdir, sizeof(cdir), "%s/cache-e", dir);
	CHECK(cache_open(cdir, 1 << 20, ix, &c, NULL, err, sizeof(err)) == 0);
	CHECK(publish(c, ix, "2.1", "2.1.1", "2.1.1.1", 10) == 0);
	CHECK(publish(c, ix, "2.1", "2.1.1", "2.1.1.2", 10) == 0);
	cache_close(c);
	/* A crash left: a temp file, a file without row, a row without file. */
	snprintf(path, sizeof(path), "%s/.tmp/half.tmp", cdir);
	test_write(path, "half");
	snprintf(path, sizeof(path), "%s/2.1/2.1.1/2.1.1.9.dcm", cdir);
	test_write(path, "orphan");
	snprintf(path, sizeof(path), "%s/2.1/2.1.1/2.1.1.2.dcm", cdir);
	CHECK(unlink(path) == 0);
	CHECK(cache_open(cdir, 1 << 20, ix, &c, &rep, err, sizeof(err)) == 0);
	CHECK(rep.temp_removed == 1);
	CHECK(rep.orphans_removed == 1);
	CHECK(rep.rows_cleared == 1);
	CHECK(index_cache_bytes(ix, &bytes) == 0 && bytes == 10);
	CHECK(cache_bytes(c) == 10);
	cache_close(c);
	index_close(ix);
}

/*
 * More rows than a page of the check (a thousand), in two series: rows
 * lose their file on each side of a page's end; orphans lie in a series
 * the index lists and in one it does not know.
 */
static void cache_check_pages_through_every_row(void)
{
	static const char *const dirs[] = { "4.1", "4.1/4.1.1", "4.1/4.1.2",
		                            "4.1/4.1.9" };
	struct index *ix = open_index("p.db");
	struct cache *c = NULL;
	struct cache_check_report rep;
	struct walk_count w = { 0, 0 };
	char cdir[256], err[256], path[512], sop[64], rel[128];

	snprintf(cdir, sizeof(cdir), "%s/cache-p", dir);
	CHECK(cache_open(cdir, 1 << 30, ix, &c, NULL, err, sizeof(err)) == 0);
	cache_close(c);
	for (size_t k = 0; k < sizeof(dirs) / sizeof(*dirs); k++) {
		snprintf(path, sizeof(path), "%s/%s", cdir, dirs[k]);
		CHECK(mkdir(path, 0755) == 0);
	}
	for (int i = 1; i <= 2100; i++) {
		const char *se = i <= 1500 ? "4.1.1" : "4.1.2";

		snprintf(sop, sizeof(sop), "%s.%d", se, i);
		snprintf(rel, sizeof(rel), "4.1/%s/%s.dcm", se, sop);
		CHECK(put(ix, "4.1", se, sop, rel, 1) == 0);
		snprintf(path, sizeof(path), "%s/%s", cdir, rel);
		if (i != 1000 && i != 1001 && i != 2100)
			test_write(path, "D");
	}
	snprintf(path, sizeof(path), "%s/4.1/4.1.1/4.1.1.9999.dcm", cdir);
	test_write(path, "orphan");
	snprintf(path, sizeof(path), "%s/4.1/4.1.9/4.1.9.1.dcm", cdir);
	test_write(path, "orphan");
	CHECK(cache_open(cdir, 1 << 30, ix, &c, &rep, err, sizeof(err)) == 0);
	CHECK(rep.rows_cleared == 3);
	CHECK(rep.orphans_removed == 2);
	CHECK(cache_bytes(c) == 2097);
	/* every listed file stayed */
	CHECK(index_walk(ix, NULL, count_row, &w) == 0);
	CHECK(w.rows == 2100 && w.cached == 2097);
	snprintf(path, sizeof(path), "%s/4.1/4.1.9", cdir);
	CHECK(access(path, F_OK) != 0); /* emptied, removed */
	cache_close(c);
	index_close(ix);
}

static void index_counts_only_growth_when_an_instance_is_cached_again(void)
{
	struct index *ix = open_index("f.db");
	struct idx_put p = {
		.pat = { "IPP2", "", NULL, NULL, NULL },
		.st = { .uid = "3.1", .num_series = -1, .num_instances = -1 },
		.se = { .uid = "3.1.1", .number = -1, .num_instances = -1 },
		.c = { "3.1.1.1", NULL, 1, "3.1/3.1.1/3.1.1.1.dcm", NULL, 100,
		       1, NULL },
	};
	int64_t added = 0;
	uint64_t bytes = 0;

	CHECK(index_put_cached(ix, &p, 1, &added) == 0 && added == 100);
	p.c.size = 130;
	CHECK(index_put_cached(ix, &p, 1, &added) == 0 && added == 30);
	CHECK(index_cache_bytes(ix, &bytes) == 0 && bytes == 130);
	index_close(ix);
}

static void cache_refuses_a_directory_without_marker_when_rows_say_cached(void)
{
	struct index *ix = open_index("g.db");
	struct cache *c = NULL;
	char cdir[256], other[256], err[512] = "";

	snprintf(cdir, sizeof(cdir), "%s/cache-g", dir);
	CHECK(cache_open(cdir, 1 << 20, ix, &c, NULL, err, sizeof(err)) == 0);
	CHECK(publish(c, ix, "4.1", "4.1.1", "4.1.1.1", 10) == 0);
	cache_close(c);
	/* The same index over an empty directory: a volume not mounted. */
	snprintf(other, sizeof(other), "%s/cache-g-empty", dir);
	CHECK(cache_open(other, 1 << 20, ix, &c, NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, "mounted") != NULL);
	/* Nothing was cleared: the real directory still opens, intact. */
	CHECK(cache_open(cdir, 1 << 20, ix, &c, NULL, err, sizeof(err)) == 0);
	CHECK(cache_bytes(c) == 10);
	cache_close(c);
	index_close(ix);
}

static void index_readonly_open_of_missing_file_fails_cleanly(void)
{
	char path[256], err[256] = "";
	struct index *ix = NULL;

	snprintf(path, sizeof(path), "%s/missing.db", dir);
	CHECK(index_open(path, 1, 1, &ix, err, sizeof(err)) == -1);
	CHECK(ix == NULL && err[0] != '\0');
}

static int count_audit(void *ctx, const struct idx_audit *r)
{
	int *n = ctx;

	(*n)++;
	return strcmp(r->action, "view") == 0 ? 0 : 1;
}

static void index_audit_chain_shows_a_changed_or_removed_row(void)
{
	struct index *ix = open_index("audit.db");
	struct idx_audit r = { 0,          1000,    "899700366240",
		               "view",     "1.2.3", NULL,
		               "10.0.0.1", "ok",    NULL,
		               NULL,       "" };
	char head[65], path[256];
	int64_t n, bad;
	int seen = 0;
	sqlite3 *db;

	CHECK(ix != NULL);
	CHECK(index_audit_verify(ix, &n, head, &bad) == 0 && n == 0);
	for (int i = 0; i < 3; i++) {
		r.at = 1000 * (i + 1);
		CHECK(index_audit_add(ix, &r) == 0);
		CHECK(r.id == i + 1 && strlen(r.hash) == 64);
	}
	CHECK(index_audit_verify(ix, &n, head, &bad) == 0 && n == 3);
	CHECK(strcmp(head, r.hash) == 0);
	CHECK(index_audit_rows(ix, 2000, 3000, count_audit, &seen) == 0);
	CHECK(seen == 1); /* from inclusive, to exclusive */
	/* a row changed behind the index's back */
	snprintf(path, sizeof(path), "%s/audit.db", dir);
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db,
	                   "UPDATE audit SET study_uid = '9.9' WHERE id = 2",
	                   NULL, NULL, NULL) == SQLITE_OK);
	CHECK(index_audit_verify(ix, &n, head, &bad) == 1 && bad == 2 &&
	      n == 1);
	/* the first row removed: the second no longer follows */
	CHECK(sqlite3_exec(db,
	                   "UPDATE audit SET study_uid = '1.2.3' WHERE id = 2;"
	                   "DELETE FROM audit WHERE id = 1",
	                   NULL, NULL, NULL) == SQLITE_OK);
	CHECK(index_audit_verify(ix, &n, head, &bad) == 1 && bad == 2 &&
	      n == 0);
	sqlite3_close(db);
	index_close(ix);
}

int main(void)
{
	log_setup(LOG_ERROR, stderr);
	dir = test_tmpdir();
	RUN(index_creates_schema_and_reopens_at_same_version);
	RUN(index_sync_records_levels_and_prunes_vanished_instances);
	RUN(index_keeps_a_manifest_order_as_instances_arrive);
	RUN(cache_rejects_non_uid_path_components);
	RUN(cache_evicts_least_recently_used_series_within_bound);
	RUN(cache_check_removes_temp_orphans_and_rows_without_file);
	RUN(cache_check_pages_through_every_row);
	RUN(index_counts_only_growth_when_an_instance_is_cached_again);
	RUN(cache_refuses_a_directory_without_marker_when_rows_say_cached);
	RUN(index_readonly_open_of_missing_file_fails_cleanly);
	RUN(index_audit_chain_shows_a_changed_or_removed_row);
	return test_failures ? 1 : 0;
}
