/*
 * tokenizer.h - the Hugging Face tokenizer.json tokenizer (BPE models:
 * byte-level BPE as GPT-2 / Llama-3 / Qwen2 ship it, SentencePiece-style BPE
 * as Llama-2 / Mistral ship it), exact against HF tokenizers.
 *
 * A loaded llmq_tok is immutable: encode and decode may run on one handle
 * from several threads at once.
 */
#ifndef LLMQ_TOKENIZER_H
#define LLMQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/base/llmq.h"

typedef struct llmq_tok llmq_tok;

/* Load tokenizer.json at path into *out (free with llmq_tok_free).  If a
 * tokenizer_config.json lies beside it, bos_token / eos_token /
 * add_bos_token are read from it too.
 * The JSON is read strictly (see llmq_json_parse): trailing bytes, invalid
 * UTF-8, raw control characters, duplicate keys and \u0000 are refused.
 * Errors: LLMQ_EIO (unreadable), LLMQ_EFORMAT (malformed: the message names
 * the file and the field), LLMQ_EUNSUPPORTED (a model other than BPE, or a
 * normalizer / pre-tokenizer / decoder / Split pattern llmq does not
 * implement: the message names it), LLMQ_ENOMEM. */
int llmq_tok_load(llmq_tok **out, const char *path, llmq_err *err);

/* Same, from a tokenizer.json already in memory (json[0..len)); name is used
 * in messages only.  No tokenizer_config.json is read. */
int llmq_tok_load_mem(llmq_tok **out, const char *json, size_t len, const char *name,
                      llmq_err *err);

/* Same, from a tokenizer.json tree already built (root is borrowed, not
 * freed); for loaders of other formats that synthesize one
 * (formats/gguf_tokenizer.c).  No tokenizer_config.json is read. */
struct cJSON;
int llmq_tok_load_tree(llmq_tok **out, const struct cJSON *root, const char *name, llmq_err *err);

/* Replace t's BPE merges by m[0..n): the pair (left, right) of adjacent ids
 * becomes id, lowest rank first; equal ranks merge leftmost first.  A pair
 * given twice keeps its lowest rank.  Unlike tokenizer.json's merges, ranks
 * need not be distinct (SentencePiece scores tie).  Call before t is shared
 * between threads.  Errors: LLMQ_EUSAGE (an id that names no token, or
 * left + right whose texts do not spell id's), LLMQ_ENOMEM; on error t keeps
 * its merges. */
typedef struct { int32_t left, right, id; uint32_t rank; } llmq_tok_merge;
int llmq_tok_set_merges(llmq_tok *t, const llmq_tok_merge *m, size_t n, llmq_err *err);

/* Set the special ids (-1 or out of range: none) and whether BOS / EOS are
 * added, overriding what loading found.  Call before t is shared. */
void llmq_tok_set_special(llmq_tok *t, int32_t bos, int32_t eos, int add_bos, int add_eos);

/* Free t and everything it owns.  Accepts NULL. */
void llmq_tok_free(llmq_tok *t);

/* Split patterns run on Oniguruma, as in HF tokenizers; the GPT-2, Llama 3
 * and Qwen2 patterns also have hand-written scanners that give the same
 * pieces faster, used by default.  on = 0 runs every pattern on Oniguruma
 * (tests compare the two).  Call before t is shared between threads. */
void llmq_tok_set_scanners(llmq_tok *t, int on);

/* Number of ids: 1 + the largest id of the model vocab and added tokens. */
int32_t llmq_tok_vocab_size(const llmq_tok *t);

/* Encode text[0..len) (any bytes; need not be NUL-terminated or valid
 * UTF-8) into *ids (malloc'ed, caller frees; *n of them; may be 0) like HF
 * encode(text, add_special_tokens=False): no BOS/EOS or post-processor
 * tokens, but added/special tokens written literally in the text are
 * recognised.  Invalid UTF-8 bytes are treated one by one (byte-level BPE
 * encodes them as their bytes; SentencePiece BPE falls back to <0xXX>).
 * Errors: LLMQ_ENOMEM, LLMQ_EFORMAT (the text needs the unk token and the
 * vocab lacks it: loading accepts that, as HF does), LLMQ_EUNSUPPORTED (the
 * normalizers would grow a piece of n bytes past 64 n + 4096); messages name
 * the tokenizer.json. */
int llmq_tok_encode(const llmq_tok *t, const char *text, size_t len, int32_t **ids, size_t *n,
                    llmq_err *err);

/* The pieces encode would hand to the BPE model, in order: pre-tokens after
 * normalization and pre-tokenization (byte-level ones in mapped form, e.g.
 * "Ġthe"), with added_id -1; added tokens found in the text as their text and
 * id.  fn returns nonzero to stop (then LLMQ_EGENERIC).  For tests and
 * debugging.  Errors: as llmq_tok_encode. */
typedef int (*llmq_tok_piece_fn)(void *ctx, const char *piece, size_t len, int32_t added_id);
int llmq_tok_pretokenize(const llmq_tok *t, const char *text, size_t len, llmq_tok_piece_fn fn,
                         void *ctx, llmq_err *err);

/* Decode ids[0..n) through the tokenizer's decoder into *out (malloc'ed,
 * NUL-terminated, *len bytes without the NUL; len may be NULL).
 * skip_special: drop special added tokens.  Ids in range that name no token
 * are skipped, as HF does.  Unlike HF, which turns invalid UTF-8 into U+FFFD,
 * the exact bytes are returned, so decoding a stream of ids piecewise and
 * concatenating gives the same bytes as decoding it whole (the caller may
 * replace invalid sequences for display).
 * Errors: LLMQ_EFORMAT (id < 0 or >= vocab size), LLMQ_EUNSUPPORTED (the
 * decoder's Replace steps would grow n bytes of token text past
 * 64 n + 4096), LLMQ_ENOMEM. */
int llmq_tok_decode(const llmq_tok *t, const int32_t *ids, size_t n, int skip_special,
                    char **out, size_t *len, llmq_err *err);

/* The token text of id as stored in tokenizer.json (byte-level tokens in
 * their mapped form, e.g. "Ġthe"), borrowed from t; NULL if id names none. */
const char *llmq_tok_piece(const llmq_tok *t, int32_t id);

/* Id of a token given its exact text (added tokens first, then the model
 * vocab), or -1. */
int32_t llmq_tok_find(const llmq_tok *t, const char *piece);

/* 1 if id is a special added token. */
int llmq_tok_is_special(const llmq_tok *t, int32_t id);

/* Special token ids, -1 if unknown.  From tokenizer_config.json
 * (bos_token/eos_token) when present, else the post-processor template,
 * else well-known added tokens (<s>, </s>, <|begin_of_text|>,
 * <|end_of_text|>, <|endoftext|>, ...). */
int32_t llmq_tok_bos(const llmq_tok *t);
int32_t llmq_tok_eos(const llmq_tok *t);

/* 1 if the tokenizer would add BOS with add_special_tokens=True:
 * tokenizer_config.json add_bos_token when it says, else whether the
 * post-processor template starts with a special token. */
int llmq_tok_add_bos(const llmq_tok *t);

/* 1 if EOS is added with add_special_tokens=True (only llmq_tok_set_special
 * sets it; tokenizer.json loading leaves 0). */
int llmq_tok_add_eos(const llmq_tok *t);

#endif
