/*
 * auth.h - who is asking: Pro Santé Connect (OpenID Connect) sign-in for
 * the people using the viewer and the consumer pages, and Bearer tokens
 * for programs (another DRIMbox pulling what this one published).
 *
 * Sign-in is the authorization code flow with PKCE (S256), state, nonce
 * and acr_values=eidas1, against the endpoints PSC's discovery document
 * names. The ID and access tokens are checked (RS256 by the JWKS, keys
 * cached by kid: iss, exp, acr, and for the ID token aud and nonce), the
 * professional is read from userinfo (RPPS, names, profession, specialty,
 * activity sector), and a session is stored in the index under the hash of
 * an opaque cookie (HttpOnly, Secure, SameSite=Lax) until it expires or
 * its owner signs out. A Bearer token is checked by the JWKS or by PSC's
 * introspection (psc_token_check), its verdict cached until the token
 * expires or a minute has passed.
 */
#ifndef DRIMBOX_AUTH_H
#define DRIMBOX_AUTH_H

#include <microhttpd.h>
#include <stddef.h>

struct config;
struct index;
struct auth;

/* The longest token considered (a PSC access token is about 2 KB). */
#define AUTH_TOKEN_MAX 16384

/* The professional making a request. */
struct auth_user {
	char id[64];         /* SubjectNameID: the RPPS number */
	char family[128];    /* family_name */
	char given[128];     /* given_name */
	char profession[16]; /* SubjectRefPro.exercices[0].codeProfession */
	char specialty[16];  /* ...codeSavoirFaire */
	char sector[64];  /* Secteur_Activite, e.g. SA07^1.2.250.1.71.4.2.4 */
	char session[65]; /* the session's id hash; "" for a Bearer */
};

/*
 * Sign-in, sessions and token checks, or NULL with err when the
 * configuration is incomplete. With auth = none, NULL and err "".
 */
struct auth *auth_new(const struct config *cfg, struct index *ix, char *err,
                      size_t errlen);
void auth_free(struct auth *a);

/*
 * 1 when the request may be answered without a signed-in user: health,
 * the sign-in routes, the contextual call's POST (it reveals nothing: the
 * page it leads to asks for a sign-in) and the viewer's static assets.
 */
int auth_public(const char *url, const char *method);

/* 1 when url is a sign-in route (/auth/...). */
int auth_handles(const char *url);

/* Answers /auth/login, /auth/callback, /auth/logout, /auth/signed-out. */
enum MHD_Result auth_handle(struct auth *a, struct MHD_Connection *conn,
                            const char *url);

/*
 * Who makes the request: its session cookie, else its Bearer token.
 * 1 with *user filled, 0 with why (no credentials, expired, refused).
 */
int auth_identify(struct auth *a, struct MHD_Connection *conn,
                  struct auth_user *user, char *why, size_t whylen);

/*
 * The answer to a request nobody signed: a page (a GET asking for HTML)
 * is sent to PSC to sign in and comes back to url; anything else gets 401
 * with why.
 */
enum MHD_Result auth_deny(struct auth *a, struct MHD_Connection *conn,
                          const char *url, const char *method, const char *why);

/*
 * A valid access token of the session (its hash) to present to another
 * DRIMbox, refreshed with PSC when it is about to expire. 0, or -1 with
 * err (the session ended, PSC refused).
 */
int auth_session_token(struct auth *a, const char *session, char *out,
                       size_t cap, char *err, size_t errlen);

#endif
