/* Byte-level BPE model and merge loop (see bpe.h). Short pieces, the common case, merge in a flat array
 * scanned for the lowest rank; long pieces use a binary heap over a linked list so that a megabyte with
 * no spaces still encodes in O(n log n). Both pick the same pair: lowest rank, then leftmost. */
#include "tokenizer/bpe.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode_text.h"

#define BPE_SHORT_PIECE 64 /* symbols; above this the heap is cheaper than rescanning */
#define NO_RANK INT32_MAX

int32_t ts_byte_level_char(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 256 + b;
    if (b <= 0xA0) return 256 + 33 + (b - 0x7F);
    return 256 + 33 + 34; /* 0xAD */
}

int ts_byte_level_byte(int32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return cp;
    if (cp >= 256 && cp <= 256 + 32) return cp - 256;
    if (cp >= 256 + 33 && cp <= 256 + 33 + 33) return cp - 256 - 33 + 0x7F;
    if (cp == 256 + 67) return 0xAD;
    return -1;
}

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static inline size_t hash_pair(uint64_t pair) {
    pair *= 0x9E3779B97F4A7C15ull;
    return (size_t)(pair ^ (pair >> 31));
}

static size_t table_size_for(size_t n) {
    size_t cap = 16;
    while (cap < n * 2 + 1) cap *= 2;
    return cap;
}

int32_t ts_bpe_lookup(const ts_bpe *bpe, const char *s, size_t len) {
    if (!bpe->vocab_slots) return -1;
    size_t i = hash_bytes(s, len) & bpe->vocab_mask;
    for (;;) {
        int32_t id = bpe->vocab_slots[i];
        if (id < 0) return -1;
        size_t tl = bpe->text_off[id + 1] - bpe->text_off[id] - 1;
        if (tl == len && !memcmp(bpe->text + bpe->text_off[id], s, len)) return id;
        i = (i + 1) & bpe->vocab_mask;
    }
}

static inline const ts_bpe_merge_slot *find_merge(const ts_bpe *bpe, int32_t left, int32_t right) {
    uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = hash_pair(pair) & bpe->merge_mask;
    for (;;) {
        const ts_bpe_merge_slot *slot = &bpe->merge_slots[i];
        if (slot->pair == pair) return slot;
        if (slot->pair == UINT64_MAX) return NULL;
        i = (i + 1) & bpe->merge_mask;
    }
}

/* Decoded bytes of a token string: the byte-level characters mapped back to bytes, or, when some
 * character is outside that alphabet (added tokens such as "<|im_start|>" are inside it, but not all
 * are), the string's own UTF-8 bytes. */
static size_t token_bytes(const char *s, size_t len, uint8_t *out) {
    size_t n = 0, i = 0;
    while (i < len) {
        int seq = ts_utf8_sequence_length((const uint8_t *)s + i, len - i, NULL);
        if (seq == 0) break;
        int32_t cp;
        ts_utf8_decode_valid((const uint8_t *)s + i, &cp);
        int b = ts_byte_level_byte(cp);
        if (b < 0) break;
        out[n++] = (uint8_t)b;
        i += (size_t)seq;
    }
    if (i == len) return n;
    memcpy(out, s, len);
    return len;
}

void ts_bpe_free(ts_bpe *bpe) {
    free(bpe->text);
    free(bpe->text_off);
    free(bpe->bytes);
    free(bpe->bytes_off);
    free(bpe->vocab_slots);
    free(bpe->merge_slots);
    memset(bpe, 0, sizeof *bpe);
}

