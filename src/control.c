/*
 * control.c - see control.h. libmicrohttpd with a thread per connection,
 * so a handler may block (a sync) and a fetch can stream its progress
 * through a pipe written by a worker thread.
 */
#include "control.h"
#include "cache.h"
#include "config.h"
#include "health.h"
#include "index.h"
#include "log.h"
#include "monitor.h"
#include "pacs.h"
#include "retrieve.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct control {
	struct control_env env;
	struct MHD_Daemon *mhd;
	int fd;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int workers; /* fetch workers alive, guarded by lock */
	time_t started;
	atomic_int up; /* every listener of the daemon is up */
};

void control_set_up(struct control *c)
{
	atomic_store(&c->up, 1);
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status,
                                 json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	struct MHD_Response *resp;
	enum MHD_Result rc;

	json_decref(body);
	if (text == NULL)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(text), text,
	                                       MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	rc = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status,
                                  const char *msg)
{
	return send_json(conn, status, json_pack("{s:s}", "error", msg));
}

static void add_job_count(void *ctx, const struct idx_job_count *c)
{
	json_array_append_new(ctx,
	                      json_pack("{s:s, s:s, s:I, s:I}", "kind", c->kind,
	                                "state", c->state, "count",
	                                (json_int_t)c->count, "oldest_age",
	                                (json_int_t)(time(NULL) - c->oldest)));
}

static void add_line(void *ctx, const char *line)
{
	json_array_append_new(ctx, json_string(line));
}

static enum MHD_Result handle_status(struct control *c,
                                     struct MHD_Connection *conn)
{
	struct idx_counts n = { 0, 0, 0, 0, 0 };
	struct monitor_state ms;
	const struct config *cfg = c->env.cfg;
	json_t *o, *jobs, *recent;

	if (!atomic_load(&c->up))
		return send_error(conn, 503, "drimboxd is starting");
	jobs = json_array();
	recent = json_array();
	monitor_get(c->env.monitor, &ms);
	if (index_counts(c->env.ix, &n) != 0 ||
	    index_jobs_summary(c->env.ix, add_job_count, jobs) != 0) {
		json_decref(jobs);
		json_decref(recent);
		return send_error(conn, 500, "index unreadable");
	}
	log_recent(add_line, recent);
	o = json_pack("{s:s, s:s, s:i, s:I, s:{s:s, s:i, s:s, s:s, s:b, s:I, "
	              "s:I, s:s}, s:{s:I, s:I, s:I, s:I, s:I}, "
	              "s:{s:I, s:I}, s:o, s:o}",
	              "version", DRIMBOX_VERSION, "aet", cfg->dicom_aet,
	              "dicom_port", c->env.dicom_port, "uptime",
	              (json_int_t)(time(NULL) - c->started), "pacs", "host",
	              cfg->pacs_host, "port", (int)cfg->pacs_port, "aet",
	              cfg->pacs_aet, "retrieve", cfg->pacs_retrieve,
	              "reachable", ms.reachable, "last_echo",
	              (json_int_t)ms.last_echo, "last_sync",
	              (json_int_t)ms.last_sync, "last_error", ms.last_error,
	              "index", "patients", (json_int_t)n.patients, "studies",
	              (json_int_t)n.studies, "series", (json_int_t)n.series,
	              "instances", (json_int_t)n.instances, "cached",
	              (json_int_t)n.cached, "cache", "bytes",
	              (json_int_t)cache_bytes(c->env.cache), "max_bytes",
	              (json_int_t)cache_max_bytes(c->env.cache), "jobs", jobs,
	              "recent_problems", recent);
	if (o != NULL && c->env.health != NULL)
		json_object_set_new(o, "ready", health_ready(c->env.health));
	return o ? send_json(conn, 200, o) : send_error(conn, 500, "no memory");
}

