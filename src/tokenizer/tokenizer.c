/* Encoding and decoding with a built tokenizer, and building one from a definition. Encoding follows
 * Hugging Face's order: added tokens are cut out of the raw text first, the rest is normalized (NFC),
 * split by the pre-tokenizer steps in sequence, and each piece goes through the BPE merge loop. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode_text.h"

void ts_tokenizer_def_init(ts_tokenizer_def *def) {
    memset(def, 0, sizeof *def);
    ts_vocab_spec_init(&def->spec);
}

void ts_tokenizer_def_free(ts_tokenizer_def *def) {
    ts_vocab_spec_free(&def->spec);
    for (size_t i = 0; i < def->n_added; i++) free(def->added[i].content);
    free(def->added);
    free(def->bos_token);
    free(def->eos_token);
    free(def->pad_token);
    ts_tokenizer_def_init(def);
}

void ts_tokenizer_free(ts_tokenizer *tok) {
    if (!tok) return;
    ts_bpe_free(&tok->bpe);
    for (size_t i = 0; i < tok->n_added; i++) free(tok->added[i].content);
    free(tok->added);
    free(tok->raw_matcher.tokens);
    free(tok->normalized_matcher.tokens);
    free(tok->special);
    free(tok->bos_token);
    free(tok->eos_token);
    free(tok->chat_template);
    free(tok);
}


static int compare_added(const void *a, const void *b) {
    const ts_added_token *x = *(const ts_added_token *const *)a, *y = *(const ts_added_token *const *)b;
    uint8_t fx = (uint8_t)x->content[0], fy = (uint8_t)y->content[0];
    if (fx != fy) return fx < fy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int build_matcher(ts_added_matcher *m, const ts_added_token *added, size_t n_added, int normalized) {
    memset(m, 0, sizeof *m);
    size_t n = 0;
    for (size_t i = 0; i < n_added; i++) n += added[i].len > 0 && added[i].normalized == normalized;
    if (n == 0) return 0;
    m->tokens = malloc(n * sizeof *m->tokens);
    if (!m->tokens) return -1;
    for (size_t i = 0; i < n_added; i++)
        if (added[i].len > 0 && added[i].normalized == normalized) m->tokens[m->n++] = &added[i];
    qsort(m->tokens, m->n, sizeof *m->tokens, compare_added);
    size_t k = 0;
    for (int b = 0; b < 256; b++) {
        m->start[b] = (uint32_t)k;
        while (k < m->n && (uint8_t)m->tokens[k]->content[0] == b) k++;
    }
    m->start[256] = (uint32_t)k;
    return 0;
}

int ts_tokenizer_build(ts_tokenizer_def *def, ts_tokenizer **out, ts_error *err) {
    *out = NULL;
    ts_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) {
        ts_tokenizer_def_free(def);
        return ts_fail(err, "out of memory");
    }
    ts_vocab_spec *spec = &def->spec;
    if (ts_bpe_init(&tok->bpe, spec->n_tokens, spec->tokens, spec->n_merges, spec->merges, def->ignore_merges, err)) {
        ts_tokenizer_def_free(def);
        ts_tokenizer_free(tok);
        return -1;
    }
    for (size_t i = 0; i < def->n_added; i++) {
        if (def->added[i].id < 0 || def->added[i].id >= spec->n_tokens) {
            ts_fail(err, "added token \"%.100s\" has id %d outside the vocabulary of %d", def->added[i].content,
                    (int)def->added[i].id, (int)spec->n_tokens);
            ts_tokenizer_def_free(def);
            ts_tokenizer_free(tok);
            return -1;
        }
    }
    tok->special = calloc((size_t)spec->n_tokens + 1, 1);
    tok->added = def->added;
    tok->n_added = def->n_added;
    def->added = NULL;
    def->n_added = 0;
    if (!tok->special || build_matcher(&tok->raw_matcher, tok->added, tok->n_added, 0) ||
        build_matcher(&tok->normalized_matcher, tok->added, tok->n_added, 1)) {
        ts_tokenizer_def_free(def);
        ts_tokenizer_free(tok);
        return ts_fail(err, "out of memory");
    }
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].special) tok->special[tok->added[i].id] = 1;
    tok->nfc = def->nfc;
    memcpy(tok->steps, def->steps, sizeof tok->steps);
    tok->n_steps = def->n_steps;
    tok->bos_id = spec->bos_id;
    tok->eos_id = spec->eos_id;
    tok->pad_id = spec->pad_id;
    tok->add_bos = spec->add_bos;
    tok->chat_template = spec->chat_template;
    spec->chat_template = NULL;
    tok->bos_token = def->bos_token;
    tok->eos_token = def->eos_token;
    def->bos_token = def->eos_token = NULL;
    /* Names and ids must agree whichever side the definition carried. */
    if (!tok->bos_token && tok->bos_id >= 0) tok->bos_token = strdup(tok->bpe.text + tok->bpe.text_off[tok->bos_id]);
    if (!tok->eos_token && tok->eos_id >= 0) tok->eos_token = strdup(tok->bpe.text + tok->bpe.text_off[tok->eos_id]);
    if (tok->bos_id < 0 && tok->bos_token) tok->bos_id = ts_bpe_lookup(&tok->bpe, tok->bos_token, strlen(tok->bos_token));
    if (tok->eos_id < 0 && tok->eos_token) tok->eos_id = ts_bpe_lookup(&tok->bpe, tok->eos_token, strlen(tok->eos_token));
    if (tok->pad_id < 0 && def->pad_token) tok->pad_id = ts_bpe_lookup(&tok->bpe, def->pad_token, strlen(def->pad_token));
    ts_tokenizer_def_free(def);
    *out = tok;
    return 0;
}

