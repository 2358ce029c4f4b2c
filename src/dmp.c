/*
 * dmp.c - see dmp.h. The request is built as a libxml2 tree (the XDS
 * metadata of the ANS validator's ITI-41 sample, with this site's values
 * from the configuration and the report's from the job), the VIHF is
 * signed in place by xmlsec1 (enveloped, exclusive C14N, RSA-SHA256), and
 * the envelope goes out as the root part of an MTOM message whose second
 * part is the KOS.
 */
#include "dmp.h"
#include "audit.h"
#include "config.h"
#include "curlbuf.h"
#include "fsutil.h"
#include "log.h"
#include "metrics.h"
#include "multipart.h"

#include <curl/curl.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <xmlsec/crypto.h>
#include <xmlsec/templates.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

#define ITI41 "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
#define ITI18 "urn:ihe:iti:2007:RegistryStoredQuery"
#define ITI57 "urn:ihe:iti:2010:UpdateDocumentSet"
#define ITI43 "urn:ihe:iti:2007:RetrieveDocumentSet"
#define TD02 "urn:hl7-org:v3:PRPA_IN201307UV02"
#define TD03 "urn:asip:dmp:setAuthorization"
#define NS_DMP "urn:asip:dmp"
#define FIND_DOCUMENTS "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
#define FIND_BY_REFERENCE "urn:uuid:12941a89-e02e-4be5-967c-ce4bfc8fe492"
#define GET_DOCUMENTS "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
#define NS_QUERY "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
#define NS_SOAP "http://www.w3.org/2003/05/soap-envelope"
#define NS_WSA "http://www.w3.org/2005/08/addressing"
#define NS_WSSE                                                                \
	"http://docs.oasis-open.org/wss/2004/01/"                              \
	"oasis-200401-wss-wssecurity-secext-1.0.xsd"
#define NS_SAML "urn:oasis:names:tc:SAML:2.0:assertion"
#define NS_RIM "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
#define NS_RS "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
#define NS_LCM "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
#define NS_XDS "urn:ihe:iti:xds-b:2007"
#define NS_XOP "http://www.w3.org/2004/08/xop/include"
#define NS_HL7 "urn:hl7-org:v3"
#define KOS_CLASS "1.2.840.10008.5.1.4.1.1.88.59"
#define KOS_CID "kos@drimbox"
#define SIG_CID "signature@drimbox"
#define MAX_RESPONSE (16u << 20)

int dmp_global_init(char *err, size_t errlen)
{
	if (xmlSecInit() < 0 || xmlSecCryptoAppInit(NULL) < 0 ||
	    xmlSecCryptoInit() < 0) {
		snprintf(err, errlen, "xmlsec1 could not be initialised");
		return -1;
	}
	return 0;
}

void dmp_global_cleanup(void)
{
	xmlSecCryptoShutdown();
	xmlSecCryptoAppShutdown();
	xmlSecShutdown();
}

/* ---- building the request -------------------------------------------- */

struct req {
	xmlDocPtr doc;
	xmlNsPtr soap, wsa, wsse, saml, rim, lcm, xds, xop, query;
	xmlNodePtr assertion; /* the VIHF, signed last */
	char assertion_id[64];
	int ids;               /* numbers the classifications and identifiers */
	double sign_s, send_s; /* how long signing and the exchange took */
	json_t *payload;       /* whose request: the audit trail's actor */
};

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static xmlNodePtr el(xmlNodePtr parent, xmlNsPtr ns, const char *name,
                     const char *text)
{
	return xmlNewTextChild(parent, ns, BAD_CAST name,
	                       text ? BAD_CAST text : NULL);
}

static void attr(xmlNodePtr n, const char *k, const char *v)
{
	xmlNewProp(n, BAD_CAST k, BAD_CAST v);
}

static void slot(struct req *r, xmlNodePtr obj, const char *name,
                 const char *const *values, int n)
{
	xmlNodePtr s = el(obj, r->rim, "Slot", NULL), list;

	attr(s, "name", name);
	list = el(s, r->rim, "ValueList", NULL);
	for (int i = 0; i < n; i++)
		el(list, r->rim, "Value", values[i]);
}

static void slot1(struct req *r, xmlNodePtr obj, const char *name,
                  const char *value)
{
	slot(r, obj, name, &value, 1);
}

static void localized(struct req *r, xmlNodePtr parent, const char *tag,
                      const char *value)
{
	xmlNodePtr s = el(el(parent, r->rim, tag, NULL), r->rim,
	                  "LocalizedString", NULL);

	attr(s, "charset", "UTF8");
	attr(s, "value", value);
}

static xmlNodePtr classify(struct req *r, xmlNodePtr obj, const char *objid,
                           const char *scheme, const char *code,
                           const char *coding_scheme, const char *display)
{
	xmlNodePtr c = el(obj, r->rim, "Classification", NULL);
	char id[32];

	snprintf(id, sizeof(id), "cl%d", ++r->ids);
	attr(c, "classificationScheme", scheme);
	attr(c, "classifiedObject", objid);
	attr(c, "id", id);
	if (code != NULL) {
		attr(c, "nodeRepresentation", code);
		slot1(r, c, "codingScheme", coding_scheme);
		localized(r, c, "Name", display && display[0] ? display : code);
	}
	return c;
}

static void external_id(struct req *r, xmlNodePtr obj, const char *objid,
                        const char *scheme, const char *value, const char *name)
{
	xmlNodePtr e = el(obj, r->rim, "ExternalIdentifier", NULL);
	char id[32];

	snprintf(id, sizeof(id), "ei%d", ++r->ids);
	attr(e, "id", id);
	attr(e, "identificationScheme", scheme);
	attr(e, "registryObject", objid);
	attr(e, "value", value);
	localized(r, e, "Name", name);
}

/* An HL7 DTM in UTC (YYYYMMDDHHMMSS) from a CDA TS with its offset. */
static void utc(const char *ts, char *out, size_t cap)
{
	struct tm tm;
	int off = 0, sign = 0;
	char digits[16];
	time_t t;

	out[0] = '\0';
	/* the digits only: %2d would take the offset's sign for a field */
	snprintf(digits, sizeof(digits), "%.*s", (int)strcspn(ts, "+-"), ts);
	if (strlen(digits) < 8 ||
	    strspn(digits, "0123456789") != strlen(digits))
		return;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(digits, "%4d%2d%2d%2d%2d%2d", &tm.tm_year, &tm.tm_mon,
	           &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) < 3)
		return;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	const char *z = strpbrk(ts, "+-");
	if (z && strlen(z) >= 5) {
		sign = *z == '-' ? -1 : 1;
		off = ((z[1] - '0') * 10 + (z[2] - '0')) * 3600 +
		      ((z[3] - '0') * 10 + (z[4] - '0')) * 60;
	}
	t = timegm(&tm) - sign * off;
	if (gmtime_r(&t, &tm) != NULL)
		strftime(out, cap, "%Y%m%d%H%M%S", &tm);
}

static void now_utc(char *out, size_t cap)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y%m%d%H%M%S", &tm);
}

