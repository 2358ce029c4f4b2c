/*
 * auth.c - see auth.h. PSC's discovery document and keys are fetched when
 * first needed and kept; an unknown kid fetches the keys again (PSC
 * rotated them), but after a fetch that did not find it none is made for
 * JWKS_REFRESH seconds, so that forged kids cannot make us hammer PSC. A
 * sign-in under way is a "login" row in the index (its state's hash: the
 * PKCE verifier, the nonce, where to go back), a session a "user" row (its
 * cookie's hash: the professional and the tokens).
 */
#include "auth.h"
#include "audit.h"
#include "config.h"
#include "curlbuf.h"
#include "dicomweb.h"
#include "index.h"
#include "log.h"
#include "token.h"
#include "web.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COOKIE "drimbox_session"
#define LOGIN_COOKIE "drimbox_login" /* binds a sign-in to its browser */
#define LOGIN_SECONDS 600            /* a sign-in must come back within this */
#define JWKS_REFRESH 10     /* seconds without a fetch after a vain one */
#define KEYS_MAX 8          /* signing keys kept (PSC publishes 1 or 2) */
#define VERDICTS_MAX 256    /* Bearer tokens and sessions recently checked */
#define VERDICT_SECONDS 60  /* longest a Bearer verdict is kept */
#define SESSION_CACHED 10   /* seconds a session found is trusted as is */
#define LEEWAY 30           /* clock skew tolerated on exp, seconds */
#define REFRESH_BEFORE 30   /* refresh an access token this long before */
#define REPLY_MAX (1 << 20) /* largest answer read from PSC */

struct key {
	char kid[128];
	EVP_PKEY *pkey;
};

/*
 * Who a credential is, recently checked: a Bearer token's verdict or a
 * session found (the hash of the token or of the cookie), until when.
 */
struct verdict {
	char kind; /* 'B': a Bearer token, 'S': a session cookie */
	char hash[65];
	time_t until;
	struct auth_user user;
};

struct auth {
	const struct config *cfg;
	struct index *ix;
	pthread_mutex_t fetching;   /* one fetch of the keys at a time */
	pthread_mutex_t refreshing; /* one token refresh at a time */
	time_t keys_quiet_until;    /* no fetch before, under fetching */
	pthread_mutex_t lock;       /* guards what follows */
	json_t *discovery;          /* PSC's discovery document, once fetched */
	struct key keys[KEYS_MAX];
	size_t nkeys;
	struct verdict verdicts[VERDICTS_MAX];
	size_t next_verdict;
	unsigned long forgotten; /* sign-outs: a lookup they overtook is
	                          * not remembered */
};

/* ---- talking to PSC --------------------------------------------------- */

/*
 * GET url (form NULL) or POST form to it, the client authenticated when
 * client, with a Bearer when bearer. The JSON answer of a 2xx, else NULL
 * with err (*status the HTTP status, 0 when PSC was not reached).
 */
static json_t *psc_call(struct auth *a, const char *url, const char *form,
                        int client, const char *bearer, long *status, char *err,
                        size_t errlen)
{
	const struct config *cfg = a->cfg;
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	struct curlbuf r = { NULL, 0, REPLY_MAX, 0 };
	char header[AUTH_TOKEN_MAX + 32];
	json_t *out = NULL;
	json_error_t jerr;
	CURLcode rc;

	*status = 0;
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h = curl_slist_append(h, "Accept: application/json");
	if (bearer != NULL) {
		snprintf(header, sizeof(header), "Authorization: Bearer %s",
		         bearer);
		h = curl_slist_append(h, header);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	if (form != NULL)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
	if (client && cfg->psc_client_secret[0]) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, cfg->psc_client_id);
		curl_easy_setopt(c, CURLOPT_PASSWORD, cfg->psc_client_secret);
	}
	if (cfg->psc_tls_cert[0]) {
		curl_easy_setopt(c, CURLOPT_SSLCERT, cfg->psc_tls_cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY, cfg->psc_tls_key);
	}
	if (cfg->psc_tls_ca[0])
		curl_easy_setopt(c, CURLOPT_CAINFO, cfg->psc_tls_ca);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curlbuf_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, cfg->psc_timeout);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "PSC (%s): %s", url,
		         r.too_big ? "answer too large"
		                   : curl_easy_strerror(rc));
	} else if (*status < 200 || *status > 299) {
		json_t *e = r.p ? json_loads(r.p, 0, NULL) : NULL;
		const char *d = json_string_value(
		        json_object_get(e, "error_description"));
		const char *code =
		        json_string_value(json_object_get(e, "error"));

		snprintf(err, errlen, "PSC (%s): HTTP %ld%s%s%s%s", url,
		         *status, code ? ", " : "", code ? code : "",
		         d ? ": " : "", d ? d : "");
		json_decref(e);
	} else if ((out = json_loads(r.p ? r.p : "", 0, &jerr)) == NULL ||
	           !json_is_object(out)) {
		snprintf(err, errlen, "PSC (%s): not a JSON object: %s", url,
		         jerr.text);
		json_decref(out);
		out = NULL;
	}
	free(r.p);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return out;
}

static const char *jstr(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "";
}

