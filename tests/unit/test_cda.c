/*
 * test_cda.c - the CDA reader on the ANS referencing reports (argv[1]:
 * the ../shared directory): exam F (two orders, two studies in one
 * serviceEvent), G1_MAJ (a replacement), every report of the set; and on
 * input that is not a CDA, or that tries external entities.
 */
#include "cda.h"
#include "testutil.h"

#include <dirent.h>

#define CDA_DIR "/drim-m-data/referencement-drimbox/jeux-de-donnees/cda"

static const char *shared;

static int parse_file(const char *rel, struct cda_info *c)
{
	char path[512], err[256];
	size_t len;
	char *xml;
	int rc;

	snprintf(path, sizeof(path), "%s%s/%s", shared, CDA_DIR, rel);
	xml = test_slurp(path, &len);
	rc = cda_parse(xml, len, c, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "%s: %s\n", rel, err);
	free(xml);
	return rc;
}

static void exam_f_has_two_orders_and_two_studies(void)
{
	static struct cda_info c;

	CHECK(parse_file("examen-f/CR_F.xml", &c) == 0);
	CHECK(strcmp(c.doc_id, "1.2.250.1.213.4.5.4.406") == 0);
	CHECK(c.version == 1);
	CHECK(strcmp(c.type.code, "18748-4") == 0);
	CHECK(strcmp(c.confidentiality.code, "N") == 0);
	CHECK(c.npatient == 2);
	CHECK(strcmp(c.patient[0].ext, "279035121518989") == 0);
	CHECK(strcmp(c.patient[0].root, "1.2.250.1.213.1.4.10") == 0);
	CHECK(strcmp(c.patient[1].ext, "IPP101") == 0);
	CHECK(strcmp(c.author.id, "801234560801") == 0);
	CHECK(strcmp(c.author.family, "BIDEAULT") == 0);
	CHECK(strcmp(c.author.role.code, "G15_10/SM44") == 0);
	CHECK(strcmp(c.legal.id, "801234560801") == 0);
	CHECK(c.norders == 2);
	CHECK(strcmp(c.order[0].accession, "ACN106") == 0);
	CHECK(strcmp(c.order[1].accession, "ACN107") == 0);
	CHECK(strcmp(c.order[0].id, "OPN107") == 0);
	CHECK(strcmp(c.order[0].accession_root,
	             "1.2.250.1.925.994044785528.27") == 0);
	CHECK(c.nevents == 1 && c.event[0].nstudies == 2);
	CHECK(strcmp(c.event[0].study_uid[0], "1.2.250.1.213.4.5.2.1.106") ==
	      0);
	CHECK(strcmp(c.event[0].study_uid[1], "1.2.250.1.213.4.5.2.1.107") ==
	      0);
	CHECK(strcmp(c.event[0].code.code, "24802-1") == 0);
	CHECK(strcmp(c.event[0].ccam.code, "NZQN001") == 0);
	CHECK(strcmp(c.event[0].modality.code, "RM") == 0);
	CHECK(strcmp(c.event[0].region.code, "61685007") == 0);
	CHECK(strcmp(c.event[0].start, "20210108102500+0100") == 0);
	CHECK(c.replaces[0] == '\0');
}

static void the_g1_update_names_the_report_it_replaces(void)
{
	static struct cda_info c;

	CHECK(parse_file("examen-g/CR_G1_MAJ.xml", &c) == 0);
	CHECK(c.version == 2);
	CHECK(strcmp(c.replaces, "1.2.250.1.213.4.5.4.407") == 0);
}

static void every_report_of_the_set_reads(void)
{
	char dir[512], sub[768];
	static struct cda_info c;
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s%s", shared, CDA_DIR);
	d = opendir(dir);
	CHECK(d != NULL);
	while (d && (e = readdir(d)) != NULL) {
		DIR *d2;
		struct dirent *f;

		if (strncmp(e->d_name, "examen-", 7) != 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
		d2 = opendir(sub);
		while (d2 && (f = readdir(d2)) != NULL) {
			char rel[600];

			if (strstr(f->d_name, ".xml") == NULL)
				continue;
			snprintf(rel, sizeof(rel), "%s/%s", e->d_name,
			         f->d_name);
			CHECK(parse_file(rel, &c) == 0);
			CHECK(c.nevents >= 1 && c.event[0].nstudies >= 1);
			CHECK(c.norders >= 1 && c.order[0].accession[0]);
			n++;
		}
		if (d2)
			closedir(d2);
	}
	if (d)
		closedir(d);
	printf("     %d reports\n", n);
	CHECK(n >= 20);
}

static int refused(const char *xml, const char *why)
{
	static struct cda_info c;
	char err[256] = "";

	if (cda_parse(xml, strlen(xml), &c, err, sizeof(err)) == 0 ||
	    strstr(err, why) == NULL) {
		fprintf(stderr, "expected '%s', got '%s'\n", why, err);
		return 0;
	}
	return 1;
}

static void what_is_not_a_cda_is_refused(void)
{
	static struct cda_info c;
	char err[256];
	const char *xxe =
	        "<?xml version=\"1.0\"?><!DOCTYPE ClinicalDocument ["
	        "<!ENTITY e SYSTEM \"file:///etc/hostname\">]>"
	        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><id root=\"1.2\"/>"
	        "<title>&e;</title></ClinicalDocument>";

	CHECK(refused("not xml at all", "not XML"));
	CHECK(refused("<a><b></a>", "not XML"));
	CHECK(refused("<html/>", "not a CDA"));
	CHECK(refused("<ClinicalDocument/>", "not a CDA"));
	CHECK(refused("<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>",
	              "no ClinicalDocument/id"));
	/* no DTD: no external entities, no entity expansion */
	CHECK(cda_parse(xxe, strlen(xxe), &c, err, sizeof(err)) != 0);
	CHECK(strstr(err, "DTD") != NULL);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_cda SHARED-DIR\n");
		return 2;
	}
	shared = argv[1];
	RUN(exam_f_has_two_orders_and_two_studies);
	RUN(the_g1_update_names_the_report_it_replaces);
	RUN(every_report_of_the_set_reads);
	RUN(what_is_not_a_cda_is_refused);
	return test_failures ? 1 : 0;
}