/* ---- encoding ---- */

/* Per-call cache of recent pieces and their ids: long texts repeat words a lot. Direct mapped, so a
 * collision simply replaces the entry; it lives only for one encode call (no shared state). */
#define PIECE_CACHE_SLOTS 8192
#define PIECE_CACHE_MAX_BYTES 24
#define PIECE_CACHE_MAX_IDS 8
#define PIECE_CACHE_MIN_TEXT 4096
typedef struct piece_cache_entry {
    uint32_t hash;
    uint8_t len, n_ids;
    char bytes[PIECE_CACHE_MAX_BYTES];
    int32_t ids[PIECE_CACHE_MAX_IDS];
} piece_cache_entry;

typedef struct encode_ctx {
    const ts_tokenizer *tok;
    piece_cache_entry *cache; /* NULL for short texts */
    ts_ids out;
    ts_pretok_scratch pretok[TS_MAX_PRETOK_STEPS];
    char *prefix_buf[TS_MAX_PRETOK_STEPS];
    size_t prefix_cap[TS_MAX_PRETOK_STEPS];
    ts_bpe_scratch bpe;
} encode_ctx;

static int encode_pretokenized(encode_ctx *c, const char *text, size_t len, int step);

typedef struct split_frame {
    encode_ctx *c;
    const char *text;
    int step;
} split_frame;

static int on_piece(void *ctx, size_t start, size_t end) {
    split_frame *f = ctx;
    return encode_pretokenized(f->c, f->text + start, end - start, f->step + 1);
}

static int encode_pretokenized(encode_ctx *c, const char *text, size_t len, int step) {
    const ts_tokenizer *tok = c->tok;
    if (len == 0) return 0;
    if (step == tok->n_steps) {
        if (!c->cache || len > PIECE_CACHE_MAX_BYTES)
            return ts_bpe_encode_piece(&tok->bpe, (const uint8_t *)text, len, &c->bpe, &c->out);
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)text[i]) * 16777619u;
        piece_cache_entry *e = &c->cache[(h ^ (h >> 15)) & (PIECE_CACHE_SLOTS - 1)];
        if (e->len == len && e->hash == h && !memcmp(e->bytes, text, len)) {
            for (uint8_t k = 0; k < e->n_ids; k++)
                if (ts_ids_push(&c->out, e->ids[k])) return -1;
            return 0;
        }
        size_t before = c->out.n;
        if (ts_bpe_encode_piece(&tok->bpe, (const uint8_t *)text, len, &c->bpe, &c->out)) return -1;
        size_t produced = c->out.n - before;
        if (produced <= PIECE_CACHE_MAX_IDS) {
            e->hash = h;
            e->len = (uint8_t)len;
            e->n_ids = (uint8_t)produced;
            memcpy(e->bytes, text, len);
            memcpy(e->ids, c->out.ids + before, produced * sizeof(int32_t));
        }
        return 0;
    }
    const ts_pretok_step *st = &tok->steps[step];
    if (st->type == TS_STEP_PREFIX_SPACE) {
        if (text[0] == ' ') return encode_pretokenized(c, text, len, step + 1);
        if (c->prefix_cap[step] < len + 1) {
            char *p = realloc(c->prefix_buf[step], len + 1);
            if (!p) return -1;
            c->prefix_buf[step] = p;
            c->prefix_cap[step] = len + 1;
        }
        c->prefix_buf[step][0] = ' ';
        memcpy(c->prefix_buf[step] + 1, text, len);
        return encode_pretokenized(c, c->prefix_buf[step], len + 1, step + 1);
    }
    split_frame f = {c, text, step};
    return ts_pretok_split(st->kind, text, len, &c->pretok[step], on_piece, &f);
}

