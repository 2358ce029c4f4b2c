/*
 * test_dcm.c - unit tests of the DCMTK bridge through its C interface only
 * (dcm.h): datasets, getters, files, DICOM JSON checked with jansson, and a
 * loopback storage SCP exercised by the SCU side in the same process.
 */
#include "dcm.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define T_SOP_CLASS DCM_TAG(0x0008, 0x0016)
#define T_SOP_INST DCM_TAG(0x0008, 0x0018)
#define T_STUDY DCM_TAG(0x0020, 0x000D)
#define T_SERIES DCM_TAG(0x0020, 0x000E)
#define T_PATIENT_ID DCM_TAG(0x0010, 0x0020)
#define T_PATIENT_NAME DCM_TAG(0x0010, 0x0010)
#define T_IMAGE_TYPE DCM_TAG(0x0008, 0x0008)
#define T_ROWS DCM_TAG(0x0028, 0x0010)
#define T_FRAMES DCM_TAG(0x0028, 0x0008)
#define T_ACCESSION DCM_TAG(0x0008, 0x0050)

#define CT_CLASS "1.2.840.10008.5.1.4.1.1.2"
#define ELE_TS "1.2.840.10008.1.2.1"

/* A small CT-like instance; the caller frees it. */
static struct dcm_ds *make_instance(const char *sop_uid)
{
	struct dcm_ds *ds = dcm_ds_new();
	if (!ds)
		return NULL;
	dcm_ds_set_string(ds, T_SOP_CLASS, CT_CLASS);
	dcm_ds_set_string(ds, T_SOP_INST, sop_uid);
	dcm_ds_set_string(ds, T_STUDY, "1.2.826.0.1.3680043.2.1125.1");
	dcm_ds_set_string(ds, T_SERIES, "1.2.826.0.1.3680043.2.1125.1.1");
	dcm_ds_set_string(ds, T_PATIENT_ID, "PID-42");
	dcm_ds_set_string(ds, T_PATIENT_NAME, "DOE^JOHN");
	dcm_ds_set_string(ds, T_IMAGE_TYPE, "ORIGINAL\\PRIMARY\\AXIAL");
	dcm_ds_set_string(ds, T_ROWS, "512");
	return ds;
}

static void test_get_string_handles_absent_empty_too_long_and_multi_values(void)
{
	struct dcm_ds *ds = make_instance("1.2.3.4");
	char buf[64];
	CHECK(ds != NULL);
	CHECK_EQ_INT(dcm_ds_get_string(ds, T_PATIENT_ID, buf, sizeof(buf)),
	             DCM_OK);
	CHECK_EQ_STR(buf, "PID-42");
	CHECK_EQ_INT(dcm_ds_get_string(ds, T_ACCESSION, buf, sizeof(buf)),
	             DCM_ERR_NOT_FOUND);
	CHECK_EQ_INT(dcm_ds_set_string(ds, T_ACCESSION, ""), DCM_OK);
	snprintf(buf, sizeof(buf), "junk");
	CHECK_EQ_INT(dcm_ds_get_string(ds, T_ACCESSION, buf, sizeof(buf)),
	             DCM_OK);
	CHECK_EQ_STR(buf, "");
	CHECK_EQ_INT(dcm_ds_get_string(ds, T_IMAGE_TYPE, buf, sizeof(buf)),
	             DCM_OK);
	CHECK_EQ_STR(buf, "ORIGINAL\\PRIMARY\\AXIAL");
	CHECK_EQ_INT(dcm_ds_get_string(ds, T_IMAGE_TYPE, buf, 5),
	             DCM_ERR_TOO_LONG);
	CHECK_EQ_STR(buf, "ORIG");
	CHECK_EQ_INT(dcm_ds_get_string(ds, T_ROWS, buf, sizeof(buf)), DCM_OK);
	CHECK_EQ_STR(buf, "512");
	/* odd-length value padded to even length comes back unpadded */
	CHECK_EQ_INT(dcm_ds_set_string(ds, T_PATIENT_NAME, "DOE^JO"), DCM_OK);
	CHECK_EQ_INT(dcm_ds_set_string(ds, T_PATIENT_ID, "ABC"), DCM_OK);
	CHECK_EQ_INT(dcm_ds_get_string(ds, T_PATIENT_ID, buf, sizeof(buf)),
	             DCM_OK);
	CHECK_EQ_STR(buf, "ABC");
	CHECK_EQ_INT(dcm_ds_set_string(ds, DCM_TAG(0x0009, 0x1001), "x"),
	             DCM_ERR_ARG);
	dcm_ds_free(ds);
}

