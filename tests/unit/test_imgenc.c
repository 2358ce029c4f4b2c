/*
 * test_imgenc.c - imgenc's JPEG decodes back with libjpeg to the size and
 * (roughly) the pixels given; its PNG has the signature, a valid IHDR and
 * IEND with correct CRCs, and an IDAT that inflates to the filtered
 * scanlines of the input.
 */
#include "imgenc.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <zlib.h>

/* A w x h gradient of `channels` bytes per pixel; the caller frees it. */
static unsigned char *gradient(unsigned w, unsigned h, int channels)
{
	unsigned char *p = malloc((size_t)w * h * channels);
	for (unsigned y = 0; y < h; y++)
		for (unsigned x = 0; x < w; x++)
			for (int c = 0; c < channels; c++)
				p[((size_t)y * w + x) * channels + c] =
				        (unsigned char)(x * 3 + y * 2 + c * 20);
	return p;
}

struct jfail {
	struct jpeg_error_mgr mgr;
	jmp_buf jump;
};

static void jfail_exit(j_common_ptr c)
{
	longjmp(((struct jfail *)c->err)->jump, 1);
}

/* Decodes a JPEG; returns the pixels (caller frees) or NULL. */
static unsigned char *jpeg_decode(const unsigned char *buf, size_t len,
                                  unsigned *w, unsigned *h, int *ch)
{
	struct jpeg_decompress_struct d;
	struct jfail f;
	unsigned char *volatile px = NULL;
	d.err = jpeg_std_error(&f.mgr);
	f.mgr.error_exit = jfail_exit;
	if (setjmp(f.jump)) {
		jpeg_destroy_decompress(&d);
		free(px);
		return NULL;
	}
	jpeg_create_decompress(&d);
	jpeg_mem_src(&d, buf, (unsigned long)len);
	jpeg_read_header(&d, TRUE);
	jpeg_start_decompress(&d);
	*w = d.output_width;
	*h = d.output_height;
	*ch = d.output_components;
	size_t stride = (size_t)d.output_width * d.output_components;
	px = malloc(stride * d.output_height);
	while (d.output_scanline < d.output_height) {
		JSAMPROW row = px + stride * d.output_scanline;
		jpeg_read_scanlines(&d, &row, 1);
	}
	jpeg_finish_decompress(&d);
	jpeg_destroy_decompress(&d);
	return px;
}

static void test_jpeg_starts_with_soi_and_decodes_to_the_same_size(void)
{
	for (int ch = 1; ch <= 3; ch += 2) {
		unsigned char *in = gradient(40, 24, ch);
		unsigned char *out = NULL;
		size_t len = 0;
		CHECK(imgenc_jpeg(in, 40, 24, ch, 90, &out, &len) == 0);
		CHECK(out && len > 4 && out[0] == 0xFF && out[1] == 0xD8);
		CHECK(out[len - 2] == 0xFF && out[len - 1] == 0xD9);
		unsigned w = 0, h = 0;
		int dch = 0;
		unsigned char *px =
		        out ? jpeg_decode(out, len, &w, &h, &dch) : NULL;
		CHECK(px && w == 40 && h == 24 && dch == ch);
		if (px) {
			/* a smooth gradient survives quality 90 closely */
			long maxd = 0;
			for (size_t i = 0; i < (size_t)40 * 24 * ch; i++) {
				long d = labs((long)px[i] - (long)in[i]);
				maxd = d > maxd ? d : maxd;
			}
			CHECK(maxd < 16);
		}
		free(px);
		free(out);
		free(in);
	}
}

static void test_jpeg_rejects_bad_arguments(void)
{
	unsigned char px[4] = { 0 };
	unsigned char *out = NULL;
	size_t len = 0;
	CHECK(imgenc_jpeg(px, 2, 2, 2, 90, &out, &len) == -1);
	CHECK(imgenc_jpeg(px, 2, 2, 1, 0, &out, &len) == -1);
	CHECK(imgenc_jpeg(px, 2, 2, 1, 101, &out, &len) == -1);
	CHECK(imgenc_jpeg(px, 0, 2, 1, 90, &out, &len) == -1);
	CHECK(imgenc_jpeg(NULL, 2, 2, 1, 90, &out, &len) == -1);
	CHECK(imgenc_png(px, 2, 2, 4, &out, &len) == -1);
	CHECK(imgenc_png(px, 2, 0, 1, &out, &len) == -1);
	CHECK(out == NULL);
}

static uint32_t rd32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* Checks the chunk at p (type, CRC); returns its data length. */
static uint32_t check_chunk(const unsigned char *p, const char *type)
{
	uint32_t n = rd32(p);
	CHECK(memcmp(p + 4, type, 4) == 0);
	uLong crc = crc32(crc32(0L, Z_NULL, 0), p + 4, 4 + n);
	CHECK(rd32(p + 8 + n) == (uint32_t)crc);
	return n;
}

static void test_png_has_valid_chunks_and_inflates_to_filtered_rows(void)
{
	static const unsigned char sig[8] = { 0x89, 'P',  'N',  'G',
		                              '\r', '\n', 0x1A, '\n' };
	for (int ch = 1; ch <= 3; ch += 2) {
		unsigned w = 33, h = 17;
		unsigned char *in = gradient(w, h, ch);
		unsigned char *out = NULL;
		size_t len = 0;
		CHECK(imgenc_png(in, w, h, ch, &out, &len) == 0);
		if (!out || len < 8 + 25 + 12 + 12) {
			CHECK(!"png too short");
			free(in);
			free(out);
			continue;
		}
		CHECK(memcmp(out, sig, 8) == 0);
		const unsigned char *p = out + 8;
		CHECK(check_chunk(p, "IHDR") == 13);
		CHECK(rd32(p + 8) == w && rd32(p + 12) == h);
		CHECK(p[16] == 8 && p[17] == (ch == 3 ? 2 : 0));
		CHECK(p[18] == 0 && p[19] == 0 && p[20] == 0);
		p += 25;
		uint32_t zn = check_chunk(p, "IDAT");
		const unsigned char *z = p + 8;
		p += 12 + zn;
		CHECK(check_chunk(p, "IEND") == 0);
		CHECK((size_t)(p + 12 - out) == len);
		/* inflate and undo the per-row filter */
		size_t stride = (size_t)w * ch;
		uLongf rn = (uLongf)((stride + 1) * h);
		unsigned char *raw = malloc(rn);
		CHECK(uncompress(raw, &rn, z, zn) == Z_OK);
		CHECK(rn == (stride + 1) * h);
		int same = 1;
		for (unsigned y = 0; y < h && rn == (stride + 1) * h; y++) {
			unsigned char *row = raw + (stride + 1) * y;
			CHECK(row[0] == 0 || row[0] == 1);
			for (size_t i = 0; i < stride; i++) {
				unsigned char left =
				        row[0] == 1 && i >= (size_t)ch
				                ? in[stride * y + i - ch]
				                : 0;
				if ((unsigned char)(row[1 + i] + left) !=
				    in[stride * y + i])
					same = 0;
			}
		}
		CHECK(same);
		free(raw);
		free(out);
		free(in);
	}
}

int main(void)
{
	test_jpeg_starts_with_soi_and_decodes_to_the_same_size();
	test_jpeg_rejects_bad_arguments();
	test_png_has_valid_chunks_and_inflates_to_filtered_rows();
	return test_failures ? 1 : 0;
}
