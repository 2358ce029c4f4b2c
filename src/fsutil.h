/*
 * fsutil.h - small file-system helpers for durable writes: mkdir -p and
 * fsync of a file or a directory.
 */
#ifndef DRIMBOX_FSUTIL_H
#define DRIMBOX_FSUTIL_H

/* Creates dir and its missing parents (mode 0750); 0 or -1 with errno. */
int fs_mkdirs(const char *dir);

/* fsync()s the file or directory at path; 0 or -1 with errno. */
int fs_sync_path(const char *path);

#endif