static void test_get_long_reads_binary_and_text_integers(void)
{
	struct dcm_ds *ds = make_instance("1.2.3.4");
	long v = -1;
	CHECK_EQ_INT(dcm_ds_get_long(ds, T_ROWS, &v), DCM_OK);
	CHECK_EQ_INT(v, 512);
	CHECK_EQ_INT(dcm_ds_get_long(ds, T_FRAMES, &v), DCM_ERR_NOT_FOUND);
	CHECK_EQ_INT(dcm_ds_set_string(ds, T_FRAMES, "12\\3"), DCM_OK);
	CHECK_EQ_INT(dcm_ds_get_long(ds, T_FRAMES, &v), DCM_OK);
	CHECK_EQ_INT(v, 12);
	CHECK_EQ_INT(dcm_ds_get_long(ds, T_PATIENT_NAME, &v), DCM_ERR_ARG);
	dcm_ds_free(ds);
}

static long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_written_file_reads_back_with_its_transfer_syntax(void)
{
	char path[256], buf[80];
	struct dcm_err err = { { 0 } };
	struct dcm_ds *ds = make_instance("1.2.3.5"), *back = NULL;
	tmp_path(path, sizeof(path), "rt.dcm");
	CHECK_EQ_INT(dcm_ds_write_file(ds, path, ELE_TS, &err), DCM_OK);
	CHECK_EQ_INT(dcm_ds_read_file(path, 0, &back, &err), DCM_OK);
	if (back) {
		CHECK_EQ_INT(
		        dcm_ds_get_string(back, T_SOP_INST, buf, sizeof(buf)),
		        DCM_OK);
		CHECK_EQ_STR(buf, "1.2.3.5");
		CHECK_EQ_INT(dcm_ds_transfer_syntax(back, buf, sizeof(buf)),
		             DCM_OK);
		CHECK_EQ_STR(buf, ELE_TS);
		dcm_ds_free(back);
	}
	/* implicit VR little endian */
	CHECK_EQ_INT(dcm_ds_write_file(ds, path, "1.2.840.10008.1.2", &err),
	             DCM_OK);
	back = NULL;
	CHECK_EQ_INT(dcm_ds_read_file(path, 4096, &back, &err), DCM_OK);
	if (back) {
		CHECK_EQ_INT(dcm_ds_transfer_syntax(back, buf, sizeof(buf)),
		             DCM_OK);
		CHECK_EQ_STR(buf, "1.2.840.10008.1.2");
		dcm_ds_free(back);
	}
	CHECK_EQ_INT(dcm_ds_write_file(ds, path, "1.2.3.999", &err),
	             DCM_ERR_ARG);
	dcm_ds_free(ds);
}

static void test_reading_garbage_or_missing_file_fails(void)
{
	char path[256];
	struct dcm_err err = { { 0 } };
	struct dcm_ds *ds = NULL;
	tmp_path(path, sizeof(path), "garbage.dcm");
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (f) {
		for (int i = 0; i < 50; i++)
			fputs("this is not a DICOM file, only some text\n", f);
		fclose(f);
	}
	CHECK_EQ_INT(dcm_ds_read_file(path, 0, &ds, &err), DCM_ERR_PARSE);
	CHECK(ds == NULL);
	CHECK(err.msg[0] != '\0');
	tmp_path(path, sizeof(path), "does-not-exist.dcm");
	CHECK_EQ_INT(dcm_ds_read_file(path, 0, &ds, &err), DCM_ERR_IO);
	static const char junk[] = "\x01\x02\x03garbage garbage garbage";
	CHECK_EQ_INT(dcm_ds_read_mem(junk, sizeof(junk), &ds, &err),
	             DCM_ERR_PARSE);
	CHECK(ds == NULL);
}

