/*
 * test_pixel.c - unit tests of the pixel data part of the bridge (frames,
 * transcoding, rendering) through dcm.h. Fixtures are written here as
 * Part 10 bytes (native, or encapsulated JPEG 2000 made with OpenJPEG's
 * encoder); JPEG-LS, JPEG and RLE files are also made with DCMTK's own
 * command-line compressors so that our decoding is checked against an
 * encoder that is not ours.
 */
#include "dcm.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <openjpeg.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK_OK(expr)                                                         \
	do {                                                                   \
		int _s = (expr);                                               \
		if (_s != DCM_OK) {                                            \
			fprintf(stderr, "%s:%d: %s: %s: %s (%s)\n", __FILE__,  \
			        __LINE__, __func__, #expr, dcm_strerror(_s),   \
			        err.msg);                                      \
			failures++;                                            \
		}                                                              \
	} while (0)

#define ELE "1.2.840.10008.1.2.1"
#define ILE "1.2.840.10008.1.2"
#define DEFLATE "1.2.840.10008.1.2.1.99"
#define JPEG_BASE "1.2.840.10008.1.2.4.50"
#define JPEG_EXT "1.2.840.10008.1.2.4.51"
#define JPEG_LL "1.2.840.10008.1.2.4.57"
#define JPEG_SV1 "1.2.840.10008.1.2.4.70"
#define JLS "1.2.840.10008.1.2.4.80"
#define JLS_NEAR "1.2.840.10008.1.2.4.81"
#define J2K_LL "1.2.840.10008.1.2.4.90"
#define J2K "1.2.840.10008.1.2.4.91"
#define RLE "1.2.840.10008.1.2.5"

/* ---- growable byte buffer and Part 10 writer --------------------------- */

struct buf {
	unsigned char *p;
	size_t n, cap, pos;
};

static void put(struct buf *b, const void *src, size_t n)
{
	if (b->n + n > b->cap) {
		size_t c = (b->n + n) * 2 + 256;
		unsigned char *q = realloc(b->p, c);
		if (!q)
			abort();
		b->p = q;
		b->cap = c;
	}
	memcpy(b->p + b->n, src, n);
	b->n += n;
}

static void put16(struct buf *b, unsigned v)
{
	unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };
	put(b, x, 2);
}

static void put32(struct buf *b, unsigned long v)
{
	unsigned char x[4] = { (unsigned char)v, (unsigned char)(v >> 8),
		               (unsigned char)(v >> 16),
		               (unsigned char)(v >> 24) };
	put(b, x, 4);
}

/* An explicit VR little endian element, value padded to even length. */
static void el(struct buf *b, unsigned g, unsigned e, const char *vr,
               const void *val, size_t len)
{
	size_t plen = len + (len & 1);
	char pad = strcmp(vr, "UI") == 0 || strcmp(vr, "OB") == 0 ? 0 : ' ';
	put16(b, g);
	put16(b, e);
	put(b, vr, 2);
	if (!strcmp(vr, "OB") || !strcmp(vr, "OW")) {
		put16(b, 0);
		put32(b, plen);
	} else {
		put16(b, (unsigned)plen);
	}
	put(b, val, len);
	if (len & 1)
		put(b, &pad, 1);
}

static void els(struct buf *b, unsigned g, unsigned e, const char *vr,
                const char *s)
{
	el(b, g, e, vr, s, strlen(s));
}

static void elus(struct buf *b, unsigned g, unsigned e, unsigned v)
{
	unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };
	el(b, g, e, "US", x, 2);
}

/* What a fixture looks like. */
struct image {
	unsigned rows, cols, frames, spp, bits, stored;
	const char *photometric;
	const char *window; /* "center\\width" or NULL */
	const char *rescale_intercept;
	const unsigned char *pixels; /* all frames, little endian */
};

static size_t frame_size(const struct image *im)
{
	return (size_t)im->rows * im->cols * im->spp * (im->bits / 8);
}

