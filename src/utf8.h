/*
 * utf8.h - UTF-8 checks for text that comes from outside (HL7 messages,
 * CDA reports) before it goes into JSON, the index or a log line.
 */
#ifndef DRIMBOX_UTF8_H
#define DRIMBOX_UTF8_H

#include <stddef.h>

/* True when the len bytes at s are valid UTF-8 (no overlongs, surrogates). */
int utf8_valid(const char *s, size_t len);

/*
 * Makes s valid UTF-8 in place: invalid bytes become '?', a character cut
 * at the end (truncation) is dropped.
 */
void utf8_clean(char *s);

#endif
