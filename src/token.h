/*
 * token.h - opaque random tokens (session cookies, contextual calls, OIDC
 * state), the hash under which the index keeps them, and base64url.
 */
#ifndef DRIMBOX_TOKEN_H
#define DRIMBOX_TOKEN_H

#include <stddef.h>

/* A new random token: 32 bytes as 43 characters of base64url. 0 or -1. */
int token_new(char out[64]);

/* The hex SHA-256 of a token: what the index keeps. */
void token_hash(const char *token, char out[65]);

/* base64url of n bytes, unpadded, into out (cap >= 4 * n / 3 + 2). */
void b64url_encode(const unsigned char *in, size_t n, char *out, size_t cap);

/*
 * Decodes len characters of base64url (padding optional) into out (cap
 * bytes). The byte count, or -1 when the text is not base64url or does
 * not fit.
 */
long b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap);

#endif
