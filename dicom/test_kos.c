/*
 * test_kos.c - the KOS manifest: what DRIM-M asks of it (root concept,
 * template 2010, RetrieveURL per series, requests with their issuers, the
 * INS with its qualifiers, repeated in OtherPatientIDsSequence), checked
 * on the written file, which must also pass dicom3tools' dciodvfy without
 * an error.
 */
#include "test_util.h"

#include <jansson.h>

#define CT "1.2.840.10008.5.1.4.1.1.2"
#define STUDY "1.2.250.1.213.4.5.2.1.106"
#define BASE "https://drimbox.example.fr/dicomweb/studies/" STUDY "/series/"

static const struct dcm_kos_instance s1[] = { { CT, "1.2.3.4.1.1" },
	                                      { CT, "1.2.3.4.1.2" },
	                                      { CT, "1.2.3.4.1.3" } };
static const struct dcm_kos_instance s2[] = { { CT, "1.2.3.4.2.1" } };
static const struct dcm_kos_series series[] = {
	{ "1.2.3.4.1", BASE "1.2.3.4.1", s1, 3 },
	{ "1.2.3.4.2", BASE "1.2.3.4.2", s2, 1 },
};
static const struct dcm_kos_request req[] = {
	{ "ACN106", "1.2.250.1.925.994044785528.27", "OPN107",
	  "1.2.250.1.213.4.5.2.6" },
	{ "ACN107", "1.2.250.1.925.994044785528.27", "OPN107",
	  "1.2.250.1.213.4.5.2.6" },
};

static struct dcm_kos manifest(void)
{
	struct dcm_kos k = {
		.patient_id = "279035121518989",
		.patient_issuer = "ASIP-SANTE-INS-NIR",
		.patient_issuer_oid = "1.2.250.1.213.1.4.10",
		.patient_name = "PAT-TROIS^DOMINIQUE",
		.birth_date = "19790328",
		.sex = "F",
		.study_uid = STUDY,
		.study_date = "20210108",
		.study_time = "102500",
		.study_id = "106",
		.study_description = "RM genou (é)",
		.accession = "ACN106",
		.series_number = 9999,
		.instance_number = 1,
		.description = "Manifeste DRIM-M",
		.manufacturer = "drimbox",
		.institution = "Centre de radiologie Ambroise",
		.req = req,
		.nreq = 2,
		.series = series,
		.nseries = 2,
	};
	return k;
}

/* The JSON of a tag path below root ("0040A375/0/00081115/1/00081190"). */
static json_t *at(json_t *root, const char *path)
{
	char buf[256], *save = NULL;
	json_t *v = root;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *tok = strtok_r(buf, "/", &save); tok && v;
	     tok = strtok_r(NULL, "/", &save)) {
		if (strlen(tok) == 8)
			v = json_object_get(json_object_get(v, tok), "Value");
		else
			v = json_array_get(v, (size_t)atoi(tok));
	}
	return v;
}

static const char *str_at(json_t *root, const char *path)
{
	json_t *v = json_array_get(at(root, path), 0);

	if (json_is_object(v)) /* PN */
		v = json_object_get(v, "Alphabetic");
	return json_is_string(v) ? json_string_value(v) : "";
}

