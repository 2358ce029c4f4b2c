/*
 * whitelist.c - see whitelist.h. The signature is checked first, on the
 * document as read; the domains are read only from a list whose
 * signature holds. xmlsec1 checks the chain from the certificate in
 * KeyInfo to the anchors (with the intermediates KeyInfo carries), its
 * dates, and the CRLs it is given.
 */
#include "whitelist.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xmlsec/crypto.h>
#include <xmlsec/keysmngr.h>
#include <xmlsec/openssl/x509.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

#define NS_LIST "https://github.com/ansforge/DRIM-M_DATA"
#define SIGNED_PROPERTIES "http://uri.etsi.org/01903#SignedProperties"
#define DOMAINS_MAX 10000

/* Adds every certificate (or CRL) of a PEM file to the store. */
static int load_pem(xmlSecKeyDataStorePtr store, const char *path, int crl,
                    char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	int n = 0;

	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot be read", path);
		return -1;
	}
	for (;;) {
		int rc;

		if (crl) {
			X509_CRL *c = PEM_read_X509_CRL(f, NULL, NULL, NULL);

			if (c == NULL)
				break;
			rc = xmlSecOpenSSLX509StoreAdoptCrl(store, c);
			if (rc < 0)
				X509_CRL_free(c);
		} else {
			X509 *c = PEM_read_X509(f, NULL, NULL, NULL);

			if (c == NULL)
				break;
			rc = xmlSecOpenSSLX509StoreAdoptCert(
			        store, c, xmlSecKeyDataTypeTrusted);
			if (rc < 0)
				X509_free(c);
		}
		if (rc < 0) {
			fclose(f);
			snprintf(err, errlen, "%s: not usable", path);
			return -1;
		}
		n++;
	}
	fclose(f);
	if (n == 0) {
		snprintf(err, errlen, "%s: no PEM %s in it", path,
		         crl ? "CRL" : "certificate");
		return -1;
	}
	return 0;
}

/* 1 when the name has an entry nid equal to want. */
static int name_has(X509_NAME *name, int nid, const char *want)
{
	for (int i = X509_NAME_get_index_by_NID(name, nid, -1); i >= 0;
	     i = X509_NAME_get_index_by_NID(name, nid, i)) {
		ASN1_STRING *v =
		        X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
		unsigned char *s = NULL;
		int len = ASN1_STRING_to_UTF8(&s, v), same;

		if (len < 0)
			continue;
		same = (size_t)len == strlen(want) &&
		       memcmp(s, want, (size_t)len) == 0;
		OPENSSL_free(s);
		if (same)
			return 1;
	}
	return 0;
}

/*
 * The signature must hold, cover the whole document (a reference to "")
 * and the XAdES signed properties, and come from the expected signer.
 */
static int check_signature(xmlDocPtr doc, xmlNodePtr sig,
                           const struct wl_trust *trust, char *signer,
                           size_t signer_len, char *err, size_t errlen)
{
	static const xmlChar *ids[] = { BAD_CAST "Id", NULL };
	xmlSecKeysMngrPtr mngr = xmlSecKeysMngrCreate();
	xmlSecDSigCtxPtr ctx = NULL;
	xmlSecKeyDataStorePtr store;
	int rc = -1, whole = 0, props = 0;

	xmlSecAddIDs(doc, xmlDocGetRootElement(doc), ids);
	if (mngr == NULL || xmlSecCryptoAppDefaultKeysMngrInit(mngr) < 0) {
		snprintf(err, errlen, "xmlsec1: no key manager");
		goto out;
	}
	store = xmlSecKeysMngrGetDataStore(mngr, xmlSecOpenSSLX509StoreId);
	if (store == NULL ||
	    load_pem(store, trust->anchors, 0, err, errlen) != 0 ||
	    (trust->crls && trust->crls[0] &&
	     load_pem(store, trust->crls, 1, err, errlen) != 0))
		goto out;
	ctx = xmlSecDSigCtxCreate(mngr);
	if (ctx == NULL) {
		snprintf(err, errlen, "xmlsec1: no signature context");
		goto out;
	}
	if (xmlSecDSigCtxVerify(ctx, sig) < 0 ||
	    ctx->status != xmlSecDSigStatusSucceeded) {
		snprintf(err, errlen,
		         "the signature does not verify (content changed, or "
		         "its certificate does not chain to the trust anchors, "
		         "has expired or is revoked)");
		goto out;
	}
	for (xmlSecSize i = 0;
	     i < xmlSecPtrListGetSize(&ctx->signedInfoReferences); i++) {
		xmlSecDSigReferenceCtxPtr ref =
		        xmlSecPtrListGetItem(&ctx->signedInfoReferences, i);

		if (ref == NULL || ref->status != xmlSecDSigStatusSucceeded)
			continue;
		if (ref->uri != NULL && ref->uri[0] == '\0')
			whole = 1;
		if (ref->type != NULL &&
		    xmlStrEqual(ref->type, BAD_CAST SIGNED_PROPERTIES))
			props = 1;
	}
	if (!whole || !props) {
		snprintf(err, errlen, "the signature does not cover %s",
		         !whole ? "the whole document"
		                : "XAdES signed properties");
		goto out;
	}
	{
		xmlSecKeyDataPtr data =
		        ctx->signKey
		                ? xmlSecKeyGetData(ctx->signKey,
		                                   xmlSecOpenSSLKeyDataX509Id)
		                : NULL;
		X509 *cert =
		        data ? xmlSecOpenSSLKeyDataX509GetKeyCert(data) : NULL;
		X509_NAME *name = cert ? X509_get_subject_name(cert) : NULL;

		if (name == NULL) {
			snprintf(err, errlen, "no signing certificate");
			goto out;
		}
		X509_NAME_oneline(name, signer, (int)signer_len);
		if (!name_has(name, NID_commonName, trust->signer_cn) ||
		    !name_has(name, NID_organizationalUnitName,
		              trust->signer_ou)) {
			snprintf(err, errlen,
			         "signed by %s, not by CN=%s OU=%s", signer,
			         trust->signer_cn, trust->signer_ou);
			goto out;
		}
	}
	rc = 0;
out:
	if (ctx != NULL)
		xmlSecDSigCtxDestroy(ctx);
	if (mngr != NULL)
		xmlSecKeysMngrDestroy(mngr);
	return rc;
}

