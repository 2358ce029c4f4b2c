/*
 * fuzz_whitelist.c - a whitelist file to whitelist_load: libxml2's
 * parsing and the search for the signature, up to the trust anchors
 * (none here, so nothing verifies: the signature check itself and the
 * reading of domains, reached by valid lists only, are the unit test's).
 */
#include "dmp.h"
#include "fuzz.h"
#include "whitelist.h"

#include <libxml/parser.h>
#include <stdio.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void silent(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64], anchors[64];
	static const struct wl_trust trust = { anchors, NULL,
		                               "Liste Blanche DRIM-M",
		                               "318751275100020" };
	struct whitelist *wl = NULL;
	char err[512];
	FILE *f;

	if (path[0] == '\0') {
		char dir[] = "/tmp/drimbox-fuzz-XXXXXX";

		if (mkdtemp(dir) == NULL)
			abort();
		snprintf(path, sizeof(path), "%s/list.xml", dir);
		snprintf(anchors, sizeof(anchors), "%s/anchors.pem", dir);
		if ((f = fopen(anchors, "w")) == NULL)
			abort();
		fclose(f);
		xmlInitParser();
		xmlSetGenericErrorFunc(NULL, silent);
		if (dmp_global_init(err, sizeof(err)) != 0)
			abort();
	}
	if ((f = fopen(path, "w")) == NULL)
		abort();
	if (fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
	if (whitelist_load(path, &trust, &wl, err, sizeof(err)) == 0)
		whitelist_free(wl);
	return 0;
}