/* Meta header + dataset up to (excluding) Pixel Data. */
static void header(struct buf *b, const struct image *im, const char *ts)
{
	struct buf meta = { 0 };
	unsigned char ver[2] = { 0, 1 };
	char n[16];
	for (int i = 0; i < 128; i++)
		put(b, "", 1);
	put(b, "DICM", 4);
	el(&meta, 0x0002, 0x0001, "OB", ver, 2);
	els(&meta, 0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.7");
	els(&meta, 0x0002, 0x0003, "UI", "1.2.3.4.5");
	els(&meta, 0x0002, 0x0010, "UI", ts);
	unsigned char gl[4] = { (unsigned char)meta.n,
		                (unsigned char)(meta.n >> 8), 0, 0 };
	el(b, 0x0002, 0x0000, "UL", gl, 4);
	put(b, meta.p, meta.n);
	free(meta.p);
	els(b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7");
	els(b, 0x0008, 0x0018, "UI", "1.2.3.4.5");
	els(b, 0x0008, 0x0060, "CS", "OT");
	els(b, 0x0020, 0x000D, "UI", "1.2.3.4");
	els(b, 0x0020, 0x000E, "UI", "1.2.3.4.1");
	elus(b, 0x0028, 0x0002, im->spp);
	els(b, 0x0028, 0x0004, "CS", im->photometric);
	if (im->spp > 1)
		elus(b, 0x0028, 0x0006, 0);
	snprintf(n, sizeof(n), "%u", im->frames);
	els(b, 0x0028, 0x0008, "IS", n);
	elus(b, 0x0028, 0x0010, im->rows);
	elus(b, 0x0028, 0x0011, im->cols);
	elus(b, 0x0028, 0x0100, im->bits);
	elus(b, 0x0028, 0x0101, im->stored);
	elus(b, 0x0028, 0x0102, im->stored - 1);
	elus(b, 0x0028, 0x0103, 0);
	if (im->window) {
		const char *bs = strchr(im->window, '\\');
		char c[32];
		snprintf(c, sizeof(c), "%.*s", (int)(bs - im->window),
		         im->window);
		els(b, 0x0028, 0x1050, "DS", c);
		els(b, 0x0028, 0x1051, "DS", bs + 1);
	}
	if (im->rescale_intercept) {
		els(b, 0x0028, 0x1052, "DS", im->rescale_intercept);
		els(b, 0x0028, 0x1053, "DS", "1");
	}
}

static int save(const char *path, const struct buf *b)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(b->p, 1, b->n, f);
	return fclose(f) == 0 && w == b->n ? 0 : -1;
}

/* Writes a native explicit little endian file. */
static int write_native(const char *path, const struct image *im)
{
	struct buf b = { 0 };
	header(&b, im, ELE);
	el(&b, 0x7FE0, 0x0010, im->bits > 8 ? "OW" : "OB", im->pixels,
	   frame_size(im) * im->frames);
	int rc = save(path, &b);
	free(b.p);
	return rc;
}

/* Writes an encapsulated file: empty offset table, the fragments given. */
static int write_encapsulated(const char *path, const struct image *im,
                              const char *ts, struct buf *frags, int nfrags)
{
	struct buf b = { 0 };
	header(&b, im, ts);
	put16(&b, 0x7FE0);
	put16(&b, 0x0010);
	put(&b, "OB\0\0", 4);
	put32(&b, 0xFFFFFFFFul);
	put16(&b, 0xFFFE);
	put16(&b, 0xE000);
	put32(&b, 0);
	for (int i = 0; i < nfrags; i++) {
		size_t n = frags[i].n + (frags[i].n & 1);
		put16(&b, 0xFFFE);
		put16(&b, 0xE000);
		put32(&b, n);
		put(&b, frags[i].p, frags[i].n);
		if (frags[i].n & 1)
			put(&b, "", 1);
	}
	put16(&b, 0xFFFE);
	put16(&b, 0xE0DD);
	put32(&b, 0);
	int rc = save(path, &b);
	free(b.p);
	return rc;
}

/* Deterministic 12-bit noise with structure, per frame. */
static unsigned char *make_pixels(const struct image *im)
{
	size_t n = frame_size(im) * im->frames;
	unsigned char *p = malloc(n);
	uint32_t x = 12345;
	unsigned max = (1u << im->stored) - 1;
	for (size_t i = 0; i < n; i += im->bits / 8) {
		x = x * 1103515245u + 12345u;
		unsigned v = ((unsigned)(i / 7) + (x >> 20)) & max;
		p[i] = (unsigned char)v;
		if (im->bits == 16)
			p[i + 1] = (unsigned char)(v >> 8);
	}
	return p;
}

/* Runs a program (no shell); returns its exit status, 127 if absent. */
static int run(const char *const argv[])
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Writes buf to a file in tmpdir named name; the path goes to out. */
static int save_mem(const char *name, const void *p, size_t n, char *out,
                    size_t cap)
{
	struct buf b = { (unsigned char *)p, n, n, 0 };
	tmp_path(out, cap, name);
	return save(out, &b);
}

/* Every frame of path (decoded to explicit LE) equals the fixture's. */
static int frames_equal(const char *path, const struct image *im)
{
	struct dcm_err err = { { 0 } };
	int same = 1;
	for (unsigned f = 1; f <= im->frames; f++) {
		void *out = NULL;
		size_t len = 0;
		char ts[65];
		int st = dcm_frame(path, f, ELE, &out, &len, ts, &err);
		if (st != DCM_OK) {
			fprintf(stderr, "frame %u of %s: %s %s\n", f, path,
			        dcm_strerror(st), err.msg);
			return 0;
		}
		if (len != frame_size(im) ||
		    memcmp(out, im->pixels + frame_size(im) * (f - 1), len))
			same = 0;
		free(out);
	}
	return same;
}

/* Transcodes src to ts into a file named name; 1 when it worked. */
static int transcode_to(const char *src, const char *ts, const char *name,
                        char *dst, size_t cap)
{
	struct dcm_err err = { { 0 } };
	void *out = NULL;
	size_t len = 0;
	int st = dcm_transcode_file(src, ts, &out, &len, &err);
	if (st != DCM_OK) {
		fprintf(stderr, "transcode %s to %s: %s %s\n", src, ts,
		        dcm_strerror(st), err.msg);
		return 0;
	}
	int ok = save_mem(name, out, len, dst, cap) == 0;
	struct dcm_ds *ds = NULL;
	char got[65] = "";
	if (dcm_ds_read_mem(out, len, &ds, &err) == DCM_OK) {
		dcm_ds_transfer_syntax(ds, got, sizeof(got));
		dcm_ds_free(ds);
	}
	if (strcmp(got, ts) != 0) {
		fprintf(stderr, "transcoded file says %s, not %s\n", got, ts);
		ok = 0;
	}
	free(out);
	return ok;
}

/* ---- fixtures ------------------------------------------------------------ */

static struct image ct3 = { 64,   48,   3,   1, 16, 12, "MONOCHROME2",
	                    NULL, NULL, NULL };
static char ct3_path[256];

static void test_native_frame_returns_exactly_that_frames_bytes(void)
{
	struct dcm_err err = { { 0 } };
	void *out = NULL;
	size_t len = 0;
	char ts[65] = "";
	CHECK_OK(dcm_frame(ct3_path, 2, NULL, &out, &len, ts, &err));
	CHECK_EQ_INT(len, frame_size(&ct3));
	CHECK(out && memcmp(out, ct3.pixels + frame_size(&ct3), len) == 0);
	CHECK(strcmp(ts, ELE) == 0);
	free(out);
	out = NULL;
	CHECK_OK(dcm_frame(ct3_path, 3, ILE, &out, &len, ts, &err));
	CHECK(out && memcmp(out, ct3.pixels + 2 * frame_size(&ct3), len) == 0);
	CHECK(strcmp(ts, ILE) == 0);
	free(out);
	out = NULL;
	CHECK_EQ_INT(dcm_frame(ct3_path, 4, NULL, &out, &len, ts, &err),
	             DCM_ERR_NOT_FOUND);
	CHECK_EQ_INT(dcm_frame(ct3_path, 0, NULL, &out, &len, ts, &err),
	             DCM_ERR_NOT_FOUND);
	CHECK(out == NULL);
}

static void test_frame_of_instance_without_pixel_data_is_an_arg_error(void)
{
	struct dcm_err err = { { 0 } };
	struct dcm_ds *ds = dcm_ds_new();
	char p[256];
	void *out = NULL;
	size_t len = 0;
	char ts[65];
	tmp_path(p, sizeof(p), "nopix.dcm");
	dcm_ds_set_string(ds, DCM_TAG(0x0008, 0x0016), "1.2.3");
	dcm_ds_set_string(ds, DCM_TAG(0x0008, 0x0018), "1.2.3.4");
	CHECK_OK(dcm_ds_write_file(ds, p, ELE, &err));
	dcm_ds_free(ds);
	CHECK_EQ_INT(dcm_frame(p, 1, NULL, &out, &len, ts, &err), DCM_ERR_ARG);
	tmp_path(p, sizeof(p), "missing.dcm");
	CHECK_EQ_INT(dcm_frame(p, 1, NULL, &out, &len, ts, &err), DCM_ERR_IO);
}

static void test_jpegls_frame_as_stored_is_the_codestream(void)
{
	struct dcm_err err = { { 0 } };
	char p[256];
	tmp_path(p, sizeof(p), "ct3_jls_tool.dcm");
	const char *argv[] = { "dcmcjpls", ct3_path, p, NULL };
	int st = run(argv);
	if (st == 127) {
		printf("SKIP %s: dcmcjpls not installed\n", __func__);
		return;
	}
	CHECK_EQ_INT(st, 0);
	void *out = NULL;
	size_t len = 0;
	char ts[65] = "";
	CHECK_OK(dcm_frame(p, 2, NULL, &out, &len, ts, &err));
	const unsigned char *c = out;
	CHECK(len > 4 && c[0] == 0xFF && c[1] == 0xD8 && c[2] == 0xFF &&
	      c[3] == 0xF7);
	CHECK(strcmp(ts, JLS) == 0);
	CHECK(len < frame_size(&ct3));
	free(out);
	CHECK(frames_equal(p, &ct3));
	char back[256];
	CHECK(transcode_to(p, ELE, "ct3_jls_tool_back.dcm", back,
	                   sizeof(back)));
	CHECK(frames_equal(back, &ct3));
}

static void test_fragmented_frames_without_offset_table_map_by_markers(void)
{
	char p[256];
	tmp_path(p, sizeof(p), "ct3_jls_frag.dcm");
	/* 1 KiB fragments, empty Basic Offset Table */
	const char *argv[] = {
		"dcmcjpls", "+fs", "1", "-ot", ct3_path, p, NULL
	};
	int st = run(argv);
	if (st == 127) {
		printf("SKIP %s: dcmcjpls not installed\n", __func__);
		return;
	}
	CHECK_EQ_INT(st, 0);
	CHECK(frames_equal(p, &ct3));
	/* and with an offset table */
	tmp_path(p, sizeof(p), "ct3_jls_frag_bot.dcm");
	const char *argv2[] = { "dcmcjpls", "+fs", "1", ct3_path, p, NULL };
	CHECK_EQ_INT(run(argv2), 0);
	CHECK(frames_equal(p, &ct3));
}

static void test_round_trips_through_each_lossless_codec(void)
{
	const char *tss[] = { JLS, RLE, JPEG_LL, JPEG_SV1, DEFLATE, ILE };
	for (size_t i = 0; i < sizeof(tss) / sizeof(tss[0]); i++) {
		char enc[256], back[256], name[64];
		snprintf(name, sizeof(name), "rt_%zu.dcm", i);
		if (!transcode_to(ct3_path, tss[i], name, enc, sizeof(enc))) {
			CHECK(!"transcode from explicit LE");
			continue;
		}
		CHECK(frames_equal(enc, &ct3));
		snprintf(name, sizeof(name), "rt_%zu_back.dcm", i);
		CHECK(transcode_to(enc, ELE, name, back, sizeof(back)));
		CHECK(frames_equal(back, &ct3));
	}
}

static void test_files_from_dcmtk_tools_decode_to_the_original(void)
{
	const char *tools[][2] = { { "dcmcrle", RLE },
		                   { "dcmcjpeg", JPEG_SV1 } };
	for (size_t i = 0; i < 2; i++) {
		char p[256], back[256], name[64];
		snprintf(name, sizeof(name), "tool_%zu.dcm", i);
		tmp_path(p, sizeof(p), name);
		const char *argv[] = { tools[i][0], ct3_path, p, NULL };
		int st = run(argv);
		if (st == 127) {
			printf("SKIP %s: %s not installed\n", __func__,
			       tools[i][0]);
			continue;
		}
		CHECK_EQ_INT(st, 0);
		snprintf(name, sizeof(name), "tool_%zu_back.dcm", i);
		CHECK(transcode_to(p, ELE, name, back, sizeof(back)));
		CHECK(frames_equal(back, &ct3));
		CHECK(frames_equal(p, &ct3));
	}
}

/* ---- JPEG 2000 made with OpenJPEG ---------------------------------------- */

static OPJ_SIZE_T w_write(void *src, OPJ_SIZE_T n, void *ud)
{
	struct buf *b = ud;
	if (b->pos + n > b->n) {
		size_t grow = b->pos + n - b->n;
		unsigned char *z = calloc(1, grow);
		put(b, z, grow);
		free(z);
	}
	memcpy(b->p + b->pos, src, n);
	b->pos += n;
	return n;
}

static OPJ_OFF_T w_skip(OPJ_OFF_T n, void *ud)
{
	struct buf *b = ud;
	b->pos += (size_t)n;
	return n;
}

static OPJ_BOOL w_seek(OPJ_OFF_T n, void *ud)
{
	struct buf *b = ud;
	b->pos = (size_t)n;
	return OPJ_TRUE;
}

/* Reversible (5-3) J2K codestream (or JP2 file) of one frame. */
static int j2k_encode(const struct image *im, const unsigned char *px, int jp2,
                      struct buf *out)
{
	opj_image_cmptparm_t cp[3];
	memset(cp, 0, sizeof(cp));
	for (unsigned c = 0; c < im->spp; c++) {
		cp[c].dx = cp[c].dy = 1;
		cp[c].w = im->cols;
		cp[c].h = im->rows;
		cp[c].prec = im->stored;
		cp[c].sgnd = 0;
	}
	opj_image_t *img = opj_image_create(
	        im->spp, cp, im->spp == 3 ? OPJ_CLRSPC_SRGB : OPJ_CLRSPC_GRAY);
	if (!img)
		return -1;
	img->x1 = im->cols;
	img->y1 = im->rows;
	size_t n = (size_t)im->rows * im->cols;
	unsigned bps = im->bits / 8;
	for (size_t i = 0; i < n; i++)
		for (unsigned c = 0; c < im->spp; c++) {
			const unsigned char *s = px + (i * im->spp + c) * bps;
			img->comps[c].data[i] =
			        bps == 2 ? (OPJ_INT32)(s[0] | s[1] << 8) : s[0];
		}
	opj_cparameters_t par;
	opj_set_default_encoder_parameters(&par);
	par.tcp_numlayers = 1;
	par.tcp_rates[0] = 0;
	par.cp_disto_alloc = 1;
	par.irreversible = 0;
	par.numresolution = 4;
	par.tcp_mct = im->spp == 3 ? 1 : 0;
	opj_codec_t *codec =
	        opj_create_compress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
	opj_stream_t *st = opj_stream_create(1 << 16, OPJ_FALSE);
	memset(out, 0, sizeof(*out));
	opj_stream_set_user_data(st, out, NULL);
	opj_stream_set_write_function(st, w_write);
	opj_stream_set_skip_function(st, w_skip);
	opj_stream_set_seek_function(st, w_seek);
	int ok = opj_setup_encoder(codec, &par, img) &&
	         opj_start_compress(codec, img, st) && opj_encode(codec, st) &&
	         opj_end_compress(codec, st);
	opj_stream_destroy(st);
	opj_destroy_codec(codec);
	opj_image_destroy(img);
	return ok ? 0 : -1;
}

static void test_jpeg2000_decodes_losslessly_to_native(void)
{
	struct dcm_err err = { { 0 } };
	struct buf cs[3], frags[6];
	int ok = 1;
	for (unsigned f = 0; f < 3; f++)
		ok &= j2k_encode(&ct3, ct3.pixels + f * frame_size(&ct3),
		                 f == 2, &cs[f]) == 0;
	CHECK(ok);
	if (!ok)
		return;
	/* one fragment per frame, frame 3 as a JP2 file */
	char p[256], back[256], jls[256];
	tmp_path(p, sizeof(p), "ct3_j2k.dcm");
	CHECK(write_encapsulated(p, &ct3, J2K_LL, cs, 3) == 0);
	void *out = NULL;
	size_t len = 0;
	char ts[65] = "";
	CHECK_OK(dcm_frame(p, 1, NULL, &out, &len, ts, &err));
	/* fragments are padded to even length */
	CHECK(len == cs[0].n + (cs[0].n & 1) && out &&
	      memcmp(out, cs[0].p, cs[0].n) == 0);
	CHECK(strcmp(ts, J2K_LL) == 0);
	free(out);
	CHECK(frames_equal(p, &ct3));
	CHECK(transcode_to(p, ELE, "ct3_j2k_back.dcm", back, sizeof(back)));
	CHECK(frames_equal(back, &ct3));
	CHECK(transcode_to(p, JLS, "ct3_j2k_jls.dcm", jls, sizeof(jls)));
	CHECK(frames_equal(jls, &ct3));
	/* two fragments per J2K frame, no offset table: SOC marker scan */
	for (unsigned f = 0; f < 2; f++) {
		size_t half = cs[f].n / 2 & ~(size_t)1;
		frags[2 * f] = (struct buf){ cs[f].p, half, half, 0 };
		frags[2 * f + 1] =
		        (struct buf){ cs[f].p + half, cs[f].n - half, 0, 0 };
	}
	struct image two = ct3;
	two.frames = 2;
	tmp_path(p, sizeof(p), "ct2_j2k_frag.dcm");
	CHECK(write_encapsulated(p, &two, J2K_LL, frags, 4) == 0);
	CHECK(frames_equal(p, &two));
	CHECK_EQ_INT(dcm_transcode_file(p, J2K_LL "0", &out, &len, &err),
	             DCM_ERR_UNSUPPORTED);
	CHECK_EQ_INT(dcm_transcode_file(back, J2K_LL, &out, &len, &err),
	             DCM_ERR_UNSUPPORTED);
	for (unsigned f = 0; f < 3; f++)
		free(cs[f].p);
}

static void test_colour_jpeg2000_with_mct_decodes_to_rgb(void)
{
	struct dcm_err err = { { 0 } };
	struct image rgb = { 32, 40, 1, 3, 8, 8, "YBR_RCT", NULL, NULL, NULL };
	rgb.pixels = make_pixels(&rgb);
	struct buf cs;
	CHECK(j2k_encode(&rgb, rgb.pixels, 0, &cs) == 0);
	char p[256];
	tmp_path(p, sizeof(p), "rgb_j2k.dcm");
	CHECK(write_encapsulated(p, &rgb, J2K_LL, &cs, 1) == 0);
	CHECK(frames_equal(p, &rgb));
	unsigned char *px = NULL;
	unsigned w = 0, h = 0;
	int ch = 0;
	struct dcm_render_opts o = { 1, 0, 0, 0, 0, 0 };
	CHECK_OK(dcm_render(p, &o, &px, &w, &h, &ch, &err));
	CHECK_EQ_INT(ch, 3);
	CHECK(w == 40 && h == 32 && px &&
	      memcmp(px, rgb.pixels, (size_t)w * h * 3) == 0);
	free(px);
	free(cs.p);
	free((void *)rgb.pixels);
}

static void test_can_transcode_truth_table(void)
{
	CHECK_EQ_INT(dcm_can_transcode(ELE, ELE), 1);
	CHECK_EQ_INT(dcm_can_transcode("1.2.3.4", "1.2.3.4"), 1);
	CHECK_EQ_INT(dcm_can_transcode(JLS, ELE), 1);
	CHECK_EQ_INT(dcm_can_transcode(ELE, JLS), 1);
	CHECK_EQ_INT(dcm_can_transcode(ELE, RLE), 1);
	CHECK_EQ_INT(dcm_can_transcode(RLE, JPEG_LL), 1);
	CHECK_EQ_INT(dcm_can_transcode(J2K_LL, ELE), 1);
	CHECK_EQ_INT(dcm_can_transcode(J2K, ILE), 1);
	CHECK_EQ_INT(dcm_can_transcode(J2K_LL, JPEG_BASE), 1);
	CHECK_EQ_INT(dcm_can_transcode(ELE, J2K_LL), 0);
	CHECK_EQ_INT(dcm_can_transcode(JLS, J2K), 0);
	CHECK_EQ_INT(dcm_can_transcode(JPEG_BASE, ELE), 1);
	CHECK_EQ_INT(dcm_can_transcode(JPEG_BASE, JLS), 1);
	CHECK_EQ_INT(dcm_can_transcode(JPEG_BASE, JPEG_EXT), 1);
	CHECK_EQ_INT(dcm_can_transcode(J2K, JPEG_BASE), 0);
	CHECK_EQ_INT(dcm_can_transcode(JPEG_EXT, JLS_NEAR), 0);
	CHECK_EQ_INT(dcm_can_transcode(ELE, "1.2.840.10008.1.2.4.100"), 0);
	CHECK_EQ_INT(dcm_can_transcode("bogus", ELE), 0);
	CHECK_EQ_INT(dcm_can_transcode(NULL, ELE), 0);
}

static void test_lossy_targets_are_made_from_lossless_sources(void)
{
	struct dcm_err err = { { 0 } };
	struct image g8 = {
		32, 32, 2, 1, 8, 8, "MONOCHROME2", NULL, NULL, NULL
	};
	g8.pixels = make_pixels(&g8);
	char p[256], enc[256];
	tmp_path(p, sizeof(p), "g8.dcm");
	CHECK(write_native(p, &g8) == 0);
	CHECK(transcode_to(p, JPEG_BASE, "g8_jpeg.dcm", enc, sizeof(enc)));
	void *out = NULL;
	size_t len = 0;
	char ts[65];
	CHECK_OK(dcm_frame(enc, 2, ELE, &out, &len, ts, &err));
	CHECK_EQ_INT(len, frame_size(&g8));
	free(out);
	/* baseline is served as extended without re-encoding */
	CHECK_OK(dcm_frame(enc, 1, JPEG_EXT, &out, &len, ts, &err));
	void *stored = NULL;
	size_t slen = 0;
	CHECK_OK(dcm_frame(enc, 1, NULL, &stored, &slen, ts, &err));
	CHECK(slen == len && memcmp(out, stored, len) == 0);
	free(out);
	free(stored);
	CHECK_EQ_INT(dcm_transcode_file(enc, JLS_NEAR, &out, &len, &err),
	             DCM_ERR_UNSUPPORTED);
	/* a single frame can be compressed on demand */
	CHECK_OK(dcm_frame(p, 2, JLS, &out, &len, ts, &err));
	CHECK(len > 4 && ((unsigned char *)out)[3] == 0xF7);
	CHECK(strcmp(ts, JLS) == 0);
	free(out);
	free((void *)g8.pixels);
}

/* ---- rendering ------------------------------------------------------------
 */

static void test_render_applies_window_rescale_and_monochrome1(void)
{
	struct dcm_err err = { { 0 } };
	struct image ct = { 32,          64,      1,   1, 16, 12, "MONOCHROME2",
		            "1000\\100", "-1024", NULL };
	size_t n = frame_size(&ct);
	unsigned char *px = calloc(1, n);
	unsigned vals[3] = { 1064, 0, 2000 }; /* HU 40, -1024, 976 */
	for (size_t i = 0; i < (size_t)ct.rows * ct.cols; i++) {
		unsigned v = vals[i % 3];
		px[2 * i] = (unsigned char)v;
		px[2 * i + 1] = (unsigned char)(v >> 8);
	}
	ct.pixels = px;
	char p[256], m1[256];
	tmp_path(p, sizeof(p), "render_ct.dcm");
	CHECK(write_native(p, &ct) == 0);
	unsigned char *out = NULL;
	unsigned w = 0, h = 0;
	int ch = 0;
	struct dcm_render_opts o = { 1, 1, 40, 400, 0, 0 };
	CHECK_OK(dcm_render(p, &o, &out, &w, &h, &ch, &err));
	CHECK(w == 64 && h == 32 && ch == 1);
	if (out) {
		CHECK(out[0] >= 126 && out[0] <= 130);
		CHECK_EQ_INT(out[1], 0);
		CHECK_EQ_INT(out[2], 255);
	}
	free(out);
	out = NULL;
	/* the file's window: HU 40 is below 1000 - 50 */
	o.has_window = 0;
	CHECK_OK(dcm_render(p, &o, &out, &w, &h, &ch, &err));
	/* (976 - 950) / 100 * 255 = 66 */
	if (out)
		CHECK(out[0] == 0 && out[1] == 0 && out[2] >= 63 &&
		      out[2] <= 69);
	free(out);
	out = NULL;
	/* MONOCHROME1 inverts */
	ct.photometric = "MONOCHROME1";
	tmp_path(m1, sizeof(m1), "render_m1.dcm");
	CHECK(write_native(m1, &ct) == 0);
	o.has_window = 1;
	CHECK_OK(dcm_render(m1, &o, &out, &w, &h, &ch, &err));
	if (out) {
		CHECK(out[0] >= 125 && out[0] <= 129);
		CHECK_EQ_INT(out[1], 255);
		CHECK_EQ_INT(out[2], 0);
	}
	free(out);
	out = NULL;
	/* no window in the file: min-max */
	ct.photometric = "MONOCHROME2";
	ct.window = NULL;
	CHECK(write_native(p, &ct) == 0);
	o.has_window = 0;
	CHECK_OK(dcm_render(p, &o, &out, &w, &h, &ch, &err));
	if (out)
		CHECK(out[1] == 0 && out[2] == 255 && out[0] > 0 &&
		      out[0] < 255);
	free(out);
	out = NULL;
	o.frame = 2;
	CHECK_EQ_INT(dcm_render(p, &o, &out, &w, &h, &ch, &err),
	             DCM_ERR_NOT_FOUND);
	free(px);
}

static void test_render_fits_the_viewport_without_upscaling(void)
{
	struct dcm_err err = { { 0 } };
	unsigned char *out = NULL;
	unsigned w = 0, h = 0;
	int ch = 0;
	/* ct3 is 48 wide x 64 high */
	struct dcm_render_opts o = { 3, 0, 0, 0, 16, 16 };
	CHECK_OK(dcm_render(ct3_path, &o, &out, &w, &h, &ch, &err));
	CHECK_EQ_INT(w, 12);
	CHECK_EQ_INT(h, 16);
	free(out);
	out = NULL;
	o.max_w = 1000;
	o.max_h = 1000;
	CHECK_OK(dcm_render(ct3_path, &o, &out, &w, &h, &ch, &err));
	CHECK(w == 48 && h == 64);
	free(out);
	out = NULL;
	o.max_w = 24;
	o.max_h = 0;
	CHECK_OK(dcm_render(ct3_path, &o, &out, &w, &h, &ch, &err));
	CHECK(w == 24 && h == 32);
	free(out);
}

static void test_render_of_compressed_frame_matches_native(void)
{
	struct dcm_err err = { { 0 } };
	char enc[256];
	CHECK(transcode_to(ct3_path, JLS, "render_jls.dcm", enc, sizeof(enc)));
	struct dcm_render_opts o = { 2, 1, 2000, 4000, 0, 0 };
	unsigned char *a = NULL, *b = NULL;
	unsigned w1 = 0, h1 = 0, w2 = 0, h2 = 0;
	int c1 = 0, c2 = 0;
	CHECK_OK(dcm_render(ct3_path, &o, &a, &w1, &h1, &c1, &err));
	CHECK_OK(dcm_render(enc, &o, &b, &w2, &h2, &c2, &err));
	CHECK(a && b && w1 == w2 && h1 == h2 && c1 == c2 &&
	      memcmp(a, b, (size_t)w1 * h1) == 0);
	free(a);
	free(b);
}

/* ---- concurrency -------------------------------------------------------- */

struct job {
	const char *src;
	const char *ts;
	void *out;
	size_t len;
	int status;
};

static void *transcode_job(void *arg)
{
	struct job *j = arg;
	struct dcm_err err;
	for (int i = 0; i < 5 && j->status == DCM_OK; i++) {
		free(j->out);
		j->out = NULL;
		j->status = dcm_transcode_file(j->src, j->ts, &j->out, &j->len,
		                               &err);
	}
	return NULL;
}

static void test_concurrent_transcodes_give_the_same_bytes(void)
{
	char jls[256];
	CHECK(transcode_to(ct3_path, JLS, "mt_jls.dcm", jls, sizeof(jls)));
	struct job jobs[4] = {
		{ jls, ELE, NULL, 0, 0 },
		{ ct3_path, JLS, NULL, 0, 0 },
		{ jls, ELE, NULL, 0, 0 },
		{ ct3_path, JLS, NULL, 0, 0 },
	};
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&t[i], NULL, transcode_job, &jobs[i]) ==
		      0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 4; i++)
		CHECK_EQ_INT(jobs[i].status, DCM_OK);
	CHECK(jobs[0].len == jobs[2].len && jobs[0].out && jobs[2].out &&
	      memcmp(jobs[0].out, jobs[2].out, jobs[0].len) == 0);
	CHECK(jobs[1].len == jobs[3].len && jobs[1].out && jobs[3].out &&
	      memcmp(jobs[1].out, jobs[3].out, jobs[1].len) == 0);
	for (int i = 0; i < 4; i++)
		free(jobs[i].out);
}

