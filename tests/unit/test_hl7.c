/*
 * test_hl7.c - the HL7 v2 parser on the ANS sample messages (argv[1]: the
 * ../shared directory), on the pitfalls of the standards brief (segment
 * ends, escapes, charsets, repetitions), on malformed input, and on
 * random mutations of a real message (run under ASan in `make asan`).
 */
#include "hl7.h"
#include "testutil.h"

#include <dirent.h>

static const char *shared;

static struct hl7_msg *parse_str(const char *s)
{
	char err[256];
	struct hl7_msg *m = hl7_parse(s, strlen(s), err, sizeof(err));

	if (m == NULL)
		fprintf(stderr, "parse: %s\n", err);
	return m;
}

static int get_is(const struct hl7_msg *m, const char *seg, int nth, int f,
                  int r, int c, int s, const char *want)
{
	char v[512];

	hl7_get(m, hl7_segment(m, seg, nth), f, r, c, s, v, sizeof(v));
	if (strcmp(v, want) != 0) {
		fprintf(stderr, "%s-%d[%d].%d.%d: '%s', expected '%s'\n", seg,
		        f, r, c, s, v, want);
		return 0;
	}
	return 1;
}

#define C_ORU                                                                  \
	"/drim-m-data/referencement-drimbox/jeux-de-donnees/hl7v2/"            \
	"examen-c/CR_C-ORU.hl7"

static void the_referencing_oru_reads_as_the_brief_says(void)
{
	char path[512], err[256];
	size_t len, b64;
	char *text;
	struct hl7_msg *m;

	snprintf(path, sizeof(path), "%s" C_ORU, shared);
	text = test_slurp(path, &len);
	m = hl7_parse(text, len, err, sizeof(err));
	CHECK(m != NULL);
	if (m == NULL) {
		free(text);
		return;
	}
	CHECK(get_is(m, "MSH", 1, 1, 1, 0, 0, "|"));
	CHECK(get_is(m, "MSH", 1, 2, 1, 0, 0, "^~\\&"));
	CHECK(get_is(m, "MSH", 1, 9, 1, 1, 0, "ORU"));
	CHECK(get_is(m, "MSH", 1, 9, 1, 2, 0, "R01"));
	CHECK(get_is(m, "MSH", 1, 12, 1, 0, 0, "2.5"));
	CHECK(get_is(m, "MSH", 1, 18, 1, 0, 0, "UNICODE UTF-8"));
	CHECK(hl7_reps(m, hl7_segment(m, "PID", 1), 3) == 2);
	CHECK(get_is(m, "PID", 1, 3, 1, 1, 0, "279035121518989"));
	CHECK(get_is(m, "PID", 1, 3, 1, 4, 2, "1.2.250.1.213.1.4.10"));
	CHECK(get_is(m, "PID", 1, 3, 1, 5, 0, "INS"));
	CHECK(get_is(m, "PID", 1, 3, 2, 1, 0, "IPP101"));
	CHECK(get_is(m, "PID", 1, 3, 2, 5, 0, "PI"));
	CHECK(get_is(m, "PID", 1, 32, 1, 0, 0, "VALI"));
	CHECK(get_is(m, "ORC", 1, 1, 1, 0, 0, "NW"));
	CHECK(get_is(m, "OBR", 1, 4, 1, 2, 0, "CR d'imagerie médicale"));
	CHECK(get_is(m, "OBX", 1, 5, 1, 4, 0, "Base64"));
	CHECK(hl7_raw(m, hl7_segment(m, "OBX", 1), 5, 1, 5, &b64) != NULL);
	CHECK(b64 > 100000 && b64 % 4 == 0);
	CHECK(get_is(m, "OBX", 7, 3, 1, 1, 0, "DESTDMP"));
	CHECK(get_is(m, "OBX", 7, 5, 1, 1, 0, "Y"));
	CHECK(hl7_segment(m, "OBX", 12) == NULL);
	CHECK(hl7_segment(m, "ZZZ", 1) == NULL);
	hl7_free(m);
	free(text);
}

