/*
 * cache.h - the instance cache: one Part 10 file per instance at
 * CACHE/STUDY/SERIES/SOP.dcm, published atomically (temp file, fsync,
 * rename, fsync of the directory) before the index points at it; bounded
 * in size with LRU eviction of whole series; checked against the index at
 * start-up (a marker file tells the cache directory from an empty one).
 */
#ifndef DRIMBOX_CACHE_H
#define DRIMBOX_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct index;
struct cache;

/* Result of the start-up check. */
struct cache_check_report {
	long temp_removed;    /* leftover temporary files deleted */
	long orphans_removed; /* files the index did not know, deleted */
	long rows_cleared;    /* index rows whose file was missing */
};

/*
 * Opens the cache at dir (created if missing) bounded to max_bytes and
 * checks it against ix: temporary files left by a crash are removed, files
 * unknown to the index are removed, rows whose file is gone are cleared.
 * *out set only on success; -1 with the reason in err otherwise.
 */
int cache_open(const char *dir, uint64_t max_bytes, struct index *ix,
               struct cache **out, struct cache_check_report *report, char *err,
               size_t errlen);
void cache_close(struct cache *c);

/*
 * The relative path an instance has in the cache (STUDY/SERIES/SOP.dcm);
 * -1 when a UID is not valid or the path does not fit.
 */
int cache_rel_path(const char *study, const char *series, const char *sop,
                   char *rel, size_t cap);

/* Absolute path of a cached file from its relative path; -1 if too long. */
int cache_abs_path(const struct cache *c, const char *rel, char *buf,
                   size_t cap);

/* Directory where incoming files are first written (same file system). */
const char *cache_tmp_dir(const struct cache *c);

/*
 * Publishing a file in steps, so that a batch costs one file-system sync
 * and one directory sync per series: cache_place() makes tmp_path durable
 * (unless data_synced: the caller ran cache_sync_data() after writing it)
 * and renames it to STUDY/SERIES/SOP.dcm (relative path in rel, at least
 * 200 bytes; UIDs must be valid UIDs); cache_sync_dir() then makes the
 * rename durable. 0, or -1 with the reason in err (tmp_path then left to
 * the caller).
 */
int cache_sync_data(struct cache *c, char *err, size_t errlen);
int cache_place(struct cache *c, const char *tmp_path, int data_synced,
                const char *study, const char *series, const char *sop,
                char *rel, size_t rel_cap, char *err, size_t errlen);
int cache_sync_dir(struct cache *c, const char *rel, char *err, size_t errlen);

/* Removes a published file that no index row points at. */
void cache_unpublish(struct cache *c, const char *rel);

/* Accounts for bytes now held (negative: freed), as the index recorded. */
void cache_added(struct cache *c, int64_t bytes);

/*
 * Evicts least recently used series until the cache is within its bound.
 * Returns the number of series evicted, -1 on error. Not to be run beside
 * cache_place() (the store's committer thread does both).
 */
int cache_enforce_bound(struct cache *c);

/* Bytes held, as accounted. */
uint64_t cache_bytes(struct cache *c);
uint64_t cache_max_bytes(const struct cache *c);

#endif
