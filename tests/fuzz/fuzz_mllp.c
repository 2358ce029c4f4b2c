/*
 * fuzz_mllp.c - a byte stream to the MLLP framer. The first byte chooses
 * the size of the chunks the rest arrives in (as reads off a socket do).
 */
#include "fuzz.h"
#include "mllp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mllp_framer f;
	size_t chunk, at = 1;

	if (size == 0)
		return 0;
	chunk = (size_t)data[0] % 64 + 1;
	mllp_framer_init(&f, 256); /* small: oversize frames are reached */
	while (at < size) {
		size_t n = size - at < chunk ? size - at : chunk;

		while (n > 0) {
			enum mllp_event ev;
			const char *msg;
			size_t msg_len, total, used;

			used = mllp_feed(&f, (const char *)data + at, n, &ev,
			                 &msg, &msg_len, &total);
			if (used == (size_t)-1)
				goto out;
			if (ev != MLLP_NONE && msg_len > 0)
				(void)((volatile const char *)msg)[msg_len - 1];
			at += used;
			n -= used;
			if (used == 0 && ev == MLLP_NONE)
				break;
		}
	}
out:
	mllp_framer_free(&f);
	return 0;
}
