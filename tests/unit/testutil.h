/*
 * testutil.h - the few macros the C unit tests share: CHECK records a
 * failure with its line and goes on; each test is a function named as a
 * sentence; main() runs them and exits non-zero when any check failed.
 */
#ifndef DRIMBOX_TESTUTIL_H
#define DRIMBOX_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
			        __LINE__, #cond);                              \
			test_failures++;                                       \
		}                                                              \
	} while (0)

#define RUN(test)                                                              \
	do {                                                                   \
		int before = test_failures;                                    \
		test();                                                        \
		printf("%s %s\n", test_failures == before ? "ok  " : "FAIL",   \
		       #test);                                                 \
	} while (0)

/* Makes a fresh temporary directory; the path is static storage. */
static inline const char *test_tmpdir(void)
{
	static char dir[64];

	snprintf(dir, sizeof(dir), "/tmp/drimbox-test-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	return dir;
}

/* Writes text to path; exits on failure (test set-up, not under test). */
static inline void test_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

/* Reads a whole file (NUL-terminated, malloc'd); exits on failure. */
static inline char *test_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 ||
	    (buf = malloc((size_t)n + 1)) == NULL ||
	    fread(buf, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		exit(1);
	}
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

#endif
