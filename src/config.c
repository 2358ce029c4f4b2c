/*
 * config.c - the schema table and the parser. Every key is declared once
 * below; the parser, the defaults and the reference file all read it.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum opt_type { OPT_STR, OPT_INT, OPT_ENUM, OPT_AET };

struct opt {
	const char *name;
	enum opt_type type;
	size_t offset;
	size_t size; /* buffer size for strings */
	long min, max;
	const char *def;
	const char *choices; /* OPT_ENUM: '|' separated */
	const char *section; /* non-NULL starts a section in the reference */
	const char *help;
};

#define STR(f)                                                                 \
	OPT_STR, offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define AET(f)                                                                 \
	OPT_AET, offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define ENUM(f)                                                                \
	OPT_ENUM, offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define INT(f) OPT_INT, offsetof(struct config, f), 0

static const struct opt schema[] = {
	{ "data_dir", STR(data_dir), 0, 0, "/var/lib/drimbox", NULL, "Node",
	  "Directory of the index database (index.db) and of the control "
	  "socket. Created if missing." },
	{ "index_url", STR(index_url), 0, 0, "", NULL, NULL,
	  "Empty: the index is the SQLite file DATA_DIR/index.db, for one "
	  "node. Else a PostgreSQL connection string "
	  "(postgresql://USER@HOST:PORT/DB, or libpq's \"host=... "
	  "dbname=...\"; a password belongs in ~/.pgpass or PGPASSFILE): "
	  "several nodes then share one index and one job queue, and must "
	  "share cache_dir too (see docs/scale-out.md)." },
	{ "index_pool", INT(index_pool), 1, 256, "8", NULL, NULL,
	  "Connections to PostgreSQL this node keeps open (index_url); SQLite "
	  "uses one." },
	{ "node_name", STR(node_name), 0, 0, "", NULL, NULL,
	  "This node's name among the nodes sharing an index: the jobs it "
	  "runs are marked with it. Each node needs its own. Empty = the "
	  "host name." },
	{ "job_lease", INT(job_lease), 10, 3600, "60", NULL, NULL,
	  "Seconds a node's claim on a running job (a publication, an import) "
	  "holds without being renewed; it renews every third of it. When a "
	  "node dies, another takes its jobs once this has passed." },
	{ "cache_dir", STR(cache_dir), 0, 0, "/var/cache/drimbox", NULL, NULL,
	  "Directory of the image cache: one file per instance under "
	  "STUDY/SERIES/SOP.dcm, temporary files under .tmp/." },
	{ "cache_max_mb", INT(cache_max_mb), 1, 100L * 1024 * 1024, "20480",
	  NULL, NULL,
	  "Size bound of the cache in MiB. Beyond it, whole series are "
	  "evicted, least recently used first." },
	{ "log_level", ENUM(log_level), 0, 0, "info", "debug|info|warn|error",
	  NULL, "Minimum level of the messages logged." },
	{ "log_file", STR(log_file), 0, 0, "", NULL, NULL,
	  "File the log is appended to; empty = standard error." },
	{ "control_socket", STR(control_socket), 0, 0, "", NULL, NULL,
	  "Unix socket of the local control API used by the drimbox command. "
	  "Empty = DATA_DIR/drimboxd.sock. Only its owner may connect." },
	{ "dicom_aet", AET(dicom_aet), 0, 0, "DRIMBOX", NULL, "DICOM listener",
	  "drimbox's own AE title: the PACS must know it as a C-MOVE "
	  "destination (host, dicom_port)." },
	{ "dicom_bind", STR(dicom_bind), 0, 0, "0.0.0.0", NULL, NULL,
	  "Address the storage SCP listens on." },
	{ "dicom_port", INT(dicom_port), 1, 65535, "11112", NULL, NULL,
	  "TCP port of the storage SCP." },
	{ "dicom_allowed_aets", STR(dicom_allowed_aets), 0, 0, "", NULL, NULL,
	  "Comma-separated calling AE titles allowed to store to drimbox, in "
	  "addition to pacs_aet. Associations from any other AE are "
	  "rejected." },
	{ "dicom_max_associations", INT(dicom_max_associations), 1, 256, "16",
	  NULL, NULL, "Maximum number of simultaneous incoming associations." },
	{ "dicom_timeout", INT(dicom_timeout), 1, 3600, "30", NULL, NULL,
	  "Seconds of silence after which an incoming association is "
	  "aborted." },
	{ "pacs_host", STR(pacs_host), 0, 0, "127.0.0.1", NULL, "PACS",
	  "Host name or address of the PACS." },
	{ "pacs_port", INT(pacs_port), 1, 65535, "104", NULL, NULL,
	  "DICOM port of the PACS." },
	{ "pacs_aet", AET(pacs_aet), 0, 0, "PACS", NULL, NULL,
	  "AE title of the PACS (the called AE of our queries)." },
	{ "pacs_retrieve", ENUM(pacs_retrieve), 0, 0, "move", "move|get", NULL,
	  "How images are retrieved: C-MOVE to dicom_aet, or C-GET on the "
	  "query association (no inbound connection needed)." },
	{ "pacs_timeout", INT(pacs_timeout), 1, 3600, "30", NULL, NULL,
	  "Seconds before a connection or a response from the PACS times "
	  "out." },
	{ "pacs_retry_max", INT(pacs_retry_max), 1, 3600, "300", NULL, NULL,
	  "Longest wait, in seconds, between two attempts to reach an "
	  "unreachable PACS (the wait doubles from 1 s up to this)." },
	{ "sync_interval", INT(sync_interval), 0, 7 * 24 * 3600, "300", NULL,
	  NULL,
	  "Seconds between two incremental syncs of the PACS into the index; "
	  "0 = only on demand (drimbox sync)." },
	{ "sync_window_days", INT(sync_window_days), 1, 36500, "7", NULL, NULL,
	  "Periodic syncs index the studies of the last N days (by "
	  "StudyDate)." },
	{ "http_bind", STR(http_bind), 0, 0, "127.0.0.1", NULL, "HTTP",
	  "Address the HTTP server (DICOMweb) listens on." },
	{ "http_port", INT(http_port), 1, 65535, "8080", NULL, NULL,
	  "TCP port of the HTTP server." },
	{ "dicomweb_root", STR(dicomweb_root), 0, 0, "/dicomweb", NULL, NULL,
	  "Path under which DICOMweb (QIDO-RS, WADO-RS) is served: starts "
	  "with '/', no trailing '/'." },
	{ "http_max_connections", INT(http_max_connections), 1, 10000, "256",
	  NULL, NULL, "Maximum number of simultaneous HTTP connections." },
	{ "http_tls_cert", STR(http_tls_cert), 0, 0, "", NULL, NULL,
	  "PEM certificate (chain) of the HTTP server; with http_tls_key it "
	  "serves HTTPS (TLS 1.2 or later) only. Without, plain HTTP, allowed "
	  "only when http_bind is a loopback address." },
	{ "http_tls_key", STR(http_tls_key), 0, 0, "", NULL, NULL,
	  "PEM private key of http_tls_cert." },
	{ "http_tls_client_ca", STR(http_tls_client_ca), 0, 0, "", NULL, NULL,
	  "PEM trust anchors of the DRIMboxes' client certificates (IGC-Sante "
	  "chains; needs http_tls_cert). When set, another DRIMbox (a request "
	  "with a Bearer token) must present a client certificate that "
	  "verifies against them and whose subject is a "
	  "DNCertificatOperateur of the whitelist (whitelist_file): mutual "
	  "TLS. People's browsers are not asked for one." },
	{ "metrics_allowed", STR(metrics_allowed), 0, 0, "127.0.0.1 ::1", NULL,
	  NULL,
	  "Addresses (space or comma separated, exact) allowed to read "
	  "/metrics, the Prometheus page, without signing in; others get "
	  "403. /health and /ready are public." },
	{ "viewer_dir", STR(viewer_dir), 0, 0, DRIMBOX_DATADIR "/viewer", NULL,
	  NULL,
	  "Directory of the built web viewer (make builds it into "
	  "build/viewer), served at /viewer/; the report link "
	  "/IHEInvokeImageDisplay opens it." },
	{ "hl7_port", INT(hl7_port), 0, 65535, "0", NULL, "HL7 v2 from the RIS",
	  "TCP port of the MLLP listener the RIS sends its reports to "
	  "(ORU^R01, MDM^T02/T10/T04, OMI^O23); 0 = no listener (no source "
	  "role)." },
	{ "hl7_bind", STR(hl7_bind), 0, 0, "127.0.0.1", NULL, NULL,
	  "Address the MLLP listener listens on (0.0.0.0: every interface)." },
	{ "hl7_max_message_mb", INT(hl7_max_message_mb), 1, 1024, "16", NULL,
	  NULL,
	  "Largest HL7 message accepted, in MiB (a report carries its CDA, "
	  "with any embedded PDF, in base64). Larger ones are refused (AR)." },
	{ "hl7_idle_timeout", INT(hl7_idle_timeout), 1, 86400, "300", NULL,
	  NULL,
	  "Seconds of silence after which an MLLP connection is closed (a "
	  "frame still incomplete then is refused)." },
	{ "hl7_max_connections", INT(hl7_max_connections), 1, 1000, "64", NULL,
	  NULL, "Maximum number of simultaneous MLLP connections." },
	{ "hl7_application", STR(hl7_application), 0, 0, "DRIMBOX", NULL, NULL,
	  "Sending application (MSH-3) of the acknowledgements." },
	{ "hl7_facility", STR(hl7_facility), 0, 0, "", NULL, NULL,
	  "Sending facility (MSH-4) of the acknowledgements." },
	{ "hl7_tls_cert", STR(hl7_tls_cert), 0, 0, "", NULL, NULL,
	  "PEM certificate (chain) of the MLLP listener; with hl7_tls_key, "
	  "the RIS must connect with TLS (1.2 or later). Empty: plain TCP." },
	{ "hl7_tls_key", STR(hl7_tls_key), 0, 0, "", NULL, NULL,
	  "PEM private key of hl7_tls_cert." },
	{ "hl7_tls_ca", STR(hl7_tls_ca), 0, 0, "", NULL, NULL,
	  "PEM certificates of the CA(s) the RIS's client certificate must "
	  "come from; empty: no client certificate asked for." },
	{ "public_url", STR(public_url), 0, 0, "http://127.0.0.1:8080", NULL,
	  "Publication (source role)",
	  "How other DRIMboxes reach this one (scheme, host, port): the "
	  "RetrieveURL of each series in a manifest is this, dicomweb_root, "
	  "/studies/UID/series/UID." },
	{ "publish_wait_hours", INT(publish_wait_hours), 0, 24 * 365, "48",
	  NULL, NULL,
	  "How long a report waits for its images to reach the PACS (reports "
	  "can come first) before its publication is parked." },
	{ "publish_retry_max", INT(publish_retry_max), 1, 86400, "600", NULL,
	  NULL,
	  "Longest delay, in seconds, between two attempts of a publication "
	  "(the delay doubles from 5 s)." },
	{ "dmp_url", STR(dmp_url), 0, 0, "", NULL, "The DMP",
	  "Base URL of the DMP's services (.../si-dmp-server/v2/services); "
	  "empty: manifests are built but not sent." },
	{ "dmp_sign_cert", STR(dmp_sign_cert), 0, 0, "", NULL, NULL,
	  "PEM certificate (IGC-Sante ORG, signature) of the VIHF." },
	{ "dmp_sign_key", STR(dmp_sign_key), 0, 0, "", NULL, NULL,
	  "PEM private key of dmp_sign_cert." },
	{ "dmp_tls_cert", STR(dmp_tls_cert), 0, 0, "", NULL, NULL,
	  "PEM client certificate (IGC-Sante ORG, authentication) for TLS to "
	  "the DMP; empty: no client certificate." },
	{ "dmp_tls_key", STR(dmp_tls_key), 0, 0, "", NULL, NULL,
	  "PEM private key of dmp_tls_cert." },
	{ "dmp_tls_ca", STR(dmp_tls_ca), 0, 0, "", NULL, NULL,
	  "PEM CA certificates the DMP's server certificate must come from; "
	  "empty: the system's." },
	{ "dmp_structure_id", STR(dmp_structure_id), 0, 0, "", NULL, NULL,
	  "Identifier of the care structure (VIHF Identifiant_Structure, "
	  "authorInstitution), e.g. its FINESS or SIRET-based id." },
	{ "dmp_structure_name", STR(dmp_structure_name), 0, 0, "", NULL, NULL,
	  "Name of the care structure (authorInstitution)." },
	{ "dmp_sector", STR(dmp_sector), 0, 0, "SA07^1.2.250.1.71.4.2.4", NULL,
	  NULL, "VIHF Secteur_Activite (code^OID)." },
	{ "dmp_facility_type", STR(dmp_facility_type), 0, 0, "SA07", NULL, NULL,
	  "healthcareFacilityTypeCode of the manifests (1.2.250.1.71.4.2.4)." },
	{ "dmp_practice_setting", STR(dmp_practice_setting), 0, 0,
	  "AMBULATOIRE", NULL, NULL,
	  "practiceSettingCode of the manifests (1.2.250.1.213.1.1.4.9)." },
	{ "dmp_content_type", STR(dmp_content_type), 0, 0, "04", NULL, NULL,
	  "contentTypeCode of the submission sets (1.2.250.1.213.2.2)." },
	{ "dmp_source_oid", STR(dmp_source_oid), 0, 0, "1.2.250.1.999.1.1",
	  NULL, NULL,
	  "OID of this system as a source (sourceId; submission set unique "
	  "ids are made under it)." },
	{ "dmp_lps_id", STR(dmp_lps_id), 0, 0, "", NULL, NULL,
	  "VIHF LPS_ID: this installation's identifier for the DMP." },
	{ "dmp_lps_version", STR(dmp_lps_version), 0, 0, "1.0", NULL, NULL,
	  "VIHF LPS_Version." },
	{ "dmp_lps_homologation", STR(dmp_lps_homologation), 0, 0, "", NULL,
	  NULL, "VIHF LPS_ID_HOMOLOGATION_DMP (the homologation number)." },
	{ "dmp_timeout", INT(dmp_timeout), 1, 3600, "60", NULL, NULL,
	  "Seconds a DMP transaction may take." },
	{ "whitelist_file", STR(whitelist_file), 0, 0, "", NULL,
	  "The DRIM-M whitelist",
	  "The ANS list of DRIMboxes (ListeBlancheDRIM-M, XAdES-signed XML). "
	  "A list is used only once its signature verifies against "
	  "whitelist_trust; `drimbox whitelist` checks one." },
	{ "whitelist_trust", STR(whitelist_trust), 0, 0, "", NULL, NULL,
	  "PEM file of the CA certificates the list's signature must chain "
	  "to (IGC-Santé: the root, and the intermediate when the list does "
	  "not carry it)." },
	{ "whitelist_crl", STR(whitelist_crl), 0, 0, "", NULL, NULL,
	  "PEM file of the CRLs the signing certificate is checked against "
	  "(empty: no revocation check)." },
	{ "whitelist_signer_cn", STR(whitelist_signer_cn), 0, 0,
	  "Liste Blanche DRIM-M", NULL, NULL,
	  "Common name the list's signing certificate must have." },
	{ "whitelist_signer_ou", STR(whitelist_signer_ou), 0, 0,
	  "318751275100020", NULL, NULL,
	  "Organisational unit the list's signing certificate must have (the "
	  "ANS's)." },
	{ "web_dir", STR(web_dir), 0, 0, DRIMBOX_DATADIR "/web", NULL,
	  "Consumer",
	  "Directory of the consumer's pages (conso/: the exam list a "
	  "contextual call opens)." },
	{ "conso_context_seconds", INT(conso_context_seconds), 5, 3600, "120",
	  NULL, NULL,
	  "Seconds a contextual call's link stays valid; it opens one session, "
	  "once." },
	{ "conso_session_minutes", INT(conso_session_minutes), 1, 1440, "240",
	  NULL, NULL,
	  "Minutes a consumer session (one patient, one browser) lasts." },
	{ "conso_professional", STR(conso_professional), 0, 0, "", NULL, NULL,
	  "The professional the consumer's DMP requests name (VIHF subject), "
	  "as RPPS^FAMILY^Given, for sessions that carry no identity of their "
	  "own." },
	{ "conso_prefetch", INT(conso_prefetch), 0, 50, "3", NULL, NULL,
	  "On a contextual call, how many of the patient's most recent exams "
	  "start downloading at once (0: none)." },
	{ "conso_import_ids", ENUM(conso_import_ids), 0, 0, "local",
	  "local|source", NULL,
	  "The patient identifiers of an imported study. local: filed under "
	  "the local patient of the contextual call (PatientID = its "
	  "PatientID, IssuerOfPatientID = its PatientIDIssuer), the INS and "
	  "the source's identifiers kept in OtherPatientIDsSequence "
	  "(reconciliation, IHE IRWF.b). source: as the source sent them." },
	{ "qr_workstations", STR(qr_workstations), 0, 0, "", NULL, NULL,
	  "The site's workstations offered the studies pulled from other "
	  "DRIMboxes, as a DICOM query/retrieve SCP on dicom_port (C-FIND, "
	  "C-MOVE to one of them, C-GET): AET@host:port, comma-separated. "
	  "Only these AEs may query and retrieve (empty: no query/retrieve)." },
	{ "remote_parallel", INT(remote_parallel), 1, 32, "4", NULL, NULL,
	  "Transfers at once when pulling a study from another DRIMbox." },
	{ "remote_timeout", INT(remote_timeout), 1, 600, "30", NULL, NULL,
	  "Seconds to connect to another DRIMbox, and that a transfer may "
	  "stall, before it fails." },
	{ "remote_tls_cert", STR(remote_tls_cert), 0, 0, "", NULL, NULL,
	  "PEM client certificate this drimbox presents to the DRIMboxes it "
	  "pulls from (mutual TLS; its subject is this site's "
	  "DNCertificatOperateur in the whitelist)." },
	{ "remote_tls_key", STR(remote_tls_key), 0, 0, "", NULL, NULL,
	  "PEM private key of remote_tls_cert." },
	{ "remote_tls_ca", STR(remote_tls_ca), 0, 0, "", NULL, NULL,
	  "PEM trust anchors of the other DRIMboxes' server certificates "
	  "(empty: the system's)." },
	{ "auth", ENUM(auth), 0, 0, "psc", "psc|none", "Sign-in",
	  "Who may use the HTTP server. psc: people sign in with Pro Sante "
	  "Connect (a session cookie), programs and other DRIMboxes present a "
	  "PSC access token (Authorization: Bearer); only health, ready, "
	  "metrics (to metrics_allowed), the sign-in "
	  "routes, the contextual call's POST and the viewer's static files "
	  "are public. none: no sign-in, allowed only when http_bind is a "
	  "loopback address (tests, a single-user workstation)." },
	{ "psc_issuer", STR(psc_issuer), 0, 0, "", NULL, NULL,
	  "PSC's issuer URL (its discovery document is at "
	  "{issuer}/.well-known/wallet-openid-configuration), e.g. "
	  "https://auth.esante.gouv.fr/auth/realms/esante-wallet." },
	{ "psc_client_id", STR(psc_client_id), 0, 0, "", NULL, NULL,
	  "This DRIMbox's client id at PSC." },
	{ "psc_client_secret", STR(psc_client_secret), 0, 0, "", NULL, NULL,
	  "Its client secret (client_secret_basic); empty with psc_tls_cert "
	  "(mutual TLS client authentication, RFC 8705)." },
	{ "psc_redirect_uri", STR(psc_redirect_uri), 0, 0, "", NULL, NULL,
	  "The sign-in callback registered at PSC, ending in /auth/callback "
	  "(empty: the request's own host, http://HOST/auth/callback)." },
	{ "psc_token_check", ENUM(psc_token_check), 0, 0, "jwks",
	  "jwks|introspection", NULL,
	  "How a Bearer token is checked. jwks: its RS256 signature by PSC's "
	  "published keys (cached by kid), its issuer, expiry and acr, here. "
	  "introspection: asked of PSC (RFC 7662), the answer cached until "
	  "the token expires or for a minute." },
	{ "psc_bearer_clients", STR(psc_bearer_clients), 0, 0, "", NULL, NULL,
	  "PSC clients (comma-separated client ids: the other DRIMboxes) "
	  "whose access tokens are taken as Bearer, besides psc_client_id's; "
	  "* takes any client of PSC. ID tokens and tokens naming no "
	  "professional are always refused." },
	{ "psc_acr", STR(psc_acr), 0, 0, "eidas1", NULL, NULL,
	  "Authentication level asked for (acr_values) and required in "
	  "tokens." },
	{ "psc_tls_cert", STR(psc_tls_cert), 0, 0, "", NULL, NULL,
	  "PEM client certificate presented to PSC (mutual TLS)." },
	{ "psc_tls_key", STR(psc_tls_key), 0, 0, "", NULL, NULL,
	  "PEM private key of psc_tls_cert." },
	{ "psc_tls_ca", STR(psc_tls_ca), 0, 0, "", NULL, NULL,
	  "PEM CAs PSC's server certificate is checked against (empty: the "
	  "system's)." },
	{ "psc_timeout", INT(psc_timeout), 1, 300, "10", NULL, NULL,
	  "Seconds a request to PSC may take." },
	{ "auth_session_minutes", INT(auth_session_minutes), 1, 1440, "60",
	  NULL, NULL,
	  "Minutes a signed-in session lasts (signing out ends it sooner)." },
};