/* An endpoint of the discovery document (fetched once), or NULL with err. */
static int endpoint(struct auth *a, const char *name, char *out, size_t cap,
                    char *err, size_t errlen)
{
	json_t *d;
	long status;
	char url[512];

	pthread_mutex_lock(&a->lock);
	d = json_incref(a->discovery);
	pthread_mutex_unlock(&a->lock);
	if (d == NULL) {
		snprintf(url, sizeof(url),
		         "%s/.well-known/wallet-openid-configuration",
		         a->cfg->psc_issuer);
		d = psc_call(a, url, NULL, 0, NULL, &status, err, errlen);
		if (d == NULL)
			return -1;
		if (strcmp(jstr(d, "issuer"), a->cfg->psc_issuer) != 0) {
			snprintf(err, errlen,
			         "PSC's discovery names issuer '%s', not "
			         "psc_issuer",
			         jstr(d, "issuer"));
			json_decref(d);
			return -1;
		}
		pthread_mutex_lock(&a->lock);
		if (a->discovery == NULL)
			a->discovery = json_incref(d);
		pthread_mutex_unlock(&a->lock);
	}
	snprintf(out, cap, "%s", jstr(d, name));
	json_decref(d);
	if (out[0] == '\0') {
		snprintf(err, errlen, "PSC's discovery names no %s", name);
		return -1;
	}
	return 0;
}

/* ---- JWT (RS256) ------------------------------------------------------ */

/* A JWK's RSA public key, or NULL. */
static EVP_PKEY *rsa_key(json_t *jwk)
{
	const char *n = jstr(jwk, "n"), *e = jstr(jwk, "e");
	unsigned char nb[1024], eb[16];
	long nl = b64url_decode(n, strlen(n), nb, sizeof(nb));
	long el = b64url_decode(e, strlen(e), eb, sizeof(eb));
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *bn = NULL, *be = NULL;

	if (strcmp(jstr(jwk, "kty"), "RSA") != 0 || nl < 256 || el < 1)
		return NULL;
	bn = BN_bin2bn(nb, (int)nl, NULL);
	be = BN_bin2bn(eb, (int)el, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn && be && bld &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) &&
	    (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) != NULL &&
	    EVP_PKEY_fromdata_init(ctx) == 1)
		EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	return pkey;
}

static int has_key(struct auth *a, const char *kid)
{
	int found = 0;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->nkeys && !found; i++)
		found = strcmp(a->keys[i].kid, kid) == 0;
	pthread_mutex_unlock(&a->lock);
	return found;
}

/*
 * Fetches PSC's keys again for an unknown kid, unless fetched within
 * JWKS_REFRESH s; one fetch at a time, the others waiting for it.
 */
static int refresh_keys(struct auth *a, const char *kid, char *err,
                        size_t errlen)
{
	char url[512];
	json_t *jwks, *k;
	long status;
	size_t i;
	time_t now = time(NULL);
	int rc = -1;

	pthread_mutex_lock(&a->fetching);
	if (has_key(a, kid)) { /* fetched while this thread waited */
		rc = 0;
		goto out;
	}
	if (now < a->keys_quiet_until) {
		snprintf(err, errlen, "unknown signing key");
		goto out;
	}
	if (endpoint(a, "jwks_uri", url, sizeof(url), err, errlen) != 0 ||
	    (jwks = psc_call(a, url, NULL, 0, NULL, &status, err, errlen)) ==
	            NULL) {
		a->keys_quiet_until = now + JWKS_REFRESH;
		goto out;
	}
	pthread_mutex_lock(&a->lock);
	for (i = 0; i < a->nkeys; i++)
		EVP_PKEY_free(a->keys[i].pkey);
	a->nkeys = 0;
	json_array_foreach(json_object_get(jwks, "keys"), i, k)
	{
		EVP_PKEY *p;

		if (a->nkeys == KEYS_MAX)
			break;
		if (strcmp(jstr(k, "use"), "enc") == 0 ||
		    strlen(jstr(k, "kid")) >= sizeof(a->keys[0].kid) ||
		    (p = rsa_key(k)) == NULL)
			continue;
		snprintf(a->keys[a->nkeys].kid, sizeof(a->keys[0].kid), "%s",
		         jstr(k, "kid"));
		a->keys[a->nkeys++].pkey = p;
	}
	pthread_mutex_unlock(&a->lock);
	json_decref(jwks);
	if (has_key(a, kid)) {
		rc = 0;
	} else { /* a forged kid: PSC is not asked again for a while */
		a->keys_quiet_until = now + JWKS_REFRESH;
		snprintf(err, errlen, "unknown signing key");
	}
out:
	pthread_mutex_unlock(&a->fetching);
	return rc;
}

/* 1 when sig verifies over data with the key kid, 0 not, -1 no such key. */
static int verify_with(struct auth *a, const char *kid, const char *data,
                       size_t len, const unsigned char *sig, size_t siglen)
{
	int rc = -1;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->nkeys; i++) {
		EVP_MD_CTX *md;

		if (strcmp(a->keys[i].kid, kid) != 0)
			continue;
		md = EVP_MD_CTX_new();
		rc = md &&
		     EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
		                          a->keys[i].pkey) == 1 &&
		     EVP_DigestVerify(md, sig, siglen,
		                      (const unsigned char *)data, len) == 1;
		EVP_MD_CTX_free(md);
		break;
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* A JSON segment of a JWT, decoded. */
static json_t *segment(const char *s, size_t len)
{
	unsigned char buf[AUTH_TOKEN_MAX];
	long n = b64url_decode(s, len, buf, sizeof(buf));

	return n < 0 ? NULL : json_loadb((const char *)buf, (size_t)n, 0, NULL);
}

/*
 * The claims of a PSC JWT whose RS256 signature, issuer, expiry and acr
 * hold (aud, when not NULL, must be among its audiences), or NULL with
 * why.
 */