static xmlNodePtr child(xmlNodePtr parent, const char *name)
{
	for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE &&
		    xmlStrEqual(c->name, BAD_CAST name) && c->ns &&
		    xmlStrEqual(c->ns->href, BAD_CAST NS_LIST))
			return c;
	return NULL;
}

/* The text of parent's child name, trimmed, into out; 0 or -1. */
static int text(xmlNodePtr parent, const char *name, char *out, size_t cap,
                int required)
{
	xmlNodePtr c = child(parent, name);
	xmlChar *v = c ? xmlNodeGetContent(c) : NULL;
	const char *s = (const char *)v;
	size_t n;

	out[0] = '\0';
	if (v == NULL)
		return required ? -1 : 0;
	s += strspn(s, " \t\r\n");
	n = strlen(s);
	while (n > 0 && strchr(" \t\r\n", s[n - 1]))
		n--;
	if (n >= cap || (required && n == 0)) {
		xmlFree(v);
		return -1;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	xmlFree(v);
	return 0;
}

static int read_domains(xmlNodePtr root, struct whitelist *wl, char *err,
                        size_t errlen)
{
	xmlNodePtr list = child(root, "ListeDomaines");

	if (text(root, "DateDeGeneration", wl->generated, sizeof(wl->generated),
	         1) != 0 ||
	    list == NULL) {
		snprintf(err, errlen,
		         "not a DRIM-M list: no DateDeGeneration "
		         "or ListeDomaines");
		return -1;
	}
	for (xmlNodePtr d = list->children; d; d = d->next) {
		struct wl_domain *w, *grown;

		if (d->type != XML_ELEMENT_NODE ||
		    !xmlStrEqual(d->name, BAD_CAST "Domaine"))
			continue;
		if (wl->n == DOMAINS_MAX) {
			snprintf(err, errlen, "more than %d domains",
			         DOMAINS_MAX);
			return -1;
		}
		grown = realloc(wl->domains, (wl->n + 1) * sizeof(*grown));
		if (grown == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		wl->domains = grown;
		w = &wl->domains[wl->n];
		if (text(d, "Identifiant", w->id, sizeof(w->id), 0) != 0 ||
		    text(d, "db", w->db, sizeof(w->db), 1) != 0 ||
		    text(d, "vi", w->vi, sizeof(w->vi), 0) != 0 ||
		    text(d, "Denomination", w->name, sizeof(w->name), 0) != 0 ||
		    text(d, "DNCertificatOperateur", w->cert_dn,
		         sizeof(w->cert_dn), 0) != 0) {
			snprintf(err, errlen,
			         "domain %zu: no db host, or a value too long",
			         wl->n + 1);
			return -1;
		}
		wl->n++;
	}
	return 0;
}

int whitelist_load(const char *path, const struct wl_trust *trust,
                   struct whitelist **out, char *err, size_t errlen)
{
	xmlDocPtr doc = xmlReadFile(path, NULL, XML_PARSE_NONET);
	xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL, sig = NULL;
	struct whitelist *wl = calloc(1, sizeof(*wl));
	int rc = -1;

	*out = NULL;
	if (wl == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (doc == NULL || root == NULL) {
		snprintf(err, errlen, "unreadable, or not XML");
		goto out;
	}
	if (doc->intSubset != NULL) {
		snprintf(err, errlen, "a DOCTYPE is not allowed");
		goto out;
	}
	if (!xmlStrEqual(root->name, BAD_CAST "ListeBlancheDRIM-M") ||
	    root->ns == NULL ||
	    !xmlStrEqual(root->ns->href, BAD_CAST NS_LIST)) {
		snprintf(err, errlen, "not a ListeBlancheDRIM-M");
		goto out;
	}
	/* enveloped: the signature is a child of the list */
	for (xmlNodePtr c = root->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE &&
		    xmlSecCheckNodeName(c, xmlSecNodeSignature, xmlSecDSigNs))
			sig = c;
	if (sig == NULL) {
		snprintf(err, errlen, "not signed");
		goto out;
	}
	if (check_signature(doc, sig, trust, wl->signer, sizeof(wl->signer),
	                    err, errlen) != 0 ||
	    read_domains(root, wl, err, errlen) != 0)
		goto out;
	*out = wl;
	wl = NULL;
	rc = 0;
out:
	whitelist_free(wl);
	if (doc != NULL)
		xmlFreeDoc(doc);
	return rc;
}

const struct wl_domain *whitelist_find(const struct whitelist *wl,
                                       const char *host)
{
	for (size_t i = 0; wl && host && i < wl->n; i++)
		if (strcasecmp(wl->domains[i].db, host) == 0)
			return &wl->domains[i];
	return NULL;
}

void whitelist_free(struct whitelist *wl)
{
	if (wl == NULL)
		return;
	free(wl->domains);
	free(wl);
}
