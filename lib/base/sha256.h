/* sha256.h - SHA-256 (FIPS 180-4), for model digests recorded in packed files. */
#ifndef LLMQ_SHA256_H
#define LLMQ_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;        /* bytes hashed so far */
    uint8_t buf[64];
    size_t nbuf;
} llmq_sha256;

void llmq_sha256_init(llmq_sha256 *s);
void llmq_sha256_update(llmq_sha256 *s, const void *data, size_t n);
void llmq_sha256_final(llmq_sha256 *s, uint8_t out[32]);
/* out: 65 bytes, lowercase hex + NUL. */
void llmq_sha256_hex(const uint8_t digest[32], char out[65]);

#endif
