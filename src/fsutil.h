/*
 * fsutil.h - small file-system helpers: mkdir -p and fsync of a file or
 * a directory for durable writes; a whole file read into memory.
 */
#ifndef DRIMBOX_FSUTIL_H
#define DRIMBOX_FSUTIL_H

#include <stddef.h>

/* Creates dir and its missing parents (mode 0750); 0 or -1 with errno. */
int fs_mkdirs(const char *dir);

/* fsync()s the file or directory at path; 0 or -1 with errno. */
int fs_sync_path(const char *path);

/*
 * A whole regular file of at most max bytes, malloc'd, with a NUL after
 * its *len bytes; NULL with errno (EFBIG when larger than max).
 */
char *fs_read_file(const char *path, size_t max, size_t *len);

#endif
