/* json.h - strict JSON input: every JSON text llmq reads (config.json,
 * tokenizer.json, tokenizer_config.json, model.safetensors.index.json, the
 * llmq.* metadata strings of packed files) goes through llmq_json_parse;
 * and a table of numbers added to an object being written. */
#ifndef LLMQ_JSON_H
#define LLMQ_JSON_H

#include <cjson/cJSON.h>
#include "../lib/base/llmq-int.h"

/* Resource bounds on a JSON text, checked in one pass over the bytes before
 * cJSON builds its tree (about 64 bytes a value): the largest tokenizer.json
 * of a released model family seen (Gemma 3, 33 MB) holds 1.86M values at
 * depth 6. */
#define LLMQ_JSON_MAX_DEPTH  64
#define LLMQ_JSON_MAX_VALUES ((size_t)1 << 23)

/* Refuse text[0..len) nested deeper than max_depth arrays/objects or holding
 * more than max_values values (members and elements, at any depth, and the
 * top value): LLMQ_EFORMAT "name: JSON nested deeper than N levels" /
 * "name: more than N JSON values", each "(llmq's limit)".  The count is
 * exact for valid JSON; malformed text is left for the parser to refuse. */
int llmq_json_bounds(const char *text, size_t len, const char *name, int max_depth, size_t max_values,
                     llmq_err *err);

/* Parse text[0..len) (need not be NUL-terminated) as one JSON value into
 * *out (the caller cJSON_Deletes it), refusing what Python's json module,
 * which transformers reads these files with, refuses or reads differently:
 *   - text that is not JSON, or anything but whitespace after the value;
 *   - bytes that are not well-formed UTF-8, raw control characters inside
 *     strings, whitespace other than space, tab, LF and CR, numbers outside
 *     JSON's grammar (01, 1., .5);
 *   - an object with a key twice (cJSON would keep the first, Python the
 *     last, so the two would read different files);
 *   - \u0000 in a string (cJSON's C strings would silently cut it short);
 *   - more than LLMQ_JSON_MAX_VALUES values or nesting deeper than
 *     LLMQ_JSON_MAX_DEPTH (llmq_json_bounds), before any tree is built.
 * Errors: LLMQ_EFORMAT, one line "name: what is wrong" with the byte offset
 * or, for a duplicate key, where in the document; LLMQ_ENOMEM.  name is used
 * in messages only.  Time and memory are linear in len. */
int llmq_json_parse(const char *text, size_t len, const char *name, cJSON **out, llmq_err *err);

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates, or code
 * points above U+10FFFF); else 0, with the offset of the first bad sequence
 * in *bad (bad may be NULL). */
int llmq_utf8_valid(const uint8_t *s, size_t n, size_t *bad);

/* One number member of a JSON object being written (a --json report). */
typedef struct { const char *key; double value; } llmq_json_num;

/* Add f[0..n) to object o in order, each as cJSON_AddNumberToObject adds
 * it (o NULL, or an allocation failure, adds nothing, as there): a report's
 * numbers written as one table of names beside values. */
void llmq_json_add_numbers(cJSON *o, const llmq_json_num *f, size_t n);

#endif