static void new_uuid(char *out, size_t cap)
{
	unsigned char b[16];

	if (RAND_bytes(b, sizeof(b)) != 1)
		memset(b, 0, sizeof(b));
	b[6] = (b[6] & 0x0F) | 0x40;
	b[8] = (b[8] & 0x3F) | 0x80;
	snprintf(out, cap,
	         "urn:uuid:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	         "%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
	         b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* XCN of a person of the payload (author, legal authenticator). */
static void xcn(json_t *p, char *out, size_t cap)
{
	snprintf(out, cap, "%s^%s^%s^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS",
	         jstr(p, "id"), jstr(p, "family"), jstr(p, "given"));
}

static void xon(const struct config *cfg, char *out, size_t cap)
{
	snprintf(out, cap, "%s^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^%s",
	         cfg->dmp_structure_name, cfg->dmp_structure_id);
}

static void author(struct req *r, xmlNodePtr obj, const char *objid,
                   const char *scheme, const char *person,
                   const char *institution)
{
	xmlNodePtr c = classify(r, obj, objid, scheme, NULL, NULL, NULL);

	slot1(r, c, "authorPerson", person);
	slot1(r, c, "authorInstitution", institution);
}

/* The SAML assertion of the VIHF, unsigned yet; its ID in id. */
static xmlNodePtr vihf(struct req *r, xmlNodePtr security,
                       const struct config *cfg, json_t *payload,
                       const char *patient_nh, char *id, size_t idcap)
{
	json_t *au = json_object_get(payload, "author");
	xmlNodePtr a = el(security, r->saml, "Assertion", NULL), st, at, v;
	const char *prof;
	char now[32], subject[200];
	time_t t = time(NULL);
	struct tm tm;
	const char *attrs[][2] = {
		{ "VIHF_Version", "3.0" },
		{ "Identifiant_Structure", cfg->dmp_structure_id },
		{ "Secteur_Activite", jstr(au, "sector")[0] ? jstr(au, "sector")
		                                            : cfg->dmp_sector },
		{ "urn:oasis:names:tc:xspa:1.0:subject:subject-id", subject },
		{ "urn:oasis:names:tc:xacml:2.0:resource:resource-id",
		  patient_nh },
		{ "Ressource_URN", "urn:dmp" },
		{ "LPS_ID", cfg->dmp_lps_id },
		{ "LPS_Nom", "drimbox" },
		{ "LPS_Version", cfg->dmp_lps_version },
		{ "LPS_ID_HOMOLOGATION_DMP", cfg->dmp_lps_homologation },
		{ "Authentification_Mode", "INDIRECTE" },
	};

	new_uuid(id, idcap);
	memmove(id, id + 9, strlen(id + 9) + 1); /* "urn:uuid:" off */
	id[0] = '_'; /* an xsd:ID starts with a letter or '_' */
	gmtime_r(&t, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(subject, sizeof(subject), "%s %s", jstr(au, "given"),
	         jstr(au, "family"));
	attr(a, "ID", id);
	attr(a, "IssueInstant", now);
	attr(a, "Version", "2.0");
	el(a, r->saml, "Issuer", cfg->dmp_structure_name);
	el(el(a, r->saml, "Subject", NULL), r->saml, "NameID", jstr(au, "id"));
	el(el(el(a, r->saml, "AuthnStatement", NULL), r->saml, "AuthnContext",
	      NULL),
	   r->saml, "AuthnContextClassRef",
	   "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient");
	st = el(a, r->saml, "AttributeStatement", NULL);
	for (size_t i = 0; i < sizeof(attrs) / sizeof(*attrs); i++) {
		at = el(st, r->saml, "Attribute", NULL);
		attr(at, "Name", attrs[i][0]);
		el(at, r->saml, "AttributeValue", attrs[i][1]);
	}
	at = el(st, r->saml, "Attribute", NULL);
	attr(at, "Name", "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse");
	v = el(el(at, r->saml, "AttributeValue", NULL), NULL, "PurposeOfUse",
	       NULL);
	xmlSetNs(v, xmlNewNs(v, BAD_CAST NS_HL7, NULL));
	attr(v, "code", "normal");
	attr(v, "codeSystem", "1.2.250.1.213.1.1.4.248");
	attr(v, "displayName", "Acces normal");
	at = el(st, r->saml, "Attribute", NULL);
	attr(at, "Name", "urn:oasis:names:tc:xacml:2.0:subject:role");
	/* the professional's profession (PSC: codeProfession; a physician
	 * when unknown) and specialty (codeSavoirFaire) */
	v = el(el(at, r->saml, "AttributeValue", NULL), NULL, "Role", NULL);
	xmlSetNs(v, xmlNewNs(v, BAD_CAST NS_HL7, NULL));
	prof = jstr(au, "profession")[0] ? jstr(au, "profession") : "10";
	attr(v, "code", prof);
	attr(v, "codeSystem", "1.2.250.1.71.1.2.7");
	if (strcmp(prof, "10") == 0)
		attr(v, "displayName", "Medecin");
	if (jstr(au, "specialty")[0]) {
		v = el(el(at, r->saml, "AttributeValue", NULL), NULL, "Role",
		       NULL);
		xmlSetNs(v, xmlNewNs(v, BAD_CAST NS_HL7, NULL));
		attr(v, "code", jstr(au, "specialty"));
		attr(v, "codeSystem", "1.2.250.1.71.4.2.5");
	}
	return a;
}

/* Signs the assertion (enveloped signature after its Issuer). */
/* A signature context with the site's signing key and certificate. */
static xmlSecDSigCtxPtr signing_ctx(const struct config *cfg, char *err,
                                    size_t errlen)
{
	xmlSecDSigCtxPtr ctx = xmlSecDSigCtxCreate(NULL);

	if (ctx == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ctx->signKey = xmlSecCryptoAppKeyLoad(
	        cfg->dmp_sign_key, xmlSecKeyDataFormatPem, NULL, NULL, NULL);
	if (ctx->signKey == NULL ||
	    xmlSecCryptoAppKeyCertLoad(ctx->signKey, cfg->dmp_sign_cert,
	                               xmlSecKeyDataFormatPem) < 0) {
		snprintf(err, errlen, "cannot load the signing key %s / %s",
		         cfg->dmp_sign_key, cfg->dmp_sign_cert);
		xmlSecDSigCtxDestroy(ctx);
		return NULL;
	}
	return ctx;
}

static int sign(struct req *r, xmlNodePtr assertion, const char *id,
                const struct config *cfg, char *err, size_t errlen)
{
	xmlNodePtr sig, ref, ki, issuer = xmlFirstElementChild(assertion);
	xmlSecDSigCtxPtr ctx = NULL;
	xmlAttrPtr idattr = xmlHasProp(assertion, BAD_CAST "ID");
	char uri[80];
	int rc = -1;

	snprintf(uri, sizeof(uri), "#%s", id);
	xmlAddID(NULL, r->doc, BAD_CAST id, idattr);
	sig = xmlSecTmplSignatureCreate(r->doc, xmlSecTransformExclC14NId,
	                                xmlSecTransformRsaSha256Id, NULL);
	if (sig == NULL || xmlAddNextSibling(issuer, sig) == NULL)
		goto out;
	ref = xmlSecTmplSignatureAddReference(sig, xmlSecTransformSha256Id,
	                                      NULL, BAD_CAST uri, NULL);
	if (ref == NULL ||
	    xmlSecTmplReferenceAddTransform(ref, xmlSecTransformEnvelopedId) ==
	            NULL ||
	    xmlSecTmplReferenceAddTransform(ref, xmlSecTransformExclC14NId) ==
	            NULL)
		goto out;
	ki = xmlSecTmplSignatureEnsureKeyInfo(sig, NULL);
	if (ki == NULL || xmlSecTmplKeyInfoAddX509Data(ki) == NULL)
		goto out;
	ctx = signing_ctx(cfg, err, errlen);
	if (ctx == NULL)
		return -1;
	if (xmlSecDSigCtxSign(ctx, sig) < 0) {
		snprintf(err, errlen, "VIHF: signing failed");
		goto done;
	}
	rc = 0;
	goto done;
out:
	snprintf(err, errlen, "VIHF: cannot build the signature");
done:
	if (ctx)
		xmlSecDSigCtxDestroy(ctx);
	return rc;
}

static int sha1_hex(const unsigned char *data, size_t len, char out[41])
{
	unsigned char md[20];
	unsigned int n = 0;

	if (EVP_Digest(data, len, md, &n, EVP_sha1(), NULL) != 1 || n != 20)
		return -1;
	for (unsigned i = 0; i < 20; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* The submission set and the KOS's document entry. */
static void b64(const unsigned char *data, size_t len, char *out, size_t cap)
{
	if (cap < 4 * ((len + 2) / 3) + 1) {
		out[0] = '\0';
		return;
	}
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
}

static void sha256_b64(const unsigned char *data, size_t len, char out[64])
{
	unsigned char md[32];
	unsigned int n = 0;

	if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1)
		n = 0;
	b64(md, n, out, 64);
}

/* The signing certificate's digest, issuer and serial (XAdES). */
static int cert_facts(const char *pem, char digest[64], char *issuer,
                      size_t icap, char *serial, size_t scap)
{
	FILE *f = fopen(pem, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL;
	int len, rc = -1;
	BIO *bio = NULL;
	BIGNUM *bn = NULL;
	char *dec = NULL;

	if (f)
		fclose(f);
	if (x == NULL || (len = i2d_X509(x, &der)) <= 0)
		goto out;
	sha256_b64(der, (size_t)len, digest);
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || X509_NAME_print_ex(bio, X509_get_issuer_name(x), 0,
	                                      XN_FLAG_RFC2253) < 0)
		goto out;
	len = BIO_read(bio, issuer, (int)icap - 1);
	issuer[len > 0 ? len : 0] = '\0';
	bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), NULL);
	dec = bn ? BN_bn2dec(bn) : NULL;
	if (dec == NULL)
		goto out;
	snprintf(serial, scap, "%s", dec);
	rc = 0;
out:
	OPENSSL_free(dec);
	BN_free(bn);
	BIO_free(bio);
	OPENSSL_free(der);
	X509_free(x);
	return rc;
}

/*
 * The IHE DSG signature of the submission set, as the ANS XDM sample has
 * it: an enveloping XML signature over a ds:Manifest (Id IHEManifest) of
 * the submission set and the KOS (SHA-256 of its bytes), with XAdES
 * signed properties (signing time, signing certificate) and the purpose
 * 1.2.840.10065.1.12.1.14 (source). *out malloc'd.
 */
static int dsg_signature(const struct config *cfg, const char *ss_unique,
                         const char *kos_unique, const unsigned char *kos,
                         size_t kos_len, char **out, size_t *out_len, char *err,
                         size_t errlen)
{
	static const char *const xades = "http://uri.etsi.org/01903/v1.3.2#";
	xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
	xmlNodePtr sig, ref, ki, obj, n, man, qp, sp, ssp, cert;
	xmlNsPtr ds, xa;
	xmlSecDSigCtxPtr ctx = NULL;
	char sigid[80], uri[200], digest[64], cdigest[64], issuer[512],
	        serial[128], now[40];
	xmlChar *xml = NULL;
	int len = 0, rc = -1;
	time_t t = time(NULL);
	struct tm tm;

	new_uuid(sigid, sizeof(sigid));
	memmove(sigid, sigid + 9, strlen(sigid + 9) + 1);
	sigid[0] = 'S'; /* an ID starts with a letter */
	if (cert_facts(cfg->dmp_sign_cert, cdigest, issuer, sizeof(issuer),
	               serial, sizeof(serial)) != 0) {
		snprintf(err, errlen, "%s: cannot read the certificate",
		         cfg->dmp_sign_cert);
		goto done;
	}
	sig = xmlSecTmplSignatureCreate(doc, xmlSecTransformExclC14NId,
	                                xmlSecTransformRsaSha256Id,
	                                BAD_CAST sigid);
	if (sig == NULL)
		goto fail;
	xmlDocSetRootElement(doc, sig);
	ds = sig->ns;
	ref = xmlSecTmplSignatureAddReference(
	        sig, xmlSecTransformSha256Id, NULL, BAD_CAST "#IHEManifest",
	        BAD_CAST "http://www.w3.org/2000/09/xmldsig#Manifest");
	if (ref == NULL || xmlSecTmplReferenceAddTransform(
	                           ref, xmlSecTransformExclC14NId) == NULL)
		goto fail;
	ref = xmlSecTmplSignatureAddReference(
	        sig, xmlSecTransformSha256Id, NULL,
	        BAD_CAST "#S0-SignedProperties",
	        BAD_CAST "http://uri.etsi.org/01903#SignedProperties");
	if (ref == NULL || xmlSecTmplReferenceAddTransform(
	                           ref, xmlSecTransformExclC14NId) == NULL)
		goto fail;
	ki = xmlSecTmplSignatureEnsureKeyInfo(sig, NULL);
	if (ki == NULL || xmlSecTmplKeyInfoAddX509Data(ki) == NULL)
		goto fail;
	/* purpose: source of the documents */
	obj = xmlSecTmplSignatureAddObject(sig, NULL, NULL, NULL);
	n = el(el(obj, ds, "SignatureProperties", NULL), ds,
	       "SignatureProperty", "1.2.840.10065.1.12.1.14");
	attr(n, "Id", "purposeOfSignature");
	snprintf(uri, sizeof(uri), "#%s", sigid);
	attr(n, "Target", uri);
	/* the manifest: the submission set and the KOS */
	obj = xmlSecTmplSignatureAddObject(sig, NULL, NULL, NULL);
	man = el(obj, ds, "Manifest", NULL);
	attr(man, "Id", "IHEManifest");
	xmlAddID(NULL, doc, BAD_CAST "IHEManifest",
	         xmlHasProp(man, BAD_CAST "Id"));
	for (int i = 0; i < 2; i++) {
		const char *u = i == 0 ? ss_unique : kos_unique;

		n = el(man, ds, "Reference", NULL);
		snprintf(uri, sizeof(uri), "urn:oid:%s", u);
		attr(n, "URI", uri);
		attr(el(n, ds, "DigestMethod", NULL), "Algorithm",
		     "http://www.w3.org/2001/04/xmlenc#sha256");
		if (i == 0) /* the set's own id: it has no bytes of its own */
			sha256_b64((const unsigned char *)u, strlen(u), digest);
		else
			sha256_b64(kos, kos_len, digest);
		el(n, ds, "DigestValue", digest);
	}
	/* XAdES signed properties */
	obj = xmlSecTmplSignatureAddObject(sig, NULL, NULL, NULL);
	qp = xmlNewChild(obj, NULL, BAD_CAST "QualifyingProperties", NULL);
	xa = xmlNewNs(qp, BAD_CAST xades, BAD_CAST "xades");
	xmlSetNs(qp, xa);
	snprintf(uri, sizeof(uri), "#%s", sigid);
	attr(qp, "Target", uri);
	sp = el(qp, xa, "SignedProperties", NULL);
	attr(sp, "Id", "S0-SignedProperties");
	xmlAddID(NULL, doc, BAD_CAST "S0-SignedProperties",
	         xmlHasProp(sp, BAD_CAST "Id"));
	ssp = el(sp, xa, "SignedSignatureProperties", NULL);
	gmtime_r(&t, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	el(ssp, xa, "SigningTime", now);
	cert = el(el(el(ssp, xa, "SigningCertificate", NULL), xa, "Cert", NULL),
	          xa, "CertDigest", NULL);
	attr(el(cert, ds, "DigestMethod", NULL), "Algorithm",
	     "http://www.w3.org/2001/04/xmlenc#sha256");
	el(cert, ds, "DigestValue", cdigest);
	cert = el(cert->parent, xa, "IssuerSerial", NULL);
	el(cert, ds, "X509IssuerName", issuer);
	el(cert, ds, "X509SerialNumber", serial);
	el(el(ssp, xa, "SignaturePolicyIdentifier", NULL), xa,
	   "SignaturePolicyImplied", NULL);
	xmlAddID(NULL, doc, BAD_CAST sigid, xmlHasProp(sig, BAD_CAST "Id"));
	ctx = signing_ctx(cfg, err, errlen);
	if (ctx == NULL)
		goto done;
	/* the manifest's digests are ours (its URIs name documents, they
	 * are not fetched) */
	ctx->flags |= XMLSEC_DSIG_FLAGS_IGNORE_MANIFESTS;
	if (xmlSecDSigCtxSign(ctx, sig) < 0) {
		snprintf(err, errlen, "submission set signature failed");
		goto done;
	}
	xmlDocDumpMemoryEnc(doc, &xml, &len, "UTF-8");
	*out = xml ? malloc((size_t)len) : NULL;
	if (*out == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	memcpy(*out, xml, (size_t)len);
	*out_len = (size_t)len;
	rc = 0;
	goto done;
fail:
	snprintf(err, errlen, "cannot build the submission set signature");
done:
	if (ctx)
		xmlSecDSigCtxDestroy(ctx);
	xmlFree(xml);
	xmlFreeDoc(doc);
	return rc;
}

/*
 * A document entry's identifiers (patient, unique id) and its membership
 * of the submission set.
 */
static void member(struct req *r, xmlNodePtr list, xmlNodePtr de,
                   const char *id, const char *patient_nh, const char *unique,
                   const char *assoc_id)
{
	xmlNodePtr as;

	external_id(r, de, id, "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427",
	            patient_nh, "XDSDocumentEntry.patientId");
	external_id(r, de, id, "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab",
	            unique, "XDSDocumentEntry.uniqueId");
	as = el(list, r->rim, "Association", NULL);
	attr(as, "associationType",
	     "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember");
	attr(as, "id", assoc_id);
	attr(as, "sourceObject", "SubmissionSet01");
	attr(as, "targetObject", id);
	slot1(r, as, "SubmissionSetStatus", "Original");
}

/* The submission set (id SubmissionSet01) of a request. */
static void submission_set(struct req *r, xmlNodePtr list,
                           const struct config *cfg, json_t *payload,
                           const char *ss_unique, const char *patient_nh)
{
	xmlNodePtr ss;
	char now[32], buf[512], inst[300];

	now_utc(now, sizeof(now));
	xon(cfg, inst, sizeof(inst));
	ss = el(list, r->rim, "RegistryPackage", NULL);
	attr(ss, "id", "SubmissionSet01");
	slot1(r, ss, "submissionTime", now);
	localized(r, ss, "Name", "Reference d'Objets d'un Examen d'Imagerie");
	xcn(json_object_get(payload, "author"), buf, sizeof(buf));
	author(r, ss, "SubmissionSet01",
	       "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d", buf, inst);
	classify(r, ss, "SubmissionSet01",
	         "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500",
	         cfg->dmp_content_type, "1.2.250.1.213.2.2", NULL);
	attr(classify(r, ss, "SubmissionSet01", "", NULL, NULL, NULL),
	     "classificationNode",
	     "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd");
	external_id(r, ss, "SubmissionSet01",
	            "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446", patient_nh,
	            "XDSSubmissionSet.patientId");
	external_id(r, ss, "SubmissionSet01",
	            "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832",
	            cfg->dmp_source_oid, "XDSSubmissionSet.sourceId");
	external_id(r, ss, "SubmissionSet01",
	            "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8", ss_unique,
	            "XDSSubmissionSet.uniqueId");
}

static void metadata(struct req *r, xmlNodePtr list, const struct config *cfg,
                     json_t *payload, const char *study, const char *kos_sop,
                     const char *ss_unique, const char *patient_nh,
                     size_t kos_len, const char *kos_sha1)
{
	json_t *pat = json_object_get(payload, "patient");
	json_t *doc = json_object_get(payload, "document");
	json_t *studies = json_object_get(payload, "studies"), *st = NULL, *o;
	json_t *orders = json_object_get(payload, "orders");
	json_t *meta = json_object_get(payload, "meta");
	xmlNodePtr de;
	char now[32], created[32], start[32], stop[32], buf[512], inst[300];
	char pid5[300], pid7[40], pid8[20], size[32], srcpid[200];
	const char *info[3] = { pid5, pid7, pid8 };
	const char *refs[2 * 16 + 1];
	char refbuf[2 * 16 + 1][200];
	size_t nref = 0, i;

	json_array_foreach(studies, i,
	                   o) if (strcmp(jstr(o, "uid"), study) == 0) st = o;
	now_utc(now, sizeof(now));
	utc(jstr(doc, "effective_time"), created, sizeof(created));
	utc(jstr(st, "start"), start, sizeof(start));
	utc(jstr(st, "end"), stop, sizeof(stop));
	xon(cfg, inst, sizeof(inst));
	submission_set(r, list, cfg, payload, ss_unique, patient_nh);
	/* the KOS */
	de = el(list, r->rim, "ExtrinsicObject", NULL);
	attr(de, "id", "KOS");
	attr(de, "mimeType", "application/dicom");
	attr(de, "objectType", "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1");
	snprintf(size, sizeof(size), "%zu", kos_len);
	slot1(r, de, "hash", kos_sha1);
	slot1(r, de, "size", size);
	slot1(r, de, "creationTime", created[0] ? created : now);
	slot1(r, de, "languageCode", "fr-FR");
	xcn(json_object_get(payload, "legal"), buf, sizeof(buf));
	slot1(r, de, "legalAuthenticator", buf);
	if (start[0])
		slot1(r, de, "serviceStartTime", start);
	if (stop[0])
		slot1(r, de, "serviceStopTime", stop);
	if (jstr(pat, "ipp")[0])
		snprintf(srcpid, sizeof(srcpid), "%s^^^&%s&ISO^PI",
		         jstr(pat, "ipp"), jstr(pat, "ipp_oid"));
	else
		snprintf(srcpid, sizeof(srcpid), "%s^^^&%s&ISO^PI",
		         jstr(pat, "ins"), jstr(pat, "ins_oid"));
	slot1(r, de, "sourcePatientId", srcpid);
	snprintf(pid5, sizeof(pid5), "PID-5|%s^%s^^^^^L", jstr(pat, "family"),
	         jstr(pat, "given"));
	snprintf(pid7, sizeof(pid7), "PID-7|%s", jstr(pat, "birth"));
	snprintf(pid8, sizeof(pid8), "PID-8|%s", jstr(pat, "sex"));
	slot(r, de, "sourcePatientInfo", info, 3);
	json_array_foreach(orders, i, o)
	{
		if (nref + 2 > 2 * 16)
			break;
		if (jstr(o, "accession")[0]) {
			snprintf(refbuf[nref], sizeof(refbuf[0]),
			         "%s^^^&%s&ISO^urn:ihe:iti:xds:2013:accession",
			         jstr(o, "accession"),
			         jstr(o, "accession_root"));
			refs[nref] = refbuf[nref];
			nref++;
		}
		if (jstr(o, "id")[0]) {
			snprintf(refbuf[nref], sizeof(refbuf[0]),
			         "%s^^^&%s&ISO^urn:ihe:iti:xds:2013:order",
			         jstr(o, "id"), jstr(o, "id_root"));
			refs[nref] = refbuf[nref];
			nref++;
		}
	}
	snprintf(refbuf[nref], sizeof(refbuf[0]),
	         "%s^^^^urn:ihe:iti:xds:2016:studyInstanceUID", study);
	refs[nref] = refbuf[nref];
	nref++;
	slot(r, de, "urn:ihe:iti:xds:2013:referenceIdList", refs, (int)nref);
	localized(r, de, "Name", "Reference d'Objets d'un Examen d'Imagerie");
	xcn(json_object_get(payload, "author"), buf, sizeof(buf));
	author(r, de, "KOS", "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d",
	       buf, inst);
	classify(r, de, "KOS", "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
	         "31", "1.2.250.1.213.1.1.4.1", "Imagerie medicale");
	classify(r, de, "KOS", "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",
	         "IMG-KOS", "1.2.250.1.213.1.1.4.12",
	         "Reference d'objets d'un examen d'imagerie");
	classify(r, de, "KOS", "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f",
	         jstr(json_object_get(doc, "confidentiality"), "code")[0]
	                 ? jstr(json_object_get(doc, "confidentiality"), "code")
	                 : "N",
	         "2.16.840.1.113883.5.25", NULL);
	/* the report's confidentiality flags, as the DMP's codes */
	static const char *const flags[] = { "MASQUE_PS", "INVISIBLE_PATIENT",
		                             "INVISIBLE_REP_LEGAUX" };
	for (i = 0; i < sizeof(flags) / sizeof(*flags); i++)
		if (strcmp(jstr(meta, flags[i]), "Y") == 0)
			classify(
			        r, de, "KOS",
			        "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f",
			        flags[i], "1.2.250.1.213.1.1.4.13", NULL);
	classify(r, de, "KOS", "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
	         KOS_CLASS, "1.2.840.10008.2.6.1", NULL);
	classify(r, de, "KOS", "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1",
	         cfg->dmp_facility_type, "1.2.250.1.71.4.2.4", NULL);
	classify(r, de, "KOS", "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead",
	         cfg->dmp_practice_setting, "1.2.250.1.213.1.1.4.9", NULL);
	if (jstr(json_object_get(st, "modality"), "code")[0])
		classify(r, de, "KOS",
		         "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4",
		         jstr(json_object_get(st, "modality"), "code"),
		         "1.2.250.1.213.1.1.5.618", NULL);
	if (jstr(json_object_get(st, "region"), "code")[0])
		classify(r, de, "KOS",
		         "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4",
		         jstr(json_object_get(st, "region"), "code"),
		         "2.16.840.1.113883.6.96", NULL);
	member(r, list, de, "KOS", patient_nh, kos_sop, "as1");
}

/*
 * The document entry of the submission set's signature (Signature01), as
 * the ANS sample has it, and its associations: member of the set, signs
 * the set.
 */
static void signature_entry(struct req *r, xmlNodePtr list,
                            const struct config *cfg, json_t *payload,
                            const char *unique, const char *patient_nh,
                            size_t len, const char *sha1)
{
	xmlNodePtr de, as;
	char now[32], size[32], buf[512], inst[300];

	now_utc(now, sizeof(now));
	xon(cfg, inst, sizeof(inst));
	snprintf(size, sizeof(size), "%zu", len);
	de = el(list, r->rim, "ExtrinsicObject", NULL);
	attr(de, "id", "Signature01");
	attr(de, "mimeType", "text/xml");
	attr(de, "objectType", "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1");
	slot1(r, de, "hash", sha1);
	slot1(r, de, "size", size);
	slot1(r, de, "creationTime", now);
	slot1(r, de, "languageCode", "art");
	xcn(json_object_get(payload, "legal"), buf, sizeof(buf));
	slot1(r, de, "legalAuthenticator", buf);
	slot1(r, de, "serviceStartTime", now);
	slot1(r, de, "serviceStopTime", now);
	slot1(r, de, "sourcePatientId", patient_nh);
	localized(r, de, "Name", "Source");
	xcn(json_object_get(payload, "author"), buf, sizeof(buf));
	author(r, de, "Signature01",
	       "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d", buf, inst);
	classify(r, de, "Signature01",
	         "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
	         "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN",
	         "Digital Signature");
	classify(r, de, "Signature01",
	         "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983", "E1762",
	         "ASTM", "Full Document");
	classify(r, de, "Signature01",
	         "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f", "N",
	         "2.16.840.1.113883.5.25", NULL);
	classify(r, de, "Signature01",
	         "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
	         "http://www.w3.org/2000/09/xmldsig#", "URN",
	         "Default Signature Style");
	classify(r, de, "Signature01",
	         "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1",
	         cfg->dmp_facility_type, "1.2.250.1.71.4.2.4", NULL);
	classify(r, de, "Signature01",
	         "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead",
	         cfg->dmp_practice_setting, "1.2.250.1.213.1.1.4.9", NULL);
	classify(r, de, "Signature01",
	         "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4",
	         "1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12", "Source");
	member(r, list, de, "Signature01", patient_nh, unique, "as2");
	as = el(list, r->rim, "Association", NULL);
	attr(as, "associationType", "urn:ihe:iti:2007:AssociationType:signs");
	attr(as, "id", "as3");
	attr(as, "sourceObject", "Signature01");
	attr(as, "targetObject", "SubmissionSet01");
	slot1(r, as, "SubmissionSetStatus", "Original");
}

/* ---- sending --------------------------------------------------------- */

static size_t on_header(char *p, size_t sz, size_t n, void *ctx)
{
	char *ctype = ctx;
	size_t len = sz * n;

	if (len > 13 && strncasecmp(p, "Content-Type:", 13) == 0)
		snprintf(ctype, 512, "%.*s", (int)(len - 13), p + 13);
	return len;
}

/* The parts of an MTOM reply: [0] the root (the envelope), then the rest. */
#define PARTS_MAX 8
struct mtom {
	struct mtom_part {
		char cid[256];
		char *data;
		size_t len;
	} p[PARTS_MAX];
	size_t n;
	int overflow;
};

static void mtom_free(struct mtom *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->p[i].data);
	memset(m, 0, sizeof(*m));
}

static int on_part_begin(void *ctx, const char *headers)
{
	struct mtom *m = ctx;
	char id[256];

	if (m->n == PARTS_MAX)
		return m->overflow = 1;
	memset(&m->p[m->n], 0, sizeof(m->p[0]));
	if (mp_header(headers, "Content-ID", id, sizeof(id)) == 0)
		snprintf(m->p[m->n].cid, sizeof(m->p[0].cid), "%.*s",
		         (int)strcspn(id + (id[0] == '<'), ">"),
		         id + (id[0] == '<'));
	m->n++;
	return 0;
}

static int on_part_data(void *ctx, const char *p, size_t n)
{
	struct mtom *m = ctx;
	struct mtom_part *cur = &m->p[m->n - 1];
	char *nb = realloc(cur->data, cur->len + n + 1);

	if (nb == NULL)
		return 1;
	memcpy(nb + cur->len, p, n);
	cur->data = nb;
	cur->len += n;
	nb[cur->len] = '\0';
	return 0;
}

/*
 * Splits a multipart/related reply into m, the root part first (the one
 * the start parameter names, else the first). 0, or -1 when it is not a
 * well-formed multipart body.
 */
static int mtom_split(const char *ctype, const char *body, size_t len,
                      struct mtom *m)
{
	static const struct mp_callbacks cb = { on_part_begin, on_part_data,
		                                NULL };
	char boundary[128], start[256];
	struct mp_parser *mp;
	int rc;

	memset(m, 0, sizeof(*m));
	if (mp_param(ctype, "boundary", boundary, sizeof(boundary)) != 0)
		return -1;
	mp = mp_new(boundary, &cb, m);
	if (mp == NULL)
		return -1;
	rc = mp_feed(mp, body, len) == 0 && mp_complete(mp) && m->n > 0 ? 0
	                                                                : -1;
	mp_free(mp);
	if (rc == 0 && mp_param(ctype, "start", start, sizeof(start)) == 0) {
		const char *want = start + (start[0] == '<');
		size_t wlen = strcspn(want, ">");

		for (size_t i = 1; i < m->n; i++)
			if (strlen(m->p[i].cid) == wlen &&
			    strncmp(m->p[i].cid, want, wlen) == 0) {
				struct mtom_part t = m->p[0];

				m->p[0] = m->p[i];
				m->p[i] = t;
				break;
			}
	}
	if (rc != 0)
		mtom_free(m);
	return rc;
}

/* Whether text names uid as a whole (not a longer UID starting so). */
static int names_uid(const char *text, const char *uid)
{
	size_t n = strlen(uid);

	for (const char *p = strstr(text, uid); p; p = strstr(p + 1, uid)) {
		char before = p > text ? p[-1] : ' ', after = p[n];

		if (!(before == '.' || (before >= '0' && before <= '9')) &&
		    !(after == '.' || (after >= '0' && after <= '9')))
			return 1;
	}
	return 0;
}

/*
 * What the DMP's reply (doc, NULL when it was not SOAP) says; err filled
 * when not DMP_OK. unique: our manifest's unique id, if one was sent.
 */
static enum dmp_outcome judge(xmlDocPtr doc, long http, const char *unique,
                              char *err, size_t errlen)
{
	xmlXPathContextPtr x = doc ? xmlXPathNewContext(doc) : NULL;
	xmlXPathObjectPtr r = NULL;
	enum dmp_outcome out = DMP_RETRY;
	xmlChar *v = NULL;

	if (x == NULL) {
		snprintf(err, errlen, "HTTP %ld, the reply is not SOAP", http);
		return DMP_RETRY;
	}
	xmlXPathRegisterNs(x, BAD_CAST "s", BAD_CAST NS_SOAP);
	xmlXPathRegisterNs(x, BAD_CAST "rs", BAD_CAST NS_RS);
	xmlXPathRegisterNs(x, BAD_CAST "q", BAD_CAST NS_QUERY);
	r = xmlXPathEvalExpression(BAD_CAST "//s:Fault", x);
	if (r && r->nodesetval && r->nodesetval->nodeNr > 0) {
		xmlXPathFreeObject(r);
		r = xmlXPathEvalExpression(
		        BAD_CAST "string(//s:Fault/s:Code/s:Value)", x);
		/* the sender's fault will not go away by itself */
		out = r && r->stringval &&
		                      strstr((char *)r->stringval, "Sender")
		              ? DMP_PERMANENT
		              : DMP_RETRY;
		xmlXPathFreeObject(r);
		r = xmlXPathEvalExpression(BAD_CAST "string(//s:Reason)", x);
		snprintf(err, errlen, "SOAP fault (HTTP %ld): %s", http,
		         r && r->stringval ? (char *)r->stringval : "?");
		goto done;
	}
	xmlXPathFreeObject(r);
	r = xmlXPathEvalExpression(BAD_CAST "string((//rs:RegistryResponse|"
	                                    "//q:AdhocQueryResponse)/@status)",
	                           x);
	if (r && r->stringval &&
	    strstr((char *)r->stringval, ":Success") != NULL) {
		out = DMP_OK;
		goto done;
	}
	xmlXPathFreeObject(r);
	r = xmlXPathEvalExpression(BAD_CAST "string(//rs:RegistryError/"
	                                    "@errorCode)",
	                           x);
	v = xmlStrdup(r && r->stringval ? r->stringval : BAD_CAST "");
	xmlXPathFreeObject(r);
	r = xmlXPathEvalExpression(BAD_CAST "string(//rs:RegistryError/"
	                                    "@codeContext)",
	                           x);
	if (unique &&
	    strcmp((char *)v, "XDSDuplicateUniqueIdInRegistry") == 0 && r &&
	    r->stringval && names_uid((char *)r->stringval, unique)) {
		/* sent before, by an attempt that lost its reply */
		out = DMP_OK;
		goto done;
	}
	out = DMP_PERMANENT;
	snprintf(err, errlen, "the DMP refused it: %s: %s", (char *)v,
	         r && r->stringval ? (char *)r->stringval : "");
done:
	xmlFree(v);
	xmlXPathFreeObject(r);
	xmlXPathFreeContext(x);
	return out;
}

/*
 * Reads a reply as received (SOAP, or MTOM when ctype is
 * multipart/related) into *doc (NULL when it is not XML) and the MTOM
 * parts, and judges it.
 */
static enum dmp_outcome read_reply(const char *ctype, const char *body,
                                   size_t len, long http, const char *unique,
                                   xmlDocPtr *doc, struct mtom *parts,
                                   char *err, size_t errlen)
{
	const char *env = body;
	size_t n = len;

	if (strcasestr(ctype, "multipart/related") != NULL) {
		int ok = mtom_split(ctype, body, len, parts) == 0;

		env = ok ? parts->p[0].data : NULL;
		n = ok ? parts->p[0].len : 0;
	}
	*doc = env && n <= INT32_MAX
	               ? xmlReadMemory(env, (int)n, NULL, NULL,
	                               XML_PARSE_NONET | XML_PARSE_NOERROR |
	                                       XML_PARSE_NOWARNING)
	               : NULL;
	return judge(*doc, http, unique, err, errlen);
}

/* The TLS of every connection to the DMP (the DMP's own CA, our cert). */
static void tls_options(CURL *c, const struct config *cfg)
{
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (cfg->dmp_tls_cert[0]) {
		curl_easy_setopt(c, CURLOPT_SSLCERT, cfg->dmp_tls_cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY, cfg->dmp_tls_key);
	}
	if (cfg->dmp_tls_ca[0])
		curl_easy_setopt(c, CURLOPT_CAINFO, cfg->dmp_tls_ca);
}

int dmp_ping(const struct config *cfg, long timeout, char *err, size_t errlen)
{
	CURL *c = curl_easy_init();
	CURLcode rc;

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	curl_easy_setopt(c, CURLOPT_URL, cfg->dmp_url);
	curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, timeout);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout);
	tls_options(c, cfg);
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK)
		snprintf(err, errlen, "%s: %s", cfg->dmp_url,
		         curl_easy_strerror(rc));
	curl_easy_cleanup(c);
	return rc == CURLE_OK ? 0 : -1;
}

/*
 * POSTs a request to a service; the outcome, and with reply non-NULL the
 * parsed reply (the caller frees it).
 */
static enum dmp_outcome post(const struct config *cfg, const char *service,
                             const char *ctype, const char *body, size_t len,
                             const char *unique, xmlDocPtr *reply_doc,
                             struct mtom *att, char *err, size_t errlen)
{
	struct mtom parts = { 0 };
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	struct curlbuf reply = { NULL, 0, MAX_RESPONSE, 0 };
	char url[512], header[700], reply_type[512] = "";
	enum dmp_outcome out = DMP_RETRY;
	xmlDocPtr doc = NULL;
	long http = 0;
	CURLcode rc;

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return DMP_RETRY;
	}
	snprintf(url, sizeof(url), "%s/%s", cfg->dmp_url, service);
	snprintf(header, sizeof(header), "Content-Type: %s", ctype);
	h = curl_slist_append(h, header);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curlbuf_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, (void *)reply_type);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, cfg->dmp_timeout);
	tls_options(c, cfg);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s", url, curl_easy_strerror(rc));
	} else if (reply.too_big || reply.p == NULL) {
		snprintf(err, errlen, "%s: HTTP %ld, %s", url, http,
		         reply.too_big ? "reply too large" : "empty reply");
	} else {
		out = read_reply(reply_type, reply.p, reply.len, http, unique,
		                 &doc, &parts, err, errlen);
	}
	if (reply_doc != NULL && out == DMP_OK)
		*reply_doc = doc;
	else
		xmlFreeDoc(doc);
	if (att != NULL && out == DMP_OK)
		*att = parts;
	else
		mtom_free(&parts);
	free(reply.p);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return out;
}