static json_t *jwt_claims(struct auth *a, const char *jwt, const char *aud,
                          char *why, size_t whylen)
{
	const char *d1 = strchr(jwt, '.'),
	           *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	unsigned char sig[1024];
	long siglen;
	json_t *head = NULL, *claims = NULL, *au;
	char kid[128];
	int ok;
	json_int_t exp;

	if (strlen(jwt) >= AUTH_TOKEN_MAX || d1 == NULL || d2 == NULL ||
	    strchr(d2 + 1, '.') != NULL) {
		snprintf(why, whylen, "not a signed JWT");
		return NULL;
	}
	head = segment(jwt, (size_t)(d1 - jwt));
	claims = segment(d1 + 1, (size_t)(d2 - d1 - 1));
	siglen = b64url_decode(d2 + 1, strlen(d2 + 1), sig, sizeof(sig));
	if (!json_is_object(head) || !json_is_object(claims) || siglen <= 0) {
		snprintf(why, whylen, "not a signed JWT");
		goto bad;
	}
	if (strcmp(jstr(head, "alg"), "RS256") != 0) {
		snprintf(why, whylen, "token algorithm '%s', not RS256",
		         jstr(head, "alg"));
		goto bad;
	}
	snprintf(kid, sizeof(kid), "%s", jstr(head, "kid"));
	ok = verify_with(a, kid, jwt, (size_t)(d2 - jwt), sig, (size_t)siglen);
	if (ok < 0) {
		char err[300];

		if (refresh_keys(a, kid, err, sizeof(err)) != 0) {
			snprintf(why, whylen, "token key '%s': %s", kid, err);
			goto bad;
		}
		ok = verify_with(a, kid, jwt, (size_t)(d2 - jwt), sig,
		                 (size_t)siglen);
	}
	if (ok != 1) {
		snprintf(why, whylen,
		         ok < 0 ? "token signed by an unknown key"
		                : "token signature does not verify");
		goto bad;
	}
	if (strcmp(jstr(claims, "iss"), a->cfg->psc_issuer) != 0) {
		snprintf(why, whylen, "token issued by '%s'",
		         jstr(claims, "iss"));
		goto bad;
	}
	exp = json_integer_value(json_object_get(claims, "exp"));
	if (exp <= (json_int_t)time(NULL) - LEEWAY) {
		snprintf(why, whylen, "token expired");
		goto bad;
	}
	if (strcmp(jstr(claims, "acr"), a->cfg->psc_acr) != 0) {
		snprintf(why, whylen, "token acr '%s', not %s",
		         jstr(claims, "acr"), a->cfg->psc_acr);
		goto bad;
	}
	au = json_object_get(claims, "aud");
	if (aud != NULL) {
		size_t i;
		json_t *v;
		int found = json_is_string(au) &&
		            strcmp(json_string_value(au), aud) == 0;

		json_array_foreach(au, i, v) found |=
		        json_is_string(v) &&
		        strcmp(json_string_value(v), aud) == 0;
		if (!found) {
			snprintf(why, whylen, "token not meant for %s", aud);
			goto bad;
		}
	}
	json_decref(head);
	return claims;
bad:
	json_decref(head);
	json_decref(claims);
	return NULL;
}

/* ---- the professional ------------------------------------------------- */

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

/* The professional of a PSC userinfo document (or token claims). */
static void user_from(json_t *info, struct auth_user *u)
{
	json_t *ex = json_array_get(
	        json_object_get(json_object_get(info, "SubjectRefPro"),
	                        "exercices"),
	        0);

	memset(u, 0, sizeof(*u));
	copy(u->id, sizeof(u->id), jstr(info, "SubjectNameID"));
	if (u->id[0] == '\0')
		copy(u->id, sizeof(u->id), jstr(info, "preferred_username"));
	copy(u->family, sizeof(u->family), jstr(info, "family_name"));
	copy(u->given, sizeof(u->given), jstr(info, "given_name"));
	copy(u->profession, sizeof(u->profession), jstr(ex, "codeProfession"));
	copy(u->specialty, sizeof(u->specialty), jstr(ex, "codeSavoirFaire"));
	copy(u->sector, sizeof(u->sector), jstr(info, "Secteur_Activite"));
}

static json_t *user_json(const struct auth_user *u)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", u->id,
	                 "family", u->family, "given", u->given, "profession",
	                 u->profession, "specialty", u->specialty, "sector",
	                 u->sector);
}

static void user_of_json(json_t *j, struct auth_user *u)
{
	memset(u, 0, sizeof(*u));
	copy(u->id, sizeof(u->id), jstr(j, "id"));
	copy(u->family, sizeof(u->family), jstr(j, "family"));
	copy(u->given, sizeof(u->given), jstr(j, "given"));
	copy(u->profession, sizeof(u->profession), jstr(j, "profession"));
	copy(u->specialty, sizeof(u->specialty), jstr(j, "specialty"));
	copy(u->sector, sizeof(u->sector), jstr(j, "sector"));
}

/* ---- the module ------------------------------------------------------- */

struct auth *auth_new(const struct config *cfg, struct index *ix, char *err,
                      size_t errlen)
{
	struct auth *a;

	err[0] = '\0';
	if (strcmp(cfg->auth, "psc") != 0)
		return NULL;
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->cfg = cfg;
	a->ix = ix;
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->fetching, NULL);
	pthread_mutex_init(&a->refreshing, NULL);
	return a;
}

void auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->nkeys; i++)
		EVP_PKEY_free(a->keys[i].pkey);
	json_decref(a->discovery);
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->fetching);
	pthread_mutex_destroy(&a->refreshing);
	free(a);
}

int auth_public(const char *url, const char *method)
{
	static const char *const pages[] = { "/viewer/", "/viewer/index.html" };

	if (strcmp(url, "/health") == 0 || auth_handles(url))
		return 1;
	if (strcmp(method, "POST") == 0 && strcmp(url, "/conso") == 0)
		return 1;
	if (strncmp(url, "/viewer/", 8) == 0) {
		for (size_t i = 0; i < sizeof(pages) / sizeof(*pages); i++)
			if (strcmp(url, pages[i]) == 0)
				return 0;
		return 1; /* the viewer's code and styles: no data */
	}
	return 0;
}

