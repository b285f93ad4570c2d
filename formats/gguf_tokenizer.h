/*
 * gguf_tokenizer.h - the tokenizer a GGUF file carries in its metadata
 * (tokenizer.ggml.*), read as llama.cpp reads it, built on llmq's
 * tokenizer.json tokenizer (formats/tokenizer.h); and the table of
 * llama.cpp's byte-level pre-tokenizer names (tokenizer.ggml.pre) that both
 * this reader and the exporter (lib/export/gguf_export.c) use.
 */
#ifndef LLMQ_GGUF_TOKENIZER_H
#define LLMQ_GGUF_TOKENIZER_H

#include "gguf.h"
#include "tokenizer.h"

/* The tokenizer.ggml.pre name llama.cpp gives a byte-level BPE tokenizer
 * whose only split is pattern (tokenizer.json's Split regex; GPT-2's for a
 * ByteLevel step with use_regex): "gpt-2", "llama-bpe" or "qwen2"; NULL if
 * llmq knows no name for it. */
const char *llmq_gguf_pre_name(const char *pattern);

/* Build *out (free with llmq_tok_free) from f's tokenizer.ggml.* metadata,
 * tokenizing as llama.cpp does with parse_special on (control, unknown and
 * user-defined tokens written in the text are recognised):
 *   - model "gpt2": byte-level BPE with tokens, token_type, merges (ranked
 *     in file order) and the pre-tokenizer split that tokenizer.ggml.pre
 *     names (absent: llama.cpp's "default");
 *   - model "llama": SentencePiece BPE with tokens, scores, token_type,
 *     add_space_prefix (default 1), byte fallback to <0xXX> tokens; the pair
 *     whose joined text is a token with the highest score merges first, ties
 *     leftmost first (llama.cpp's llm_tokenizer_spm).
 * Control and unknown tokens (token_type 3, 2) become special added tokens,
 * user-defined ones (4) plain added tokens.  bos/eos from bos_token_id /
 * eos_token_id (for "llama", 1 and 2 when absent, as llama.cpp), add_bos /
 * add_eos from add_bos_token / add_eos_token (defaults as llama.cpp: 1 for
 * "llama" and the Llama 3 family of pre names, else 0).
 * Errors, one line naming the file and the key (LLMQ_EFORMAT unless said):
 * a key missing or of the wrong type, arrays whose length is not the
 * number of tokens, a token with a NUL byte or given twice, a token type
 * outside 0..6, a score not finite, an id out of range, a merge that is not
 * "left right" or names a text that is no token, add_bos_token without a
 * bos id; LLMQ_EUNSUPPORTED: a tokenizer model other than gpt2 / llama, a
 * pre name llmq does not implement (named), more than 2^24 tokens;
 * LLMQ_ENOMEM.  *out keeps no view into f: f may be closed at once. */
int llmq_tok_from_gguf(llmq_tok **out, const llmq_gguf_file *f, llmq_err *err);

#endif
