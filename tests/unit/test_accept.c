/*
 * test_accept.c - the Accept header parser on what DICOMweb clients send:
 * quoted and unquoted parameters, q-lists (the ANS WADO-RS sample), empty
 * elements, and malformed or oversized headers.
 */
#include "accept.h"
#include "testutil.h"

static void accept_without_header_accepts_anything(void)
{
	struct accept a;
	char err[128];

	CHECK(accept_parse(NULL, &a, err, sizeof(err)) == 0);
	CHECK(a.n == 1 && accept_media_matches(&a.r[0], "application/dicom"));
}

static void accept_reads_quoted_and_unquoted_parameters(void)
{
	struct accept a, b;
	char err[128];

	CHECK(accept_parse("multipart/related; type=\"application/dicom\"; "
	                   "transfer-syntax=*",
	                   &a, err, sizeof(err)) == 0);
	CHECK(accept_parse("multipart/related;type=application/dicom;"
	                   "transfer-syntax=\"*\"",
	                   &b, err, sizeof(err)) == 0);
	CHECK(a.n == 1 && b.n == 1);
	CHECK(strcmp(a.r[0].type, "application/dicom") == 0);
	CHECK(strcmp(b.r[0].type, "application/dicom") == 0);
	CHECK(strcmp(a.r[0].ts, "*") == 0 && strcmp(b.r[0].ts, "*") == 0);
}

static void accept_orders_the_ans_q_list_by_preference(void)
{
	/* from the ANS WADO-RS series request sample (trailing comma too) */
	const char *h =
	        "multipart/related; type=\"application/dicom\";transfer-syntax="
	        "1.2.840.10008.1.2.1;q=0.4;boundary=**,multipart/related; "
	        "type=\"application/dicom\";transfer-syntax=1.2.840.10008.1.2."
	        "4.70;q=0.9;boundary=**,multipart/related; type=\"application/"
	        "dicom\";transfer-syntax=1.2.840.10008.1.2.4.80;q=0.8;boundary="
	        "**,";
	struct accept a;
	char err[128];

	CHECK(accept_parse(h, &a, err, sizeof(err)) == 0);
	CHECK(a.n == 3);
	CHECK(strcmp(a.r[0].ts, "1.2.840.10008.1.2.4.70") == 0);
	CHECK(a.r[0].q == 900);
	CHECK(strcmp(a.r[1].ts, "1.2.840.10008.1.2.4.80") == 0);
	CHECK(strcmp(a.r[2].ts, "1.2.840.10008.1.2.1") == 0);
}

static void accept_drops_ranges_with_q_zero(void)
{
	struct accept a;
	char err[128];

	CHECK(accept_parse("image/png;q=0, image/jpeg", &a, err, sizeof(err)) ==
	      0);
	CHECK(a.n == 1 && strcmp(a.r[0].media, "image/jpeg") == 0);
}

static void accept_rejects_malformed_and_oversized_headers(void)
{
	struct accept a;
	char err[128], big[ACCEPT_HEADER_MAX + 2];

	CHECK(accept_parse("multipart/related; type=\"unterminated", &a, err,
	                   sizeof(err)) == -1);
	CHECK(accept_parse("noslash", &a, err, sizeof(err)) == -1);
	CHECK(accept_parse("image/png;q=2", &a, err, sizeof(err)) == -1);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(accept_parse(big, &a, err, sizeof(err)) == -1);
	CHECK(strstr(err, "too long") != NULL);
}

static void accept_wildcards_match_by_type(void)
{
	struct accept a;
	char err[128];

	CHECK(accept_parse("image/*", &a, err, sizeof(err)) == 0);
	CHECK(accept_media_matches(&a.r[0], "image/png"));
	CHECK(!accept_media_matches(&a.r[0], "application/dicom"));
}

int main(void)
{
	RUN(accept_without_header_accepts_anything);
	RUN(accept_reads_quoted_and_unquoted_parameters);
	RUN(accept_orders_the_ans_q_list_by_preference);
	RUN(accept_drops_ranges_with_q_zero);
	RUN(accept_rejects_malformed_and_oversized_headers);
	RUN(accept_wildcards_match_by_type);
	return test_failures ? 1 : 0;
}