/* Every .hl7 / .er7 file under dir parses (recursively); returns count. */
static int parse_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		char path[1024], err[256];
		size_t len = strlen(e->d_name), tlen;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR) {
			n += parse_tree(path);
		} else if (len > 4 &&
		           (strcmp(e->d_name + len - 4, ".hl7") == 0 ||
		            strcmp(e->d_name + len - 4, ".er7") == 0)) {
			char *text = test_slurp(path, &tlen);
			struct hl7_msg *m =
			        hl7_parse(text, tlen, err, sizeof(err));
			/* the demonstrator's sample has a line break inside
			 * OBX-3: its sixth line is no segment */
			int bad = strstr(path, "drimbox-demonstrator/"
			                       "patient1.hl7") != NULL;

			if ((m == NULL) != bad)
				fprintf(stderr, "%s: %s\n", path,
				        m ? "parsed" : err);
			CHECK(bad ? m == NULL &&
			                      strstr(err, "segment 6: "
			                                  "invalid segment id")
			          : m != NULL);
			CHECK(m == NULL || hl7_segment(m, "PID", 1) != NULL ||
			      hl7_segment(m, "MSA", 1) != NULL);
			hl7_free(m);
			free(text);
			n++;
		}
	}
	closedir(d);
	return n;
}

static void every_sample_message_parses(void)
{
	char dir[512];
	int n;

	snprintf(dir, sizeof(dir), "%s/drim-m-data", shared);
	n = parse_tree(dir);
	snprintf(dir, sizeof(dir), "%s/ans-samples", shared);
	n += parse_tree(dir);
	printf("     %d sample messages\n", n);
	CHECK(n >= 50);
}

static void segment_ends_may_be_cr_lf_or_crlf(void)
{
	const char *forms[] = {
		"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\rPID|||X\r",
		"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\nPID|||X\n",
		"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\r\nPID|||X\r\n",
		"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\r\n\r\nPID|||X",
	};

	for (size_t i = 0; i < sizeof(forms) / sizeof(*forms); i++) {
		struct hl7_msg *m = parse_str(forms[i]);

		CHECK(m != NULL && hl7_nsegments(m) == 2);
		CHECK(m != NULL && get_is(m, "PID", 1, 3, 1, 0, 0, "X"));
		hl7_free(m);
	}
}

static void escapes_and_other_delimiters_are_honoured(void)
{
	struct hl7_msg *m = parse_str(
	        "MSH#*$!@#A\rOBX#1#ST#X##a!F!b!S!c!T!d!R!e!E!f!X41C3A9!g!.br!h"
	        "!H!i!N!#p*q@r$s*t\r");

	CHECK(m != NULL);
	if (m == NULL)
		return;
	CHECK(get_is(m, "MSH", 1, 1, 1, 0, 0, "#"));
	CHECK(get_is(m, "OBX", 1, 5, 1, 0, 0, "a#b*c@d$e!fAég\nhi"));
	CHECK(get_is(m, "OBX", 1, 6, 1, 1, 0, "p"));
	CHECK(get_is(m, "OBX", 1, 6, 1, 2, 1, "q"));
	CHECK(get_is(m, "OBX", 1, 6, 1, 2, 2, "r"));
	CHECK(get_is(m, "OBX", 1, 6, 2, 1, 0, "s"));
	CHECK(get_is(m, "OBX", 1, 6, 2, 2, 0, "t"));
	CHECK(hl7_reps(m, hl7_segment(m, "OBX", 1), 6) == 2);
	CHECK(get_is(m, "OBX", 1, 6, 3, 1, 0, ""));
	CHECK(get_is(m, "OBX", 1, 99, 1, 0, 0, ""));
	hl7_free(m);
}

static void truncated_values_report_their_full_length(void)
{
	struct hl7_msg *m = parse_str("MSH|^~\\&|ABCDEFGHIJ\r");
	char v[4];

	CHECK(m != NULL);
	CHECK(m && hl7_get(m, hl7_segment(m, "MSH", 1), 3, 1, 0, 0, v,
	                   sizeof(v)) == 10);
	CHECK(strcmp(v, "ABC") == 0);
	hl7_free(m);
}

static void values_are_always_valid_utf8(void)
{
	struct hl7_msg *m =
	        parse_str("MSH|^~\\&|A\rPID|||||D\\XE9\\O|x\xc3\xa9y\r");
	char v[3];

	CHECK(m && get_is(m, "PID", 1, 5, 1, 0, 0, "D?O"));
	/* "x" + 2-byte "é" cut after one byte: the half character goes */
	CHECK(m && hl7_get(m, hl7_segment(m, "PID", 1), 6, 1, 0, 0, v,
	                   sizeof(v)) == 4);
	CHECK(strcmp(v, "x") == 0);
	hl7_free(m);
}

