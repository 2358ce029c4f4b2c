/* fuzz_hl7.c - an HL7 v2 message to hl7_parse, then every accessor. */
#include "fuzz.h"
#include "hl7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], out[512];
	struct hl7_msg *m =
	        hl7_parse((const char *)data, size, err, sizeof(err));
	size_t len;

	if (m == NULL)
		return 0;
	for (int i = 0; i < hl7_nsegments(m); i++) {
		const struct hl7_seg *s = hl7_segment_at(m, i);

		(void)hl7_seg_id(s);
		for (int f = 0; f < 40; f++) {
			int reps = hl7_reps(m, s, f);

			for (int r = 0; r <= reps && r < 4; r++)
				for (int c = 0; c < 6; c++) {
					(void)hl7_raw(m, s, f, r, c, &len);
					(void)hl7_get(m, s, f, r, c, 0, out,
					              sizeof(out));
					(void)hl7_get(m, s, f, r, c, 1, out,
					              sizeof(out));
				}
		}
	}
	(void)hl7_next(m, hl7_segment(m, "MSH", 0), "OBX");
	free(hl7_ack(m, HL7_AE, 207, "fuzz", "DRIMBOX", "SITE", "1", &len));
	hl7_free(m);
	return 0;
}