/*
 * A frame shorter than its JPEG-LS codestream: lossless goes through
 * DCMTK's raw encoder, near-lossless is refused (its encoder writes past
 * the frame; dcm_common.cc); under valgrind, nothing out of bounds.
 */
static void test_tiny_frames_and_jpegls(void)
{
	static struct image tiny = { 3,    5,    1,   1, 8, 8, "MONOCHROME2",
		                     NULL, NULL, NULL };
	struct dcm_err err = { { 0 } };
	char p[256], enc[256];
	void *out = NULL;
	size_t len = 0;
	char ts[65];

	tiny.pixels = make_pixels(&tiny);
	tmp_path(p, sizeof(p), "tiny.dcm");
	CHECK(write_native(p, &tiny) == 0);
	CHECK(transcode_to(p, JLS, "tiny_jls.dcm", enc, sizeof(enc)));
	CHECK(frames_equal(enc, &tiny));
	CHECK_OK(dcm_frame(p, 1, JLS, &out, &len, ts, &err));
	free(out);
	out = NULL;
	CHECK_EQ_INT(dcm_frame(p, 1, JLS_NEAR, &out, &len, ts, &err),
	             DCM_ERR_UNSUPPORTED);
	CHECK_EQ_INT(dcm_transcode_file(p, JLS_NEAR, &out, &len, &err),
	             DCM_ERR_UNSUPPORTED);
	CHECK(out == NULL);
	free((void *)tiny.pixels);
}