static inline int is_word_char(int32_t cp) {
    return cp == '_' || (ts_uni_class(cp) & (TS_UNI_LETTER | TS_UNI_NUMBER));
}

static int32_t last_code_point(const char *s, size_t len) {
    size_t i = len;
    while (i > 0 && ((uint8_t)s[i - 1] & 0xC0) == 0x80) i--;
    if (i == 0) return -1;
    int32_t cp;
    ts_utf8_decode_valid((const uint8_t *)s + i - 1, &cp);
    return cp;
}

typedef int (*segment_fn)(encode_ctx *c, const char *text, size_t len);

/* Cuts added tokens out of text the way Hugging Face's AddedVocabulary does: leftmost-longest matches,
 * single_word matches only between non-word characters, lstrip/rstrip swallowing neighbouring
 * whitespace; skipped matches (special tokens when parse_special is off) stay in the text. */
static int split_added(encode_ctx *c, const ts_added_matcher *m, const char *text, size_t len, int parse_special,
                       segment_fn plain) {
    size_t seg_start = 0, i = 0;
    while (i < len) {
        uint8_t b = (uint8_t)text[i];
        uint32_t k0 = m->start[b], k1 = m->start[b + 1];
        const ts_added_token *hit = NULL;
        for (uint32_t k = k0; k < k1; k++) {
            const ts_added_token *t = m->tokens[k];
            if (t->len <= len - i && !memcmp(text + i, t->content, t->len)) { hit = t; break; }
        }
        if (!hit) { i++; continue; }
        size_t start = i, stop = i + hit->len;
        int accept = parse_special || !hit->special;
        if (accept && hit->single_word) {
            int32_t before = start > 0 ? last_code_point(text, start) : -1;
            int32_t after = -1;
            if (stop < len) ts_utf8_decode_valid((const uint8_t *)text + stop, &after);
            if ((before >= 0 && is_word_char(before)) || (after >= 0 && is_word_char(after))) accept = 0;
        }
        if (!accept) { i = stop; continue; }
        if (hit->lstrip) {
            while (start > seg_start) {
                int32_t cp = last_code_point(text, start);
                if (!(ts_uni_class(cp) & TS_UNI_SPACE)) break;
                char tmp[4];
                start -= (size_t)ts_utf8_encode(cp, tmp);
            }
        }
        if (hit->rstrip) {
            while (stop < len) {
                int32_t cp;
                int n = ts_utf8_decode_valid((const uint8_t *)text + stop, &cp);
                if (!(ts_uni_class(cp) & TS_UNI_SPACE)) break;
                stop += (size_t)n;
            }
        }
        if (start > seg_start && plain(c, text + seg_start, start - seg_start)) return -1;
        if (ts_ids_push(&c->out, hit->id)) return -1;
        seg_start = i = stop;
    }
    if (len > seg_start && plain(c, text + seg_start, len - seg_start)) return -1;
    return 0;
}

static int encode_normalized(encode_ctx *c, const char *text, size_t len) {
    return encode_pretokenized(c, text, len, 0);
}

static int encode_plain(encode_ctx *c, const char *text, size_t len) {
    const ts_tokenizer *tok = c->tok;
    char *norm = NULL;
    size_t norm_len = 0;
    if (tok->nfc) {
        if (ts_uni_nfc(text, len, &norm, &norm_len, NULL)) return -1;
        if (norm) {
            text = norm;
            len = norm_len;
        }
    }
    int rc = tok->normalized_matcher.n ? split_added(c, &tok->normalized_matcher, text, len, 1, encode_normalized)
                                       : encode_normalized(c, text, len);
    free(norm);
    return rc;
}

