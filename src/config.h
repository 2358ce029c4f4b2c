/*
 * config.h - drimboxd's configuration: one schema table (name, type,
 * bounds, default, help) drives parsing, validation, defaults and the
 * generated documentation. File format: "key = value" lines, '#' comments,
 * "include = FILE" (beside the including file unless absolute).
 */
#ifndef DRIMBOX_CONFIG_H
#define DRIMBOX_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define CONFIG_STR_MAX 512

struct config {
	/* node */
	char data_dir[CONFIG_STR_MAX];
	char cache_dir[CONFIG_STR_MAX];
	long cache_max_mb;
	char log_level[16];
	char log_file[CONFIG_STR_MAX];
	char control_socket[CONFIG_STR_MAX];
	char index_url[CONFIG_STR_MAX];
	long index_pool;
	char node_name[64];
	long job_lease;
	/* DICOM listener (storage SCP) */
	char dicom_aet[17];
	char dicom_bind[64];
	long dicom_port;
	char dicom_allowed_aets[CONFIG_STR_MAX];
	long dicom_max_associations;
	long dicom_timeout;
	/* PACS */
	char pacs_host[256];
	long pacs_port;
	char pacs_aet[17];
	char pacs_retrieve[8];
	long pacs_timeout;
	long pacs_retry_max;
	long sync_interval;
	long sync_window_days;
	/* HTTP (DICOMweb) */
	char http_bind[64];
	long http_port;
	char dicomweb_root[64];
	long http_max_connections;
	char viewer_dir[CONFIG_STR_MAX];
	char http_tls_cert[256], http_tls_key[256], http_tls_client_ca[256];
	char metrics_allowed[256];
	/* HL7 v2 from the RIS (MLLP) */
	long hl7_port;
	char hl7_bind[64];
	long hl7_max_message_mb;
	long hl7_idle_timeout;
	long hl7_max_connections;
	char hl7_application[64];
	char hl7_facility[64];
	char hl7_tls_cert[256];
	char hl7_tls_key[256];
	char hl7_tls_ca[256];
	/* publication (source role) */
	char public_url[256];
	long publish_wait_hours;
	long publish_retry_max;
	/* the DMP */
	char dmp_url[256];
	char dmp_sign_cert[256], dmp_sign_key[256];
	char dmp_tls_cert[256], dmp_tls_key[256], dmp_tls_ca[256];
	char dmp_structure_id[64], dmp_structure_name[128];
	char dmp_sector[64], dmp_facility_type[64], dmp_practice_setting[64];
	char dmp_content_type[64];
	char dmp_source_oid[65];
	char dmp_lps_id[64], dmp_lps_version[32], dmp_lps_homologation[64];
	long dmp_timeout;
	/* the DRIM-M whitelist */
	char whitelist_file[256], whitelist_trust[256], whitelist_crl[256];
	char whitelist_signer_cn[128], whitelist_signer_ou[64];
	/* consumer */
	char web_dir[CONFIG_STR_MAX];
	long conso_context_seconds, conso_session_minutes;
	char conso_professional[256];
	long conso_prefetch;
	char conso_import_ids[16];
	char qr_workstations[CONFIG_STR_MAX];
	long remote_parallel, remote_timeout;
	char remote_tls_cert[256], remote_tls_key[256], remote_tls_ca[256];
	/* sign-in: Pro Santé Connect */
	char auth[8];
	char psc_issuer[256], psc_client_id[128], psc_client_secret[256];
	char psc_redirect_uri[256], psc_token_check[16], psc_acr[32];
	char psc_bearer_clients[CONFIG_STR_MAX];
	char psc_tls_cert[256], psc_tls_key[256], psc_tls_ca[256];
	long psc_timeout, auth_session_minutes;
};

/* Sets every key to its default. */
void config_defaults(struct config *cfg);

/* The index to open: index_url, or the SQLite file DATA_DIR/index.db. */
void config_index_target(const struct config *cfg, char *buf, size_t cap);

/*
 * Reads path over the defaults. Unknown keys, malformed lines and values
 * out of bounds are errors: returns -1 with "file:line: reason" in err.
 * Returns 0 on success. Derived defaults (control_socket under data_dir)
 * are filled in afterwards.
 */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);

/* The schema as Markdown, for the administrator's guide. */
void config_write_markdown(FILE *out);

/* Writes the schema as a commented reference file (conf/drimbox.conf). */
void config_write_reference(FILE *out);

#endif
