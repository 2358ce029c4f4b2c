/* fuzz_accept.c - an Accept header to accept_parse and the matcher. */
#include "accept.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_string(data, size), err[256];
	struct accept a;

	if (s == NULL)
		return 0;
	if (accept_parse(s, &a, err, sizeof(err)) == 0)
		for (size_t i = 0; i < a.n; i++) {
			(void)accept_media_matches(&a.r[i],
			                           "multipart/related");
			(void)accept_media_matches(&a.r[i],
			                           "application/dicom+json");
		}
	free(s);
	return 0;
}