#define NOPTS (sizeof(schema) / sizeof(schema[0]))

static const struct opt *find_opt(const char *name)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(schema[i].name, name) == 0)
			return &schema[i];
	return NULL;
}

static int enum_has(const char *choices, const char *v)
{
	size_t vl = strlen(v);
	const char *p = choices;

	while (*p) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);

		if (len == vl && strncmp(p, v, len) == 0)
			return 1;
		if (bar == NULL)
			break;
		p = bar + 1;
	}
	return 0;
}

static int valid_aet(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > 16)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isprint((unsigned char)v[i]) || v[i] == '\\')
			return 0;
	return 1;
}

/* Sets one option from text; returns NULL or a static reason. */
static const char *set_opt(struct config *cfg, const struct opt *o,
                           const char *v)
{
	char *base = (char *)cfg + o->offset;
	char *end;
	long n;

	switch (o->type) {
	case OPT_INT:
		errno = 0;
		n = strtol(v, &end, 10);
		if (errno != 0 || end == v || *end != '\0')
			return "not an integer";
		if (n < o->min || n > o->max)
			return "out of bounds";
		*(long *)base = n;
		return NULL;
	case OPT_ENUM:
		if (!enum_has(o->choices, v))
			return "not one of the allowed values";
		break;
	case OPT_AET:
		if (!valid_aet(v))
			return "not a valid AE title (1-16 printable "
			       "characters, no backslash)";
		break;
	case OPT_STR:
		break;
	}
	if (strlen(v) >= o->size)
		return "value too long";
	memcpy(base, v, strlen(v) + 1);
	return NULL;
}

