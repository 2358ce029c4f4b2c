/*
 * fuzz_soap.c - a DMP reply: the first line is its Content-Type (a SOAP
 * type, or multipart/related with a boundary for MTOM), the rest its body,
 * read by dmp_read_reply as an ITI-18 reply is.
 */
#include "dmp.h"
#include "fuzz.h"

#include <libxml/parser.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void silent(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	char *s = fuzz_string(data, size), *body, err[512];
	json_t *docs = NULL;
	size_t len;

	if (!ready) {
		xmlInitParser();
		xmlSetGenericErrorFunc(NULL, silent);
		ready = 1;
	}
	if (s != NULL && fuzz_head(s, size, &body, &len) == 0) {
		(void)dmp_read_reply(s, body, len, 200, &docs, err,
		                     sizeof(err));
		json_decref(docs);
	}
	free(s);
	return 0;
}