static void latin1_is_converted_to_utf8(void)
{
	struct hl7_msg *m = parse_str("MSH|^~\\&||||||||||||||||8859/1\r"
	                              "PID|||||M\xe9lanie\r");

	CHECK(m && get_is(m, "MSH", 1, 18, 1, 0, 0, "8859/1"));
	CHECK(m && get_is(m, "PID", 1, 5, 1, 0, 0, "Mélanie"));
	hl7_free(m);
	/* declared Latin-1 but sent as UTF-8 (the demonstrator's sample) */
	m = parse_str("\n\nMSH|^~\\&||||||||||||||||8859/1\rPID|||||Mélanie\r");
	CHECK(m && get_is(m, "PID", 1, 5, 1, 0, 0, "Mélanie"));
	hl7_free(m);
	/* undeclared and not UTF-8: read as Latin-1 */
	m = parse_str("MSH|^~\\&|A\rPID|||||Ren\xe9\r");
	CHECK(m && get_is(m, "PID", 1, 5, 1, 0, 0, "René"));
	hl7_free(m);
}

static int refused(const char *text, size_t len, const char *why)
{
	char err[256] = "";
	struct hl7_msg *m = hl7_parse(text, len, err, sizeof(err));

	hl7_free(m);
	if (m != NULL || strstr(err, why) == NULL) {
		fprintf(stderr, "expected an error with '%s', got '%s'\n", why,
		        m ? "(parsed)" : err);
		return 0;
	}
	return 1;
}

static void malformed_messages_are_refused_with_a_reason(void)
{
	static char many[(HL7_MAX_SEGMENTS + 2) * 8];
	char *p = many;

	CHECK(refused("", 0, "does not start with MSH"));
	CHECK(refused("PID|||X\r", 8, "does not start with MSH"));
	CHECK(refused("MSH|^~", 6, "does not start with MSH"));
	CHECK(refused("MSH|^~|A\r", 9, "encoding characters"));
	CHECK(refused("MSH|^^\\&|A\r", 11, "distinct"));
	CHECK(refused("MSH|^~\\&|A\rP1\r", 14, "three-character id"));
	CHECK(refused("MSH|^~\\&|A\rpid|x\r", 17, "invalid segment id"));
	CHECK(refused("MSH|^~\\&|A\rMSH|^~\\&|B\r", 22, "second MSH"));
	CHECK(refused("MSH|^~\\&|A\0B\r", 13, "NUL"));
	CHECK(refused("MSH|^~\\&||||||||||||||||UNICODE UTF-8\rPID|\xff\r", 44,
	              "not valid UTF-8"));
	CHECK(refused("MSH|^~\\&||||||||||||||||EBCDIC\r", 31, "EBCDIC"));
	p += sprintf(p, "MSH|^~\\&|A\r");
	for (int i = 0; i < HL7_MAX_SEGMENTS; i++)
		p += sprintf(p, "NTE|1\r");
	CHECK(refused(many, (size_t)(p - many), "segments"));
}

