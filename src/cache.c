/*
 * cache.c - see cache.h. The index is the truth about what is cached: a
 * file is published before its row is committed, and its row is cleared
 * before the file is removed, so a crash at any point leaves at worst an
 * orphan file, which the start-up check deletes.
 *
 * Nodes sharing an index (PostgreSQL) share the cache directory too (a
 * network file system): each has its own temporary directory under .tmp/,
 * the start-up check leaves alone what another node may be writing, and
 * the size bound is checked against the index's total, which every node
 * adds to.
 */
#include "cache.h"
#include "fsutil.h"
#include "grow.h"
#include "index.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CACHE_MARKER ".drimbox-cache"

struct cache {
	char dir[PATH_MAX];
	char tmp[PATH_MAX];
	uint64_t max_bytes;
	struct index *ix;
	pthread_mutex_t lock; /* guards bytes, counted_at */
	uint64_t bytes;
	time_t counted_at; /* shared: when bytes was last read from the index */
};

/* Shared cache: the total is read again from the index this often. */
#define SHARED_RECOUNT 10
/*
 * Shared cache: a file younger than this without its row may be another
 * node's, placed and about to be committed (a batch commits within
 * seconds); older, it is an orphan of a crash.
 */
#define SHARED_ORPHAN_AGE 600

