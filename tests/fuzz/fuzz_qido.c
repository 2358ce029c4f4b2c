/*
 * fuzz_qido.c - a QIDO-RS query string ("key=value&...", the first byte
 * choosing the level and fuzzy matching) as the matching keys the index
 * turns into SQL: wildcards, ranges, UID lists, person names. Run against
 * an index holding one study.
 */
#include "dcm.h"
#include "fuzz.h"
#include "index.h"
#include "log.h"

#include <stdio.h>
#include <unistd.h>

#define KEYS_MAX 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct index *ix;

static int on_match(void *ctx, const struct idx_match *m)
{
	(void)ctx;
	(void)m;
	return 0;
}

static struct index *open_index(void)
{
	char dir[] = "/tmp/drimbox-fuzz-XXXXXX", path[64], err[256];
	struct idx_patient pat = { "279035121518989", "ASIP-SANTE-INS-NIR",
		                   "PAT-TROIS^DOMINIQUE", "19790328", "F" };
	struct idx_study st = { "1.2.3",   "20240101", "101500", "ACC1",
		                "CT HEAD", "CT",       NULL,     NULL,
		                1,         1 };
	struct idx_series se = { "1.2.3.1", "CT", "AXIAL", "HEAD", 1, 1 };
	struct idx_instance in = { "1.2.3.1.1", "1.2.840.10008.5.1.4.1.1.2", 1,
		                   -1 };
	size_t off[2] = { 0, 1 };
	struct index *x = NULL;

	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof(path), "%s/index.db", dir);
	log_setup(LOG_ERROR, stderr);
	if (index_open(path, 1, 0, &x, err, sizeof(err)) != 0 ||
	    index_sync_study(x, &pat, &st, &se, 1, &in, off) != 0)
		abort();
	return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct idx_filter f[KEYS_MAX];
	struct idx_query q;
	char *s, *save = NULL, err[256];
	size_t n = 0;

	if (size == 0)
		return 0;
	if (ix == NULL)
		ix = open_index();
	s = fuzz_string(data + 1, size - 1);
	if (s == NULL)
		return 0;
	for (char *kv = strtok_r(s, "&", &save); kv && n < KEYS_MAX;
	     kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');

		if (eq == NULL)
			continue;
		*eq = '\0';
		if (dcm_tag_lookup(kv, &f[n].tag) == DCM_OK)
			f[n++].value = eq + 1;
	}
	memset(&q, 0, sizeof(q));
	q.level = (enum idx_level)(data[0] % 3);
	q.fuzzy = data[0] & 4;
	q.study_uid = data[0] & 8 ? "1.2.3" : NULL;
	q.filters = f;
	q.nfilters = n;
	q.limit = 10;
	(void)index_qido(ix, &q, on_match, NULL, err, sizeof(err));
	free(s);
	return 0;
}
