/*
 * log.c - one line per event: "TIME LEVEL cat=CAT [ctx] message", written
 * with a single fwrite under the stream lock so lines never interleave.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

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

void log_write(enum log_level lvl, enum log_cat cat, const char *fmt, ...)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int w;
	va_list ap;

	if (lvl < min_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	w = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s %s%s%s ",
	             (long)(tv.tv_usec / 1000), level_names[lvl],
	             cat_names[cat], thread_ctx[0] ? " " : "", thread_ctx);
	if (w > 0)
		n += (size_t)w < sizeof(line) - n ? (size_t)w
		                                  : sizeof(line) - n - 1;
	va_start(ap, fmt);
	w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (w > 0)
		n += (size_t)w < sizeof(line) - n ? (size_t)w
		                                  : sizeof(line) - n - 1;
	/* Keep one event on one line, whatever the message held. */
	for (size_t i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	fwrite(line, 1, n, sink ? sink : stderr);
	fflush(sink ? sink : stderr);
}