static void test_instance_info_requires_valid_uids(void)
{
	struct dcm_instance_info info;
	struct dcm_err err = { { 0 } };
	struct dcm_ds *ds = make_instance("1.2.3.6");
	CHECK_EQ_INT(dcm_ds_instance_info(ds, &info, &err), DCM_OK);
	CHECK_EQ_STR(info.sop_instance_uid, "1.2.3.6");
	CHECK_EQ_STR(info.sop_class_uid, CT_CLASS);
	CHECK_EQ_STR(info.patient_id, "PID-42");
	CHECK_EQ_INT(info.number_of_frames, 1);
	dcm_ds_set_string(ds, T_SERIES, "1.2.abc");
	CHECK_EQ_INT(dcm_ds_instance_info(ds, &info, &err), DCM_ERR_PARSE);
	CHECK(strstr(err.msg, "SeriesInstanceUID") != NULL);
	dcm_ds_set_string(ds, T_SERIES, "1.2..3");
	CHECK_EQ_INT(dcm_ds_instance_info(ds, &info, &err), DCM_ERR_PARSE);
	dcm_ds_free(ds);
	ds = dcm_ds_new();
	dcm_ds_set_string(ds, T_SOP_CLASS, CT_CLASS);
	CHECK_EQ_INT(dcm_ds_instance_info(ds, &info, &err), DCM_ERR_PARSE);
	CHECK(strstr(err.msg, "SOPInstanceUID") != NULL);
	dcm_ds_free(ds);
}

/* ---- hand-made explicit VR little endian Part 10 buffer ---------------- */

struct buf {
	unsigned char b[8192];
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n <= sizeof(b->b)) {
		memcpy(b->b + b->n, p, n);
		b->n += n;
	}
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

