/*
 * fuzz-json.c - the strict JSON reader every JSON input goes through
 * (llmq_json_parse), and llmq_utf8_valid.
 *
 * Checks beyond "no crash": what it accepts is well-formed UTF-8; printing
 * an accepted document with cJSON and reading it back is accepted again
 * (the reader refuses nothing cJSON itself writes).
 */
#include "fuzz.h"   /* first: it defines _GNU_SOURCE */
#include "formats/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* not NUL-terminated, as the safetensors header is not */
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    size_t bad = 0;
    int valid = llmq_utf8_valid((const uint8_t *)buf, size, &bad);
    if (!valid && bad >= size) abort();
    cJSON *j = NULL;
    llmq_err err = { 0 };
    if (llmq_json_parse(buf, size, "fuzz.json", &j, &err) == LLMQ_OK) {
        if (!valid || !j) abort();
        char *again = cJSON_PrintUnformatted(j);
        if (again) {
            cJSON *k = NULL;
            llmq_err err2 = { 0 };
            if (llmq_json_parse(again, strlen(again), "reprinted", &k, &err2) != LLMQ_OK) {
                fprintf(stderr, "reprinted JSON refused: %s\n", err2.msg);
                abort();
            }
            cJSON_Delete(k);
            cJSON_free(again);
        }
        cJSON_Delete(j);
    } else if (j || err.code == LLMQ_OK || !err.msg[0] || strchr(err.msg, '\n')) {
        abort();
    }
    free(buf);
    return 0;
}