/* A UID argument: digits and dots, 1..64 characters. */
static int uid_arg(const char *v)
{
	size_t n = v ? strlen(v) : 0;

	if (n == 0 || n > 64)
		return 0;
	return strspn(v, "0123456789.") == n;
}

static enum MHD_Result handle_sync(struct control *c,
                                   struct MHD_Connection *conn)
{
	const char *days = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "days");
	const char *all =
	        MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "all");
	const char *study = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "study");
	const char *full = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "full");
	struct pacs_sync_stats st;
	char from[16], err[300];
	long d = c->env.cfg->sync_window_days;

	if (study != NULL && !uid_arg(study))
		return send_error(conn, 400, "study: not a UID");
	if (days != NULL) {
		char *end;

		errno = 0;
		d = strtol(days, &end, 10);
		if (errno || *end || end == days || d < 1 || d > 36500)
			return send_error(conn, 400,
			                  "days: an integer 1..36500");
	}
	if (all == NULL && study == NULL) {
		time_t t = time(NULL) - (time_t)d * 86400;
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(from, sizeof(from), "%Y%m%d", &tm);
	}
	if (pacs_sync(c->env.pacs, c->env.ix,
	              all == NULL && study == NULL ? from : NULL, study,
	              full != NULL && strcmp(full, "1") == 0, NULL, &st, err,
	              sizeof(err)) != 0) {
		monitor_report(c->env.monitor, 0, err);
		return send_error(conn, 502, err);
	}
	return send_json(conn, 200,
	                 json_pack("{s:I, s:I, s:I, s:I, s:I}", "studies",
	                           (json_int_t)st.studies, "refreshed",
	                           (json_int_t)st.refreshed, "series",
	                           (json_int_t)st.series, "instances",
	                           (json_int_t)st.instances, "skipped",
	                           (json_int_t)st.skipped));
}

struct fetch_job {
	struct control *c;
	char study[65], series[65];
	int fd; /* write end of the pipe the response reads */
};

static void write_status(void *ctx, const struct retrieve_status *st)
{
	struct fetch_job *j = ctx;
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:f, s:b, s:b}", "expected",
	                      (json_int_t)st->expected, "received",
	                      (json_int_t)st->received, "failed",
	                      (json_int_t)st->failed, "bytes",
	                      (json_int_t)st->bytes, "elapsed", st->elapsed,
	                      "done", st->done, "ok", st->ok);
	char *line;

	if (o == NULL)
		return;
	if (st->done && !st->ok)
		json_object_set_new(o, "error", json_string(st->error));
	line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (line == NULL)
		return;
	/* The client may have gone: its pipe then fails, which is fine. */
	if (j->fd >= 0) {
		size_t len = strlen(line);

		line[len] = '\n';
		if (write(j->fd, line, len + 1) != (ssize_t)(len + 1)) {
			close(j->fd);
			j->fd = -1;
		}
		line[len] = '\0';
	}
	free(line);
}