int auth_handles(const char *url)
{
	return strncmp(url, "/auth/", 6) == 0;
}

/*
 * The URL of one of the /auth/ pages (name: "callback", "signed-out") as
 * the browser reaches it: from psc_redirect_uri, else the request's host.
 */
static void auth_url(struct auth *a, struct MHD_Connection *conn,
                     const char *name, char *out, size_t cap)
{
	const char *host =
	        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
	const char *cb = a->cfg->psc_redirect_uri;
	size_t n = strlen(cb), tail = strlen("/auth/callback");

	if (n > tail && strcmp(cb + n - tail, "/auth/callback") == 0)
		snprintf(out, cap, "%.*s/auth/%s", (int)(n - tail), cb, name);
	else if (host != NULL && strlen(host) < 256 &&
	         strpbrk(host, " \"\\<>/?#@") == NULL)
		snprintf(out, cap, "%s://%s/auth/%s",
		         a->cfg->http_tls_cert[0] ? "https" : "http", host,
		         name);
	else
		snprintf(out, cap, "%s://%s:%ld/auth/%s",
		         a->cfg->http_tls_cert[0] ? "https" : "http",
		         a->cfg->http_bind, a->cfg->http_port, name);
}

/* A 302 to location, with a Set-Cookie when cookie is not NULL. */
static enum MHD_Result redirect(struct MHD_Connection *conn,
                                const char *location, const char *cookie)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
	        0, NULL, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Location", location);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (cookie != NULL)
		MHD_add_response_header(r, "Set-Cookie", cookie);
	ret = MHD_queue_response(conn, MHD_HTTP_FOUND, r);
	MHD_destroy_response(r);
	return ret;
}

/* A short HTML page for a person. */
static enum MHD_Result page(struct MHD_Connection *conn, unsigned status,
                            const char *title, const char *text)
{
	char *p;
	int n = asprintf(&p,
	                 "<!doctype html><html lang=\"fr\"><meta "
	                 "charset=\"utf-8\"><title>drimbox</title><h1>%s</h1>"
	                 "<p>%s</p></html>",
	                 title, text);

	if (n < 0)
		return MHD_NO;
	return web_send_page(conn, status, p, (size_t)n, "no-store");
}

/* Starts a sign-in that comes back to next: a 302 to PSC. */
static enum MHD_Result login(struct auth *a, struct MHD_Connection *conn,
                             const char *next)
{
	char state[64], nonce[64], verifier[64], hash[65], auth_ep[512];
	char challenge[64], back[300], *data, *loc = NULL, binding[64];
	char bhash[65], cookie[200];
	unsigned char d[SHA256_DIGEST_LENGTH];
	char err[400];
	CURL *c = curl_easy_init();
	char *e_back = NULL, *e_scope = NULL, *e_acr = NULL, *e_id = NULL;
	time_t now = time(NULL);
	json_t *j;
	enum MHD_Result ret;
	int n;

	if (c == NULL || token_new(state) != 0 || token_new(nonce) != 0 ||
	    token_new(verifier) != 0 || token_new(binding) != 0) {
		curl_easy_cleanup(c);
		return dw_error(conn, 503, "cannot start a sign-in");
	}
	if (endpoint(a, "authorization_endpoint", auth_ep, sizeof(auth_ep), err,
	             sizeof(err)) != 0) {
		curl_easy_cleanup(c);
		log_error(LOGC_HTTP, "sign-in: %s", err);
		return page(conn, 503, "Connexion impossible",
		            "Pro Sant&eacute; Connect ne r&eacute;pond pas. "
		            "R&eacute;essayez dans un instant.");
	}
	SHA256((const unsigned char *)verifier, strlen(verifier), d);
	b64url_encode(d, sizeof(d), challenge, sizeof(challenge));
	auth_url(a, conn, "callback", back, sizeof(back));
	/* the sign-in is this browser's: its callback must bring the
	 * binding cookie back (no one else's code signs it in) */
	token_hash(binding, bhash);
	j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "verifier", verifier,
	              "nonce", nonce, "next", next, "redirect_uri", back,
	              "binding", bhash);
	data = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	token_hash(state, hash);
	if (data == NULL || index_token_put(a->ix, hash, "login", data, now,
	                                    now + LOGIN_SECONDS) != 0) {
		free(data);
		curl_easy_cleanup(c);
		return dw_error(conn, 503, "cannot record the sign-in");
	}
	free(data);
	e_back = curl_easy_escape(c, back, 0);
	e_scope = curl_easy_escape(c, "openid scope_all", 0);
	e_acr = curl_easy_escape(c, a->cfg->psc_acr, 0);
	e_id = curl_easy_escape(c, a->cfg->psc_client_id, 0);
	n = e_back && e_scope && e_acr && e_id
	            ? asprintf(&loc,
	                       "%s%cresponse_type=code&client_id=%s&"
	                       "redirect_uri=%s&scope=%s&state=%s&nonce=%s&"
	                       "code_challenge=%s&code_challenge_method=S256&"
	                       "acr_values=%s",
	                       auth_ep, strchr(auth_ep, '?') ? '&' : '?', e_id,
	                       e_back, e_scope, state, nonce, challenge, e_acr)
	            : -1;
	curl_free(e_back);
	curl_free(e_scope);
	curl_free(e_acr);
	curl_free(e_id);
	curl_easy_cleanup(c);
	if (n < 0)
		return MHD_NO;
	snprintf(cookie, sizeof(cookie),
	         LOGIN_COOKIE "=%s; Path=/auth/; Max-Age=%d; HttpOnly; Secure; "
	                      "SameSite=Lax",
	         binding, LOGIN_SECONDS);
	ret = redirect(conn, loc, cookie);
	free(loc);
	return ret;
}