void config_index_target(const struct config *cfg, char *buf, size_t cap)
{
	if (cfg->index_url[0] != '\0')
		snprintf(buf, cap, "%s", cfg->index_url);
	else
		snprintf(buf, cap, "%s/index.db", cfg->data_dir);
}

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NOPTS; i++)
		(void)set_opt(cfg, &schema[i], schema[i].def);
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Fills values that default from other keys. */
static int config_derive(struct config *cfg, const char *path, char *err,
                         size_t errlen)
{
	size_t rl = strlen(cfg->dicomweb_root);

	/* written into URLs and into the viewer's page as is */
	if (cfg->dicomweb_root[0] != '/' || cfg->dicomweb_root[rl - 1] == '/' ||
	    strspn(cfg->dicomweb_root, "abcdefghijklmnopqrstuvwxyz"
	                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	                               "/-_.") != rl ||
	    strstr(cfg->dicomweb_root, "/.") != NULL ||
	    strncmp(cfg->dicomweb_root, "/viewer", 7) == 0) {
		snprintf(err, errlen,
		         "%s: dicomweb_root: a path like /dicomweb (letters, "
		         "digits, '/', '-', '_', '.'; not under /viewer)",
		         path);
		return -1;
	}
	if (strcmp(cfg->auth, "none") == 0 &&
	    strncmp(cfg->http_bind, "127.", 4) != 0) {
		snprintf(err, errlen,
		         "%s: auth = none is allowed only with http_bind on "
		         "loopback (127.x.x.x), not %s",
		         path, cfg->http_bind);
		return -1;
	}
	if (!cfg->http_tls_cert[0] != !cfg->http_tls_key[0]) {
		snprintf(err, errlen,
		         "%s: http_tls_cert and http_tls_key go together",
		         path);
		return -1;
	}
	if (!cfg->remote_tls_cert[0] != !cfg->remote_tls_key[0]) {
		snprintf(err, errlen,
		         "%s: remote_tls_cert and remote_tls_key go together",
		         path);
		return -1;
	}
	if (cfg->http_tls_client_ca[0] && !cfg->http_tls_cert[0]) {
		snprintf(err, errlen,
		         "%s: http_tls_client_ca needs HTTPS (http_tls_cert)",
		         path);
		return -1;
	}
	if (!cfg->http_tls_cert[0] && strncmp(cfg->http_bind, "127.", 4) != 0) {
		snprintf(
		        err, errlen,
		        "%s: plain HTTP is allowed only with http_bind on "
		        "loopback: set http_tls_cert and http_tls_key to serve "
		        "%s",
		        path, cfg->http_bind);
		return -1;
	}
	if (strcmp(cfg->auth, "psc") == 0 &&
	    (cfg->psc_issuer[0] == '\0' || cfg->psc_client_id[0] == '\0' ||
	     (cfg->psc_client_secret[0] == '\0' &&
	      cfg->psc_tls_cert[0] == '\0'))) {
		snprintf(err, errlen,
		         "%s: auth = psc needs psc_issuer, psc_client_id and "
		         "psc_client_secret (or psc_tls_cert); auth = none on "
		         "loopback only",
		         path);
		return -1;
	}
	if (cfg->control_socket[0] == '\0') {
		int w = snprintf(cfg->control_socket,
		                 sizeof(cfg->control_socket),
		                 "%s/drimboxd.sock", cfg->data_dir);
		if (w < 0 || (size_t)w >= sizeof(cfg->control_socket) ||
		    (size_t)w >= 108) {
			snprintf(err, errlen,
			         "%s: control_socket: path under data_dir too "
			         "long for a Unix socket",
			         path);
			return -1;
		}
	}
	return 0;
}

