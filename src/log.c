/*
 * log.c - one line per event, logfmt: "ts=TIME level=LEVEL cat=CAT
 * [req=N|assoc=N|fetch=N|job=N|thread=NAME] msg="..."", written with a
 * single fwrite under the stream lock so lines never interleave.
 */
#include "log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Set once by log_setup() before threads start, read-only afterwards. */
static enum log_level min_level = LOG_INFO;
static FILE *sink;

static _Thread_local char thread_ctx[48];

static const char *const level_names[] = { "debug", "info", "warn", "error" };
static const char *const cat_names[LOGC__COUNT] = {
	"main", "dicom", "index", "cache", "pacs", "http", "jobs", "hl7", "dmp",
};

int log_level_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
	     i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return (int)i;
	return -1;
}

void log_setup(enum log_level min, FILE *out)
{
	min_level = min;
	sink = out;
}

int log_enabled(enum log_level lvl)
{
	return lvl >= min_level;
}

void log_set_context(const char *ctx)
{
	if (ctx == NULL)
		thread_ctx[0] = '\0';
	else
		snprintf(thread_ctx, sizeof(thread_ctx), "%s", ctx);
}

/* The last warnings and errors, for `drimbox status`. */
#define RECENT 8
static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;
static char recent[RECENT][512];
static unsigned recent_count; /* written so far; the next goes at % RECENT */

void log_recent(void (*cb)(void *ctx, const char *line), void *ctx)
{
	pthread_mutex_lock(&recent_lock);
	for (unsigned i = recent_count > RECENT ? recent_count - RECENT : 0;
	     i < recent_count; i++)
		cb(ctx, recent[i % RECENT]);
	pthread_mutex_unlock(&recent_lock);
}

int log_reopen(const char *path)
{
	int fd;

	if (sink == NULL || sink == stderr)
		return 0;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	flockfile(sink);
	fflush(sink);
	if (dup2(fd, fileno(sink)) < 0) {
		funlockfile(sink);
		close(fd);
		return -1;
	}
	funlockfile(sink);
	close(fd);
	return 0;
}

/* Appends src to line[*n..cap-2] as a logfmt value: quoted, escaped. */
static void put_quoted(char *line, size_t *n, size_t cap, const char *src)
{
	line[(*n)++] = '"';
	for (; *src && *n + 3 < cap; src++) {
		char c = *src == '\n' || *src == '\r' || *src == '\t' ? ' '
		                                                      : *src;

		if (c == '"' || c == '\\')
			line[(*n)++] = '\\';
		line[(*n)++] = c;
	}
	line[(*n)++] = '"';
}

void log_write(enum log_level lvl, enum log_cat cat, const char *fmt, ...)
{
	char line[2560], msg[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int w;
	va_list ap;

	if (lvl < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	/* a context is "key=N" (req, assoc, fetch, job) or a thread's name */
	w = snprintf(
	        line + n, sizeof(line) - n,
	        ".%03ldZ level=%s cat=%s %s%s%smsg=", (long)(tv.tv_usec / 1000),
	        level_names[lvl], cat_names[cat],
	        thread_ctx[0] && !strchr(thread_ctx, '=') ? "thread=" : "",
	        thread_ctx, thread_ctx[0] ? " " : "");
	if (w > 0)
		n += (size_t)w < sizeof(line) - n ? (size_t)w
		                                  : sizeof(line) - n - 1;
	put_quoted(line, &n, sizeof(line) - 1, msg);
	if (lvl >= LOG_WARN) {
		pthread_mutex_lock(&recent_lock);
		snprintf(recent[recent_count++ % RECENT], sizeof(recent[0]),
		         "%.*s", (int)n, line);
		pthread_mutex_unlock(&recent_lock);
	}
	line[n++] = '\n';
	fwrite(line, 1, n, sink ? sink : stderr);
	fflush(sink ? sink : stderr);
}