/*
 * A request: envelope, WS-Addressing header and the VIHF (signed by
 * finish()); returns the Body to fill.
 */
static xmlNodePtr begin(struct req *r, const struct config *cfg,
                        json_t *payload, const char *service,
                        const char *action, const char *patient_nh)
{
	xmlNodePtr env, header, sec;
	char msgid[64], to[512];

	r->payload = payload;
	r->doc = xmlNewDoc(BAD_CAST "1.0");
	env = xmlNewNode(NULL, BAD_CAST "Envelope");
	xmlDocSetRootElement(r->doc, env);
	r->soap = xmlNewNs(env, BAD_CAST NS_SOAP, BAD_CAST "soap");
	r->wsa = xmlNewNs(env, BAD_CAST NS_WSA, BAD_CAST "wsa");
	r->wsse = xmlNewNs(env, BAD_CAST NS_WSSE, BAD_CAST "wsse");
	r->saml = xmlNewNs(env, BAD_CAST NS_SAML, BAD_CAST "saml2");
	r->rim = xmlNewNs(env, BAD_CAST NS_RIM, BAD_CAST "rim");
	r->lcm = xmlNewNs(env, BAD_CAST NS_LCM, BAD_CAST "lcm");
	r->xds = xmlNewNs(env, BAD_CAST NS_XDS, BAD_CAST "xds");
	r->xop = xmlNewNs(env, BAD_CAST NS_XOP, BAD_CAST "xop");
	r->query = xmlNewNs(env, BAD_CAST NS_QUERY, BAD_CAST "query");
	xmlSetNs(env, r->soap);
	header = el(env, r->soap, "Header", NULL);
	new_uuid(msgid, sizeof(msgid));
	el(header, r->wsa, "MessageID", msgid);
	snprintf(to, sizeof(to), "%s/%s", cfg->dmp_url, service);
	el(header, r->wsa, "To", to);
	attr(el(header, r->wsa, "Action", action), "soap:mustUnderstand",
	     "true");
	sec = el(header, r->wsse, "Security", NULL);
	r->assertion = vihf(r, sec, cfg, payload, patient_nh, r->assertion_id,
	                    sizeof(r->assertion_id));
	return el(env, r->soap, "Body", NULL);
}

