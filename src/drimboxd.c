/*
 * drimboxd.c - the daemon: reads the configuration, opens the index and
 * the cache (checking one against the other), starts the storage SCP, the
 * PACS monitor and the control API, then waits for SIGTERM or SIGINT and
 * stops everything in reverse order.
 */
#include "audit.h"
#include "auth.h"
#include "cache.h"
#include "config.h"
#include "conso.h"
#include "control.h"
#include "dcm.h"
#include "dmp.h"
#include "fsutil.h"
#include "health.h"
#include "http.h"
#include "index.h"
#include "intake.h"
#include "log.h"
#include "mllp.h"
#include "monitor.h"
#include "pacs.h"
#include "publish.h"
#include "qr.h"
#include "remote.h"
#include "retrieve.h"
#include "store.h"

#include <curl/curl.h>
#include <errno.h>
#include <libxml/parser.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
	fputs("usage: drimboxd -c FILE [--check-config]\n"
	      "       drimboxd --print-config | --print-config-md\n"
	      "  -c FILE          configuration file (see conf/drimbox.conf)\n"
	      "  --check-config   validate the configuration and exit\n"
	      "  --print-config   print the reference configuration and exit\n"
	      "  --print-config-md  the same as Markdown "
	      "(docs/admin-guide.md)\n"
	      "signals: SIGTERM, SIGINT stop; SIGHUP reopens log_file\n",
	      out);
}

struct daemon {
	struct config cfg;
	FILE *log;
	struct index *ix;
	struct cache *cache;
	struct store *store;
	struct pacs pacs;
	struct retriever *retriever;
	struct auth *auth; /* NULL with auth = none */
	struct remote *remote;
	struct conso *conso;
	struct qr *qr;
	struct dcm_scp *scp;
	struct monitor *monitor;
	struct health *health;
	struct control *control;
	struct http *http;
	struct intake *intake;
	struct mllp_server *mllp;
	SSL_CTX *hl7_tls;
	struct publisher *publisher;
	int dmp_ready;             /* libcurl and xmlsec1 initialised */
	atomic_ulong associations; /* numbers incoming associations */
};

/*
 * The AEs allowed to store: the PACS and dicom_allowed_aets. Called on the
 * association's own thread, which logs as "assoc=N" from here on.
 */
static int accept_aet(void *ctx, const char *calling, const char *called,
                      const char *peer)
{
	struct daemon *d = ctx;
	const struct config *cfg = &d->cfg;
	const char *p = cfg->dicom_allowed_aets;
	size_t n = strlen(calling);
	char id[32];

	(void)called;
	snprintf(id, sizeof(id), "assoc=%lu",
	         atomic_fetch_add(&d->associations, 1) + 1);
	log_set_context(id);
	log_debug(LOGC_DICOM, "association from AE '%s' at %s", calling, peer);
	if (strcmp(calling, cfg->pacs_aet) == 0 ||
	    qr_workstation(d->qr, calling))
		return 0;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *s = p, *e = p + len;

		while (s < e && *s == ' ')
			s++;
		while (e > s && e[-1] == ' ')
			e--;
		if ((size_t)(e - s) == n && strncmp(s, calling, n) == 0)
			return 0;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	log_warn(LOGC_DICOM,
	         "association from AE '%s' at %s rejected: not "
	         "in the configuration",
	         calling, peer);
	return 1;
}

static void wake_publisher(void *ctx)
{
	publisher_wake(ctx);
}