/* A local path to go back to after signing in ("/" when it is not one). */
static const char *local_path(const char *next)
{
	if (next == NULL || next[0] != '/' || next[1] == '/' ||
	    next[1] == '\\' || strlen(next) > 2048)
		return "/viewer/";
	for (const char *p = next; *p; p++) /* browsers drop tabs... */
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return "/viewer/";
	return next;
}

/* Exchanges the code of a sign-in that came back; makes the session. */
/* A sign-in or sign-out in the audit trail. */
static void audit_sign(struct MHD_Connection *conn, const char *action,
                       const char *actor, const char *outcome,
                       const char *detail)
{
	char peer[64];

	audit_peer(conn, peer, sizeof(peer));
	audit(&(struct audit_event){ actor, action, NULL, NULL, peer, outcome,
	                             NULL, detail });
}

static enum MHD_Result callback(struct auth *a, struct MHD_Connection *conn)
{
	const char *code = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "code");
	const char *state = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "state");
	const char *error = MHD_lookup_connection_value(
	        conn, MHD_GET_ARGUMENT_KIND, "error");
	char hash[65], err[512], url[512], cookie_tok[64], cookie[200];
	char *data = NULL, *form = NULL, *e_code = NULL, *e_back = NULL;
	char *e_ver = NULL, *text = NULL;
	json_t *login_data = NULL, *tok = NULL, *id = NULL, *at = NULL;
	json_t *info = NULL, *session = NULL;
	struct auth_user u;
	time_t now = time(NULL);
	enum MHD_Result ret;
	long status;
	CURL *c = NULL;

	if (state == NULL || strlen(state) > 64) {
		return page(conn, 400, "Connexion refus&eacute;e",
		            "Retour de Pro Sant&eacute; Connect sans "
		            "&eacute;tat.");
	}
	token_hash(state, hash);
	if (index_token_take(a->ix, hash, "login", now, &data) != 1 ||
	    (login_data = json_loads(data, 0, NULL)) == NULL) {
		free(data);
		log_warn(LOGC_HTTP, "sign-in: unknown or expired state");
		return page(conn, 400, "Connexion expir&eacute;e",
		            "Cette connexion a expir&eacute; ou a d&eacute;"
		            "j&agrave; servi. Rouvrez le lien.");
	}
	free(data);
	{
		const char *b = MHD_lookup_connection_value(
		        conn, MHD_COOKIE_KIND, LOGIN_COOKIE);
		char bh[65] = "";

		if (b != NULL && strlen(b) <= 64)
			token_hash(b, bh);
		if (bh[0] == '\0' ||
		    strcmp(bh, jstr(login_data, "binding")) != 0) {
			log_warn(LOGC_HTTP, "sign-in: callback from another "
			                    "browser than the one that started "
			                    "it, refused");
			json_decref(login_data);
			return page(conn, 400, "Connexion refus&eacute;e",
			            "Cette connexion n'a pas &eacute;t&eacute; "
			            "commenc&eacute;e dans ce navigateur.");
		}
	}
	if (error != NULL || code == NULL || strlen(code) > 2048) {
		const char *desc = MHD_lookup_connection_value(
		        conn, MHD_GET_ARGUMENT_KIND, "error_description");

		log_warn(LOGC_HTTP, "sign-in refused by PSC: %s%s%.200s",
		         error ? error : "no code", desc ? ": " : "",
		         desc ? desc : "");
		audit_sign(conn, "sign-in", NULL, "refused",
		           error ? error : "no code");
		json_decref(login_data);
		return page(conn, 403, "Connexion refus&eacute;e",
		            "Pro Sant&eacute; Connect n'a pas accept&eacute; "
		            "la connexion.");
	}
	c = curl_easy_init();
	e_code = c ? curl_easy_escape(c, code, 0) : NULL;
	e_back = c ? curl_easy_escape(c, jstr(login_data, "redirect_uri"), 0)
	           : NULL;
	e_ver = c ? curl_easy_escape(c, jstr(login_data, "verifier"), 0) : NULL;
	if (e_code == NULL || e_back == NULL || e_ver == NULL ||
	    asprintf(&form,
	             "grant_type=authorization_code&code=%s&redirect_uri=%s&"
	             "code_verifier=%s",
	             e_code, e_back, e_ver) < 0)
		form = NULL;
	if (form == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (endpoint(a, "token_endpoint", url, sizeof(url), err, sizeof(err)) !=
	            0 ||
	    (tok = psc_call(a, url, form, 1, NULL, &status, err,
	                    sizeof(err))) == NULL)
		goto fail;
	id = jwt_claims(a, jstr(tok, "id_token"), a->cfg->psc_client_id, err,
	                sizeof(err));
	if (id == NULL)
		goto fail;
	if (strcmp(jstr(id, "nonce"), jstr(login_data, "nonce")) != 0) {
		snprintf(err, sizeof(err), "ID token nonce does not match");
		goto fail;
	}
	at = jwt_claims(a, jstr(tok, "access_token"), NULL, err, sizeof(err));
	if (at == NULL)
		goto fail;
	if (endpoint(a, "userinfo_endpoint", url, sizeof(url), err,
	             sizeof(err)) != 0 ||
	    (info = psc_call(a, url, NULL, 0, jstr(tok, "access_token"),
	                     &status, err, sizeof(err))) == NULL)
		goto fail;
	if (strcmp(jstr(info, "sub"), jstr(id, "sub")) != 0) {
		snprintf(err, sizeof(err),
		         "userinfo is about another subject than the ID token");
		goto fail;
	}
	user_from(info, &u);
	if (u.id[0] == '\0') {
		snprintf(err, sizeof(err), "userinfo names no SubjectNameID");
		goto fail;
	}
	session = json_pack(
	        "{s:o, s:s, s:I, s:s, s:s}", "user", user_json(&u),
	        "access_token", jstr(tok, "access_token"), "token_exp",
	        json_integer_value(json_object_get(at, "exp")), "refresh_token",
	        jstr(tok, "refresh_token"), "id_token", jstr(tok, "id_token"));
	text = session ? json_dumps(session, JSON_COMPACT) : NULL;
	if (text == NULL || token_new(cookie_tok) != 0) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	token_hash(cookie_tok, hash);
	if (index_token_put(a->ix, hash, "user", text, now,
	                    now + a->cfg->auth_session_minutes * 60) != 0) {
		snprintf(err, sizeof(err), "cannot record the session");
		goto fail;
	}
	log_info(LOGC_HTTP, "signed in: %s (%s %s, profession %s)", u.id,
	         u.given, u.family, u.profession);
	audit_sign(conn, "sign-in", u.id, "ok", NULL);
	snprintf(cookie, sizeof(cookie),
	         COOKIE "=%s; Path=/; Max-Age=%ld; HttpOnly; Secure; "
	                "SameSite=Lax",
	         cookie_tok, a->cfg->auth_session_minutes * 60);
	ret = redirect(conn, local_path(jstr(login_data, "next")), cookie);
	goto out;
fail:
	log_error(LOGC_HTTP, "sign-in failed: %s", err);
	audit_sign(conn, "sign-in", NULL, "failed", err);
	ret = page(conn, 502, "Connexion impossible",
	           "La connexion avec Pro Sant&eacute; Connect a "
	           "&eacute;chou&eacute;. R&eacute;essayez.");
out:
	curl_free(e_code);
	curl_free(e_back);
	curl_free(e_ver);
	curl_easy_cleanup(c);
	free(form);
	free(text);
	json_decref(login_data);
	json_decref(tok);
	json_decref(id);
	json_decref(at);
	json_decref(info);
	json_decref(session);
	return ret;
}