/* Files a configuration may include, one in another, at most. */
#define INCLUDE_DEPTH 4

/* "include = PATH": PATH as written, or beside the including file. */
static int include_file(struct config *cfg, const char *from, const char *val,
                        int depth, char *err, size_t errlen);

static int load_file(struct config *cfg, const char *path, int depth, char *err,
                     size_t errlen)
{
	char line[4096];
	unsigned lineno = 0;
	int rc = -1;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *key, *val, *eq;
		const struct opt *o;
		const char *why;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line too long", path,
			         lineno);
			goto out;
		}
		key = trim(line);
		if (*key == '\0' || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s:%u: expected 'key = value'",
			         path, lineno);
			goto out;
		}
		*eq = '\0';
		key = trim(key);
		val = trim(eq + 1);
		if (strcmp(key, "include") == 0) {
			if (include_file(cfg, path, val, depth, err, errlen) !=
			    0)
				goto out;
			continue;
		}
		o = find_opt(key);
		if (o == NULL) {
			snprintf(err, errlen, "%s:%u: unknown key '%s'", path,
			         lineno, key);
			goto out;
		}
		why = set_opt(cfg, o, val);
		if (why != NULL) {
			if (o->type == OPT_INT)
				snprintf(err, errlen,
				         "%s:%u: %s: '%s' %s (%ld..%ld)", path,
				         lineno, key, val, why, o->min, o->max);
			else if (o->type == OPT_ENUM)
				snprintf(err, errlen, "%s:%u: %s: '%s' %s (%s)",
				         path, lineno, key, val, why,
				         o->choices);
			else
				snprintf(err, errlen, "%s:%u: %s: %s", path,
				         lineno, key, why);
			goto out;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto out;
	}
	rc = 0;
