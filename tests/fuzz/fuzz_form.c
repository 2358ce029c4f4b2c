/*
 * fuzz_form.c - a contextual call's form: "key=value&..." with %XX and
 * '+' decoded (as libmicrohttpd's post processor hands the fields over),
 * checked by conso_call_data with the default configuration.
 */
#include "config.h"
#include "conso.h"
#include "fuzz.h"

#include <ctype.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void url_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (*s == '+') {
			*o++ = ' ';
		} else if (*s == '%' && isxdigit((unsigned char)s[1]) &&
		           isxdigit((unsigned char)s[2])) {
			char hex[3] = { s[1], s[2], '\0' };

			*o++ = (char)strtol(hex, NULL, 16);
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config cfg;
	static int ready;
	char *s = fuzz_string(data, size), *save = NULL;
	json_t *fields = json_object(), *out;
	const char *why = NULL;

	if (!ready) {
		config_defaults(&cfg);
		ready = 1;
	}
	if (s == NULL || fields == NULL)
		goto done;
	for (char *kv = strtok_r(s, "&", &save); kv;
	     kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');
		json_t *v;

		if (eq == NULL)
			continue;
		*eq = '\0';
		url_decode(kv);
		url_decode(eq + 1);
		/* the post processor keeps text; jansson wants UTF-8 */
		if ((v = json_string(eq + 1)) != NULL)
			json_object_set_new(fields, kv, v);
	}
	out = conso_call_data(&cfg, fields, &why);
	json_decref(out);
done:
	json_decref(fields);
	free(s);
	return 0;
}
