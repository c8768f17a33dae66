/* Private to src/tokenizer: the loaded tokenizer's layout and the definition both loaders (tokenizer.json,
 * ts_vocab_spec) produce before the tokenizer is built from it. */
#ifndef TS_TOKENIZER_TOKENIZER_INTERNAL_H
#define TS_TOKENIZER_TOKENIZER_INTERNAL_H

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

typedef struct ts_added_token {
    char *content;
    size_t len;
    int32_t id;
    uint8_t special, lstrip, rstrip, normalized, single_word;
} ts_added_token;

typedef enum { TS_STEP_SPLIT, TS_STEP_PREFIX_SPACE } ts_pretok_step_type;
typedef struct ts_pretok_step {
    ts_pretok_step_type type;
    ts_pretok_kind kind;
} ts_pretok_step;
#define TS_MAX_PRETOK_STEPS 8

typedef struct ts_tokenizer_def {
    ts_vocab_spec spec; /* tokens, types, merges, special ids, chat template */
    ts_added_token *added;
    size_t n_added;
    int nfc;
    int ignore_merges;
    ts_pretok_step steps[TS_MAX_PRETOK_STEPS];
    int n_steps;
    char *bos_token, *eos_token, *pad_token;
} ts_tokenizer_def;

void ts_tokenizer_def_init(ts_tokenizer_def *def);
void ts_tokenizer_def_free(ts_tokenizer_def *def);
/* Parses tokenizer.json (+ tokenizer_config.json) text into a definition. */
int ts_tokenizer_def_from_json(ts_tokenizer_def *def, const char *json, size_t len, const char *config_json,
                               size_t config_len, const char *source, ts_error *err);
/* Builds the tokenizer; the definition is consumed (freed) whether or not this succeeds. */
int ts_tokenizer_build(ts_tokenizer_def *def, ts_tokenizer **out, ts_error *err);

/* Added tokens that share a matching pass, indexed by first byte, longest first. */
typedef struct ts_added_matcher {
    const ts_added_token **tokens;
    size_t n;
    uint32_t start[257]; /* tokens[start[b] .. start[b+1]) begin with byte b */
} ts_added_matcher;

struct ts_tokenizer {
    ts_bpe bpe;
    ts_added_token *added;
    size_t n_added;
    ts_added_matcher raw_matcher;        /* normalized = false: matched on the input text */
    ts_added_matcher normalized_matcher; /* normalized = true: matched after normalization */
    uint8_t *special;                    /* per id */
    int nfc;
    ts_pretok_step steps[TS_MAX_PRETOK_STEPS];
    int n_steps;
    int32_t bos_id, eos_id, pad_id;
    char *bos_token, *eos_token;
    int add_bos;
    char *chat_template;
};

#endif