static void test_manifest_holds_what_drim_m_asks(void)
{
	struct dcm_kos k = manifest();
	struct dcm_err e = { { 0 } };
	struct dcm_ds *ds = NULL;
	char path[256], sop[65] = "", *json = NULL;
	size_t len;
	json_t *j;

	tmp_path(path, sizeof(path), "kos.dcm");
	CHECK_EQ_INT(dcm_kos_write(&k, path, sop, &e), DCM_OK);
	CHECK(strlen(sop) > 10);
	CHECK_EQ_INT(dcm_ds_read_file(path, 0, &ds, &e), DCM_OK);
	CHECK_EQ_INT(dcm_ds_to_json(ds, 1 << 20, NULL, &json, &len, &e),
	             DCM_OK);
	j = json_loads(json ? json : "{}", 0, NULL);
	CHECK_EQ_STR(str_at(j, "00080016"), "1.2.840.10008.5.1.4.1.1.88.59");
	CHECK_EQ_STR(str_at(j, "00080018"), sop);
	CHECK_EQ_STR(str_at(j, "00080060"), "KO");
	CHECK_EQ_STR(str_at(j, "00080005"), "ISO_IR 192");
	CHECK_EQ_STR(str_at(j, "0020000D"), STUDY);
	CHECK_EQ_STR(str_at(j, "00081030"), "RM genou (é)");
	/* root: Manifest, TID 2010 */
	CHECK_EQ_STR(str_at(j, "0040A043/0/00080100"), "113030");
	CHECK_EQ_STR(str_at(j, "0040A504/0/0040DB00"), "2010");
	CHECK_EQ_STR(str_at(j, "0040A504/0/00080105"), "DCMR");
	/* description, then one IMAGE per instance */
	CHECK_EQ_STR(str_at(j, "0040A730/0/0040A043/0/00080100"), "113012");
	CHECK_EQ_STR(str_at(j, "0040A730/1/0040A040"), "IMAGE");
	CHECK_EQ_INT(json_array_size(at(j, "0040A730")), 5);
	/* evidence: RetrieveURL per series */
	CHECK_EQ_STR(str_at(j, "0040A375/0/0020000D"), STUDY);
	CHECK_EQ_INT(json_array_size(at(j, "0040A375/0/00081115")), 2);
	for (int s = 0; s < 2; s++) {
		char p[64], url[256];

		snprintf(p, sizeof(p), "0040A375/0/00081115/%d/0020000E", s);
		snprintf(url, sizeof(url), BASE "%s", str_at(j, p));
		snprintf(p, sizeof(p), "0040A375/0/00081115/%d/00081190", s);
		CHECK_EQ_STR(str_at(j, p), url);
	}
	/* requests */
	CHECK_EQ_INT(json_array_size(at(j, "0040A370")), 2);
	CHECK_EQ_STR(str_at(j, "0040A370/1/00080050"), "ACN107");
	CHECK_EQ_STR(str_at(j, "0040A370/1/00080051/0/00400032"),
	             "1.2.250.1.925.994044785528.27");
	CHECK_EQ_STR(str_at(j, "0040A370/0/00402016"), "OPN107");
	CHECK_EQ_STR(str_at(j, "0040A370/0/00400026/0/00400033"), "ISO");
	/* the INS, its issuer, again in OtherPatientIDsSequence */
	CHECK_EQ_STR(str_at(j, "00100020"), "279035121518989");
	CHECK_EQ_STR(str_at(j, "00100021"), "ASIP-SANTE-INS-NIR");
	CHECK_EQ_STR(str_at(j, "00100024/0/00400032"), "1.2.250.1.213.1.4.10");
	CHECK_EQ_STR(str_at(j, "00101002/0/00100020"), "279035121518989");
	CHECK_EQ_STR(str_at(j, "00101002/0/00100022"), "TEXT");
	CHECK_EQ_STR(str_at(j, "00101002/0/00100024/0/00400033"), "ISO");
	json_decref(j);
	free(json);
	dcm_ds_free(ds);
}

static void test_manifest_passes_dciodvfy(void)
{
	struct dcm_kos k = manifest();
	struct dcm_err e = { { 0 } };
	char path[256], cmd[512], line[1024], sop[65];
	int errors = 0, lines = 0;
	FILE *p;

	tmp_path(path, sizeof(path), "kos-v.dcm");
	CHECK_EQ_INT(dcm_kos_write(&k, path, sop, &e), DCM_OK);
	snprintf(cmd, sizeof(cmd), "dciodvfy '%s' 2>&1", path);
	p = popen(cmd, "r");
	CHECK(p != NULL);
	while (p && fgets(line, sizeof(line), p)) {
		lines++;
		if (strncmp(line, "Error", 5) == 0) {
			fprintf(stderr, "dciodvfy: %s", line);
			errors++;
		}
	}
	CHECK(p != NULL && pclose(p) != -1);
	CHECK(lines > 0); /* dciodvfy ran (it names the IOD it checked) */
	CHECK_EQ_INT(errors, 0);
}