int ts_bpe_init(ts_bpe *bpe, int32_t n_tokens, char *const *tokens, int32_t n_merges, char *const *merges,
                int ignore_merges, ts_error *err) {
    memset(bpe, 0, sizeof *bpe);
    bpe->ignore_merges = ignore_merges;
    bpe->n_tokens = n_tokens;
    size_t total = 0;
    for (int32_t i = 0; i < n_tokens; i++) total += (tokens[i] ? strlen(tokens[i]) : 0) + 1;
    bpe->text = malloc(total ? total : 1);
    bpe->bytes = malloc(total ? total : 1);
    bpe->text_off = malloc(((size_t)n_tokens + 1) * sizeof(size_t));
    bpe->bytes_off = malloc(((size_t)n_tokens + 1) * sizeof(size_t));
    size_t vcap = table_size_for((size_t)n_tokens);
    bpe->vocab_slots = malloc(vcap * sizeof(int32_t));
    size_t mcap = table_size_for((size_t)n_merges);
    bpe->merge_slots = malloc(mcap * sizeof(ts_bpe_merge_slot));
    if (!bpe->text || !bpe->bytes || !bpe->text_off || !bpe->bytes_off || !bpe->vocab_slots || !bpe->merge_slots) {
        ts_bpe_free(bpe);
        return ts_fail(err, "out of memory building a vocabulary of %d tokens", (int)n_tokens);
    }
    bpe->vocab_mask = vcap - 1;
    memset(bpe->vocab_slots, 0xFF, vcap * sizeof(int32_t));
    bpe->merge_mask = mcap - 1;
    for (size_t i = 0; i < mcap; i++) bpe->merge_slots[i].pair = UINT64_MAX;

    size_t to = 0, bo = 0;
    for (int32_t id = 0; id < n_tokens; id++) {
        const char *s = tokens[id] ? tokens[id] : "";
        size_t len = strlen(s);
        bpe->text_off[id] = to;
        memcpy(bpe->text + to, s, len + 1);
        to += len + 1;
        bpe->bytes_off[id] = bo;
        bo += token_bytes(s, len, bpe->bytes + bo);
        if (!tokens[id]) continue;
        /* The first spelling wins, so that model tokens shadow added tokens with the same text. */
        size_t slot = hash_bytes(s, len) & bpe->vocab_mask;
        int duplicate = 0;
        while (bpe->vocab_slots[slot] >= 0) {
            int32_t other = bpe->vocab_slots[slot];
            if (!strcmp(bpe->text + bpe->text_off[other], s)) { duplicate = 1; break; }
            slot = (slot + 1) & bpe->vocab_mask;
        }
        if (!duplicate) bpe->vocab_slots[slot] = id;
    }
    bpe->text_off[n_tokens] = to;
    bpe->bytes_off[n_tokens] = bo;

    for (int b = 0; b < 256; b++) {
        char buf[4];
        int n = ts_utf8_encode(ts_byte_level_char((uint8_t)b), buf);
        bpe->byte_ids[b] = ts_bpe_lookup(bpe, buf, (size_t)n);
    }

    char joined[1024];
    for (int32_t r = 0; r < n_merges; r++) {
        const char *m = merges[r];
        const char *sp = strchr(m, ' ');
        if (!sp || strchr(sp + 1, ' ')) {
            ts_bpe_free(bpe);
            return ts_fail(err, "merge %d (\"%.100s\") is not two tokens separated by one space", (int)r, m);
        }
        size_t ll = (size_t)(sp - m), rl = strlen(sp + 1);
        if (ll + rl >= sizeof joined) {
            ts_bpe_free(bpe);
            return ts_fail(err, "merge %d is longer than %zu bytes", (int)r, sizeof joined);
        }
        int32_t left = ts_bpe_lookup(bpe, m, ll), right = ts_bpe_lookup(bpe, sp + 1, rl);
        memcpy(joined, m, ll);
        memcpy(joined + ll, sp + 1, rl);
        int32_t merged = ts_bpe_lookup(bpe, joined, ll + rl);
        if (left < 0 || right < 0 || merged < 0) {
            ts_bpe_free(bpe);
            return ts_fail(err, "merge %d (\"%.100s\") uses a token that is not in the vocabulary", (int)r, m);
        }
        uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
        size_t i = hash_pair(pair) & bpe->merge_mask;
        while (bpe->merge_slots[i].pair != UINT64_MAX && bpe->merge_slots[i].pair != pair)
            i = (i + 1) & bpe->merge_mask;
        /* As in Hugging Face, a repeated pair keeps its last rank. */
        bpe->merge_slots[i].pair = pair;
        bpe->merge_slots[i].rank = r;
        bpe->merge_slots[i].merged = merged;
    }
    return 0;
}

int ts_ids_push(ts_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->ids, cap * sizeof *p);
        if (!p) return -1;
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return 0;
}

void ts_ids_free(ts_ids *v) {
    free(v->ids);
    memset(v, 0, sizeof *v);
}

void ts_bpe_scratch_free(ts_bpe_scratch *s) {
    free(s->sym);
    free(s->rank);
    free(s->next);
    free(s->prev);
    free(s->heap);
    free(s->text);
    memset(s, 0, sizeof *s);
}

static int scratch_reserve(ts_bpe_scratch *s, size_t n) {
    if (n <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *a = realloc(s->sym, cap * sizeof *a);
    if (!a) return -1;
    s->sym = a;
    if (!(a = realloc(s->rank, cap * sizeof *a))) return -1;
    s->rank = a;
    if (!(a = realloc(s->next, cap * sizeof *a))) return -1;
    s->next = a;
    if (!(a = realloc(s->prev, cap * sizeof *a))) return -1;
    s->prev = a;
    uint64_t *h = realloc(s->heap, cap * 2 * sizeof *h);
    if (!h) return -1;
    s->heap = h;
    s->cap = cap;
    return 0;
}

static inline int32_t pair_rank(const ts_bpe *bpe, int32_t left, int32_t right, int32_t *merged) {
    const ts_bpe_merge_slot *m = find_merge(bpe, left, right);
    if (!m) return NO_RANK;
    *merged = m->merged;
    return m->rank;
}

static void merge_short(const ts_bpe *bpe, int32_t *sym, int32_t *rank, int32_t *merged, size_t *count) {
    size_t n = *count;
    for (size_t k = 0; k + 1 < n; k++) rank[k] = pair_rank(bpe, sym[k], sym[k + 1], &merged[k]);
    while (n > 1) {
        size_t best = 0;
        int32_t best_rank = NO_RANK;
        for (size_t k = 0; k + 1 < n; k++)
            if (rank[k] < best_rank) { best_rank = rank[k]; best = k; }
        if (best_rank == NO_RANK) break;
        sym[best] = merged[best];
        size_t tail = n - best - 2; /* symbols after the absorbed right one */
        memmove(sym + best + 1, sym + best + 2, tail * sizeof *sym);
        memmove(rank + best + 1, rank + best + 2, (tail ? tail - 1 : 0) * sizeof *rank);
        memmove(merged + best + 1, merged + best + 2, (tail ? tail - 1 : 0) * sizeof *merged);
        n--;
        if (best > 0) rank[best - 1] = pair_rank(bpe, sym[best - 1], sym[best], &merged[best - 1]);
        if (best + 1 < n) rank[best] = pair_rank(bpe, sym[best], sym[best + 1], &merged[best]);
    }
    *count = n;
}

static void heap_push(uint64_t *heap, size_t *size, uint64_t v) {
    size_t i = (*size)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap[parent] <= v) break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = v;
}

