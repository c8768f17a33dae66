/* Pre-tokenizers: the split patterns of byte-level BPE tokenizers, implemented by hand with the exact
 * leftmost-first, backtracking semantics of the regular expressions Hugging Face runs (Oniguruma), and
 * the Digits splitter. Each is recognised by its pattern string in tokenizer.json or by GGUF's
 * tokenizer.ggml.pre name. */
#ifndef TS_TOKENIZER_PRETOKENIZE_H
#define TS_TOKENIZER_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum ts_pretok_kind {
    TS_PRETOK_QWEN2,            /* Qwen2/Qwen3: single digits, letters with one leading non-letter */
    TS_PRETOK_LLAMA3,           /* Llama-3: as Qwen2 but digit runs of up to three */
    TS_PRETOK_GPT2,             /* GPT-2 (ByteLevel use_regex): case-sensitive contractions, ' ?' prefixes */
    TS_PRETOK_DIGITS_INDIVIDUAL, /* Digits { individual_digits: true } */
    TS_PRETOK_DIGITS_GROUPED,   /* Digits { individual_digits: false } */
} ts_pretok_kind;

/* The regex text of a pattern kind as tokenizer.json spells it (NULL for the Digits splitters). */
const char *ts_pretok_pattern(ts_pretok_kind kind);

/* Recognises a Split pattern from tokenizer.json; fails naming the pattern when it is not one we implement. */
int ts_pretok_from_pattern(const char *pattern, ts_pretok_kind *out, ts_error *err);

/* Reusable per-call buffers (one per encoding call; never shared between threads). */
typedef struct ts_pretok_scratch {
    uint8_t *cls;  /* TS_UNI_* bits per code point */
    size_t *off;   /* byte offset of each code point, plus the end */
    size_t cap;
} ts_pretok_scratch;

void ts_pretok_scratch_free(ts_pretok_scratch *s);

/* Called for each piece [start, end) in byte offsets of the text; a non-zero return stops the split. */
typedef int (*ts_pretok_emit)(void *ctx, size_t start, size_t end);

/* Splits valid UTF-8 text into pieces that cover it exactly, in order. Returns -1 when memory runs out
 * or the callback asked to stop (its value is passed through). */
int ts_pretok_split(ts_pretok_kind kind, const char *text, size_t len, ts_pretok_scratch *scratch,
                    ts_pretok_emit emit, void *ctx);

#endif