/* The session of the request's cookie (its hash into hash), or NULL. */
static json_t *session_of(struct auth *a, struct MHD_Connection *conn,
                          char hash[65])
{
	return web_cookie_row(a->ix, conn, COOKIE, "user", hash);
}

static void forget(struct auth *a, const char *hash);

/* Ends the session; PSC's session too, when PSC says where. */
static enum MHD_Result logout(struct auth *a, struct MHD_Connection *conn)
{
	char hash[65], end[512], err[300], back[300], *loc = NULL;
	json_t *s = session_of(a, conn, hash);
	const char *clear = COOKIE "=; Path=/; Max-Age=0; HttpOnly; Secure; "
	                           "SameSite=Lax";
	enum MHD_Result ret;
	CURL *c;
	char *e_hint = NULL, *e_back = NULL;

	if (s == NULL)
		return redirect(conn, "/auth/signed-out", clear);
	index_token_delete(a->ix, hash);
	forget(a, hash);
	log_info(LOGC_HTTP, "signed out: %s",
	         jstr(json_object_get(s, "user"), "id"));
	audit_sign(conn, "sign-out", jstr(json_object_get(s, "user"), "id"),
	           "ok", NULL);
	auth_url(a, conn, "signed-out", back, sizeof(back));
	c = curl_easy_init();
	if (c != NULL && endpoint(a, "end_session_endpoint", end, sizeof(end),
	                          err, sizeof(err)) == 0) {
		e_hint = curl_easy_escape(c, jstr(s, "id_token"), 0);
		e_back = curl_easy_escape(c, back, 0);
		if (e_hint == NULL || e_back == NULL ||
		    asprintf(&loc,
		             "%s%cid_token_hint=%s&"
		             "post_logout_redirect_uri=%s",
		             end, strchr(end, '?') ? '&' : '?', e_hint,
		             e_back) < 0)
			loc = NULL;
	}
	ret = redirect(conn, loc ? loc : "/auth/signed-out", clear);
	free(loc);
	curl_free(e_hint);
	curl_free(e_back);
	curl_easy_cleanup(c);
	json_decref(s);
	return ret;
}

enum MHD_Result auth_handle(struct auth *a, struct MHD_Connection *conn,
                            const char *url)
{
	if (strcmp(url, "/auth/signed-out") == 0)
		return page(conn, 200, "D&eacute;connect&eacute;",
		            "Vous &ecirc;tes d&eacute;connect&eacute; de "
		            "drimbox.");
	if (a == NULL)
		return dw_error(conn, 404,
		                "sign-in is not configured "
		                "(auth = none)");
	if (strcmp(url, "/auth/login") == 0)
		return login(a, conn,
		             local_path(MHD_lookup_connection_value(
		                     conn, MHD_GET_ARGUMENT_KIND, "next")));
	if (strcmp(url, "/auth/callback") == 0)
		return callback(a, conn);
	if (strcmp(url, "/auth/logout") == 0)
		return logout(a, conn);
	return dw_error(conn, 404, "no such resource");
}

/* ---- Bearer tokens ---------------------------------------------------- */

/* A cached verdict of that kind on that hash: 1 with *u, else 0. */
static int cached(struct auth *a, char kind, const char *hash,
                  struct auth_user *u)
{
	time_t now = time(NULL);
	int found = 0;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < VERDICTS_MAX && !found; i++)
		if (a->verdicts[i].until > now && a->verdicts[i].kind == kind &&
		    strcmp(a->verdicts[i].hash, hash) == 0) {
			*u = a->verdicts[i].user;
			found = 1;
		}
	pthread_mutex_unlock(&a->lock);
	return found;
}