static uint64_t heap_pop(uint64_t *heap, size_t *size) {
    uint64_t top = heap[0], last = heap[--(*size)];
    size_t i = 0, n = *size;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap[c + 1] < heap[c]) c++;
        if (last <= heap[c]) break;
        heap[i] = heap[c];
        i = c;
    }
    if (n) heap[i] = last;
    return top;
}

/* Linked-list merge driven by a heap of (rank, position); stale entries are recognised on pop. The
 * heap can hold at most one live entry per symbol plus stale ones, bounded by 2n. */
static void merge_long(const ts_bpe *bpe, ts_bpe_scratch *s, size_t n) {
    int32_t *sym = s->sym, *next = s->next, *prev = s->prev;
    uint64_t *heap = s->heap;
    size_t hsize = 0;
    for (size_t k = 0; k < n; k++) {
        next[k] = k + 1 < n ? (int32_t)(k + 1) : -1;
        prev[k] = (int32_t)k - 1;
    }
    for (size_t k = 0; k + 1 < n; k++) {
        int32_t merged;
        int32_t r = pair_rank(bpe, sym[k], sym[k + 1], &merged);
        if (r != NO_RANK) heap_push(heap, &hsize, (uint64_t)(uint32_t)r << 32 | k);
    }
    while (hsize) {
        uint64_t top = heap_pop(heap, &hsize);
        int32_t r = (int32_t)(top >> 32), pos = (int32_t)(uint32_t)top;
        if (sym[pos] < 0 || next[pos] < 0) continue;
        int32_t right = next[pos], merged = -1;
        if (pair_rank(bpe, sym[pos], sym[right], &merged) != r) continue;
        sym[pos] = merged;
        sym[right] = -1;
        next[pos] = next[right];
        if (next[pos] >= 0) prev[next[pos]] = pos;
        /* Room: each merge removes a symbol and adds at most two entries; grow-free because the heap
         * array holds 2 * cap entries and stale entries are popped as fast as merges add new ones. */
        if (prev[pos] >= 0) {
            int32_t m2, r2 = pair_rank(bpe, sym[prev[pos]], sym[pos], &m2);
            if (r2 != NO_RANK && hsize < 2 * s->cap) heap_push(heap, &hsize, (uint64_t)(uint32_t)r2 << 32 | (uint32_t)prev[pos]);
        }
        if (next[pos] >= 0) {
            int32_t m2, r2 = pair_rank(bpe, sym[pos], sym[next[pos]], &m2);
            if (r2 != NO_RANK && hsize < 2 * s->cap) heap_push(heap, &hsize, (uint64_t)(uint32_t)r2 << 32 | (uint32_t)pos);
        }
    }
}

int ts_bpe_encode_piece(const ts_bpe *bpe, const uint8_t *piece, size_t len, ts_bpe_scratch *s, ts_ids *out) {
    if (len == 0) return 0;
    if (len == 1) {
        int32_t id = bpe->byte_ids[piece[0]];
        return id >= 0 ? ts_ids_push(out, id) : 0;
    }
    if (bpe->ignore_merges) {
        if (s->text_cap < len * 2 + 1) {
            char *t = realloc(s->text, len * 2 + 1);
            if (!t) return -1;
            s->text = t;
            s->text_cap = len * 2 + 1;
        }
        size_t tl = 0;
        for (size_t i = 0; i < len; i++) tl += (size_t)ts_utf8_encode(ts_byte_level_char(piece[i]), s->text + tl);
        int32_t whole = ts_bpe_lookup(bpe, s->text, tl);
        if (whole >= 0) return ts_ids_push(out, whole);
    }
    if (scratch_reserve(s, len)) return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = bpe->byte_ids[piece[i]];
        if (id >= 0) s->sym[n++] = id; /* a byte without a token is dropped, as HF does without unk */
    }
    if (n <= BPE_SHORT_PIECE) {
        merge_short(bpe, s->sym, s->rank, s->next, &n);
        for (size_t k = 0; k < n; k++)
            if (ts_ids_push(out, s->sym[k])) return -1;
        return 0;
    }
    merge_long(bpe, s, n);
    for (int32_t k = 0; k >= 0; k = s->next[k])
        if (ts_ids_push(out, s->sym[k])) return -1;
    return 0;
}
