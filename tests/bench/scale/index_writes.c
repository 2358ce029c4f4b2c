/*
 * index_writes.c - write throughput of the index on one backend, through
 * the index API drimboxd uses (tests/bench/scale/run drives it).
 *
 *   index_writes TARGET THREADS SECONDS
 *
 * TARGET: an SQLite file or a PostgreSQL connection string. THREADS
 * writers, for SECONDS each of three workloads in turn:
 *   sync     index_sync_study: a study of 4 series x 25 instances (of a
 *            patient of its own), one transaction (what a PACS sync or a
 *            publication's C-FIND writes)
 *   cached   index_put_cached: one instance cached (what each instance a
 *            WADO-RS retrieval brings writes)
 *   journal  index_journal_hl7: a report journaled with its job, synced to
 *            disk before the acknowledgement (what each HL7 message writes)
 * Prints one JSON object: per workload, operations and operations/s.
 */
#include "index.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct worker {
	struct index *ix;
	int id;
	const char *workload;
	double until;
	long ops, errors;
};

static atomic_long seq;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int one_sync(struct index *ix, long n)
{
	char pid[32], study[80], series[4][96], inst[100][128];
	struct idx_patient pat = { pid, "CHU-DRIMBOX-IPP", "PAT^BENCH",
		                   "19790315", "F" };
	struct idx_series se[4];
	struct idx_instance in[100];
	size_t off[5];

	snprintf(pid, sizeof(pid), "IPP%ld", n); /* a patient per study */
	snprintf(study, sizeof(study), "1.2.826.0.1.3680043.10.1.%ld", n);
	struct idx_study st = { study, "20240912", "101500", "ACC", "bench",
		                "CT",  NULL,       "1",      4,     100 };
	for (int s = 0; s < 4; s++) {
		snprintf(series[s], sizeof(series[s]), "%s.%d", study, s + 1);
		se[s] = (struct idx_series){ series[s], "CT",  "series",
			                     NULL,      s + 1, 25 };
		off[s] = (size_t)s * 25;
		for (int i = 0; i < 25; i++) {
			int k = s * 25 + i;

			snprintf(inst[k], sizeof(inst[k]), "%.90s.%d",
			         series[s], i + 1);
			in[k] = (struct idx_instance){
				inst[k], "1.2.840.10008.5.1.4.1.1.2", i + 1, -1
			};
		}
	}
	off[4] = 100;
	return index_sync_study(ix, &pat, &st, se, 4, in, off);
}

static int one_cached(struct index *ix, long n)
{
	char study[80], series[96], sop[128], path[320];
	int64_t added;

	snprintf(study, sizeof(study), "1.2.826.0.1.3680043.10.2.%ld", n / 100);
	snprintf(series, sizeof(series), "%s.1", study);
	snprintf(sop, sizeof(sop), "%s.%ld", series, n % 100);
	snprintf(path, sizeof(path), "%s/%s/%s.dcm", study, series, sop);
	struct idx_put p = {
		.pat = { "279035121518989", "ASIP-SANTE-INS-NIR", "PAT^BENCH",
		         "19790315", "F" },
		.st = { study, "20240912", NULL, NULL, NULL, NULL, NULL, NULL,
		        -1, -1 },
		.se = { series, "CT", NULL, NULL, 1, -1 },
		.c = { sop, "1.2.840.10008.5.1.4.1.1.2", n % 100, path,
		       "1.2.840.10008.1.2.1", 524288, 1,
		       "{\"00080018\":{\"vr\":\"UI\"}}" },
	};
	return index_put_cached(ix, &p, 1, &added);
}

static int one_journal(struct index *ix, long n)
{
	static const char raw[] = "MSH|^~\\&|RIS|SITE|DRIMBOX|SITE|...";
	char control[32], digest[65];
	int64_t job, dup;
	int released;

	snprintf(control, sizeof(control), "B%ld", n);
	snprintf(digest, sizeof(digest), "%064ld", n);
	struct idx_hl7 m = {
		"127.0.0.1:1", "RIS^SITE", control,         "ORU^R01",
		digest,        raw,        sizeof(raw) - 1, sizeof(raw) - 1,
		"AA",          NULL
	};
	struct idx_new_job j = { "publish", "{\"studies\":[]}", NULL, NULL,
		                 NULL };
	return index_journal_hl7(ix, &m, &j, NULL, NULL, NULL, &job, &released,
	                         &dup);
}

static void *run(void *arg)
{
	struct worker *w = arg;

	while (now_s() < w->until) {
		long n = atomic_fetch_add(&seq, 1);
		int rc = strcmp(w->workload, "sync") == 0 ? one_sync(w->ix, n)
		         : strcmp(w->workload, "cached") == 0
		                 ? one_cached(w->ix, n)
		                 : one_journal(w->ix, n);

		if (rc == 0)
			w->ops++;
		else
			w->errors++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const char *const workloads[] = { "sync", "cached", "journal" };
	struct index *ix;
	char err[512];
	int threads, seconds;

	if (argc != 4 || (threads = atoi(argv[2])) < 1 || threads > 64 ||
	    (seconds = atoi(argv[3])) < 1) {
		fprintf(stderr, "usage: index_writes TARGET THREADS SECONDS\n");
		return 2;
	}
	if (index_open(argv[1], threads, 0, &ix, err, sizeof(err)) != 0) {
		fprintf(stderr, "index_writes: %s\n", err);
		return 1;
	}
	printf("{");
	for (size_t k = 0; k < 3; k++) {
		struct worker w[64];
		pthread_t t[64];
		long ops = 0, errors = 0;
		double start = now_s();

		for (int i = 0; i < threads; i++) {
			w[i] = (struct worker){
				ix, i, workloads[k], start + seconds, 0, 0
			};
			pthread_create(&t[i], NULL, run, &w[i]);
		}
		for (int i = 0; i < threads; i++) {
			pthread_join(t[i], NULL);
			ops += w[i].ops;
			errors += w[i].errors;
		}
		printf("%s\"%s\": {\"ops\": %ld, \"errors\": %ld, "
		       "\"ops_per_s\": %.1f}",
		       k ? ", " : "", workloads[k], ops, errors,
		       (double)ops / (now_s() - start));
	}
	printf("}\n");
	index_close(ix);
	return 0;
}
