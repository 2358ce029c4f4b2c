/*
 * test_pacs_match.c - how sync reads C-FIND matches: a match missing a
 * required key is skipped (and counted), the others are kept. The match
 * handlers are static in pacs.c, so this test includes it.
 */
#include "../../src/pacs.c"
#include "testutil.h"

static struct dcm_ds *match(uint32_t t1, const char *v1, uint32_t t2,
                            const char *v2)
{
	struct dcm_ds *ds = dcm_ds_new();

	if (ds != NULL && t1 != 0)
		dcm_ds_set_string(ds, t1, v1);
	if (ds != NULL && t2 != 0)
		dcm_ds_set_string(ds, t2, v2);
	return ds;
}

static void study_match_without_study_uid_is_skipped(void)
{
	struct rows r = { NULL, 0, 0, sizeof(struct study_row), 0 };
	struct dcm_ds *bad = match(T_PATIENT_ID, "123", 0, NULL);
	struct dcm_ds *empty = match(T_STUDY_UID, "", T_PATIENT_ID, "123");
	struct dcm_ds *good =
	        match(T_STUDY_UID, "1.2.3", T_NUM_STUDY_INST, "7");

	CHECK(on_study(&r, bad) == 0);
	CHECK(on_study(&r, empty) == 0);
	CHECK(on_study(&r, good) == 0);
	CHECK(r.n == 1 && r.skipped == 2);
	CHECK(strcmp(((struct study_row *)r.v)[0].uid, "1.2.3") == 0);
	CHECK(((struct study_row *)r.v)[0].ninst == 7);
	CHECK(((struct study_row *)r.v)[0].nseries == -1);
	free(r.v);
	dcm_ds_free(bad);
	dcm_ds_free(empty);
	dcm_ds_free(good);
}

static void series_and_image_matches_without_uid_are_skipped(void)
{
	struct rows se = { NULL, 0, 0, sizeof(struct series_row), 0 };
	struct rows in = { NULL, 0, 0, sizeof(struct inst_row), 0 };
	struct dcm_ds *no_series = match(T_MODALITY, "CT", 0, NULL);
	struct dcm_ds *series =
	        match(T_SERIES_UID, "1.2.3.4", T_MODALITY, "CT");
	struct dcm_ds *no_sop = match(T_INSTANCE_NUMBER, "3", 0, NULL);
	struct dcm_ds *sop =
	        match(T_SOP_UID, "1.2.3.4.5", T_INSTANCE_NUMBER, "3");

	CHECK(on_series(&se, no_series) == 0);
	CHECK(on_series(&se, series) == 0);
	CHECK(on_instance(&in, no_sop) == 0);
	CHECK(on_instance(&in, sop) == 0);
	CHECK(se.n == 1 && se.skipped == 1);
	CHECK(in.n == 1 && in.skipped == 1);
	CHECK(strcmp(((struct series_row *)se.v)[0].modality, "CT") == 0);
	CHECK(((struct inst_row *)in.v)[0].number == 3);
	free(se.v);
	free(in.v);
	dcm_ds_free(no_series);
	dcm_ds_free(series);
	dcm_ds_free(no_sop);
	dcm_ds_free(sop);
}

int main(void)
{
	struct dcm_err e;

	log_setup(LOG_ERROR, stderr);
	if (dcm_global_init(&e) != DCM_OK) {
		fprintf(stderr, "dcm_global_init: %s\n", e.msg);
		return 1;
	}
	RUN(study_match_without_study_uid_is_skipped);
	RUN(series_and_image_matches_without_uid_are_skipped);
	dcm_global_cleanup();
	return test_failures ? 1 : 0;
}