/* The transaction of a SOAP action, as the DMP's guides name it. */
static const char *transaction(const char *action)
{
	return strcmp(action, ITI41) == 0   ? "ITI-41"
	       : strcmp(action, ITI18) == 0 ? "ITI-18"
	       : strcmp(action, ITI57) == 0 ? "ITI-57"
	       : strcmp(action, ITI43) == 0 ? "ITI-43"
	       : strcmp(action, TD02) == 0  ? "TD0.2"
	       : strcmp(action, TD03) == 0  ? "TD0.3"
	                                    : action;
}

/* A request to the DMP, its outcome and why, in the audit trail. */
static void audit_call(const struct req *r, const char *action,
                       enum dmp_outcome out, const char *err)
{
	char detail[400];

	snprintf(detail, sizeof(detail), "%s%s%.300s", transaction(action),
	         out == DMP_OK ? "" : ": ", out == DMP_OK ? "" : err);
	metrics_dmp(transaction(action), out == DMP_OK          ? "ok"
	                                 : out == DMP_PERMANENT ? "refused"
	                                                        : "failed");
	audit(&(struct audit_event){
	        jstr(json_object_get(r->payload, "author"), "id"), "dmp",
	        jstr(r->payload, "study"), NULL, "dmp",
	        out == DMP_OK          ? "ok"
	        : out == DMP_PERMANENT ? "refused"
	                               : "failed",
	        jstr(r->payload, "call"), detail });
}