int ts_tokenizer_encode(const ts_tokenizer *tok, const char *text, size_t len, int parse_special, int32_t **ids,
                        size_t *n, ts_error *err) {
    *ids = NULL;
    *n = 0;
    if (ts_utf8_validate(text, len, err)) return -1;
    encode_ctx *c = calloc(1, sizeof *c);
    if (!c) return ts_fail(err, "out of memory");
    c->tok = tok;
    if (len >= PIECE_CACHE_MIN_TEXT) c->cache = calloc(PIECE_CACHE_SLOTS, sizeof *c->cache); /* optional: NULL is fine */
    int rc = tok->raw_matcher.n ? split_added(c, &tok->raw_matcher, text, len, parse_special, encode_plain)
                                : encode_plain(c, text, len);
    for (int s = 0; s < TS_MAX_PRETOK_STEPS; s++) {
        ts_pretok_scratch_free(&c->pretok[s]);
        free(c->prefix_buf[s]);
    }
    ts_bpe_scratch_free(&c->bpe);
    free(c->cache);
    if (rc) {
        ts_ids_free(&c->out);
        free(c);
        return ts_fail(err, "encoding %zu bytes: out of memory", len);
    }
    *ids = c->out.ids;
    *n = c->out.n;
    free(c);
    return 0;
}

/* ---- decoding and lookups ---- */

int ts_tokenizer_decode(const ts_tokenizer *tok, const int32_t *ids, size_t n, int skip_special, char **text,
                        size_t *len, ts_error *err) {
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->bpe.n_tokens)
            return ts_fail(err, "token id %d at position %zu is outside the vocabulary (0..%d)", (int)ids[i], i,
                           (int)tok->bpe.n_tokens - 1);
        total += tok->bpe.bytes_off[ids[i] + 1] - tok->bpe.bytes_off[ids[i]];
    }
    uint8_t *raw = malloc(total + 1);
    if (!raw) return ts_fail(err, "out of memory decoding %zu tokens", n);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && tok->special[ids[i]]) continue;
        size_t b0 = tok->bpe.bytes_off[ids[i]], b1 = tok->bpe.bytes_off[ids[i] + 1];
        memcpy(raw + pos, tok->bpe.bytes + b0, b1 - b0);
        pos += b1 - b0;
    }
    char *out = NULL;
    size_t out_len = 0, out_cap = 0;
    int rc = ts_utf8_append_lossy(&out, &out_len, &out_cap, raw, pos);
    free(raw);
    if (rc) {
        free(out);
        return ts_fail(err, "out of memory decoding %zu tokens", n);
    }
    *text = out;
    *len = out_len;
    return 0;
}

int32_t ts_tokenizer_vocab_size(const ts_tokenizer *tok) { return tok->bpe.n_tokens; }

const char *ts_tokenizer_token_piece(const ts_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->bpe.n_tokens) return NULL;
    if (len) *len = tok->bpe.text_off[id + 1] - tok->bpe.text_off[id] - 1;
    return tok->bpe.text + tok->bpe.text_off[id];
}

int ts_tokenizer_token_bytes(const ts_tokenizer *tok, int32_t id, const uint8_t **bytes, size_t *len) {
    if (id < 0 || id >= tok->bpe.n_tokens) return -1;
    *bytes = tok->bpe.bytes + tok->bpe.bytes_off[id];
    *len = tok->bpe.bytes_off[id + 1] - tok->bpe.bytes_off[id];
    return 0;
}

int32_t ts_tokenizer_token_id(const ts_tokenizer *tok, const char *piece) {
    return ts_bpe_lookup(&tok->bpe, piece, strlen(piece));
}

int ts_tokenizer_is_special(const ts_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->bpe.n_tokens && tok->special[id];
}

int32_t ts_tokenizer_bos_id(const ts_tokenizer *tok) { return tok->bos_id; }
int32_t ts_tokenizer_eos_id(const ts_tokenizer *tok) { return tok->eos_id; }
int32_t ts_tokenizer_pad_id(const ts_tokenizer *tok) { return tok->pad_id; }
const char *ts_tokenizer_bos_token(const ts_tokenizer *tok) { return tok->bos_token; }
const char *ts_tokenizer_eos_token(const ts_tokenizer *tok) { return tok->eos_token; }
int ts_tokenizer_add_bos(const ts_tokenizer *tok) { return tok->add_bos; }
const char *ts_tokenizer_chat_template(const ts_tokenizer *tok) { return tok->chat_template; }
