/*
 * health.c - see health.h.
 */
#include "health.h"
#include "config.h"
#include "dmp.h"
#include "index.h"
#include "monitor.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How old a probe's result may be before it is made again (seconds). */
#define PACS_MAX_AGE 15
#define DMP_MAX_AGE 30
#define DMP_TIMEOUT 5

struct health {
	const struct config *cfg;
	struct index *ix;
	struct monitor *monitor;
	pthread_mutex_t dmp_probe; /* held while the DMP is probed */
	pthread_mutex_t lock;      /* guards what follows */
	time_t dmp_at;             /* when the DMP was last probed */
	int dmp_ok;
	char dmp_error[300];
};

struct health *health_new(const struct config *cfg, struct index *ix,
                          struct monitor *monitor)
{
	struct health *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->cfg = cfg;
	h->ix = ix;
	h->monitor = monitor;
	pthread_mutex_init(&h->dmp_probe, NULL);
	pthread_mutex_init(&h->lock, NULL);
	return h;
}

void health_free(struct health *h)
{
	if (h == NULL)
		return;
	pthread_mutex_destroy(&h->dmp_probe);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static json_t *check(int ok, const char *error)
{
	json_t *o = json_pack("{s:b}", "ok", ok);

	if (o != NULL && !ok)
		json_object_set_new(o, "error", json_string(error));
	return o;
}

/* The DMP's last probe result, probing again when it is stale. */
static void dmp_state(struct health *h, int *ok, char *error, size_t cap)
{
	pthread_mutex_lock(&h->lock);
	int stale = time(NULL) - h->dmp_at > DMP_MAX_AGE;
	pthread_mutex_unlock(&h->lock);

	if (stale && pthread_mutex_trylock(&h->dmp_probe) == 0) {
		char err[300] = "";
		int r = dmp_ping(h->cfg, DMP_TIMEOUT, err, sizeof(err)) == 0;

		pthread_mutex_lock(&h->lock);
		h->dmp_ok = r;
		h->dmp_at = time(NULL);
		snprintf(h->dmp_error, sizeof(h->dmp_error), "%s", err);
		pthread_mutex_unlock(&h->lock);
		pthread_mutex_unlock(&h->dmp_probe);
	}
	pthread_mutex_lock(&h->lock);
	*ok = h->dmp_at != 0 && h->dmp_ok;
	snprintf(error, cap, "%s",
	         h->dmp_at == 0 ? "not probed yet" : h->dmp_error);
	pthread_mutex_unlock(&h->lock);
}

json_t *health_ready(struct health *h)
{
	struct monitor_state ms;
	char err[300] = "";
	int index_ok, ready;
	json_t *checks = json_object(), *o;

	if (checks == NULL)
		return NULL;
	index_ok = index_writable(h->ix, err, sizeof(err)) == 0;
	json_object_set_new(checks, "index", check(index_ok, err));
	monitor_check(h->monitor, PACS_MAX_AGE, &ms);
	json_object_set_new(checks, "pacs", check(ms.reachable, ms.last_error));
	ready = index_ok && ms.reachable;
	if (h->cfg->dmp_url[0]) {
		int dmp_ok;

		dmp_state(h, &dmp_ok, err, sizeof(err));
		json_object_set_new(checks, "dmp", check(dmp_ok, err));
		ready = ready && dmp_ok;
	}
	o = json_pack("{s:b, s:o}", "ready", ready, "checks", checks);
	return o;
}