out:
	fclose(f);
	return rc;
}

static int include_file(struct config *cfg, const char *from, const char *val,
                        int depth, char *err, size_t errlen)
{
	char target[CONFIG_STR_MAX * 2];
	const char *slash = strrchr(from, '/');

	if (depth >= INCLUDE_DEPTH) {
		snprintf(err, errlen, "%s: include: more than %d levels", from,
		         INCLUDE_DEPTH);
		return -1;
	}
	if (val[0] == '/' || slash == NULL)
		snprintf(target, sizeof(target), "%s", val);
	else
		snprintf(target, sizeof(target), "%.*s/%s", (int)(slash - from),
		         from, val);
	return load_file(cfg, target, depth + 1, err, errlen);
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
	if (load_file(cfg, path, 0, err, errlen) != 0)
		return -1;
	return config_derive(cfg, path, err, errlen);
}

/* Writes text as '# ' comment lines wrapped at 76 columns. */
static void write_comment(FILE *out, const char *text)
{
	const char *p = text;

	while (*p) {
		size_t len = strlen(p), cut = len;

		if (len > 74) {
			cut = 74;
			while (cut > 0 && p[cut] != ' ')
				cut--;
			if (cut == 0)
				cut = 74;
		}
		fprintf(out, "# %.*s\n", (int)cut, p);
		p += cut;
		while (*p == ' ')
			p++;
	}
}

