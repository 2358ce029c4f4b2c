/*
 * test_mllp.c - the MLLP framer: frames split across reads at every
 * position, several frames in one read, bytes outside frames, a frame cut
 * by the next one, and messages over the size limit.
 */
#include "mllp.h"
#include "testutil.h"

struct got {
	int n;
	enum mllp_event ev[8];
	char msg[8][64];
	size_t total[8];
};

/* Feeds data in chunks of `step` bytes, recording every event. */
static void feed(struct mllp_framer *f, const char *data, size_t len,
                 size_t step, struct got *g)
{
	for (size_t at = 0; at < len; at += step) {
		size_t n = len - at < step ? len - at : step, off = 0;

		while (off < n) {
			enum mllp_event ev;
			const char *msg;
			size_t mlen, total;
			size_t k = mllp_feed(f, data + at + off, n - off, &ev,
			                     &msg, &mlen, &total);

			CHECK(k != (size_t)-1 && k > 0);
			if (k == (size_t)-1 || k == 0)
				return;
			off += k;
			if (ev != MLLP_NONE && g->n < 8) {
				g->ev[g->n] = ev;
				snprintf(g->msg[g->n], sizeof(g->msg[0]),
				         "%.*s", (int)mlen, msg);
				g->total[g->n] = total;
				g->n++;
			}
		}
	}
}

static void frames_are_found_whatever_the_read_sizes(void)
{
	const char data[] = "\x0bMSH|A\rPID|1\x1c\r\x0bMSH|B\x1c\r";

	for (size_t step = 1; step <= sizeof(data); step++) {
		struct mllp_framer f;
		struct got g = { 0 };

		mllp_framer_init(&f, 1024);
		feed(&f, data, sizeof(data) - 1, step, &g);
		CHECK(g.n == 2);
		CHECK(g.ev[0] == MLLP_MESSAGE && g.ev[1] == MLLP_MESSAGE);
		CHECK(strcmp(g.msg[0], "MSH|A\rPID|1") == 0);
		CHECK(strcmp(g.msg[1], "MSH|B") == 0);
		mllp_framer_free(&f);
	}
}

static void bytes_outside_frames_are_ignored_and_counted(void)
{
	const char data[] = "junk\r\n\x0bMSH|A\x1c\rmore";
	struct mllp_framer f;
	struct got g = { 0 };

	mllp_framer_init(&f, 1024);
	feed(&f, data, sizeof(data) - 1, 5, &g);
	CHECK(g.n == 1 && strcmp(g.msg[0], "MSH|A") == 0);
	CHECK(f.stray == 8);
	mllp_framer_free(&f);
}

static void a_frame_cut_by_the_next_is_reported(void)
{
	const char data[] = "\x0bMSH|A\rPI\x0bMSH|B\x1c\r";
	struct mllp_framer f;
	struct got g = { 0 };

	mllp_framer_init(&f, 1024);
	feed(&f, data, sizeof(data) - 1, 3, &g);
	CHECK(g.n == 2);
	CHECK(g.ev[0] == MLLP_CUT && strcmp(g.msg[0], "MSH|A\rPI") == 0);
	CHECK(g.ev[1] == MLLP_MESSAGE && strcmp(g.msg[1], "MSH|B") == 0);
	mllp_framer_free(&f);
}

static void oversized_messages_keep_their_start_only(void)
{
	size_t big = 200000;
	char *data = malloc(big + 16);
	struct mllp_framer f;
	struct got g = { 0 };

	data[0] = 0x0b;
	memcpy(data + 1, "MSH|BIG", 7);
	memset(data + 8, 'x', big - 8);
	memcpy(data + big, "\x1c\r\x0bMSH|OK\x1c\r", 11);
	mllp_framer_init(&f, 100000);
	feed(&f, data, big + 11, 4096, &g);
	CHECK(g.n == 2);
	CHECK(g.ev[0] == MLLP_OVERSIZE && g.total[0] == big - 1);
	CHECK(strncmp(g.msg[0], "MSH|BIG", 7) == 0);
	CHECK(f.cap <= 128 * 1024); /* never held the whole of it */
	CHECK(g.ev[1] == MLLP_MESSAGE && strcmp(g.msg[1], "MSH|OK") == 0);
	mllp_framer_free(&f);
	free(data);
}

int main(void)
{
	RUN(frames_are_found_whatever_the_read_sizes);
	RUN(bytes_outside_frames_are_ignored_and_counted);
	RUN(a_frame_cut_by_the_next_is_reported);
	RUN(oversized_messages_keep_their_start_only);
	return test_failures ? 1 : 0;
}
