/*
 * imgenc.c - JPEG through libjpeg-turbo's memory destination, PNG written
 * chunk by chunk (signature, IHDR, one IDAT of deflated "Sub"-filtered
 * scanlines, IEND; CRC-32 from zlib). Errors inside libjpeg come back
 * through a longjmp to the one cleanup path of imgenc_jpeg().
 */
#include "imgenc.h"

#include <limits.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <zlib.h>

/* libjpeg error manager that jumps back instead of exiting. */
struct jpeg_fail {
	struct jpeg_error_mgr mgr;
	jmp_buf jump;
};

static void jpeg_fail_exit(j_common_ptr cinfo)
{
	struct jpeg_fail *f = (struct jpeg_fail *)cinfo->err;
	longjmp(f->jump, 1);
}

static void jpeg_quiet(j_common_ptr cinfo)
{
	(void)cinfo;
}

static int bad_args(const unsigned char *pixels, unsigned w, unsigned h,
                    int channels, unsigned char **out, size_t *len,
                    unsigned max_side)
{
	return !pixels || !out || !len || w == 0 || h == 0 || w > max_side ||
	       h > max_side || (channels != 1 && channels != 3);
}

int imgenc_jpeg(const unsigned char *pixels, unsigned w, unsigned h,
                int channels, int quality, unsigned char **out, size_t *len)
{
	struct jpeg_compress_struct c;
	struct jpeg_fail f;
	/* volatile: modified between setjmp() and a possible longjmp() */
	unsigned char *volatile ours = NULL;
	volatile int created = 0;
	volatile int rc = -1;

	if (bad_args(pixels, w, h, channels, out, len, 65500) || quality < 1 ||
	    quality > 100)
		return -1;
	/*
	 * Our own output buffer, large enough for any quality, so that
	 * libjpeg-turbo never replaces it: a buffer it grew itself would be
	 * lost if an error jumped out of the compression.
	 */
	size_t stride = (size_t)w * (size_t)channels;
	size_t cap = 2 * stride * h + 65536;
	ours = malloc(cap);
	if (!ours)
		return -1;
	memset(&c, 0, sizeof(c));
	c.err = jpeg_std_error(&f.mgr);
	f.mgr.error_exit = jpeg_fail_exit;
	f.mgr.output_message = jpeg_quiet;
	if (setjmp(f.jump))
		goto out;
	jpeg_create_compress(&c);
	created = 1;
	unsigned char *b = ours;
	unsigned long n = (unsigned long)cap;
	jpeg_mem_dest(&c, &b, &n);
	c.image_width = w;
	c.image_height = h;
	c.input_components = channels;
	c.in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, quality, TRUE);
	jpeg_start_compress(&c, TRUE);
	while (c.next_scanline < c.image_height) {
		JSAMPROW row = (JSAMPROW)(pixels + stride * c.next_scanline);
		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	if (b != ours) {
		/* grown by libjpeg-turbo with malloc(): ours is unused */
		free(ours);
	}
	ours = NULL;
	*out = b;
	*len = n;
	rc = 0;
out:
	if (created)
		jpeg_destroy_compress(&c);
	free(ours);
	return rc;
}

/* ---- PNG ----------------------------------------------------------------- */

static void be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* Writes a chunk (length, type, data, CRC over type + data) at p. */
static unsigned char *chunk(unsigned char *p, const char type[4],
                            const unsigned char *data, uint32_t n)
{
	be32(p, n);
	memcpy(p + 4, type, 4);
	if (n)
		memcpy(p + 8, data, n);
	uLong crc = crc32(0L, Z_NULL, 0);
	crc = crc32(crc, p + 4, 4 + n);
	be32(p + 8 + n, (uint32_t)crc);
	return p + 12 + n;
}

/* Rows prefixed with filter type 1 (Sub: byte minus the one bpp before). */
static unsigned char *filter_sub(const unsigned char *pixels, unsigned w,
                                 unsigned h, int channels, size_t *n)
{
	size_t stride = (size_t)w * (size_t)channels;
	unsigned char *f = malloc((stride + 1) * h);
	if (!f)
		return NULL;
	for (unsigned y = 0; y < h; y++) {
		const unsigned char *src = pixels + stride * y;
		unsigned char *dst = f + (stride + 1) * y;
		dst[0] = 1;
		for (size_t i = 0; i < stride; i++) {
			unsigned char left =
			        i >= (size_t)channels ? src[i - channels] : 0;
			dst[1 + i] = (unsigned char)(src[i] - left);
		}
	}
	*n = (stride + 1) * h;
	return f;
}

int imgenc_png(const unsigned char *pixels, unsigned w, unsigned h,
               int channels, unsigned char **out, size_t *len)
{
	static const unsigned char sig[8] = { 0x89, 'P',  'N',  'G',
		                              '\r', '\n', 0x1A, '\n' };
	unsigned char *raw = NULL, *z = NULL, *png = NULL;
	size_t raw_n = 0;
	int rc = -1;

	if (bad_args(pixels, w, h, channels, out, len, 65535))
		return -1;
	if ((size_t)w * (size_t)channels + 1 > (size_t)UINT32_MAX / h)
		return -1;
	raw = filter_sub(pixels, w, h, channels, &raw_n);
	if (!raw)
		goto out;
	uLongf z_n = compressBound((uLong)raw_n);
	if ((uint64_t)z_n > UINT32_MAX - 64)
		goto out;
	z = malloc(z_n);
	if (!z || compress2(z, &z_n, raw, (uLong)raw_n, 6) != Z_OK)
		goto out;
	png = malloc(8 + 25 + 12 + z_n + 12);
	if (!png)
		goto out;
	unsigned char ihdr[13];
	be32(ihdr, w);
	be32(ihdr + 4, h);
	ihdr[8] = 8;                        /* bit depth */
	ihdr[9] = channels == 3 ? 2 : 0;    /* truecolour or grey */
	ihdr[10] = ihdr[11] = ihdr[12] = 0; /* deflate, adaptive, none */
	memcpy(png, sig, 8);
	unsigned char *p = chunk(png + 8, "IHDR", ihdr, 13);
	p = chunk(p, "IDAT", z, (uint32_t)z_n);
	p = chunk(p, "IEND", NULL, 0);
	*out = png;
	*len = (size_t)(p - png);
	png = NULL;
	rc = 0;
out:
	free(raw);
	free(z);
	free(png);
	return rc;
}