void config_write_reference(FILE *out)
{
	fputs("# drimbox.conf - reference configuration of drimboxd.\n"
	      "#\n"
	      "# Generated from the schema in src/config.c (drimboxd "
	      "--print-config):\n"
	      "# every key, its default, its bounds. Format: 'key = value', "
	      "'#' starts a\n"
	      "# comment line. Unknown keys and out-of-bounds values stop "
	      "start-up with\n"
	      "# the file and line. 'include = FILE' reads FILE (beside "
	      "this one unless\n"
	      "# absolute) at that point: nodes sharing most of their "
	      "settings include\n"
	      "# one common file; a key set again later wins.\n",
	      out);
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt *o = &schema[i];

		if (o->section)
			fprintf(out, "\n# ---- %s %.*s\n", o->section,
			        (int)(70 - strlen(o->section)),
			        "----------------------------------------------"
			        "----------------------------");
		fputc('\n', out);
		write_comment(out, o->help);
		if (o->type == OPT_INT)
			fprintf(out, "# Integer, %ld..%ld.\n", o->min, o->max);
		else if (o->type == OPT_ENUM)
			fprintf(out, "# One of: %s.\n", o->choices);
		fprintf(out, "%s = %s\n", o->name, o->def);
	}
}

void config_write_markdown(FILE *out)
{
	fputs("<!-- generated by drimboxd --print-config-md from the schema in "
	      "src/config.c; tests/check-docs.py checks it -->\n",
	      out);
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt *o = &schema[i];

		if (o->section)
			fprintf(out, "\n#### %s\n", o->section);
		fprintf(out, "\n- **`%s`** (default `%s`", o->name,
		        o->def[0] ? o->def : "\"\"");
		if (o->type == OPT_INT)
			fprintf(out, ", integer %ld..%ld", o->min, o->max);
		else if (o->type == OPT_ENUM)
			fprintf(out, ", one of `%s`", o->choices);
		else if (o->type == OPT_AET)
			fputs(", an AE title", out);
		fprintf(out, "): %s\n", o->help);
	}
}
