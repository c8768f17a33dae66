/* Streaming detokenizer (see tokenizer.h): holds back at most three bytes of an unfinished UTF-8
 * character between tokens and repairs invalid sequences exactly as whole-text decoding does. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode_text.h"

void ts_detok_stream_init(ts_detok_stream *st, int skip_special) {
    memset(st, 0, sizeof *st);
    st->skip_special = skip_special;
}

void ts_detok_stream_free(ts_detok_stream *st) {
    free(st->buf);
    memset(st, 0, sizeof *st);
}

static int reserve(ts_detok_stream *st, size_t n) {
    if (n <= st->buf_cap) return 0;
    size_t cap = st->buf_cap ? st->buf_cap : 64;
    while (cap < n) cap *= 2;
    char *p = realloc(st->buf, cap);
    if (!p) return -1;
    st->buf = p;
    st->buf_cap = cap;
    return 0;
}

int ts_detok_stream_push(ts_detok_stream *st, const ts_tokenizer *tok, int32_t id, const char **text, size_t *len,
                         ts_error *err) {
    *text = "";
    *len = 0;
    const uint8_t *bytes;
    size_t nb;
    if (ts_tokenizer_token_bytes(tok, id, &bytes, &nb))
        return ts_fail(err, "token id %d is outside the vocabulary (0..%d)", (int)id, (int)ts_tokenizer_vocab_size(tok) - 1);
    if (st->skip_special && ts_tokenizer_is_special(tok, id)) return 0;
    /* Joined input: the held-back bytes, then this token's bytes. */
    size_t total = st->n_pending + nb;
    uint8_t small[64];
    uint8_t *joined = total <= sizeof small ? small : malloc(total);
    if (!joined) return ts_fail(err, "out of memory");
    memcpy(joined, st->pending, st->n_pending);
    memcpy(joined + st->n_pending, bytes, nb);
    /* Find where the complete part ends: an unfinished but so far valid sequence at the end waits. */
    size_t complete = total, i = 0;
    while (i < total) {
        if (joined[i] < 0x80) { i++; continue; }
        int incomplete;
        int n = ts_utf8_sequence_length(joined + i, total - i, &incomplete);
        if (n > 0) { i += (size_t)n; continue; }
        if (incomplete) { complete = i; break; }
        i++; /* invalid: the lossy pass below decides how much it replaces */
    }
    /* The lossy pass never consumes a byte past `complete`: an invalid subpart stops at the first byte
     * that cannot continue it, and the bytes held back form a valid prefix of their own. */
    char *out = NULL;
    size_t out_len = 0, out_cap = 0;
    int rc = ts_utf8_append_lossy(&out, &out_len, &out_cap, joined, complete);
    st->n_pending = total - complete;
    memcpy(st->pending, joined + complete, st->n_pending);
    if (joined != small) free(joined);
    if (rc || reserve(st, out_len + 1)) {
        free(out);
        return ts_fail(err, "out of memory");
    }
    memcpy(st->buf, out, out_len);
    st->buf[out_len] = '\0';
    free(out);
    *text = st->buf;
    *len = out_len;
    return 0;
}

int ts_detok_stream_finish(ts_detok_stream *st, const char **text, size_t *len, ts_error *err) {
    *text = "";
    *len = 0;
    if (!st->n_pending) return 0;
    char *out = NULL;
    size_t out_len = 0, out_cap = 0;
    if (ts_utf8_append_lossy(&out, &out_len, &out_cap, st->pending, st->n_pending) || reserve(st, out_len + 1)) {
        free(out);
        return ts_fail(err, "out of memory");
    }
    memcpy(st->buf, out, out_len + 1);
    free(out);
    st->n_pending = 0;
    *text = st->buf;
    *len = out_len;
    return 0;
}