int main(void)
{
	if (test_setup("test_pixel") != 0)
		return 1;
	CHECK(strcmp(dcm_strerror(DCM_ERR_UNSUPPORTED),
	             "DCM_ERR_UNSUPPORTED") == 0);
	ct3.pixels = make_pixels(&ct3);
	tmp_path(ct3_path, sizeof(ct3_path), "ct3.dcm");
	if (write_native(ct3_path, &ct3) != 0) {
		fprintf(stderr, "cannot write fixture\n");
		return 1;
	}
	test_native_frame_returns_exactly_that_frames_bytes();
	test_frame_of_instance_without_pixel_data_is_an_arg_error();
	test_jpegls_frame_as_stored_is_the_codestream();
	test_fragmented_frames_without_offset_table_map_by_markers();
	test_round_trips_through_each_lossless_codec();
	test_files_from_dcmtk_tools_decode_to_the_original();
	test_jpeg2000_decodes_losslessly_to_native();
	test_colour_jpeg2000_with_mct_decodes_to_rgb();
	test_can_transcode_truth_table();
	test_lossy_targets_are_made_from_lossless_sources();
	test_tiny_frames_and_jpegls();
	test_render_applies_window_rescale_and_monochrome1();
	test_render_fits_the_viewport_without_upscaling();
	test_render_of_compressed_frame_matches_native();
	test_concurrent_transcodes_give_the_same_bytes();
	free((void *)ct3.pixels);
	return test_finish("pixel");
}
