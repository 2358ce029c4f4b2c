/*
 * monitor.c - see monitor.h.
 */
#include "monitor.h"
#include "config.h"
#include "index.h"
#include "log.h"
#include "pacs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct monitor {
	const struct config *cfg;
	const struct pacs *pacs;
	struct index *ix;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	atomic_int stop;            /* also read by a running sync */
	atomic_flag checking;       /* a monitor_check echo under way */
	struct monitor_state state; /* guarded by lock */
};

void monitor_get(struct monitor *m, struct monitor_state *out)
{
	pthread_mutex_lock(&m->lock);
	*out = m->state;
	pthread_mutex_unlock(&m->lock);
}

void monitor_report(struct monitor *m, int ok, const char *error)
{
	pthread_mutex_lock(&m->lock);
	m->state.reachable = ok;
	snprintf(m->state.last_error, sizeof(m->state.last_error), "%s",
	         ok ? "" : error);
	pthread_mutex_unlock(&m->lock);
}

void monitor_check(struct monitor *m, long max_age, struct monitor_state *out)
{
	char err[300];
	int ok;

	monitor_get(m, out);
	if (time(NULL) - out->last_echo <= max_age ||
	    atomic_flag_test_and_set(&m->checking))
		return;
	ok = pacs_echo(m->pacs, err, sizeof(err)) == 0;
	pthread_mutex_lock(&m->lock);
	m->state.reachable = ok;
	m->state.last_echo = time(NULL);
	snprintf(m->state.last_error, sizeof(m->state.last_error), "%s",
	         ok ? "" : err);
	*out = m->state;
	pthread_mutex_unlock(&m->lock);
	atomic_flag_clear(&m->checking);
}

/* Waits up to seconds, or until stopped; returns 1 when stopping. */
static int nap(struct monitor *m, long seconds)
{
	struct timespec until;
	int stop;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += seconds;
	pthread_mutex_lock(&m->lock);
	while (!m->stop &&
	       pthread_cond_timedwait(&m->wake, &m->lock, &until) == 0)
		;
	stop = m->stop;
	pthread_mutex_unlock(&m->lock);
	return stop;
}

static void sync_window(struct monitor *m)
{
	struct pacs_sync_stats st;
	char from[16], err[300];
	time_t t = time(NULL) - (time_t)m->cfg->sync_window_days * 86400;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(from, sizeof(from), "%Y%m%d", &tm);
	if (pacs_sync(m->pacs, m->ix, from, NULL, 0, &m->stop, &st, err,
	              sizeof(err)) != 0) {
		log_error(LOGC_PACS, "sync since %s failed: %s", from, err);
		monitor_report(m, 0, err);
		return;
	}
	log_info(LOGC_PACS,
	         "sync since=%s studies=%ld refreshed=%ld series=%ld "
	         "instances=%ld skipped=%ld",
	         from, st.studies, st.refreshed, st.series, st.instances,
	         st.skipped);
	pthread_mutex_lock(&m->lock);
	m->state.last_sync = time(NULL);
	pthread_mutex_unlock(&m->lock);
}

static void *monitor_thread(void *arg)
{
	struct monitor *m = arg;
	long backoff = 1;
	time_t next_sync = 0;
	char err[300];

	log_set_context("monitor");
	for (;;) {
		int ok = pacs_echo(m->pacs, err, sizeof(err)) == 0;
		int was;

		pthread_mutex_lock(&m->lock);
		was = m->state.reachable;
		m->state.reachable = ok;
		m->state.last_echo = time(NULL);
		snprintf(m->state.last_error, sizeof(m->state.last_error), "%s",
		         ok ? "" : err);
		pthread_mutex_unlock(&m->lock);
		if (!ok) {
			log_error(LOGC_PACS,
			          "PACS %s:%d (%s) unreachable: %s; next try "
			          "in %ld s",
			          m->pacs->peer.host, m->pacs->peer.port,
			          m->pacs->peer.called_aet, err, backoff);
			if (nap(m, backoff))
				break;
			backoff = backoff * 2 > m->cfg->pacs_retry_max
			                  ? m->cfg->pacs_retry_max
			                  : backoff * 2;
			continue;
		}
		if (!was)
			log_info(LOGC_PACS, "PACS %s:%d (%s) answers C-ECHO",
			         m->pacs->peer.host, m->pacs->peer.port,
			         m->pacs->peer.called_aet);
		backoff = 1;
		if (m->cfg->sync_interval > 0 && time(NULL) >= next_sync) {
			sync_window(m);
			next_sync = time(NULL) + m->cfg->sync_interval;
		}
		/* Health check between syncs: one C-ECHO a minute at most. */
		if (nap(m,
		        m->cfg->sync_interval > 0 && m->cfg->sync_interval < 60
		                ? m->cfg->sync_interval
		                : 60))
			break;
	}
	return NULL;
}

struct monitor *monitor_start(const struct config *cfg, const struct pacs *p,
                              struct index *ix, char *err, size_t errlen)
{
	struct monitor *m = calloc(1, sizeof(*m));
	int rc;

	if (m == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->cfg = cfg;
	m->pacs = p;
	m->ix = ix;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->wake, NULL);
	rc = pthread_create(&m->thread, NULL, monitor_thread, m);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start thread: %s", strerror(rc));
		pthread_cond_destroy(&m->wake);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return NULL;
	}
	return m;
}

void monitor_stop(struct monitor *m)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	m->stop = 1;
	pthread_cond_broadcast(&m->wake);
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->thread, NULL);
	pthread_cond_destroy(&m->wake);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
