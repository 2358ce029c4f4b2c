/*
 * test_util.h - what the bridge's C tests share: check macros that count
 * failures, a temporary directory made at start and removed at the end,
 * and the set-up and summary of a test program.
 */
#ifndef DRIMBOX_TEST_UTIL_H
#define DRIMBOX_TEST_UTIL_H

#include "dcm.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
static char tmpdir[64];

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: %s: check failed: %s\n",       \
			        __FILE__, __LINE__, __func__, #cond);          \
			failures++;                                            \
		}                                                              \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                     \
	do {                                                                   \
		long _a = (long)(a), _b = (long)(b);                           \
		if (_a != _b) {                                                \
			fprintf(stderr,                                        \
			        "%s:%d: %s: %s == %ld, expected %ld\n",        \
			        __FILE__, __LINE__, __func__, #a, _a, _b);     \
			failures++;                                            \
		}                                                              \
	} while (0)

#define CHECK_EQ_STR(a, b)                                                     \
	do {                                                                   \
		const char *_a = (a), *_b = (b);                               \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                       \
			fprintf(stderr,                                        \
			        "%s:%d: %s: %s == \"%s\", expected \"%s\"\n",  \
			        __FILE__, __LINE__, __func__, #a,              \
			        _a ? _a : "(null)", _b ? _b : "(null)");       \
			failures++;                                            \
		}                                                              \
	} while (0)

/* buf = tmpdir/name */
static inline void tmp_path(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/%s", tmpdir, name);
}

/* Makes /tmp/NAME.XXXXXX and initialises the bridge; 0 or -1. */
static inline int test_setup(const char *name)
{
	struct dcm_err err = { { 0 } };

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/%s.XXXXXX", name);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return -1;
	}
	if (dcm_global_init(&err) != DCM_OK) {
		fprintf(stderr, "dcm_global_init: %s\n", err.msg);
		return -1;
	}
	return 0;
}

/*
 * Cleans up (the temporary directory stays when KEEP_TMP is set), prints
 * the summary; returns the exit status.
 */
static inline int test_finish(const char *name)
{
	DIR *d = getenv("KEEP_TMP") ? NULL : opendir(tmpdir);
	struct dirent *e;
	char p[512];

	dcm_global_cleanup();
	while (d && (e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
		unlink(p);
	}
	if (d) {
		closedir(d);
		rmdir(tmpdir);
	}
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("all %s checks passed\n", name);
	return 0;
}

#endif