/*
 * Signs the VIHF, sends the request as plain SOAP (or as MTOM with the KOS
 * when kos is not NULL) and frees it.
 */
/* An MTOM attachment. */
struct part {
	const char *cid, *mime;
	const unsigned char *data;
	size_t len;
};

static enum dmp_outcome finish(struct req *r, const struct config *cfg,
                               const char *service, const char *action,
                               const struct part *parts, size_t nparts,
                               const char *unique, xmlDocPtr *reply,
                               struct mtom *att, char *err, size_t errlen)
{
	enum dmp_outcome out = DMP_RETRY;
	xmlChar *xml = NULL;
	char ctype[400], boundary[64], *mtom = NULL;
	int xml_len = 0;

	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (sign(r, r->assertion, r->assertion_id, cfg, err, errlen) != 0) {
		out = DMP_PERMANENT;
		goto done;
	}
	r->sign_s = seconds_since(&t0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	xmlDocDumpMemoryEnc(r->doc, &xml, &xml_len, "UTF-8");
	if (xml == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	if (nparts == 0) {
		snprintf(ctype, sizeof(ctype),
		         "application/soap+xml; charset=UTF-8; action=\"%s\"",
		         action);
		out = post(cfg, service, ctype, (char *)xml, (size_t)xml_len,
		           unique, reply, att, err, errlen);
		goto done;
	}
	new_uuid(boundary, sizeof(boundary));
	memmove(boundary, boundary + 9, strlen(boundary + 9) + 1);
	size_t cap = (size_t)xml_len + 1024, at;

	for (size_t i = 0; i < nparts; i++)
		cap += parts[i].len + 512;

	mtom = malloc(cap);
	if (mtom == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	at = (size_t)snprintf(mtom, cap,
	                      "--%s\r\nContent-Type: application/xop+xml; "
	                      "charset=UTF-8; type=\"application/soap+xml\"\r\n"
	                      "Content-Transfer-Encoding: binary\r\n"
	                      "Content-ID: <root@drimbox>\r\n\r\n",
	                      boundary);
	memcpy(mtom + at, xml, (size_t)xml_len);
	at += (size_t)xml_len;
	for (size_t i = 0; i < nparts; i++) {
		at += (size_t)snprintf(mtom + at, cap - at,
		                       "\r\n--%s\r\nContent-Type: %s\r\n"
		                       "Content-Transfer-Encoding: binary\r\n"
		                       "Content-ID: <%s>\r\n\r\n",
		                       boundary, parts[i].mime, parts[i].cid);
		memcpy(mtom + at, parts[i].data, parts[i].len);
		at += parts[i].len;
	}
	at += (size_t)snprintf(mtom + at, cap - at, "\r\n--%s--\r\n", boundary);
	snprintf(ctype, sizeof(ctype),
	         "multipart/related; type=\"application/xop+xml\"; "
	         "boundary=\"%s\"; start=\"<root@drimbox>\"; "
	         "start-info=\"application/soap+xml\"; action=\"%s\"",
	         boundary, action);
	out = post(cfg, service, ctype, mtom, at, unique, reply, att, err,
	           errlen);
done:
	r->send_s = seconds_since(&t0);
	audit_call(r, action, out, err);
	free(mtom);
	xmlFree(xml);
	xmlFreeDoc(r->doc);
	r->doc = NULL;
	return out;
}

static void patient_nh_of(json_t *payload, char *out, size_t cap)
{
	json_t *pat = json_object_get(payload, "patient");

	snprintf(out, cap, "%s^^^&%s&ISO^NH", jstr(pat, "ins"),
	         jstr(pat, "ins_oid"));
}

/*
 * An ITI-18 stored query with the given parameters; entries (up to max)
 * get the value of xpath (an attribute) for each node of the reply it
 * selects.
 */
static enum dmp_outcome stored_query(const struct config *cfg, json_t *payload,
                                     const char *query_id,
                                     const char *const (*slots)[2],
                                     size_t nslots, const char *xpath,
                                     char (*entries)[80], size_t max, size_t *n,
                                     char *err, size_t errlen)
{
	struct req r = { 0 };
	char nh[200];
	xmlNodePtr body, req, query;
	xmlDocPtr reply = NULL;
	enum dmp_outcome out;

	*n = 0;
	patient_nh_of(payload, nh, sizeof(nh));
	body = begin(&r, cfg, payload, "registry", ITI18, nh);
	req = el(body, r.query, "AdhocQueryRequest", NULL);
	query = el(req, r.query, "ResponseOption", NULL);
	attr(query, "returnType", "LeafClass");
	attr(query, "returnComposedObjects", "true");
	query = el(req, r.rim, "AdhocQuery", NULL);
	attr(query, "id", query_id);
	for (size_t i = 0; i < nslots; i++)
		slot1(&r, query, slots[i][0], slots[i][1]);
	out = finish(&r, cfg, "registry", ITI18, NULL, 0, NULL, &reply, NULL,
	             err, errlen);
	if (out == DMP_OK && reply != NULL) {
		xmlXPathContextPtr x = xmlXPathNewContext(reply);
		xmlXPathObjectPtr set = NULL;

		if (x != NULL) {
			xmlXPathRegisterNs(x, BAD_CAST "rim", BAD_CAST NS_RIM);
			set = xmlXPathEvalExpression(BAD_CAST xpath, x);
		}
		for (int i = 0; set && set->nodesetval &&
		                i < set->nodesetval->nodeNr && *n < max;
		     i++) {
			xmlChar *v =
			        xmlNodeGetContent(set->nodesetval->nodeTab[i]);

			snprintf(entries[(*n)++], 80, "%s", v ? (char *)v : "");
			xmlFree(v);
		}
		xmlXPathFreeObject(set);
		xmlXPathFreeContext(x);
	}
	xmlFreeDoc(reply);
	return out;
}

enum dmp_outcome dmp_find_manifests(const struct config *cfg, json_t *payload,
                                    const char *study_uid, char (*entries)[80],
                                    size_t max, size_t *n, char *err,
                                    size_t errlen)
{
	char nh[200], q1[260], q2[200];
	const char *const slots[][2] = {
		{ "$XDSDocumentEntryPatientId", q1 },
		{ "$XDSDocumentEntryReferenceIdList", q2 },
		{ "$XDSDocumentEntryStatus",
		  "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')" },
	};

	patient_nh_of(payload, nh, sizeof(nh));
	snprintf(q1, sizeof(q1), "'%s'", nh);
	snprintf(q2, sizeof(q2),
	         "('%s^^^^urn:ihe:iti:xds:2016:studyInstanceUID')", study_uid);
	/* the KOS manifests (typeCode IMG-KOS) */
	return stored_query(cfg, payload, FIND_BY_REFERENCE, slots, 3,
	                    "//rim:ExtrinsicObject[rim:Classification"
	                    "[@nodeRepresentation='IMG-KOS']]/@id",
	                    entries, max, n, err, errlen);
}

enum dmp_outcome dmp_registered(const struct config *cfg, json_t *payload,
                                const char *unique, int *found, char *err,
                                size_t errlen)
{
	char q1[120], entry[1][80];
	const char *const slots[][2] = { { "$XDSDocumentEntryUniqueId", q1 } };
	size_t n = 0;
	enum dmp_outcome out;

	snprintf(q1, sizeof(q1), "('%s')", unique);
	out = stored_query(cfg, payload, GET_DOCUMENTS, slots, 1,
	                   "//rim:ExtrinsicObject/@id", entry, 1, &n, err,
	                   errlen);
	*found = n > 0;
	return out;
}

enum dmp_outcome dmp_publish(const struct config *cfg, json_t *payload,
                             const char *study_uid, const char *kos_path,
                             const char *kos_sop, const char *ss_unique,
                             const char *replaces, struct dmp_timing *timing,
                             char *err, size_t errlen)
{
	struct req r = { 0 };
	xmlNodePtr body, prov, list, docn, as;
	unsigned char *kos = NULL;
	char nh[200], sha1[41], sig_sha1[41], sig_unique[128], *sig = NULL;
	size_t kos_len = 0, sig_len = 0;
	enum dmp_outcome out;
	struct part parts[2];

	kos = (unsigned char *)fs_read_file(kos_path, 64u << 20, &kos_len);
	if (kos == NULL || sha1_hex(kos, kos_len, sha1) != 0) {
		snprintf(err, errlen, "%s: cannot read the manifest", kos_path);
		free(kos);
		return DMP_PERMANENT;
	}
	/* the submission set's signature: a document of its own */
	snprintf(sig_unique, sizeof(sig_unique), "%s.9", ss_unique);
	if (dsg_signature(cfg, ss_unique, kos_sop, kos, kos_len, &sig, &sig_len,
	                  err, errlen) != 0 ||
	    sha1_hex((unsigned char *)sig, sig_len, sig_sha1) != 0) {
		free(kos);
		free(sig);
		return DMP_PERMANENT;
	}
	patient_nh_of(payload, nh, sizeof(nh));
	body = begin(&r, cfg, payload, "repository", ITI41, nh);
	prov = el(body, r.xds, "ProvideAndRegisterDocumentSetRequest", NULL);
	list = el(el(prov, r.lcm, "SubmitObjectsRequest", NULL), r.rim,
	          "RegistryObjectList", NULL);
	metadata(&r, list, cfg, payload, study_uid, kos_sop, ss_unique, nh,
	         kos_len, sha1);
	if (replaces != NULL) { /* the new manifest replaces the old one */
		as = el(list, r.rim, "Association", NULL);
		attr(as, "associationType",
		     "urn:ihe:iti:2007:AssociationType:RPLC");
		attr(as, "id", "rplc1");
		attr(as, "sourceObject", "KOS");
		attr(as, "targetObject", replaces);
	}
	signature_entry(&r, list, cfg, payload, sig_unique, nh, sig_len,
	                sig_sha1);
	docn = el(prov, r.xds, "Document", NULL);
	attr(docn, "id", "KOS");
	attr(el(docn, r.xop, "Include", NULL), "href", "cid:" KOS_CID);
	docn = el(prov, r.xds, "Document", NULL);
	attr(docn, "id", "Signature01");
	attr(el(docn, r.xop, "Include", NULL), "href", "cid:" SIG_CID);
	parts[0] = (struct part){ KOS_CID, "application/dicom", kos, kos_len };
	parts[1] = (struct part){ SIG_CID, "text/xml", (unsigned char *)sig,
		                  sig_len };
	out = finish(&r, cfg, "repository", ITI41, parts, 2, kos_sop, NULL,
	             NULL, err, errlen);
	if (timing != NULL)
		*timing = (struct dmp_timing){ r.sign_s, r.send_s };
	log_info(LOGC_DMP, "ITI-41 study=%s kos=%s%s%s -> %s%s%s", study_uid,
	         kos_sop, replaces ? " replacing " : "",
	         replaces ? replaces : "",
	         out == DMP_OK      ? "registered"
	         : out == DMP_RETRY ? "to retry"
	                            : "refused",
	         out == DMP_OK ? "" : ": ", out == DMP_OK ? "" : err);
	free(kos);
	free(sig);
	return out;
}

enum dmp_outcome dmp_delete(const struct config *cfg, json_t *payload,
                            const char *entry, const char *ss_unique, char *err,
                            size_t errlen)
{
	struct req r = { 0 };
	xmlNodePtr body, list, as;
	char nh[200];
	enum dmp_outcome out;

	patient_nh_of(payload, nh, sizeof(nh));
	body = begin(&r, cfg, payload, "registry", ITI57, nh);
	list = el(el(body, r.lcm, "SubmitObjectsRequest", NULL), r.rim,
	          "RegistryObjectList", NULL);
	submission_set(&r, list, cfg, payload, ss_unique, nh);
	as = el(list, r.rim, "Association", NULL);
	attr(as, "associationType",
	     "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus");
	attr(as, "id", "upd1");
	attr(as, "sourceObject", "SubmissionSet01");
	attr(as, "targetObject", entry);
	slot1(&r, as, "OriginalStatus",
	      "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved");
	slot1(&r, as, "NewStatus", "urn:asip:ci-sis:2010:StatusType:Deleted");
	out = finish(&r, cfg, "registry", ITI57, NULL, 0, NULL, NULL, NULL, err,
	             errlen);
	log_info(LOGC_DMP, "ITI-57 delete %s -> %s%s%s", entry,
	         out == DMP_OK      ? "deleted"
	         : out == DMP_RETRY ? "to retry"
	                            : "refused",
	         out == DMP_OK ? "" : ": ", out == DMP_OK ? "" : err);
	return out;
}

/* ---- the consumer: TD0.2, TD0.3, TD3.1 (ITI-18), TD3.2 (ITI-43) -------- */

/* The first child element of n named name (any namespace), or NULL. */
static xmlNodePtr child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE &&
		    xmlStrcmp(c->name, BAD_CAST name) == 0)
			return c;
	return NULL;
}

/* An attribute as a JSON string (empty when absent). */
static json_t *jattr(xmlNodePtr n, const char *name)
{
	xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;
	json_t *s = json_string(v ? (char *)v : "");

	xmlFree(v);
	return s ? s : json_string("");
}

/* The values of the Slot name of object obj, as a JSON array. */
static json_t *slot_values(xmlNodePtr obj, const char *name)
{
	json_t *out = json_array();

	for (xmlNodePtr c = obj->children; c; c = c->next) {
		xmlChar *n;
		int match;

		if (c->type != XML_ELEMENT_NODE ||
		    xmlStrcmp(c->name, BAD_CAST "Slot") != 0)
			continue;
		n = xmlGetProp(c, BAD_CAST "name");
		match = n && strcmp((char *)n, name) == 0;
		xmlFree(n);
		if (!match)
			continue;
		for (xmlNodePtr v = child(child(c, "ValueList"), "Value"); v;
		     v = v->next) {
			xmlChar *t;

			if (v->type != XML_ELEMENT_NODE)
				continue;
			t = xmlNodeGetContent(v);
			json_array_append_new(out,
			                      json_string(t ? (char *)t : ""));
			xmlFree(t);
		}
	}
	return out;
}

static json_t *first_value(xmlNodePtr obj, const char *name)
{
	json_t *all = slot_values(obj, name);
	json_t *v = json_incref(json_array_get(all, 0));

	json_decref(all);
	return v ? v : json_string("");
}

/* The Name's LocalizedString value of an object or a classification. */
static json_t *name_of(xmlNodePtr n)
{
	return jattr(child(child(n, "Name"), "LocalizedString"), "value");
}

/* A document entry (ExtrinsicObject) of a query reply, as JSON. */
static json_t *entry_json(xmlNodePtr eo)
{
	json_t *e = json_object(), *events = json_array();
	json_t *inst = NULL;

	json_object_set_new(e, "entry", jattr(eo, "id"));
	json_object_set_new(e, "mime", jattr(eo, "mimeType"));
	json_object_set_new(e, "status", jattr(eo, "status"));
	json_object_set_new(e, "title", name_of(eo));
	json_object_set_new(e, "repository",
	                    first_value(eo, "repositoryUniqueId"));
	json_object_set_new(e, "creation", first_value(eo, "creationTime"));
	json_object_set_new(e, "service_start",
	                    first_value(eo, "serviceStartTime"));
	json_object_set_new(e, "references",
	                    slot_values(eo, "urn:ihe:iti:xds:2013:"
	                                    "referenceIdList"));
	for (xmlNodePtr c = eo->children; c; c = c->next) {
		xmlChar *scheme;

		if (c->type != XML_ELEMENT_NODE)
			continue;
		scheme = xmlGetProp(c, BAD_CAST "classificationScheme");
		if (scheme == NULL)
			scheme = xmlGetProp(c, BAD_CAST "identificationScheme");
		if (scheme == NULL)
			continue;
		if (strcmp((char *)scheme, "urn:uuid:2e82c1f6-a085-4c72-9da3-"
		                           "8640a32e42ab") == 0)
			json_object_set_new(e, "unique", jattr(c, "value"));
		else if (strcmp((char *)scheme, "urn:uuid:f0306f51-975f-434e-"
		                                "a61c-c59651d33983") == 0)
			json_object_set_new(e, "type",
			                    jattr(c, "nodeRepresentation"));
		else if (strcmp((char *)scheme, "urn:uuid:2c6b8cb7-8b2a-4051-"
		                                "b291-b1ae6a575ef4") == 0) {
			json_t *ev = json_object();

			json_object_set_new(ev, "code",
			                    jattr(c, "nodeRepresentation"));
			json_object_set_new(ev, "scheme",
			                    first_value(c, "codingScheme"));
			json_object_set_new(ev, "display", name_of(c));
			json_array_append_new(events, ev);
		} else if (strcmp((char *)scheme,
		                  "urn:uuid:93606bcf-9494-43ec-9b4e-"
		                  "a7748d1a838d") == 0 &&
		           inst == NULL) {
			inst = first_value(c, "authorInstitution");
		}
		xmlFree(scheme);
	}
	json_object_set_new(e, "events", events);
	json_object_set_new(e, "institution", inst ? inst : json_string(""));
	return e;
}

/* The document entries of an ITI-18 reply, as JSON. */
static json_t *documents_of(xmlDocPtr reply)
{
	xmlXPathContextPtr x = xmlXPathNewContext(reply);
	xmlXPathObjectPtr set = NULL;
	json_t *docs = json_array();

	if (x != NULL) {
		xmlXPathRegisterNs(x, BAD_CAST "rim", BAD_CAST NS_RIM);
		set = xmlXPathEvalExpression(BAD_CAST "//rim:ExtrinsicObject",
		                             x);
	}
	for (int i = 0; set && set->nodesetval && i < set->nodesetval->nodeNr;
	     i++)
		json_array_append_new(docs,
		                      entry_json(set->nodesetval->nodeTab[i]));
	xmlXPathFreeObject(set);
	xmlXPathFreeContext(x);
	return docs;
}

enum dmp_outcome dmp_read_reply(const char *ctype, const char *body, size_t len,
                                long http, json_t **docs, char *err,
                                size_t errlen)
{
	struct mtom parts = { 0 };
	xmlDocPtr doc = NULL;
	enum dmp_outcome out = read_reply(ctype, body, len, http, NULL, &doc,
	                                  &parts, err, errlen);

	*docs = out == DMP_OK ? documents_of(doc) : NULL;
	xmlFreeDoc(doc);
	mtom_free(&parts);
	return out;
}

enum dmp_outcome dmp_find_documents(const struct config *cfg, json_t *who,
                                    const char *reference, json_t **docs,
                                    char *err, size_t errlen)
{
	struct req r = { 0 };
	char nh[200], q1[260], q2[300];
	xmlNodePtr body, req, query;
	xmlDocPtr reply = NULL;
	enum dmp_outcome out;

	*docs = NULL;
	patient_nh_of(who, nh, sizeof(nh));
	snprintf(q1, sizeof(q1), "'%s'", nh);
	body = begin(&r, cfg, who, "registry", ITI18, nh);
	req = el(body, r.query, "AdhocQueryRequest", NULL);
	query = el(req, r.query, "ResponseOption", NULL);
	attr(query, "returnType", "LeafClass");
	attr(query, "returnComposedObjects", "true");
	query = el(req, r.rim, "AdhocQuery", NULL);
	attr(query, "id", reference ? FIND_BY_REFERENCE : FIND_DOCUMENTS);
	slot1(&r, query, "$XDSDocumentEntryPatientId", q1);
	slot1(&r, query, "$XDSDocumentEntryStatus",
	      "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')");
	if (reference != NULL) {
		snprintf(q2, sizeof(q2), "('%s')", reference);
		slot1(&r, query, "$XDSDocumentEntryReferenceIdList", q2);
	} else {
		slot1(&r, query, "$XDSDocumentEntryTypeCode",
		      "('IMG-KOS^^1.2.250.1.213.1.1.4.12',"
		      "'18748-4^^2.16.840.1.113883.6.1')");
	}
	out = finish(&r, cfg, "registry", ITI18, NULL, 0, NULL, &reply, NULL,
	             err, errlen);
	if (out == DMP_OK)
		*docs = documents_of(reply);
	xmlFreeDoc(reply);
	log_info(LOGC_DMP, "ITI-18 FindDocuments%s%s -> %s%s%s (%zu documents)",
	         reference ? "ByReferenceId " : "", reference ? reference : "",
	         out == DMP_OK ? "ok" : "failed", out == DMP_OK ? "" : ": ",
	         out == DMP_OK ? "" : err, json_array_size(*docs));
	return out;
}

enum dmp_outcome dmp_retrieve_document(const struct config *cfg, json_t *who,
                                       const char *repository,
                                       const char *unique, char **data,
                                       size_t *len, char *err, size_t errlen)
{
	struct req r = { 0 };
	struct mtom att = { { { "", NULL, 0 } }, 0, 0 };
	xmlNodePtr body, dr;
	xmlDocPtr reply = NULL;
	xmlChar *href = NULL;
	char nh[200];
	enum dmp_outcome out;

	*data = NULL;
	*len = 0;
	patient_nh_of(who, nh, sizeof(nh));
	body = begin(&r, cfg, who, "repository", ITI43, nh);
	dr = el(el(body, r.xds, "RetrieveDocumentSetRequest", NULL), r.xds,
	        "DocumentRequest", NULL);
	el(dr, r.xds, "RepositoryUniqueId", repository);
	el(dr, r.xds, "DocumentUniqueId", unique);
	out = finish(&r, cfg, "repository", ITI43, NULL, 0, NULL, &reply, &att,
	             err, errlen);
	if (out == DMP_OK) {
		xmlXPathContextPtr x = xmlXPathNewContext(reply);
		xmlXPathObjectPtr inc = NULL;

		if (x != NULL) {
			xmlXPathRegisterNs(x, BAD_CAST "xds", BAD_CAST NS_XDS);
			xmlXPathRegisterNs(x, BAD_CAST "xop", BAD_CAST NS_XOP);
			inc = xmlXPathEvalExpression(
			        BAD_CAST "string(//xds:DocumentResponse/"
			                 "xds:Document/xop:Include/@href)",
			        x);
		}
		href = inc && inc->stringval ? xmlStrdup(inc->stringval) : NULL;
		xmlXPathFreeObject(inc);
		xmlXPathFreeContext(x);
		/* the document is the attachment the Include names */
		for (size_t i = 1; href && i < att.n; i++)
			if (strncmp((char *)href, "cid:", 4) == 0 &&
			    strcmp((char *)href + 4, att.p[i].cid) == 0) {
				*data = att.p[i].data;
				*len = att.p[i].len;
				att.p[i].data = NULL;
			}
		if (*data == NULL) {
			snprintf(err, errlen,
			         "the DMP's reply carries no document %s",
			         unique);
			out = DMP_PERMANENT;
		}
	}
	xmlFree(href);
	mtom_free(&att);
	xmlFreeDoc(reply);
	log_info(LOGC_DMP, "ITI-43 %s -> %s%s%s (%zu bytes)", unique,
	         out == DMP_OK ? "ok" : "failed", out == DMP_OK ? "" : ": ",
	         out == DMP_OK ? "" : err, *len);
	return out;
}

/* An HL7 v3 element in the request's default namespace. */
static xmlNodePtr v3(xmlNodePtr parent, const char *name, const char *k1,
                     const char *v1, const char *k2, const char *v2)
{
	xmlNodePtr n = xmlNewChild(parent, parent->ns, BAD_CAST name, NULL);

	if (k1)
		attr(n, k1, v1);
	if (k2)
		attr(n, k2, v2);
	return n;
}

enum dmp_outcome dmp_patient_check(const struct config *cfg, json_t *who,
                                   char *err, size_t errlen)
{
	json_t *pat = json_object_get(who, "patient");
	struct req r = { 0 };
	xmlNodePtr body, m, q, pid;
	char nh[200], id[64], now[32];
	enum dmp_outcome out;

	patient_nh_of(who, nh, sizeof(nh));
	body = begin(&r, cfg, who, "patients", TD02, nh);
	m = xmlNewChild(body, NULL, BAD_CAST "PRPA_IN201307UV02", NULL);
	xmlSetNs(m, xmlNewNs(m, BAD_CAST NS_HL7, NULL));
	attr(m, "ITSVersion", "XML_1.0");
	new_uuid(id, sizeof(id));
	now_utc(now, sizeof(now));
	v3(m, "id", "root", id + 9, NULL, NULL);
	v3(m, "creationTime", "value", now, NULL, NULL);
	v3(m, "interactionId", "root", "2.16.840.1.113883.1.6", "extension",
	   "PRPA_IN201307UV02");
	v3(m, "processingCode", "code", "P", NULL, NULL);
	v3(m, "processingModeCode", "code", "T", NULL, NULL);
	v3(m, "acceptAckCode", "code", "AL", NULL, NULL);
	v3(v3(v3(m, "receiver", "typeCode", "RCV", NULL, NULL), "device",
	      "classCode", "DEV", "determinerCode", "INSTANCE"),
	   "id", "root", "1.2.250.1.213.4.1.4.1", NULL, NULL);
	v3(v3(v3(m, "sender", "typeCode", "SND", NULL, NULL), "device",
	      "classCode", "DEV", "determinerCode", "INSTANCE"),
	   "id", "root", cfg->dmp_lps_id, NULL, NULL);
	q = v3(v3(m, "controlActProcess", "classCode", "CACT", "moodCode",
	          "EVN"),
	       "queryByParameter", NULL, NULL, NULL, NULL);
	v3(q, "queryId", "root", id + 9, NULL, NULL);
	v3(q, "statusCode", "code", "new", NULL, NULL);
	v3(q, "responsePriorityCode", "code", "I", NULL, NULL);
	pid = v3(v3(q, "parameterList", NULL, NULL, NULL, NULL),
	         "patientIdentifier", NULL, NULL, NULL, NULL);
	v3(pid, "value", "root", jstr(pat, "ins_oid"), "extension",
	   jstr(pat, "ins"));
	xmlNewTextChild(pid, pid->ns, BAD_CAST "semanticsText",
	                BAD_CAST "Patient.id");
	out = finish(&r, cfg, "patients", TD02, NULL, 0, NULL, NULL, NULL, err,
	             errlen);
	log_info(LOGC_DMP, "TD0.2 patient %s -> %s%s%s", nh,
	         out == DMP_OK ? "ok" : "failed", out == DMP_OK ? "" : ": ",
	         out == DMP_OK ? "" : err);
	return out;
}

enum dmp_outcome dmp_authorize(const struct config *cfg, json_t *who, char *err,
                               size_t errlen)
{
	json_t *pat = json_object_get(who, "patient");
	struct req r = { 0 };
	xmlNodePtr body, a;
	char nh[200];
	enum dmp_outcome out;

	patient_nh_of(who, nh, sizeof(nh));
	body = begin(&r, cfg, who, "habilitations", TD03, nh);
	a = xmlNewChild(body, NULL, BAD_CAST "setAuthorizationRequest", NULL);
	xmlSetNs(a, xmlNewNs(a, BAD_CAST NS_DMP, NULL));
	xmlNewTextChild(a, a->ns, BAD_CAST "ins", BAD_CAST jstr(pat, "ins"));
	xmlNewTextChild(a, a->ns, BAD_CAST "action", BAD_CAST "ADDITION");
	out = finish(&r, cfg, "habilitations", TD03, NULL, 0, NULL, NULL, NULL,
	             err, errlen);
	log_info(LOGC_DMP, "TD0.3 authorisation for %s -> %s%s%s", nh,
	         out == DMP_OK ? "ok" : "failed", out == DMP_OK ? "" : ": ",
	         out == DMP_OK ? "" : err);
	return out;
}
