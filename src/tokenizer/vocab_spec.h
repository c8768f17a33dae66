/* A tokenizer's vocabulary as plain data: the common currency between tokenizer.json, GGUF metadata
 * (tokenizer.ggml.*) and the BPE tokenizer. Token types use GGUF's numbering. */
#ifndef TS_TOKENIZER_VOCAB_SPEC_H
#define TS_TOKENIZER_VOCAB_SPEC_H

#include <stdint.h>

typedef enum ts_token_type {
    TS_TOKEN_NORMAL = 1,
    TS_TOKEN_UNKNOWN = 2,
    TS_TOKEN_CONTROL = 3,      /* special tokens such as <|im_start|>, <|endoftext|> */
    TS_TOKEN_USER_DEFINED = 4, /* added tokens that are not special (<think> in Qwen3) */
    TS_TOKEN_UNUSED = 5,
    TS_TOKEN_BYTE = 6,
} ts_token_type;

typedef struct ts_vocab_spec {
    char model[32]; /* GGUF tokenizer.ggml.model: "gpt2" for byte-level BPE */
    char pre[32];   /* GGUF tokenizer.ggml.pre: "qwen2", "gpt-2", "llama-bpe", "smollm", "default" */
    int32_t n_tokens;
    char **tokens;        /* byte-level encoded token strings, as in tokenizer.json's vocab */
    int32_t *token_types; /* ts_token_type per token */
    int32_t n_merges;
    char **merges; /* "left right" */
    int32_t bos_id, eos_id, pad_id, unk_id; /* -1 when absent */
    int add_bos, add_eos;
    char *chat_template; /* may be NULL */
} ts_vocab_spec;

void ts_vocab_spec_init(ts_vocab_spec *s);
void ts_vocab_spec_free(ts_vocab_spec *s);

#endif
