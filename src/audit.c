/*
 * audit.c - the audit trail's writer: a process-wide sink over the index,
 * and a small table of rows written recently so that a study read in
 * hundreds of requests is one row, not hundreds.
 */
#include "audit.h"
#include "index.h"
#include "log.h"
#include "utf8.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define ONCE_SLOTS 256
#define ONCE_MS (10 * 60 * 1000)

static struct index *sink;
static pthread_mutex_t once_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uint64_t key;
	int64_t at;
} once[ONCE_SLOTS];

void audit_open(struct index *ix)
{
	sink = ix;
	memset(once, 0, sizeof(once));
}

int64_t audit_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int audit(const struct audit_event *e)
{
	char detail[512];
	struct idx_audit r = { 0,        audit_now_ms(), e->actor,  e->action,
		               e->study, e->series,      e->source, e->outcome,
		               e->call,  NULL,           "" };

	if (sink == NULL)
		return 0;
	/* outside text (an error from the DMP, a parameter) cut to size: the
	 * trail stays valid UTF-8 for its exports */
	if (e->detail != NULL) {
		snprintf(detail, sizeof(detail), "%s", e->detail);
		utf8_clean(detail);
		r.detail = detail;
	}
	if (index_audit_add(sink, &r) != 0) {
		log_error(LOGC_INDEX,
		          "audit: cannot record action=%s actor=%s study=%s",
		          e->action, e->actor ? e->actor : "",
		          e->study ? e->study : "");
		return -1;
	}
	return 0;
}

static uint64_t fnv(uint64_t h, const char *s)
{
	for (s = s ? s : ""; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (h ^ 0xff) * 1099511628211ULL; /* a field separator */
}

int audit_once(const struct audit_event *e)
{
	uint64_t key = 14695981039346656037ULL;
	int64_t now = audit_now_ms();
	unsigned slot;
	int seen;

	if (sink == NULL)
		return 0;
	key = fnv(key, e->actor);
	key = fnv(key, e->action);
	key = fnv(key, e->study);
	key = fnv(key, e->series);
	key = fnv(key, e->source);
	key = fnv(key, e->outcome);
	slot = (unsigned)(key % ONCE_SLOTS);
	pthread_mutex_lock(&once_lock);
	seen = once[slot].key == key && now - once[slot].at < ONCE_MS;
	if (!seen) {
		once[slot].key = key;
		once[slot].at = now;
	}
	pthread_mutex_unlock(&once_lock);
	return seen ? 0 : audit(e);
}

void audit_peer(struct MHD_Connection *conn, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
	        conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;
	char a[INET6_ADDRSTRLEN] = "";

	if (sa != NULL && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
		          a, sizeof(a));
	else if (sa != NULL && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
		          &((const struct sockaddr_in6 *)sa)->sin6_addr, a,
		          sizeof(a));
	snprintf(out, cap, "%s", a);
}