static void acks_answer_the_message(void)
{
	struct hl7_msg *m = parse_str(
	        "MSH|^~\\&|RIS|SITE|DRIMBOX|SITE|20240101||MDM^T02^MDM_T02|"
	        "MSG42|P|2.6\rPID|||X\r");
	struct hl7_msg *a, *m2;
	size_t len;
	char *ack;
	char err[256];

	CHECK(m != NULL);
	if (m == NULL)
		return;
	ack = hl7_ack(m, HL7_AA, 0, NULL, "DRIMBOX", "SITE", "A1", &len);
	CHECK(ack != NULL);
	a = ack ? hl7_parse(ack, len, err, sizeof(err)) : NULL;
	CHECK(a && get_is(a, "MSH", 1, 3, 1, 0, 0, "DRIMBOX"));
	CHECK(a && get_is(a, "MSH", 1, 5, 1, 0, 0, "RIS"));
	CHECK(a && get_is(a, "MSH", 1, 9, 1, 0, 0, "ACK^T02^ACK"));
	CHECK(a && get_is(a, "MSH", 1, 10, 1, 0, 0, "A1"));
	CHECK(a && get_is(a, "MSH", 1, 12, 1, 0, 0, "2.6"));
	CHECK(a && get_is(a, "MSA", 1, 1, 1, 0, 0, "AA"));
	CHECK(a && get_is(a, "MSA", 1, 2, 1, 0, 0, "MSG42"));
	CHECK(a && hl7_segment(a, "ERR", 1) == NULL);
	hl7_free(a);
	free(ack);
	ack = hl7_ack(m, HL7_AR, 203, "version 9.9 | not ^ supported", "D", "S",
	              "A2", &len);
	a = ack ? hl7_parse(ack, len, err, sizeof(err)) : NULL;
	CHECK(a && get_is(a, "MSA", 1, 1, 1, 0, 0, "AR"));
	CHECK(a && get_is(a, "ERR", 1, 3, 1, 1, 0, "203"));
	CHECK(a && get_is(a, "ERR", 1, 4, 1, 0, 0, "E"));
	CHECK(a &&
	      get_is(a, "ERR", 1, 8, 1, 0, 0, "version 9.9 | not ^ supported"));
	hl7_free(a);
	free(ack);
	hl7_free(m);
	/* control bytes echoed from the message never go out raw */
	m2 = parse_str("MSH|^~\\&|RIS|S|D|S|1||ORU^R01|A\\X1C0D0B\\B|P|2.5\r");
	ack = m2 ? hl7_ack(m2, HL7_AA, 0, NULL, "D", "S", "A4", &len) : NULL;
	CHECK(ack != NULL && memchr(ack, 0x1C, len) == NULL &&
	      memchr(ack, 0x0B, len) == NULL && strstr(ack, "\\X1C\\"));
	free(ack);
	hl7_free(m2);
	/* a message that could not be parsed still gets an answer */
	ack = hl7_ack(NULL, HL7_AR, 100, "garbage", "D", "S", "A3", &len);
	a = ack ? hl7_parse(ack, len, err, sizeof(err)) : NULL;
	CHECK(a && get_is(a, "MSA", 1, 1, 1, 0, 0, "AR"));
	hl7_free(a);
	free(ack);
}

/* xorshift: reproducible mutations */
static unsigned long long rnd_state = 88172645463325252ULL;

static unsigned long long rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void mutated_messages_never_break_the_parser(void)
{
	static const char delims[] = "|^~\\&\r\n#MSH";
	char path[512], err[256], v[64];
	size_t len, b64;
	char *orig, *buf;
	int parsed = 0;

	snprintf(path, sizeof(path), "%s" C_ORU, shared);
	orig = test_slurp(path, &len);
	len = len > 4096 ? 4096 : len; /* the header segments */
	buf = malloc(len);
	for (int round = 0; round < 20000; round++) {
		size_t n = len - rnd() % (len / 2 + 1);
		struct hl7_msg *m;

		memcpy(buf, orig, n);
		for (int k = (int)(rnd() % 8); k >= 0; k--)
			buf[rnd() % n] =
			        (rnd() & 1) ? (char)rnd() : delims[rnd() % 12];
		m = hl7_parse(buf, n, err, sizeof(err));
		if (m == NULL)
			continue;
		parsed++;
		for (int i = 0; i < hl7_nsegments(m); i++) {
			const struct hl7_seg *s = hl7_segment_at(m, i);

			for (int f = 0; f < 40; f++) {
				hl7_get(m, s, f, (int)(rnd() % 3),
				        (int)(rnd() % 4), (int)(rnd() % 3), v,
				        sizeof(v));
				(void)hl7_raw(m, s, f, 1, 5, &b64);
			}
		}
		free(hl7_ack(m, HL7_AE, 207, err, "D", "S", "X", &b64));
		hl7_free(m);
	}
	printf("     %d of 20000 mutations parsed\n", parsed);
	CHECK(parsed > 1000);
	free(buf);
	free(orig);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_hl7 SHARED-DIR\n");
		return 2;
	}
	shared = argv[1];
	RUN(the_referencing_oru_reads_as_the_brief_says);
	RUN(every_sample_message_parses);
	RUN(segment_ends_may_be_cr_lf_or_crlf);
	RUN(escapes_and_other_delimiters_are_honoured);
	RUN(truncated_values_report_their_full_length);
	RUN(values_are_always_valid_utf8);
	RUN(latin1_is_converted_to_utf8);
	RUN(malformed_messages_are_refused_with_a_reason);
	RUN(acks_answer_the_message);
	RUN(mutated_messages_never_break_the_parser);
	return test_failures ? 1 : 0;
}
