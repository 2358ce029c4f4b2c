/*
 * hl7.h - HL7 v2 messages (ER7 encoding): parsing, reading values, and
 * building acknowledgements.
 *
 * A parsed message keeps one copy of the text, converted to UTF-8 (from
 * MSH-18's charset), and an index of where each segment and field starts;
 * values are located on demand and unescaped into the caller's buffer.
 * Parsing is bounded (segments, fields per segment, message size are
 * limited) and never reads outside the input: any byte string can be given
 * to it.
 *
 * Field numbers follow the standard, MSH included: MSH-1 is the field
 * separator, MSH-2 the encoding characters, MSH-9 the message type.
 * Repetitions, components and sub-components count from 1.
 */
#ifndef DRIMBOX_HL7_H
#define DRIMBOX_HL7_H

#include <stddef.h>

#define HL7_MAX_SEGMENTS 10000
#define HL7_MAX_FIELDS 256 /* per segment */

struct hl7_msg;

/*
 * Parses len bytes (without MLLP framing). Segments end with \r, \n or
 * \r\n; the message must start with MSH. NULL with err on failure.
 */
struct hl7_msg *hl7_parse(const char *buf, size_t len, char *err,
                          size_t errlen);

void hl7_free(struct hl7_msg *m);

/* A segment: the nth (from 1) with that id, or NULL. */
struct hl7_seg;
const struct hl7_seg *hl7_segment(const struct hl7_msg *m, const char *id,
                                  int nth);

/*
 * The first segment with that id after `after` (NULL: from the start), or
 * NULL: walks a message's segments of one kind in linear time.
 */
const struct hl7_seg *hl7_next(const struct hl7_msg *m,
                               const struct hl7_seg *after, const char *id);

/* Number of segments; the ith (from 0) and its three-letter id. */
int hl7_nsegments(const struct hl7_msg *m);
const struct hl7_seg *hl7_segment_at(const struct hl7_msg *m, int i);
const char *hl7_seg_id(const struct hl7_seg *s);

/* Number of repetitions of a field (0 when absent or empty). */
int hl7_reps(const struct hl7_msg *m, const struct hl7_seg *s, int field);

/*
 * A value, unescaped, into out (always terminated, valid UTF-8; truncated
 * to cap - 1 bytes at most, which the return value then exceeds). comp and sub
 * 0 mean the whole repetition or component, separators included (unescaped).
 * Returns the length of the full value; 0 when absent.
 */
size_t hl7_get(const struct hl7_msg *m, const struct hl7_seg *s, int field,
               int rep, int comp, int sub, char *out, size_t cap);

/*
 * The raw (still escaped) bytes of a component, without copying: for
 * large payloads such as base64 (which holds no escape). *len 0 when
 * absent. The pointer lives as long as m.
 */
const char *hl7_raw(const struct hl7_msg *m, const struct hl7_seg *s, int field,
                    int rep, int comp, size_t *len);

/* HL7 v2 acknowledgement codes. */
enum hl7_ack_code { HL7_AA, HL7_AE, HL7_AR };

/*
 * An acknowledgement of m (or of an unparsable message: m NULL) from the
 * given application and facility: MSH answering m's sender, MSA with m's
 * control id, and for AE/AR an ERR segment with the HL7 error code (table
 * 0357, e.g. 100 segment sequence error, 101 required field missing, 102
 * data type error, 200 unsupported message type, 203 unsupported version,
 * 207 application internal error) and the text (escaped here). Returns a
 * malloc'd message (\r separated, no MLLP framing) or NULL.
 */
char *hl7_ack(const struct hl7_msg *m, enum hl7_ack_code code, int error_code,
              const char *text, const char *app, const char *facility,
              const char *control_id, size_t *len);

#endif