/* The source role: the MLLP listener for the RIS, the publication worker. */
static int start_hl7(struct daemon *d, char *err, size_t errlen)
{
	struct mllp_config mc = {
		d->cfg.hl7_bind,
		(int)d->cfg.hl7_port,
		(size_t)d->cfg.hl7_max_message_mb * 1024 * 1024,
		(int)d->cfg.hl7_idle_timeout,
		(int)d->cfg.hl7_max_connections,
		NULL,
	};

	if (d->cfg.hl7_tls_cert[0] || d->cfg.hl7_tls_key[0]) {
		mc.tls = d->hl7_tls = mllp_tls_context(
		        d->cfg.hl7_tls_cert, d->cfg.hl7_tls_key,
		        d->cfg.hl7_tls_ca, err, errlen);
		if (mc.tls == NULL)
			return -1;
	}
	d->publisher = publisher_start(&d->cfg, d->ix, &d->pacs, err, errlen);
	if (d->publisher == NULL)
		return -1;
	d->intake = intake_new(&d->cfg, d->ix, wake_publisher, d->publisher);
	if (d->intake == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	d->mllp = mllp_start(&mc, intake_handle, d->intake, err, errlen);
	if (d->mllp == NULL)
		return -1;
	log_info(LOGC_HL7, "MLLP%s listening on %s:%d", mc.tls ? " (TLS)" : "",
	         d->cfg.hl7_bind, mllp_port(d->mllp));
	return 0;
}

/* node_name, or the host name. */
static void node_name(const struct config *cfg, char *buf, size_t cap)
{
	if (cfg->node_name[0] != '\0' || gethostname(buf, cap) != 0 ||
	    buf[0] == '\0')
		snprintf(buf, cap, "%s",
		         cfg->node_name[0] ? cfg->node_name : "drimbox");
	buf[cap - 1] = '\0';
}

static int start(struct daemon *d, char *err, size_t errlen)
{
	char path[PATH_MAX], node[64];
	struct cache_check_report rep;
	struct dcm_err de = { "" };
	struct dcm_scp_config sc;
	struct control_env env;
	struct http_env henv;
	int n;

	if (fs_mkdirs(d->cfg.data_dir) != 0) {
		snprintf(err, errlen, "%s: %s", d->cfg.data_dir,
		         strerror(errno));
		return -1;
	}
	if (dcm_global_init(&de) != DCM_OK) {
		snprintf(err, errlen, "DICOM: %s", de.msg);
		return -1;
	}
	config_index_target(&d->cfg, path, sizeof(path));
	if (index_open(path, (int)d->cfg.index_pool, 0, &d->ix, err, errlen) !=
	    0)
		return -1;
	node_name(&d->cfg, node, sizeof(node));
	index_set_node(d->ix, node, (int)d->cfg.job_lease);
	log_info(LOGC_INDEX, "index=%s node=%s",
	         index_is_shared(d->ix) ? "postgresql" : path, node);
	audit_open(d->ix);
	/* jobs of every kind (publications, imports) a stop interrupted,
	 * before any worker claims one */
	n = index_jobs_recover(d->ix);
	if (n > 0)
		log_info(LOGC_JOBS,
		         "%d job(s) interrupted by a stop: queued again", n);
	if (index_leases_start(d->ix) != 0) {
		snprintf(err, errlen, "cannot start the lease renewal");
		return -1;
	}
	if (cache_open(d->cfg.cache_dir,
	               (uint64_t)d->cfg.cache_max_mb * 1024 * 1024, d->ix,
	               &d->cache, &rep, err, errlen) != 0)
		return -1;
	log_info(LOGC_CACHE,
	         "check dir=%s temp_removed=%ld orphans_removed=%ld "
	         "rows_cleared=%ld bytes=%llu",
	         d->cfg.cache_dir, rep.temp_removed, rep.orphans_removed,
	         rep.rows_cleared, (unsigned long long)cache_bytes(d->cache));
	(void)cache_enforce_bound(d->cache);
	/* once, before the threads that parse XML, sign and use libcurl */
	xmlInitParser();
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    dmp_global_init(err, errlen) != 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "libcurl could not start");
		return -1;
	}
	d->dmp_ready = 1;
	d->store = store_new(d->cache, d->ix, d->cfg.pacs_aet);
	pacs_init(&d->pacs, &d->cfg);
	d->retriever = d->store ? retriever_new(&d->pacs, d->store) : NULL;
	d->auth = auth_new(&d->cfg, d->ix, err, errlen);
	if (d->auth == NULL && err[0] != '\0')
		return -1;
	d->remote =
	        d->store ? remote_new(&d->cfg, d->ix, d->store, d->auth) : NULL;
	if (d->retriever == NULL || d->remote == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	retriever_set_remote(d->retriever, d->remote);
	d->conso = conso_start(&d->cfg, d->ix, d->cache, &d->pacs, d->retriever,
	                       d->remote, err, errlen);
	if (d->conso == NULL)
		return -1;
	memset(&sc, 0, sizeof(sc));
	sc.aet = d->cfg.dicom_aet;
	sc.bind = d->cfg.dicom_bind;
	sc.port = (int)d->cfg.dicom_port;
	sc.max_associations = (int)d->cfg.dicom_max_associations;
	sc.timeout_s = (int)d->cfg.dicom_timeout;
	sc.accept = accept_aet;
	sc.accept_ctx = d;
	store_handler(d->store, &sc.store);
	d->qr = qr_new(&d->cfg, d->ix, d->cache, d->retriever, d->remote,
	               &sc.qr, err, errlen);
	if (d->qr == NULL)
		return -1;
	if (dcm_scp_start(&sc, &d->scp, &de) != DCM_OK) {
		snprintf(err, errlen, "storage SCP on %s:%ld: %s",
		         d->cfg.dicom_bind, d->cfg.dicom_port, de.msg);
		return -1;
	}
	log_info(LOGC_DICOM, "storage SCP aet=%s listening on %s:%d",
	         d->cfg.dicom_aet, d->cfg.dicom_bind, dcm_scp_port(d->scp));
	d->monitor = monitor_start(&d->cfg, &d->pacs, d->ix, err, errlen);
	if (d->monitor == NULL)
		return -1;
	d->health = health_new(&d->cfg, d->ix, d->monitor);
	if (d->health == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	env = (struct control_env){ &d->cfg,      d->ix,
		                    d->cache,     &d->pacs,
		                    d->retriever, d->monitor,
		                    d->health,    dcm_scp_port(d->scp) };
	d->control = control_start(&env, err, errlen);
	if (d->control == NULL)
		return -1;
	henv = (struct http_env){ &d->cfg,      d->ix,    d->cache, &d->pacs,
		                  d->retriever, d->conso, d->auth,  d->remote,
		                  d->monitor,   d->health };
	d->http = http_start(&henv, err, errlen);
	if (d->http == NULL)
		return -1;
	log_info(LOGC_HTTP, "DICOMweb at %s://%s:%ld%s",
	         d->cfg.http_tls_cert[0] ? "https" : "http", d->cfg.http_bind,
	         d->cfg.http_port, d->cfg.dicomweb_root);
	if (d->cfg.hl7_port > 0 && start_hl7(d, err, errlen) != 0)
		return -1;
	control_set_up(d->control);
	log_info(LOGC_MAIN, "drimboxd ready control=%s", d->cfg.control_socket);
	return 0;
}

static void stop(struct daemon *d)
{
	if (d->retriever)
		retriever_cancel(d->retriever);
	mllp_stop(d->mllp);
	SSL_CTX_free(d->hl7_tls);
	intake_free(d->intake);
	publisher_stop(d->publisher);
	http_stop(d->http);
	conso_stop(d->conso);
	control_stop(d->control);
	health_free(d->health);
	monitor_stop(d->monitor);
	dcm_scp_stop(d->scp);
	qr_free(d->qr);
	retriever_free(d->retriever);
	remote_free(d->remote);
	store_free(d->store);
	auth_free(d->auth);
	if (d->dmp_ready) { /* once no thread uses them */
		dmp_global_cleanup();
		curl_global_cleanup();
	}
	cache_close(d->cache);
	audit_open(NULL);
	index_close(d->ix);
	dcm_global_cleanup();
}

int main(int argc, char **argv)
{
	static struct daemon d;
	const char *conf = NULL;
	int check = 0, sig, rc = 1, lvl;
	char err[1024];
	sigset_t set;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			conf = argv[++i];
		} else if (strcmp(argv[i], "--check-config") == 0) {
			check = 1;
		} else if (strcmp(argv[i], "--print-config") == 0) {
			config_write_reference(stdout);
			return 0;
		} else if (strcmp(argv[i], "--print-config-md") == 0) {
			config_write_markdown(stdout);
			return 0;
		} else if (strcmp(argv[i], "-h") == 0 ||
		           strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (conf == NULL) {
		usage(stderr);
		return 2;
	}
	config_defaults(&d.cfg);
	if (config_load(&d.cfg, conf, err, sizeof(err)) != 0) {
		fprintf(stderr, "drimboxd: %s\n", err);
		return 1;
	}
	if (check) {
		printf("%s: configuration OK\n", conf);
		return 0;
	}
	if (d.cfg.log_file[0]) {
		d.log = fopen(d.cfg.log_file, "a");
		if (d.log == NULL) {
			fprintf(stderr, "drimboxd: %s: %s\n", d.cfg.log_file,
			        strerror(errno));
			return 1;
		}
	}
	lvl = log_level_parse(d.cfg.log_level);
	log_setup(lvl < 0 ? LOG_INFO : (enum log_level)lvl, d.log);
	/* Signals go to sigwait() below; other threads inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (start(&d, err, sizeof(err)) != 0) {
		log_error(LOGC_MAIN, "start-up failed: %s", err);
		goto out;
	}
	/* SIGHUP: the log file reopened (logrotate); SIGTERM, SIGINT: stop */
	while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
		if (d.log == NULL)
			continue;
		if (log_reopen(d.cfg.log_file) != 0)
			log_error(LOGC_MAIN, "%s: cannot reopen: %s",
			          d.cfg.log_file, strerror(errno));
		else
			log_info(LOGC_MAIN, "log file reopened");
	}
	log_info(LOGC_MAIN, "signal %d: stopping", sig);
	rc = 0;
out:
	stop(&d);
	log_info(LOGC_MAIN, "stopped");
	if (d.log)
		fclose(d.log);
	return rc;
}
