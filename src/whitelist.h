/*
 * whitelist.h - the ANS list of DRIMboxes ("liste blanche DRIM-M"): an XML
 * document (ListeBlancheDRIM-M, versionFormat 1.0.0) with an enveloped
 * XAdES-BASELINE-B signature. A list is used only when its signature
 * verifies with xmlsec1 against the configured trust anchors (certificate
 * chain and validity, CRLs when given), covers the whole document and the
 * signed properties, and was made by the expected signer (CN and OU).
 * A consumer talks only to DRIMboxes whose host the list names.
 *
 * xmlsec1 must be initialised (dmp_global_init) before whitelist_load.
 */
#ifndef DRIMBOX_WHITELIST_H
#define DRIMBOX_WHITELIST_H

#include <stddef.h>

/* One DRIMbox of the list (a "Domaine"). */
struct wl_domain {
	char id[16];
	char db[256]; /* the DRIMbox's host name */
	char vi[256]; /* its viewer's host name */
	char name[128];
	char cert_dn[512]; /* DNCertificatOperateur */
};

struct whitelist {
	char generated[32]; /* DateDeGeneration, as written */
	char signer[512];   /* the signing certificate's subject */
	size_t n;
	struct wl_domain *domains;
};

/* What a list must be signed with and by. */
struct wl_trust {
	const char *anchors; /* PEM file: trusted CA certificates */
	const char *crls;    /* PEM file of CRLs, or NULL/"" */
	const char *signer_cn, *signer_ou;
};

/*
 * Reads and verifies the list in the file at path; *out gets it (free
 * with whitelist_free). 0, or -1 with err saying why the list is refused
 * (unreadable, not signed, signature or chain invalid, content changed,
 * wrong signer, not a DRIM-M list); err does not repeat the path.
 */
int whitelist_load(const char *path, const struct wl_trust *trust,
                   struct whitelist **out, char *err, size_t errlen);

/* The domain whose db host is host (case-insensitive), or NULL. */
const struct wl_domain *whitelist_find(const struct whitelist *wl,
                                       const char *host);

void whitelist_free(struct whitelist *wl);

#endif