static void forget(struct auth *a, const char *hash)
{
	pthread_mutex_lock(&a->lock);
	a->forgotten++;
	for (size_t i = 0; i < VERDICTS_MAX; i++)
		if (strcmp(a->verdicts[i].hash, hash) == 0)
			a->verdicts[i].until = 0;
	pthread_mutex_unlock(&a->lock);
}

static unsigned long forgotten(struct auth *a)
{
	unsigned long n;

	pthread_mutex_lock(&a->lock);
	n = a->forgotten;
	pthread_mutex_unlock(&a->lock);
	return n;
}

/*
 * Keeps a verdict until exp (at most VERDICT_SECONDS), unless a sign-out
 * happened since the lookup began (seen: forgotten() then).
 */
static void remember(struct auth *a, char kind, const char *hash,
                     json_int_t exp, const struct auth_user *u,
                     unsigned long seen)
{
	time_t now = time(NULL), until = now + VERDICT_SECONDS;
	struct verdict *v;

	if (exp < (json_int_t)until)
		until = (time_t)exp;
	pthread_mutex_lock(&a->lock);
	if (a->forgotten != seen) {
		pthread_mutex_unlock(&a->lock);
		return;
	}
	v = &a->verdicts[a->next_verdict++ % VERDICTS_MAX];
	v->kind = kind;
	snprintf(v->hash, sizeof(v->hash), "%s", hash);
	v->until = until;
	v->user = *u;
	pthread_mutex_unlock(&a->lock);
}

/* 1 when a client id is one whose tokens are taken as Bearer. */
static int bearer_client(struct auth *a, const char *id)
{
	const char *list = a->cfg->psc_bearer_clients;
	size_t n = strlen(id);

	if (n == 0)
		return 0;
	if (strcmp(list, "*") == 0 || strcmp(id, a->cfg->psc_client_id) == 0)
		return 1;
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ", ");

		if (len == n && strncmp(p, id, n) == 0)
			return 1;
		p += len;
		p += strspn(p, ", ");
	}
	return 0;
}

/*
 * 1 (with why) when checked claims are not an access token of an allowed
 * client naming a professional: an ID token, a token PSC gave another
 * application, no SubjectNameID.
 */
static int bearer_refused(struct auth *a, json_t *claims, char *why,
                          size_t whylen)
{
	const char *typ = jstr(claims, "typ");
	const char *azp = jstr(claims, "azp")[0] ? jstr(claims, "azp")
	                                         : jstr(claims, "client_id");

	if ((typ[0] && strcasecmp(typ, "Bearer") != 0) ||
	    json_object_get(claims, "nonce") != NULL) {
		snprintf(why, whylen, "not an access token");
		return 1;
	}
	if (strcmp(jstr(claims, "iss"), a->cfg->psc_issuer) != 0) {
		snprintf(why, whylen, "token issued by '%s'",
		         jstr(claims, "iss"));
		return 1;
	}
	if (!bearer_client(a, azp)) {
		snprintf(why, whylen,
		         "token of client '%.100s', not one of "
		         "psc_bearer_clients",
		         azp);
		return 1;
	}
	if (jstr(claims, "SubjectNameID")[0] == '\0' &&
	    jstr(claims, "preferred_username")[0] == '\0') {
		snprintf(why, whylen, "token names no professional");
		return 1;
	}
	return 0;
}

/* Checks a Bearer token (JWKS or introspection): 1 with *u, or 0 why. */
static int bearer(struct auth *a, const char *token, struct auth_user *u,
                  char *why, size_t whylen)
{
	char hash[65], url[512], *form = NULL, *e_tok;
	json_t *claims;
	long status;
	CURL *c;
	unsigned long seen = forgotten(a);

	if (strlen(token) >= AUTH_TOKEN_MAX) {
		snprintf(why, whylen, "token too long");
		return 0;
	}
	token_hash(token, hash);
	if (cached(a, 'B', hash, u))
		return 1;
	if (strcmp(a->cfg->psc_token_check, "introspection") != 0) {
		claims = jwt_claims(a, token, NULL, why, whylen);
	} else {
		c = curl_easy_init();
		e_tok = c ? curl_easy_escape(c, token, 0) : NULL;
		if (e_tok == NULL ||
		    asprintf(&form, "token=%s&token_type_hint=access_token",
		             e_tok) < 0)
			form = NULL;
		curl_free(e_tok);
		curl_easy_cleanup(c);
		claims = form && endpoint(a, "introspection_endpoint", url,
		                          sizeof(url), why, whylen) == 0
		                 ? psc_call(a, url, form, 1, NULL, &status, why,
		                            whylen)
		                 : NULL;
		free(form);
		if (claims != NULL &&
		    !json_is_true(json_object_get(claims, "active"))) {
			snprintf(why, whylen, "token not active (PSC)");
			json_decref(claims);
			claims = NULL;
		} else if (claims != NULL &&
		           strcmp(jstr(claims, "acr"), a->cfg->psc_acr) != 0) {
			snprintf(why, whylen, "token acr '%s', not %s",
			         jstr(claims, "acr"), a->cfg->psc_acr);
			json_decref(claims);
			claims = NULL;
		}
	}
	if (claims != NULL && bearer_refused(a, claims, why, whylen)) {
		json_decref(claims);
		claims = NULL;
	}
	if (claims == NULL)
		return 0;
	user_from(claims, u);
	remember(a, 'B', hash,
	         json_integer_value(json_object_get(claims, "exp")), u, seen);
	json_decref(claims);
	return 1;
}

