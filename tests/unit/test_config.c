/*
 * test_config.c - the configuration parser: defaults, valid files, and
 * every kind of bad input reported with file and line.
 */
#include "config.h"
#include "testutil.h"

static char path[128];

/*
 * Loads text over the defaults; no sign-in unless text asks for it (the
 * line comes last: the line numbers of text stay).
 */
static int load(const char *text, struct config *cfg, char *err, size_t len)
{
	char buf[1024];

	snprintf(buf, sizeof(buf), "%s\n%s", text,
	         strstr(text, "auth =") ? "" : "auth = none");
	test_write(path, buf);
	config_defaults(cfg);
	return config_load(cfg, path, err, len);
}

static void config_defaults_match_the_schema(void)
{
	struct config cfg;

	config_defaults(&cfg);
	CHECK(strcmp(cfg.dicom_aet, "DRIMBOX") == 0);
	CHECK(cfg.dicom_port == 11112);
	CHECK(strcmp(cfg.pacs_retrieve, "move") == 0);
	CHECK(cfg.cache_max_mb == 20480);
}

static void config_reads_values_comments_and_blank_lines(void)
{
	struct config cfg;
	char err[256] = "";

	CHECK(load("# comment\n\n  pacs_host = pacs.local  \npacs_port=4242\n"
	           "pacs_retrieve = get\ndata_dir = /srv/db\n",
	           &cfg, err, sizeof(err)) == 0);
	CHECK(strcmp(cfg.pacs_host, "pacs.local") == 0);
	CHECK(cfg.pacs_port == 4242);
	CHECK(strcmp(cfg.pacs_retrieve, "get") == 0);
	CHECK(strcmp(cfg.control_socket, "/srv/db/drimboxd.sock") == 0);
}

static void config_rejects_unknown_key_with_file_and_line(void)
{
	struct config cfg;
	char err[256] = "", want[200];

	CHECK(load("pacs_port = 104\n\npacs_prot = 105\n", &cfg, err,
	           sizeof(err)) == -1);
	snprintf(want, sizeof(want), "%s:3: unknown key 'pacs_prot'", path);
	CHECK(strcmp(err, want) == 0);
}

static void config_rejects_out_of_bounds_and_non_numbers(void)
{
	struct config cfg;
	char err[256];

	CHECK(load("dicom_port = 70000\n", &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, ":1: dicom_port: '70000' out of bounds") != NULL);
	CHECK(load("dicom_port = 12ab\n", &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "not an integer") != NULL);
	CHECK(load("dicom_port = 99999999999999999999999\n", &cfg, err,
	           sizeof(err)) == -1);
}

static void config_rejects_bad_enum_and_bad_ae_title(void)
{
	struct config cfg;
	char err[256];

	CHECK(load("pacs_retrieve = fetch\n", &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "(move|get)") != NULL);
	CHECK(load("dicom_aet = WAY_TOO_LONG_AE_TITLE\n", &cfg, err,
	           sizeof(err)) == -1);
	CHECK(load("pacs_aet = \n", &cfg, err, sizeof(err)) == -1);
}

/* The DICOMweb root goes into URLs and into the viewer's page as is. */
static void config_rejects_a_dicomweb_root_that_is_no_plain_path(void)
{
	static const char *const bad[] = {
		"dicomweb_root = dicomweb\n",
		"dicomweb_root = /dicomweb/\n",
		"dicomweb_root = /dicom\"web\n",
		"dicomweb_root = /a/../b\n",
		"dicomweb_root = /viewer/dicomweb\n",
		"dicomweb_root = \n",
	};
	struct config cfg;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(load(bad[i], &cfg, err, sizeof(err)) == -1);
		CHECK(strstr(err, "dicomweb_root") != NULL);
	}
	CHECK(load("dicomweb_root = /pacs/dicom-web_1.0\n", &cfg, err,
	           sizeof(err)) == 0);
}