/* buf = a/b, or -1 (ENAMETOOLONG) when it does not fit. */
static int join(char *buf, size_t cap, const char *a, const char *b)
{
	int n = snprintf(buf, cap, "%s/%s", a, b);

	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* buf = a/b/c, or -1 (ENAMETOOLONG) when it does not fit. */
static int join3(char *buf, size_t cap, const char *a, const char *b,
                 const char *c)
{
	int n = snprintf(buf, cap, "%s/%s/%s", a, b, c);

	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int valid_uid(const char *uid)
{
	size_t n = strlen(uid);

	if (n == 0 || n > 64 || uid[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((uid[i] >= '0' && uid[i] <= '9') || uid[i] == '.'))
			return 0;
	return 1;
}

/* Creates dir if missing; a new directory's parent is fsynced. */
static int ensure_dir(const char *dir)
{
	char parent[PATH_MAX];
	const char *slash;

	if (mkdir(dir, 0750) == 0) {
		slash = strrchr(dir, '/');
		if (slash == NULL || (size_t)(slash - dir) >= sizeof(parent))
			return 0;
		memcpy(parent, dir, (size_t)(slash - dir));
		parent[slash - dir] = '\0';
		return fs_sync_path(parent[0] ? parent : "/");
	}
	return errno == EEXIST ? 0 : -1;
}

int cache_sync_data(struct cache *c, char *err, size_t errlen)
{
	int fd = open(c->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = fd < 0 ? -1 : syncfs(fd);

	if (rc != 0)
		snprintf(err, errlen, "syncfs %s: %s", c->tmp, strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc;
}

int cache_rel_path(const char *study, const char *series, const char *sop,
                   char *rel, size_t cap)
{
	int n;

	if (!valid_uid(study) || !valid_uid(series) || !valid_uid(sop))
		return -1;
	n = snprintf(rel, cap, "%s/%s/%s.dcm", study, series, sop);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int cache_place(struct cache *c, const char *tmp_path, int data_synced,
                const char *study, const char *series, const char *sop,
                char *rel, size_t rel_cap, char *err, size_t errlen)
{
	char path[PATH_MAX];

	if (cache_rel_path(study, series, sop, rel, rel_cap) != 0) {
		snprintf(err, errlen, "invalid UID");
		return -1;
	}
	if (join(path, sizeof(path), c->dir, study) != 0 ||
	    ensure_dir(path) != 0)
		goto fail;
	if (join3(path, sizeof(path), c->dir, study, series) != 0 ||
	    ensure_dir(path) != 0)
		goto fail;
	if (join(path, sizeof(path), c->dir, rel) != 0 ||
	    (!data_synced && fs_sync_path(tmp_path) != 0) ||
	    rename(tmp_path, path) != 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
	return -1;
}

int cache_sync_dir(struct cache *c, const char *rel, char *err, size_t errlen)
{
	char path[PATH_MAX];
	const char *slash = strrchr(rel, '/');

	if (slash == NULL ||
	    snprintf(path, sizeof(path), "%s/%.*s", c->dir, (int)(slash - rel),
	             rel) >= (int)sizeof(path) ||
	    fs_sync_path(path) != 0) {
		snprintf(err, errlen, "%s: %s", rel, strerror(errno));
		return -1;
	}
	return 0;
}

void cache_unpublish(struct cache *c, const char *rel)
{
	char path[PATH_MAX];

	if (join(path, sizeof(path), c->dir, rel) != 0 ||
	    (unlink(path) != 0 && errno != ENOENT))
		log_warn(LOGC_CACHE, "%s: %s", rel, strerror(errno));
}

void cache_added(struct cache *c, int64_t bytes)
{
	pthread_mutex_lock(&c->lock);
	if (bytes < 0 && (uint64_t)-bytes > c->bytes)
		c->bytes = 0;
	else
		c->bytes += (uint64_t)bytes;
	pthread_mutex_unlock(&c->lock);
}

uint64_t cache_bytes(struct cache *c)
{
	uint64_t b;

	pthread_mutex_lock(&c->lock);
	b = c->bytes;
	pthread_mutex_unlock(&c->lock);
	return b;
}

uint64_t cache_max_bytes(const struct cache *c)
{
	return c->max_bytes;
}

struct unlink_ctx {
	struct cache *c;
	uint64_t freed;
};

static void unlink_cached(void *ctx, const char *rel)
{
	struct unlink_ctx *u = ctx;
	char path[PATH_MAX];
	struct stat st;

	if (join(path, sizeof(path), u->c->dir, rel) != 0)
		return;
	if (stat(path, &st) == 0)
		u->freed += (uint64_t)st.st_size;
	if (unlink(path) != 0 && errno != ENOENT)
		log_warn(LOGC_CACHE, "evict: %s: %s", path, strerror(errno));
}

/* Removes a series' directory and its study's, if they became empty. */
static void prune_dirs(struct cache *c, const char *study, const char *series)
{
	char path[PATH_MAX];

	if (join3(path, sizeof(path), c->dir, study, series) == 0 &&
	    rmdir(path) == 0 && join(path, sizeof(path), c->dir, study) == 0)
		(void)rmdir(path);
}

/*
 * Shared cache: what the other nodes added and evicted, read from the
 * index (at most every SHARED_RECOUNT s, unless now).
 */
static void recount(struct cache *c, int now_or_later)
{
	time_t now = time(NULL);
	uint64_t total;
	int due;

	pthread_mutex_lock(&c->lock);
	due = now_or_later || now - c->counted_at >= SHARED_RECOUNT;
	if (due)
		c->counted_at = now;
	pthread_mutex_unlock(&c->lock);
	if (due && index_cache_bytes(c->ix, &total) == 0) {
		pthread_mutex_lock(&c->lock);
		c->bytes = total;
		pthread_mutex_unlock(&c->lock);
	}
}

int cache_enforce_bound(struct cache *c)
{
	char study[65], series[65];
	int evicted = 0;

	if (index_is_shared(c->ix))
		recount(c, 0);

	while (cache_bytes(c) > c->max_bytes) {
		struct unlink_ctx u = { c, 0 };
		int rc = index_lru_series(c->ix, study, series);

		if (rc <= 0) {
			if (rc < 0)
				evicted = -1;
			break;
		}
		if (index_uncache_series(c->ix, series, unlink_cached, &u) !=
		    0) {
			evicted = -1;
			break;
		}
		prune_dirs(c, study, series);
		cache_added(c, -(int64_t)u.freed);
		/* the other nodes may be evicting too: their share counts */
		if (index_is_shared(c->ix))
			recount(c, 1);
		log_info(LOGC_CACHE, "evicted series=%s study=%s bytes=%llu",
		         series, study, (unsigned long long)u.freed);
		evicted++;
	}
	return evicted;
}

int cache_abs_path(const struct cache *c, const char *rel, char *buf,
                   size_t cap)
{
	return join(buf, cap, c->dir, rel);
}

const char *cache_tmp_dir(const struct cache *c)
{
	return c->tmp;
}

/* ---- start-up check ---------------------------------------------------- */

static int row_file_missing(void *ctx, const char *rel)
{
	struct cache *c = ctx;
	char path[PATH_MAX];
	struct stat st;

	/* Only a file known to be gone clears its row: not EACCES, EIO. */
	if (join(path, sizeof(path), c->dir, rel) != 0)
		return 0;
	if (stat(path, &st) != 0)
		return errno == ENOENT;
	return !S_ISREG(st.st_mode);
}

static long clean_tmp(const char *tmp)
{
	DIR *d = opendir(tmp);
	struct dirent *e;
	char path[PATH_MAX];
	long n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (join(path, sizeof(path), tmp, e->d_name) == 0 &&
		    unlink(path) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* The cache paths the index lists under one series directory, sorted. */
struct listed {
	char **v;
	size_t n, cap;
};

static int add_listed(void *ctx, const char *rel)
{
	struct listed *l = ctx;
	char *dup;

	if (rel == NULL || GROW(l->v, l->n, l->cap, 64) != 0 ||
	    (dup = strdup(rel)) == NULL)
		return -1;
	l->v[l->n++] = dup;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void listed_free(struct listed *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/*
 * Whether the index names rel: first in what it listed for the series,
 * then (an orphan, or the list could not be had) by asking it alone.
 */
static int is_listed(struct cache *c, const struct listed *l, const char *rel)
{
	if (l->n > 0 && bsearch(&rel, l->v, l->n, sizeof(*l->v), cmp_str))
		return 1;
	return index_has_cache_path(c->ix, rel) != 0;
}

/*
 * Walks STUDY/SERIES/FILE under the cache (depth 0 = the cache directory,
 * rel = "" there) and deletes the files the index does not reference, and
 * the directories left empty. A series directory costs the index one
 * question (on PostgreSQL, a round trip), not one per file.
 */
static void scan_dir(struct cache *c, const char *rel, int depth, long *orphans)
{
	char path[PATH_MAX], child[PATH_MAX];
	struct listed listed = { NULL, 0, 0 };
	struct dirent *e;
	DIR *d;

	if ((depth == 0 ? join(path, sizeof(path), c->dir, ".")
	                : join(path, sizeof(path), c->dir, rel)) != 0)
		return;
	d = opendir(path);
	if (d == NULL)
		return;
	if (depth == 2) {
		if (index_series_cache_paths(c->ix, strchr(rel, '/') + 1,
		                             add_listed, &listed) != 0) {
			listed_free(&listed); /* is_listed asks file by file */
			listed = (struct listed){ NULL, 0, 0 };
		}
		if (listed.n > 1)
			qsort(listed.v, listed.n, sizeof(*listed.v), cmp_str);
	}
	while ((e = readdir(d)) != NULL) {
		/* ".", ".." and, at the top, ".tmp" are not ours to scan. */
		if (e->d_name[0] == '.')
			continue;
		if ((depth == 0
		             ? snprintf(child, sizeof(child), "%s",
		                        e->d_name) >= (int)sizeof(child)
		             : join(child, sizeof(child), rel, e->d_name)) != 0)
			continue;
		if (depth < 2) {
			scan_dir(c, child, depth + 1, orphans);
			continue;
		}
		if (is_listed(c, &listed, child) ||
		    join(path, sizeof(path), c->dir, child) != 0)
			continue;
		/* published, its row not yet committed by another node? */
		if (index_is_shared(c->ix)) {
			struct stat st;

			if (stat(path, &st) != 0 ||
			    time(NULL) - st.st_mtime < SHARED_ORPHAN_AGE)
				continue;
		}
		if (unlink(path) == 0)
			(*orphans)++;
	}
	closedir(d);
	listed_free(&listed);
	if (depth > 0 && join(path, sizeof(path), c->dir, rel) == 0)
		(void)rmdir(path); /* only succeeds when empty */
}

/*
 * A cache directory carries a marker file. When the index says files are
 * cached but the directory has no marker, it is not the cache the index
 * describes (a volume not mounted, a wrong path): starting would clear
 * every row, and later delete every file as an orphan. Refuse instead.
 */
static int check_marker(struct cache *c, struct index *ix, char *err,
                        size_t errlen)
{
	char path[PATH_MAX];
	struct idx_counts n;
	struct stat st;
	FILE *f;

	if (join(path, sizeof(path), c->dir, CACHE_MARKER) != 0 ||
	    index_counts(ix, &n) != 0) {
		snprintf(err, errlen, "%s: cannot check the cache", c->dir);
		return -1;
	}
	if (stat(path, &st) == 0)
		return 0;
	if (n.cached > 0) {
		snprintf(err, errlen,
		         "%s: no %s marker, but the index lists %ld cached "
		         "instances: is the cache volume mounted? (to start "
		         "afresh, remove the index)",
		         c->dir, CACHE_MARKER, n.cached);
		return -1;
	}
	f = fopen(path, "w");
	if (f == NULL || fputs("drimbox cache\n", f) < 0 || fclose(f) != 0 ||
	    fs_sync_path(c->dir) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int cache_open(const char *dir, uint64_t max_bytes, struct index *ix,
               struct cache **out, struct cache_check_report *report, char *err,
               size_t errlen)
{
	struct cache *c = calloc(1, sizeof(*c));
	struct cache_check_report r = { 0, 0, 0 };
	struct idx_counts before, after;

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->ix = ix;
	c->max_bytes = max_bytes;
	if (strlen(dir) + 8 >= sizeof(c->dir)) {
		snprintf(err, errlen, "%s: path too long", dir);
		goto fail;
	}
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	if (index_is_shared(ix))
		snprintf(c->tmp, sizeof(c->tmp), "%s/.tmp/%s", dir,
		         index_node(ix));
	else
		snprintf(c->tmp, sizeof(c->tmp), "%s/.tmp", dir);
	if (fs_mkdirs(c->tmp) != 0) {
		snprintf(err, errlen, "%s: %s", c->tmp, strerror(errno));
		goto fail;
	}
	if (check_marker(c, ix, err, errlen) != 0)
		goto fail;
	r.temp_removed = clean_tmp(c->tmp);
	if (index_counts(ix, &before) != 0 ||
	    index_check_cached(ix, row_file_missing, c) != 0 ||
	    index_counts(ix, &after) != 0) {
		snprintf(err, errlen, "index check failed");
		goto fail;
	}
	r.rows_cleared = before.cached - after.cached;
	scan_dir(c, "", 0, &r.orphans_removed);
	if (index_cache_bytes(ix, &c->bytes) != 0) {
		snprintf(err, errlen, "index: cannot sum cache size");
		goto fail;
	}
	if (report)
		*report = r;
	*out = c;
	return 0;
fail:
	cache_close(c);
	return -1;
}

void cache_close(struct cache *c)
{
	if (c == NULL)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c);
}