/* Element with a value; pads odd text with pad. */
static void el(struct buf *b, unsigned g, unsigned e, const char *vr,
               const void *val, size_t len, char pad)
{
	size_t plen = len + (len & 1);
	put16(b, g);
	put16(b, e);
	put(b, vr, 2);
	if (!strcmp(vr, "OB") || !strcmp(vr, "OW") || !strcmp(vr, "SQ") ||
	    !strcmp(vr, "UT") || !strcmp(vr, "UN")) {
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
	el(b, g, e, vr, s, strlen(s), strcmp(vr, "UI") ? ' ' : '\0');
}

static struct dcm_ds *json_fixture(void)
{
	static struct buf b;
	struct dcm_err err = { { 0 } };
	memset(&b, 0, sizeof(b));
	b.n = 128;
	put(&b, "DICM", 4);
	struct buf meta = { { 0 }, 0 };
	unsigned char ver[2] = { 0, 1 };
	el(&meta, 0x0002, 0x0001, "OB", ver, 2, 0);
	els(&meta, 0x0002, 0x0002, "UI", CT_CLASS);
	els(&meta, 0x0002, 0x0003, "UI", "1.2.3.7");
	els(&meta, 0x0002, 0x0010, "UI", ELE_TS);
	el(&b, 0x0002, 0x0000, "UL", "\0\0\0\0", 4, 0);
	b.b[b.n - 4] = (unsigned char)meta.n;
	b.b[b.n - 3] = (unsigned char)(meta.n >> 8);
	put(&b, meta.b, meta.n);

	els(&b, 0x0008, 0x0005, "CS", "ISO_IR 100");
	els(&b, 0x0008, 0x0016, "UI", CT_CLASS);
	els(&b, 0x0008, 0x0018, "UI", "1.2.3.7");
	els(&b, 0x0008, 0x0050, "SH", "");
	els(&b, 0x0008, 0x0081, "ST", "a\"b\\c\td\x01");
	/* "Müller^Hans" in Latin-1, with an ideographic group */
	els(&b, 0x0010, 0x0010, "PN", "M\xfcller^Hans=MU^HA");
	els(&b, 0x0010, 0x1020, "DS", "1.5\\+2\\.5\\-3.\\1e3\\");
	els(&b, 0x0010, 0x1030, "DS", "abc");
	els(&b, 0x0020, 0x0013, "IS", "007");
	unsigned char at[4] = { 0x10, 0x00, 0x20, 0x00 }; /* (0010,0020) */
	el(&b, 0x0020, 0x5000, "AT", at, 4, 0);
	unsigned char us[2] = { 0x00, 0x02 };
	el(&b, 0x0028, 0x0010, "US", us, 2, 0);
	/* (0054,0016) SQ, undefined length, one item with a long LT */
	put16(&b, 0x0054);
	put16(&b, 0x0016);
	put(&b, "SQ\0\0", 4);
	put32(&b, 0xFFFFFFFFul);
	put16(&b, 0xFFFE);
	put16(&b, 0xE000);
	put32(&b, 0xFFFFFFFFul);
	els(&b, 0x0018, 0x1072, "TM", "101500");
	char lt[201];
	memset(lt, 'x', 200);
	lt[200] = '\0';
	els(&b, 0x0020, 0x4000, "LT", lt);
	put16(&b, 0xFFFE);
	put16(&b, 0xE00D);
	put32(&b, 0);
	put16(&b, 0xFFFE);
	put16(&b, 0xE0DD);
	put32(&b, 0);
	unsigned char px[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	el(&b, 0x7FE0, 0x0010, "OW", px, sizeof(px), 0);

	struct dcm_ds *ds = NULL;
	int st = dcm_ds_read_mem(b.b, b.n, &ds, &err);
	if (st != DCM_OK)
		fprintf(stderr, "json_fixture: %s: %s\n", dcm_strerror(st),
		        err.msg);
	return ds;
}

static json_t *value0(json_t *root, const char *tag)
{
	return json_array_get(
	        json_object_get(json_object_get(root, tag), "Value"), 0);
}

static void test_json_is_valid_typed_utf8_and_uses_bulk_uris(void)
{
	struct dcm_ds *ds = json_fixture();
	char *out = NULL;
	size_t len = 0;
	struct dcm_err err = { { 0 } };
	CHECK(ds != NULL);
	if (!ds)
		return;
	CHECK_EQ_INT(dcm_ds_to_json(ds, 64, "http://x/bulk/", &out, &len, &err),
	             DCM_OK);
	CHECK(out != NULL && strlen(out) == len);
	json_error_t jerr;
	json_t *root = out ? json_loads(out, 0, &jerr) : NULL;
	if (!root)
		fprintf(stderr, "JSON: %s\n%s\n", jerr.text, out ? out : "");
	CHECK(root != NULL);
	if (root) {
		const char *k;
		json_t *v;
		json_object_foreach(root, k, v)
		        CHECK(strncmp(k, "0002", 4) != 0);
		json_t *pn = value0(root, "00100010");
		CHECK_EQ_STR(
		        json_string_value(json_object_get(pn, "Alphabetic")),
		        "M\xc3\xbcller^Hans");
		CHECK_EQ_STR(
		        json_string_value(json_object_get(pn, "Ideographic")),
		        "MU^HA");
		CHECK_EQ_STR(json_string_value(json_object_get(
		                     json_object_get(root, "00100010"), "vr")),
		             "PN");
		json_t *ds_vals = json_object_get(
		        json_object_get(root, "00101020"), "Value");
		CHECK_EQ_INT(json_array_size(ds_vals), 6);
		CHECK(json_number_value(json_array_get(ds_vals, 0)) == 1.5);
		CHECK(json_number_value(json_array_get(ds_vals, 1)) == 2);
		CHECK(json_number_value(json_array_get(ds_vals, 2)) == 0.5);
		CHECK(json_number_value(json_array_get(ds_vals, 3)) == -3);
		CHECK(json_number_value(json_array_get(ds_vals, 4)) == 1000);
		CHECK(json_is_null(json_array_get(ds_vals, 5)));
		CHECK_EQ_STR(json_string_value(value0(root, "00101030")),
		             "abc");
		CHECK(json_is_integer(value0(root, "00200013")));
		CHECK_EQ_INT(json_integer_value(value0(root, "00200013")), 7);
		CHECK_EQ_INT(json_integer_value(value0(root, "00280010")), 512);
		CHECK_EQ_STR(json_string_value(value0(root, "00205000")),
		             "00100020");
		CHECK_EQ_STR(json_string_value(value0(root, "00080081")),
		             "a\"b\\c\td\x01");
		json_t *acc = json_object_get(root, "00080050");
		CHECK(acc != NULL && json_object_get(acc, "Value") == NULL);
		json_t *item = value0(root, "00540016");
		CHECK(json_is_object(item));
		CHECK_EQ_STR(json_string_value(value0(item, "00181072")),
		             "101500");
		CHECK_EQ_STR(json_string_value(json_object_get(
		                     json_object_get(item, "00204000"),
		                     "BulkDataURI")),
		             "http://x/bulk/00540016/0/00204000");
		json_t *pix = json_object_get(root, "7FE00010");
		CHECK_EQ_STR(
		        json_string_value(json_object_get(pix, "BulkDataURI")),
		        "http://x/bulk/7FE00010");
		CHECK_EQ_STR(json_string_value(json_object_get(pix, "vr")),
		             "OW");
		json_decref(root);
	}
	free(out);
	out = NULL;
	/* without a prefix, bulk values are reduced to their VR */
	CHECK_EQ_INT(dcm_ds_to_json(ds, 64, NULL, &out, NULL, &err), DCM_OK);
	root = out ? json_loads(out, 0, &jerr) : NULL;
	CHECK(root != NULL);
	if (root) {
		json_t *pix = json_object_get(root, "7FE00010");
		CHECK(pix != NULL && json_object_size(pix) == 1);
		json_decref(root);
	}
	free(out);
	dcm_ds_free(ds);
}

/* ---- loopback SCU/SCP -------------------------------------------------- */

struct sink {
	pthread_mutex_t mu;
	int stored, rejected;
	struct dcm_instance_info info;
	char calling[32];
	char reason[256];
	char kept[256]; /* where the last stored file was moved */
	char tmp_name[256];
};

static unsigned on_stored(void *ctx, const struct dcm_ds *ds,
                          const struct dcm_instance_info *info,
                          const char *tmp_path, const char *calling_aet)
{
	struct sink *s = ctx;
	char pid[65];
	pthread_mutex_lock(&s->mu);
	s->stored++;
	s->info = *info;
	snprintf(s->calling, sizeof(s->calling), "%s", calling_aet);
	snprintf(s->tmp_name, sizeof(s->tmp_name), "%s", tmp_path);
	snprintf(s->kept, sizeof(s->kept), "%s/kept-%d.dcm", tmpdir, s->stored);
	if (dcm_ds_get_string(ds, T_PATIENT_ID, pid, sizeof(pid)) != DCM_OK ||
	    strcmp(pid, info->patient_id) != 0)
		s->stored += 1000; /* make the test fail visibly */
	if (rename(tmp_path, s->kept) != 0)
		s->kept[0] = '\0';
	pthread_mutex_unlock(&s->mu);
	return 0x0000;
}

static void on_rejected(void *ctx, const char *calling_aet, const char *reason)
{
	struct sink *s = ctx;
	(void)calling_aet;
	pthread_mutex_lock(&s->mu);
	s->rejected++;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	pthread_mutex_unlock(&s->mu);
}

static int accept_known(void *ctx, const char *calling, const char *called,
                        const char *addr)
{
	(void)ctx;
	(void)called;
	(void)addr;
	return strcmp(calling, "INTRUDER") == 0;
}

/* Bytes of a Part 10 file after its meta header; malloc'd. */
static unsigned char *dataset_bytes(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	unsigned char *all = NULL;
	long size = file_size(path);
	if (!f || size < 144)
		goto out;
	all = malloc((size_t)size);
	if (!all || fread(all, 1, (size_t)size, f) != (size_t)size) {
		free(all);
		all = NULL;
		goto out;
	}
	/* (0002,0000) UL group length right after "DICM" */
	size_t off = 132 + 12 +
	             (size_t)(all[140] | all[141] << 8 | all[142] << 16 |
	                      all[143] << 24);
	if (memcmp(all + 128, "DICM", 4) != 0 || off > (size_t)size) {
		free(all);
		all = NULL;
		goto out;
	}
	*n = (size_t)size - off;
	memmove(all, all + off, *n);
out:
	if (f)
		fclose(f);
	return all;
}

static int count_tmp_files(void)
{
	int n = 0;
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0)
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_get_string_converts_text_to_utf8(void)
{
	struct dcm_ds *ds = json_fixture();
	char name[64];

	CHECK(ds != NULL);
	if (!ds)
		return;
	CHECK_EQ_INT(dcm_ds_get_string(ds, DCM_TAG(0x0010, 0x0010), name,
	                               sizeof(name)),
	             DCM_OK);
	CHECK_EQ_STR(name, "M\xc3\xbcller^Hans=MU^HA");
	dcm_ds_free(ds);
}

static void test_scu_stores_into_loopback_scp_bit_for_bit(void)
{
	struct sink s;
	struct dcm_err err = { { 0 } };
	struct dcm_scp *scp = NULL;
	memset(&s, 0, sizeof(s));
	pthread_mutex_init(&s.mu, NULL);
	struct dcm_scp_config cfg = {
		.aet = "DRIMBOX",
		.bind = "127.0.0.1",
		.port = 0,
		.max_associations = 4,
		.timeout_s = 10,
		.accept = accept_known,
		.accept_ctx = NULL,
		.store = { .ctx = &s,
		           .stored = on_stored,
		           .rejected = on_rejected,
		           .tmp_dir = tmpdir },
	};
	CHECK_EQ_INT(dcm_scp_start(&cfg, &scp, &err), DCM_OK);
	if (!scp) {
		fprintf(stderr, "scp: %s\n", err.msg);
		return;
	}
	int port = dcm_scp_port(scp);
	CHECK(port > 0 && port < 65536);

	struct dcm_peer peer = { "127.0.0.1", port, "DRIMBOX", "TESTSCU", 5 };
	struct dcm_assoc *as = NULL;
	CHECK_EQ_INT(
	        dcm_assoc_open(&peer, DCM_SVC_ECHO | DCM_SVC_STORE, &as, &err),
	        DCM_OK);
	if (as) {
		CHECK_EQ_INT(dcm_echo(as, &err), DCM_OK);

		char sent[256];
		tmp_path(sent, sizeof(sent), "sent.dcm");
		struct dcm_ds *ds = make_instance("1.2.3.8");
		CHECK_EQ_INT(dcm_ds_write_file(ds, sent, ELE_TS, &err), DCM_OK);
		dcm_ds_free(ds);
		unsigned status = 0xFFFF;
		CHECK_EQ_INT(dcm_store_file(as, sent, &status, &err), DCM_OK);
		CHECK_EQ_INT(status, 0);
		pthread_mutex_lock(&s.mu);
		CHECK_EQ_INT(s.stored, 1);
		CHECK_EQ_INT(s.rejected, 0);
		CHECK_EQ_STR(s.info.sop_instance_uid, "1.2.3.8");
		CHECK_EQ_STR(s.info.transfer_syntax, ELE_TS);
		CHECK_EQ_STR(s.calling, "TESTSCU");
		size_t tl = strlen(s.tmp_name);
		CHECK(tl > 4 && strcmp(s.tmp_name + tl - 4, ".tmp") == 0);
		CHECK(s.info.file_size > 0 &&
		      (long)s.info.file_size == file_size(s.kept));
		pthread_mutex_unlock(&s.mu);
		size_t na = 0, nb = 0;
		unsigned char *a = dataset_bytes(sent, &na);
		unsigned char *b = dataset_bytes(s.kept, &nb);
		CHECK(a != NULL && b != NULL);
		CHECK(na == nb && na > 0 && a && b && memcmp(a, b, na) == 0);
		free(a);
		free(b);

		/* an instance without a study UID is refused, not stored */
		char bad[256];
		tmp_path(bad, sizeof(bad), "bad.dcm");
		ds = dcm_ds_new();
		dcm_ds_set_string(ds, T_SOP_CLASS, CT_CLASS);
		dcm_ds_set_string(ds, T_SOP_INST, "1.2.3.9");
		dcm_ds_set_string(ds, T_PATIENT_ID, "X");
		CHECK_EQ_INT(dcm_ds_write_file(ds, bad, ELE_TS, &err), DCM_OK);
		dcm_ds_free(ds);
		status = 0;
		CHECK_EQ_INT(dcm_store_file(as, bad, &status, &err),
		             DCM_ERR_FAILED);
		CHECK_EQ_INT(status, 0xC000);
		pthread_mutex_lock(&s.mu);
		CHECK_EQ_INT(s.stored, 1);
		CHECK_EQ_INT(s.rejected, 1);
		CHECK(strstr(s.reason, "StudyInstanceUID") != NULL);
		pthread_mutex_unlock(&s.mu);
		CHECK_EQ_INT(count_tmp_files(), 0);
		dcm_assoc_close(as);
	}

	/* unknown calling AE, then wrong called AE */
	struct dcm_peer intruder = { "127.0.0.1", port, "DRIMBOX", "INTRUDER",
		                     5 };
	as = NULL;
	CHECK_EQ_INT(dcm_assoc_open(&intruder, DCM_SVC_ECHO, &as, &err),
	             DCM_ERR_REJECTED);
	CHECK(as == NULL);
	struct dcm_peer wrong = { "127.0.0.1", port, "OTHER", "TESTSCU", 5 };
	CHECK_EQ_INT(dcm_assoc_open(&wrong, DCM_SVC_ECHO, &as, &err),
	             DCM_ERR_REJECTED);

	/* an idle association must not delay the stop */
	as = NULL;
	CHECK_EQ_INT(dcm_assoc_open(&peer, DCM_SVC_ECHO, &as, &err), DCM_OK);
	double t0 = now_s();
	dcm_scp_stop(scp);
	double dt = now_s() - t0;
	CHECK(dt < 1.0);
	if (as)
		CHECK(dcm_echo(as, &err) != DCM_OK);
	dcm_assoc_close(as);

	/* nobody listens any more */
	as = NULL;
	CHECK_EQ_INT(dcm_assoc_open(&peer, DCM_SVC_ECHO, &as, &err),
	             DCM_ERR_CONNECT);
	pthread_mutex_destroy(&s.mu);
}

int main(void)
{
	if (test_setup("test_dcm") != 0)
		return 1;
	CHECK_EQ_STR(dcm_strerror(DCM_ERR_CONNECT), "DCM_ERR_CONNECT");
	test_get_string_handles_absent_empty_too_long_and_multi_values();
	test_get_long_reads_binary_and_text_integers();
	test_written_file_reads_back_with_its_transfer_syntax();
	test_reading_garbage_or_missing_file_fails();
	test_instance_info_requires_valid_uids();
	test_json_is_valid_typed_utf8_and_uses_bulk_uris();
	test_get_string_converts_text_to_utf8();
	test_scu_stores_into_loopback_scp_bit_for_bit();
	return test_finish("dcm");
}