static void *fetch_worker(void *arg)
{
	struct fetch_job *j = arg;
	struct control *c = j->c;
	struct retrieve_status fin;

	log_set_context("control");
	retriever_fetch(c->env.retriever, j->study,
	                j->series[0] ? j->series : NULL, 250, write_status, j,
	                &fin);
	if (j->fd >= 0)
		close(j->fd);
	free(j);
	pthread_mutex_lock(&c->lock);
	c->workers--;
	pthread_cond_broadcast(&c->idle);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static enum MHD_Result handle_fetch(struct control *c,
                                    struct MHD_Connection *conn)
{
	const char *study = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "study");
	const char *series = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "series");
	struct MHD_Response *resp;
	struct fetch_job *j;
	pthread_attr_t attr;
	pthread_t t;
	enum MHD_Result rc;
	int p[2];

	if (!uid_arg(study))
		return send_error(conn, 400, "study: not a UID");
	if (series != NULL && !uid_arg(series))
		return send_error(conn, 400, "series: not a UID");
	j = calloc(1, sizeof(*j));
	if (j == NULL || pipe2(p, O_CLOEXEC) != 0) {
		free(j);
		return send_error(conn, 500, "out of resources");
	}
	j->c = c;
	j->fd = p[1];
	snprintf(j->study, sizeof(j->study), "%s", study);
	snprintf(j->series, sizeof(j->series), "%s", series ? series : "");
	resp = MHD_create_response_from_pipe(p[0]);
	if (resp == NULL) {
		close(p[0]);
		close(p[1]);
		free(j);
		return send_error(conn, 500, "out of resources");
	}
	pthread_mutex_lock(&c->lock);
	c->workers++;
	pthread_mutex_unlock(&c->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, fetch_worker, j) != 0) {
		pthread_mutex_lock(&c->lock);
		c->workers--;
		pthread_mutex_unlock(&c->lock);
		close(p[1]);
		free(j);
		MHD_destroy_response(resp);
		pthread_attr_destroy(&attr);
		return send_error(conn, 500, "cannot start a thread");
	}
	pthread_attr_destroy(&attr);
	MHD_add_response_header(resp, "Content-Type", "application/x-ndjson");
	rc = MHD_queue_response(conn, 200, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
	static int first_call_marker;
	struct control *c = cls;
	int post = strcmp(method, "POST") == 0;

	(void)version;
	(void)upload;
	if (*state == NULL) {
		*state = &first_call_marker;
		return MHD_YES;
	}
	if (*upload_size != 0) {
		*upload_size = 0; /* no route takes a body: ignore it */
		return MHD_YES;
	}
	if (strcmp(url, "/status") == 0 && strcmp(method, "GET") == 0)
		return handle_status(c, conn);
	if (strcmp(url, "/sync") == 0 && post)
		return handle_sync(c, conn);
	if (strcmp(url, "/fetch") == 0 && post)
		return handle_fetch(c, conn);
	return send_error(conn, 404, "no such route");
}

/* Binds the Unix socket, replacing a stale file but not a live daemon. */
static int listen_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		snprintf(err, errlen,
		         "%s: another drimboxd is running on this data "
		         "directory",
		         path);
		close(fd);
		return -1;
	}
	close(fd);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    chmod(path, 0600) != 0 || listen(fd, 16) != 0) {
		int e = errno;

		close(fd);
		errno = e;
		goto fail;
	}
	return fd;
fail:
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
	return -1;
}

struct control *control_start(const struct control_env *env, char *err,
                              size_t errlen)
{
	struct control *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->env = *env;
	c->started = time(NULL);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->idle, NULL);
	c->fd = listen_unix(env->cfg->control_socket, err, errlen);
	if (c->fd < 0)
		goto fail;
	c->mhd = MHD_start_daemon(
	        MHD_USE_THREAD_PER_CONNECTION |
	                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC,
	        0, NULL, NULL, on_request, c, MHD_OPTION_LISTEN_SOCKET, c->fd,
	        MHD_OPTION_CONNECTION_LIMIT, 32U, MHD_OPTION_END);
	if (c->mhd == NULL) {
		snprintf(err, errlen, "%s: cannot start the HTTP server",
		         env->cfg->control_socket);
		goto fail;
	}
	return c;
fail:
	if (c->fd >= 0) {
		close(c->fd);
		unlink(env->cfg->control_socket);
	}
	pthread_cond_destroy(&c->idle);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return NULL;
}

void control_stop(struct control *c)
{
	if (c == NULL)
		return;
	MHD_stop_daemon(c->mhd);
	pthread_mutex_lock(&c->lock);
	while (c->workers > 0)
		pthread_cond_wait(&c->idle, &c->lock);
	pthread_mutex_unlock(&c->lock);
	/* MHD_stop_daemon() closed the listening socket it was given. */
	unlink(c->env.cfg->control_socket);
	pthread_cond_destroy(&c->idle);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
