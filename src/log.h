/*
 * log.h - the one logger: levels, categories and a per-thread context id
 * (request, association or job) on every line, key=value style.
 * The sink is process-wide and set once at start-up, before threads start.
 */
#ifndef DRIMBOX_LOG_H
#define DRIMBOX_LOG_H

#include <stdio.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

enum log_cat {
	LOGC_MAIN,
	LOGC_DICOM,
	LOGC_INDEX,
	LOGC_CACHE,
	LOGC_PACS,
	LOGC_HTTP,
	LOGC_JOBS,
	LOGC_HL7,
	LOGC_DMP,
	LOGC__COUNT
};

/* Parses "debug", "info", "warn", "error"; -1 when unknown. */
int log_level_parse(const char *s);

/*
 * Sets the minimum level and the output stream (stderr when NULL). Call
 * before any thread starts; the stream is not closed by the logger.
 */
void log_setup(enum log_level min, FILE *out);

/* True when a message at this level would be written (test before work). */
int log_enabled(enum log_level lvl);

/*
 * Sets this thread's context id (e.g. "assoc=12", "req=7"), copied; NULL
 * clears it.
 */
void log_set_context(const char *ctx);

/*
 * Calls cb with each of the last (up to 8) warning and error lines,
 * oldest first.
 */
void log_recent(void (*cb)(void *ctx, const char *line), void *ctx);

/*
 * Reopens the log file at path on the same stream (after logrotate moved
 * it): 0, or -1 with errno (the old file is kept). Nothing with stderr.
 */
int log_reopen(const char *path);

void log_write(enum log_level lvl, enum log_cat cat, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_debug(cat, ...)                                                    \
	do {                                                                   \
		if (log_enabled(LOG_DEBUG))                                    \
			log_write(LOG_DEBUG, cat, __VA_ARGS__);                \
	} while (0)
#define log_info(cat, ...) log_write(LOG_INFO, cat, __VA_ARGS__)
#define log_warn(cat, ...) log_write(LOG_WARN, cat, __VA_ARGS__)
#define log_error(cat, ...) log_write(LOG_ERROR, cat, __VA_ARGS__)

#endif
