/*
 * fuzz_dicom_json.c - a DICOM Part 10 buffer read by DCMTK
 * (dcm_ds_read_mem), written as DICOM JSON (dcm_ds_to_json, with and
 * without bulk data URIs), and read as a KOS manifest (dcm_kos_read).
 */
#include "dcm.h"
#include "fuzz.h"

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct dcm_ds *ds = NULL;
	struct dcm_manifest *m = NULL;
	struct dcm_err e;
	char *json = NULL;
	size_t len;

	if (!ready) {
		if (dcm_global_init(&e) != DCM_OK)
			abort();
		ready = 1;
	}
	if (dcm_ds_read_mem(data, size, &ds, &e) == DCM_OK) {
		if (dcm_ds_to_json(ds, 256, "bulk/", &json, &len, &e) ==
		    DCM_OK) {
			/* what it writes is JSON */
			json_t *j = json_loadb(json, len, JSON_ALLOW_NUL, NULL);

			if (j == NULL)
				abort();
			json_decref(j);
		}
		free(json);
		json = NULL;
		if (dcm_ds_to_json(ds, 0, NULL, &json, &len, &e) == DCM_OK)
			free(json);
		dcm_ds_free(ds);
	}
	if (dcm_kos_read(data, size, &m, &e) == DCM_OK)
		dcm_manifest_free(m);
	return 0;
}
