/*
 * test_whitelist.c - the ANS whitelist of DRIMboxes (argv[1]: the
 * ../shared directory). The signed referencing list verifies against its
 * test trust anchor (the IGC-Santé TEST root, taken from the list's own
 * KeyInfo for the test, as a site would install it), and its domains are
 * read; the unsigned list, the signed list with any byte of its content
 * changed, a wrong anchor and a wrong expected signer are refused.
 */
#include "dmp.h"
#include "testutil.h"
#include "whitelist.h"

#include <ctype.h>
#include <libxml/parser.h>

#define LIST_DIR "/drim-m-data/referencement-drimbox/liste-blanche-test"
#define SIGNED                                                                 \
	LIST_DIR "/liste-blanche-signee/LISTEBLANCHE_DRIM-M_SIGNEE_TEST.xml"
#define UNSIGNED                                                               \
	LIST_DIR "/liste-blanche-non-signee/"                                  \
	         "LISTEBLANCHE_DRIM-M_NONSIGNEE_TEST.xml"

static const char *shared, *dir;
static char root_pem[256], signer_pem[256];

static const struct wl_trust *trust(const char *anchors)
{
	static struct wl_trust t;

	t.anchors = anchors;
	t.crls = NULL;
	t.signer_cn = "Liste Blanche DRIM-M";
	t.signer_ou = "318751275100020";
	return &t;
}

/* The n-th X509Certificate of the list's KeyInfo, as a PEM file. */
static void write_cert(const char *xml, int n, const char *path)
{
	const char *p = xml, *end;
	FILE *f = fopen(path, "w");
	int col = 0;

	for (int i = 0; i <= n; i++) {
		p = strstr(p, "<ds:X509Certificate>");
		if (p == NULL || f == NULL) {
			fprintf(stderr, "no certificate %d in the list\n", n);
			exit(1);
		}
		p += strlen("<ds:X509Certificate>");
	}
	end = strstr(p, "</ds:X509Certificate>");
	fputs("-----BEGIN CERTIFICATE-----\n", f);
	for (; p < end; p++) {
		if (isspace((unsigned char)*p))
			continue;
		fputc(*p, f);
		if (++col == 64) {
			fputc('\n', f);
			col = 0;
		}
	}
	fputs(col ? "\n-----END CERTIFICATE-----\n"
	          : "-----END CERTIFICATE-----\n",
	      f);
	fclose(f);
}

static char *path_of(const char *rel)
{
	static char p[512];

	snprintf(p, sizeof(p), "%s%s", shared, rel);
	return p;
}

static void the_signed_list_is_accepted_and_read(void)
{
	struct whitelist *wl;
	char err[512] = "";

	CHECK(whitelist_load(path_of(SIGNED), trust(root_pem), &wl, err,
	                     sizeof(err)) == 0);
	if (wl == NULL) {
		fprintf(stderr, "refused: %s\n", err);
		return;
	}
	CHECK(wl->n == 17);
	CHECK(strcmp(wl->generated, "2026-06-19T18:06:52Z") == 0);
	CHECK(strstr(wl->signer, "CN=Liste Blanche DRIM-M") != NULL);
	CHECK(whitelist_find(wl, "db3.test.mesimagesmedicales.fr") != NULL);
	CHECK(whitelist_find(wl, "DB3.test.mesimagesmedicales.FR") != NULL);
	CHECK(strcmp(whitelist_find(wl, "db3.test.mesimagesmedicales.fr")->vi,
	             "vi3.test.mesimagesmedicales.fr") == 0);
	CHECK(whitelist_find(wl,
	                     "db3.test.mesimagesmedicales.fr.evil.example") ==
	      NULL);
	CHECK(whitelist_find(wl, "evil.example") == NULL);
	whitelist_free(wl);
}

static void the_unsigned_list_is_refused(void)
{
	struct whitelist *wl;
	char err[512] = "";

	CHECK(whitelist_load(path_of(UNSIGNED), trust(root_pem), &wl, err,
	                     sizeof(err)) != 0);
	CHECK(wl == NULL);
	CHECK(strstr(err, "not signed") != NULL);
}

/* Every 41st byte of the signed content, changed, is a refused list. */
static void any_changed_byte_of_the_content_is_refused(void)
{
	size_t len;
	char *xml = test_slurp(path_of(SIGNED), &len), path[256];
	const char *from = strstr(xml, "<DateDeGeneration>");
	const char *to = strstr(xml, "</ListeDomaines>");
	int tried = 0, accepted = 0;

	CHECK(from != NULL && to != NULL);
	snprintf(path, sizeof(path), "%s/changed.xml", dir);
	for (size_t at = (size_t)(from - xml); from && at < (size_t)(to - xml);
	     at += 41) {
		char was = xml[at];
		struct whitelist *wl;
		char err[512];

		xml[at] = isdigit((unsigned char)was)
		                  ? (was == '9' ? '0' : was + 1)
		          : isalpha((unsigned char)was)
		                  ? (was == 'z' ? 'y' : 'z')
		                  : 'x';
		test_write(path, xml);
		if (whitelist_load(path, trust(root_pem), &wl, err,
		                   sizeof(err)) == 0) {
			fprintf(stderr, "byte %zu changed: accepted\n", at);
			accepted++;
			whitelist_free(wl);
		}
		xml[at] = was;
		tried++;
	}
	CHECK(tried > 100);
	CHECK(accepted == 0);
	free(xml);
}

static void a_wrong_anchor_or_signer_is_refused(void)
{
	struct whitelist *wl;
	struct wl_trust t = *trust(root_pem);
	char err[512] = "";

	/* the signer's own certificate is no trust anchor */
	CHECK(whitelist_load(path_of(SIGNED), trust(signer_pem), &wl, err,
	                     sizeof(err)) != 0);
	CHECK(strstr(err, "does not verify") != NULL);
	t.signer_cn = "Another List";
	CHECK(whitelist_load(path_of(SIGNED), &t, &wl, err, sizeof(err)) != 0);
	CHECK(strstr(err, "not by CN=Another List") != NULL);
	t.signer_cn = "Liste Blanche DRIM-M";
	t.signer_ou = "999";
	CHECK(whitelist_load(path_of(SIGNED), &t, &wl, err, sizeof(err)) != 0);
	CHECK(whitelist_load("/nonexistent.xml", trust(root_pem), &wl, err,
	                     sizeof(err)) != 0);
	CHECK(whitelist_load(path_of(SIGNED), trust("/nonexistent.pem"), &wl,
	                     err, sizeof(err)) != 0);
}

static void silent(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

int main(int argc, char **argv)
{
	char err[256];
	size_t len;
	char *xml;

	if (argc != 2) {
		fprintf(stderr, "usage: test_whitelist SHARED-DIR\n");
		return 2;
	}
	shared = argv[1];
	dir = test_tmpdir();
	xmlInitParser();
	xmlSetGenericErrorFunc(NULL, silent);
	if (dmp_global_init(err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	xml = test_slurp(path_of(SIGNED), &len);
	snprintf(root_pem, sizeof(root_pem), "%s/root.pem", dir);
	snprintf(signer_pem, sizeof(signer_pem), "%s/signer.pem", dir);
	write_cert(xml, 2, root_pem); /* signer, intermediate, root */
	write_cert(xml, 0, signer_pem);
	free(xml);
	RUN(the_signed_list_is_accepted_and_read);
	RUN(the_unsigned_list_is_refused);
	RUN(any_changed_byte_of_the_content_is_refused);
	RUN(a_wrong_anchor_or_signer_is_refused);
	dmp_global_cleanup();
	return test_failures ? 1 : 0;
}