static void config_requires_psc_or_loopback(void)
{
	struct config cfg;
	char err[256];

	/* sign-in by default: PSC must be named */
	test_write(path, "pacs_host = pacs.local\n");
	config_defaults(&cfg);
	CHECK(strcmp(cfg.auth, "psc") == 0);
	CHECK(config_load(&cfg, path, err, sizeof(err)) == -1);
	CHECK(strstr(err, "psc_issuer") != NULL);
	CHECK(load("auth = psc\npsc_issuer = https://psc.example/realm\n"
	           "psc_client_id = db\npsc_client_secret = s\n",
	           &cfg, err, sizeof(err)) == 0);
	CHECK(strcmp(cfg.psc_token_check, "jwks") == 0);
	/* off loopback, HTTPS only */
	CHECK(load("auth = psc\npsc_issuer = https://psc.example/realm\n"
	           "psc_client_id = db\npsc_client_secret = s\n"
	           "http_bind = 0.0.0.0\n",
	           &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "plain HTTP") != NULL);
	CHECK(load("auth = psc\npsc_issuer = https://psc.example/realm\n"
	           "psc_client_id = db\npsc_client_secret = s\n"
	           "http_bind = 0.0.0.0\nhttp_tls_cert = /etc/db.pem\n",
	           &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "go together") != NULL);
	CHECK(load("auth = psc\npsc_issuer = https://psc.example/realm\n"
	           "psc_client_id = db\npsc_client_secret = s\n"
	           "http_bind = 0.0.0.0\nhttp_tls_cert = /etc/db.pem\n"
	           "http_tls_key = /etc/db.key\n",
	           &cfg, err, sizeof(err)) == 0);
	/* no sign-in only on loopback */
	CHECK(load("http_bind = 0.0.0.0\nhttp_tls_cert = /c\nhttp_tls_key = "
	           "/k\n",
	           &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "auth = none") != NULL);
	CHECK(load("http_bind = 127.0.0.2\n", &cfg, err, sizeof(err)) == 0);
	/* mutual TLS: a client certificate with its key; asking DRIMboxes
	 * for theirs needs HTTPS */
	CHECK(load("remote_tls_cert = /c\n", &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "remote_tls_key") != NULL);
	CHECK(load("http_tls_client_ca = /ca\n", &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "needs HTTPS") != NULL);
	CHECK(load("http_tls_client_ca = /ca\nhttp_tls_cert = /c\n"
	           "http_tls_key = /k\nremote_tls_cert = /c\n"
	           "remote_tls_key = /k\n",
	           &cfg, err, sizeof(err)) == 0);
}

static void config_rejects_line_without_equals(void)
{
	struct config cfg;
	char err[256];

	CHECK(load("pacs_host 127.0.0.1\n", &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, ":1: expected 'key = value'") != NULL);
}

static void config_reports_missing_file(void)
{
	struct config cfg;
	char err[256];

	config_defaults(&cfg);
	CHECK(config_load(&cfg, "/nonexistent/drimbox.conf", err,
	                  sizeof(err)) == -1);
	CHECK(strstr(err, "No such file") != NULL);
}

static void config_includes_files_beside_it_later_keys_winning(void)
{
	struct config cfg;
	char common[160], err[256] = "";

	/* beside drimbox.conf (path) */
	snprintf(common, sizeof(common), "%.*s/common.conf",
	         (int)(strrchr(path, '/') - path), path);
	test_write(common, "pacs_port = 4242\nnode_name = common\n");
	CHECK(load("node_name = first\ninclude = common.conf\n"
	           "node_name = node2\n",
	           &cfg, err, sizeof(err)) == 0);
	CHECK(cfg.pacs_port == 4242);
	CHECK(strcmp(cfg.node_name, "node2") == 0);
	/* a file that includes itself stops, saying so */
	test_write(common, "include = common.conf\n");
	CHECK(load("include = common.conf\n", &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "include: more than 4 levels") != NULL);
	/* an error in an included file names that file and line */
	test_write(common, "\npacs_prot = 1\n");
	CHECK(load("include = common.conf\n", &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "common.conf:2: unknown key 'pacs_prot'") != NULL);
}

int main(void)
{
	snprintf(path, sizeof(path), "%s/drimbox.conf", test_tmpdir());
	RUN(config_defaults_match_the_schema);
	RUN(config_reads_values_comments_and_blank_lines);
	RUN(config_rejects_unknown_key_with_file_and_line);
	RUN(config_rejects_out_of_bounds_and_non_numbers);
	RUN(config_rejects_bad_enum_and_bad_ae_title);
	RUN(config_rejects_a_dicomweb_root_that_is_no_plain_path);
	RUN(config_requires_psc_or_loopback);
	RUN(config_rejects_line_without_equals);
	RUN(config_reports_missing_file);
	RUN(config_includes_files_beside_it_later_keys_winning);
	return test_failures ? 1 : 0;
}