static void test_bad_manifests_are_refused(void)
{
	struct dcm_kos k = manifest();
	struct dcm_err e = { { 0 } };
	char path[256], sop[65];
	struct dcm_kos_series none = { "1.2.3", "u", NULL, 0 };

	tmp_path(path, sizeof(path), "bad.dcm");
	k.study_uid = "not a uid";
	CHECK_EQ_INT(dcm_kos_write(&k, path, sop, &e), DCM_ERR_ARG);
	k = manifest();
	k.series = &none;
	k.nseries = 1;
	CHECK_EQ_INT(dcm_kos_write(&k, path, sop, &e), DCM_ERR_ARG);
	CHECK(strstr(e.msg, "no instance") != NULL);
	CHECK(access(path, F_OK) != 0);
}

static void *file_bytes(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	void *buf = malloc(1 << 20);

	*len = f && buf ? fread(buf, 1, 1 << 20, f) : 0;
	if (f)
		fclose(f);
	return buf;
}

/* What a consumer reads back: every series with its URL and instances. */
static void test_manifest_reads_back(void)
{
	struct dcm_kos k = manifest();
	struct dcm_err e = { { 0 } };
	struct dcm_manifest *m = NULL;
	char path[256], sop[65];
	size_t len;
	void *buf;

	tmp_path(path, sizeof(path), "kos-r.dcm");
	CHECK_EQ_INT(dcm_kos_write(&k, path, sop, &e), DCM_OK);
	buf = file_bytes(path, &len);
	CHECK_EQ_INT(dcm_kos_read(buf, len, &m, &e), DCM_OK);
	if (m == NULL) {
		free(buf);
		return;
	}
	CHECK_EQ_STR(m->sop_uid, sop);
	CHECK_EQ_STR(m->patient_id, "279035121518989");
	CHECK_EQ_STR(m->patient_issuer_oid, "1.2.250.1.213.1.4.10");
	CHECK_EQ_STR(m->study_uid, STUDY);
	CHECK_EQ_INT((int)m->nseries, 2);
	CHECK_EQ_STR(m->series[0].study_uid, STUDY);
	CHECK_EQ_STR(m->series[0].uid, "1.2.3.4.1");
	CHECK_EQ_STR(m->series[0].retrieve_url, BASE "1.2.3.4.1");
	CHECK_EQ_INT((int)m->series[0].ninst, 3);
	CHECK_EQ_STR(m->series[0].inst[2].sop_uid, "1.2.3.4.1.3");
	CHECK_EQ_STR(m->series[0].inst[2].sop_class, CT);
	CHECK_EQ_STR(m->series[1].retrieve_url, BASE "1.2.3.4.2");
	CHECK_EQ_INT((int)m->series[1].ninst, 1);
	dcm_manifest_free(m);
	/* cut short, or not DICOM: refused, nothing returned */
	m = NULL;
	CHECK(dcm_kos_read(buf, len / 2, &m, &e) != DCM_OK);
	CHECK(m == NULL);
	CHECK(dcm_kos_read("not DICOM at all", 16, &m, &e) != DCM_OK);
	CHECK(m == NULL);
	free(buf);
}

/* A DICOM file that is not a KOS is no manifest. */
static void test_an_image_is_no_manifest(void)
{
	struct dcm_ds *ds = dcm_ds_new();
	struct dcm_err e = { { 0 } };
	struct dcm_manifest *m = NULL;
	char path[256];
	size_t len;
	void *buf;

	tmp_path(path, sizeof(path), "ct.dcm");
	CHECK_EQ_INT(dcm_ds_set_string(ds, 0x00080016, CT), DCM_OK);
	CHECK_EQ_INT(dcm_ds_set_string(ds, 0x00080018, "1.2.3.9"), DCM_OK);
	CHECK_EQ_INT(dcm_ds_write_file(ds, path, NULL, &e), DCM_OK);
	dcm_ds_free(ds);
	buf = file_bytes(path, &len);
	CHECK_EQ_INT(dcm_kos_read(buf, len, &m, &e), DCM_ERR_PARSE);
	CHECK(strstr(e.msg, "not a Key Object Selection") != NULL);
	CHECK(m == NULL);
	free(buf);
}

int main(void)
{
	if (test_setup("test_kos") != 0)
		return 1;
	test_manifest_holds_what_drim_m_asks();
	test_manifest_passes_dciodvfy();
	test_bad_manifests_are_refused();
	test_manifest_reads_back();
	test_an_image_is_no_manifest();
	return test_finish("test_kos");
}
