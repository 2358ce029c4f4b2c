/*
 * token.c - see token.h.
 */
#include "token.h"

#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                             "qrstuvwxyz0123456789-_";

void b64url_encode(const unsigned char *in, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	unsigned bits = 0, v = 0;

	for (size_t i = 0; i < n && o + 2 < cap; i++) {
		v = (v << 8) | in[i];
		bits += 8;
		while (bits >= 6 && o + 1 < cap) {
			bits -= 6;
			out[o++] = B64URL[(v >> bits) & 63];
		}
	}
	if (bits > 0 && o + 1 < cap)
		out[o++] = B64URL[(v << (6 - bits)) & 63];
	out[o] = '\0';
}

long b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	size_t o = 0;
	unsigned bits = 0, v = 0;

	while (len > 0 && in[len - 1] == '=')
		len--;
	for (size_t i = 0; i < len; i++) {
		const char *p = in[i] ? strchr(B64URL, in[i]) : NULL;

		if (p == NULL)
			return -1;
		v = (v << 6) | (unsigned)(p - B64URL);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (unsigned char)(v >> bits);
		}
	}
	return (long)o;
}

int token_new(char out[64])
{
	unsigned char b[32];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -1;
	b64url_encode(b, sizeof(b), out, 64);
	return 0;
}

void token_hash(const char *token, char out[65])
{
	unsigned char d[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)token, strlen(token), d);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}
