/* The byte-level BPE model: token strings and their bytes, a hash map from token string to id, a hash
 * map from merge pair to (rank, merged id), and the merge loop that turns one pre-tokenized piece into
 * ids exactly as Hugging Face's BPE does (lowest rank first, leftmost among equal ranks). Immutable
 * after construction, so one model serves any number of threads. */
#ifndef TS_TOKENIZER_BPE_H
#define TS_TOKENIZER_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct ts_bpe_merge_slot {
    uint64_t pair; /* left id << 32 | right id; UINT64_MAX when empty */
    int32_t rank;
    int32_t merged;
} ts_bpe_merge_slot;

typedef struct ts_bpe {
    int32_t n_tokens;
    char *text;            /* token strings as the vocabulary spells them, NUL separated */
    size_t *text_off;      /* n_tokens + 1 offsets into text (each string ends 1 byte before the next) */
    uint8_t *bytes;        /* each token's decoded bytes */
    size_t *bytes_off;     /* n_tokens + 1 offsets into bytes */
    int32_t *vocab_slots;  /* open addressing on token string -> id, -1 empty */
    size_t vocab_mask;
    ts_bpe_merge_slot *merge_slots;
    size_t merge_mask;
    int32_t byte_ids[256]; /* id of the single-byte token of each byte, -1 when absent */
    int ignore_merges;     /* a piece that is itself a token is emitted whole (Llama-3) */
} ts_bpe;

/* Builds the model. tokens[i] is the string of id i (NULL for an unused id); merges are "left right".
 * Fails when a merge names a token that is not in the vocabulary. */
int ts_bpe_init(ts_bpe *bpe, int32_t n_tokens, char *const *tokens, int32_t n_merges, char *const *merges,
                int ignore_merges, ts_error *err);
void ts_bpe_free(ts_bpe *bpe);

/* Id of a token string, or -1. */
int32_t ts_bpe_lookup(const ts_bpe *bpe, const char *s, size_t len);

/* Growable id list. */
typedef struct ts_ids {
    int32_t *ids;
    size_t n, cap;
} ts_ids;
int ts_ids_push(ts_ids *v, int32_t id);
void ts_ids_free(ts_ids *v);

/* Per-call working memory for the merge loop. */
typedef struct ts_bpe_scratch {
    int32_t *sym;   /* symbol ids */
    int32_t *rank;  /* rank of the pair (i, next(i)) */
    int32_t *next, *prev;
    uint64_t *heap; /* (rank << 32 | position) entries for long pieces */
    char *text;     /* byte-level spelling of a piece for whole-piece lookups */
    size_t cap, text_cap;
} ts_bpe_scratch;
void ts_bpe_scratch_free(ts_bpe_scratch *s);

/* Appends the ids of one piece of raw bytes. Returns -1 only when memory runs out. */
int ts_bpe_encode_piece(const ts_bpe *bpe, const uint8_t *piece, size_t len, ts_bpe_scratch *scratch, ts_ids *out);

/* The byte-level alphabet: the character that stands for each byte in token strings. */
int32_t ts_byte_level_char(uint8_t byte);
/* The byte a byte-level character stands for, or -1. */
int ts_byte_level_byte(int32_t cp);

#endif