int auth_identify(struct auth *a, struct MHD_Connection *conn,
                  struct auth_user *user, char *why, size_t whylen)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                            "Authorization");
	const char *tok =
	        MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, COOKIE);
	char hash[65];
	json_t *s;

	if (tok != NULL && strlen(tok) <= 64) {
		unsigned long seen = forgotten(a);

		token_hash(tok, hash);
		if (cached(a, 'S', hash, user))
			return 1;
		if ((s = web_token_row(a->ix, hash, "user")) != NULL) {
			user_of_json(json_object_get(s, "user"), user);
			snprintf(user->session, sizeof(user->session), "%s",
			         hash);
			json_decref(s);
			remember(a, 'S', hash,
			         (json_int_t)time(NULL) + SESSION_CACHED, user,
			         seen);
			return 1;
		}
	}
	if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0)
		return bearer(a, h + 7, user, why, whylen);
	snprintf(why, whylen, "sign-in required");
	return 0;
}

struct query {
	CURL *c;
	char *p;
	size_t len, cap;
	int failed;
};

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
	struct query *q = cls;
	char *k = curl_easy_escape(q->c, key, 0);
	char *v = value ? curl_easy_escape(q->c, value, 0) : NULL;
	size_t need = (k ? strlen(k) : 0) + (v ? strlen(v) : 0) + 3;

	(void)kind;
	if (k == NULL || (value != NULL && v == NULL) ||
	    q->len + need > q->cap) {
		q->failed = 1;
	} else {
		q->len += (size_t)snprintf(q->p + q->len, q->cap - q->len,
		                           "%c%s%s%s", q->len ? '&' : '?', k,
		                           v ? "=" : "", v ? v : "");
	}
	curl_free(k);
	curl_free(v);
	return q->failed ? MHD_NO : MHD_YES;
}

enum MHD_Result auth_deny(struct auth *a, struct MHD_Connection *conn,
                          const char *url, const char *method, const char *why)
{
	const char *accept =
	        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
	struct MHD_Response *r;
	enum MHD_Result ret;
	char *body, next[2100], args[2048];
	json_t *j;

	if (strcmp(method, "GET") == 0 && accept != NULL &&
	    strstr(accept, "text/html") != NULL &&
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                "Authorization") == NULL) {
		/* a page: signed in, the browser comes back to it (MHD
		 * gives the path: the query is put back) */
		struct query q = { curl_easy_init(), args, 0, sizeof(args), 0 };

		args[0] = '\0';
		if (q.c != NULL)
			MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND,
			                          add_arg, &q);
		curl_easy_cleanup(q.c);
		if (q.c != NULL && !q.failed &&
		    (size_t)snprintf(next, sizeof(next), "%s%s", url, args) <
		            sizeof(next))
			return login(a, conn, local_path(next));
	}
	log_info(LOGC_HTTP, "refused %s %s: %s", method, url, why);
	j = json_pack("{s:s}", "error", why);
	body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (body == NULL)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(body), body,
	                                    MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "WWW-Authenticate",
	                        "Bearer realm=\"drimbox\"");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	ret = MHD_queue_response(conn, MHD_HTTP_UNAUTHORIZED, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- tokens for other DRIMboxes --------------------------------------- */

static int session_token(struct auth *a, const char *session, char *out,
                         size_t cap, char *err, size_t errlen)
{
	char *data = NULL, url[512], *form = NULL, *e_ref, *text;
	json_t *s, *tok = NULL, *at;
	time_t now = time(NULL);
	long status;
	CURL *c;
	int rc = -1;

	if (index_token_get(a->ix, session, "user", now, &data) != 1 ||
	    (s = json_loads(data, 0, NULL)) == NULL) {
		free(data);
		snprintf(err, errlen, "the professional's session has ended");
		return -1;
	}
	free(data);
	if (json_integer_value(json_object_get(s, "token_exp")) >
	    (json_int_t)(now + REFRESH_BEFORE)) {
		snprintf(out, cap, "%s", jstr(s, "access_token"));
		json_decref(s);
		return 0;
	}
	c = curl_easy_init();
	e_ref = c ? curl_easy_escape(c, jstr(s, "refresh_token"), 0) : NULL;
	if (e_ref == NULL ||
	    asprintf(&form, "grant_type=refresh_token&refresh_token=%s",
	             e_ref) < 0)
		form = NULL;
	curl_free(e_ref);
	curl_easy_cleanup(c);
	if (form != NULL &&
	    endpoint(a, "token_endpoint", url, sizeof(url), err, errlen) == 0 &&
	    (tok = psc_call(a, url, form, 1, NULL, &status, err, errlen)) &&
	    (at = jwt_claims(a, jstr(tok, "access_token"), NULL, err,
	                     errlen)) != NULL) {
		json_object_set(s, "access_token",
		                json_object_get(tok, "access_token"));
		json_object_set_new(s, "token_exp",
		                    json_integer(json_integer_value(
		                            json_object_get(at, "exp"))));
		if (json_is_string(json_object_get(tok, "refresh_token")))
			json_object_set(s, "refresh_token",
			                json_object_get(tok, "refresh_token"));
		text = json_dumps(s, JSON_COMPACT);
		if (text != NULL &&
		    index_token_set(a->ix, session, "user", text) == 0) {
			snprintf(out, cap, "%s", jstr(s, "access_token"));
			rc = 0;
		}
		free(text);
		json_decref(at);
	}
	if (rc != 0 && form == NULL)
		snprintf(err, errlen, "out of memory");
	free(form);
	json_decref(tok);
	json_decref(s);
	return rc;
}

int auth_session_token(struct auth *a, const char *session, char *out,
                       size_t cap, char *err, size_t errlen)
{
	int rc;

	/* one at a time: two pulls must not spend one refresh token twice */
	pthread_mutex_lock(&a->refreshing);
	rc = session_token(a, session, out, cap, err, errlen);
	pthread_mutex_unlock(&a->refreshing);
	return rc;
}
