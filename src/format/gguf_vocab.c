/* Vocabulary in GGUF metadata (tokenizer.ggml.*, tokenizer.chat_template) <-> ts_vocab_spec. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf_model.h"
#include "format/gguf_writer.h"

static int copy_short(const ts_gguf *g, const char *key, char *dst, size_t cap, ts_error *err) {
    ts_gguf_str s;
    int rc = ts_gguf_get_string(g, key, &s, err);
    if (rc != 0) return rc < 0 ? -1 : 0;
    if (s.len >= cap) return ts_fail(err, "%s: metadata \"%s\" is %" PRIu64 " bytes, at most %zu expected", g->source, key, s.len, cap - 1);
    memcpy(dst, s.ptr, (size_t)s.len);
    dst[s.len] = '\0';
    return 0;
}

/* Copies a string array into NUL-terminated heap strings; *n receives the count. */
static int read_strings(const ts_gguf *g, const ts_gguf_value *arr, const char *key, char ***out, int32_t *n,
                        ts_error *err) {
    if (arr->count > INT32_MAX) return ts_fail(err, "%s: \"%s\" has too many entries", g->source, key);
    ts_gguf_str *views = malloc((size_t)(arr->count ? arr->count : 1) * sizeof *views);
    char **strs = calloc((size_t)(arr->count ? arr->count : 1), sizeof *strs);
    if (!views || !strs) {
        free(views);
        free(strs);
        return ts_fail(err, "%s: out of memory reading \"%s\"", g->source, key);
    }
    ts_gguf_array_strings(g, arr, views, err);
    *out = strs;
    *n = (int32_t)arr->count;
    for (uint64_t i = 0; i < arr->count; i++) {
        if (memchr(views[i].ptr, '\0', (size_t)views[i].len)) {
            free(views);
            return ts_fail(err, "%s: \"%s\" entry %" PRIu64 " contains a NUL byte", g->source, key, i);
        }
        strs[i] = ts_gguf_strdup(views[i]);
        if (!strs[i]) {
            free(views);
            return ts_fail(err, "%s: out of memory reading \"%s\"", g->source, key);
        }
    }
    free(views);
    return 0;
}

static int read_id(const ts_gguf *g, const char *key, int32_t n_tokens, int32_t *out, ts_error *err) {
    int64_t v;
    int rc = ts_gguf_get_int(g, key, &v, err);
    if (rc < 0) return -1;
    if (rc == 1) return 0;
    if (v < 0 || v >= n_tokens)
        return ts_fail(err, "%s: metadata \"%s\" is %" PRId64 ", outside the vocabulary of %d tokens", g->source, key, v, n_tokens);
    *out = (int32_t)v;
    return 0;
}

static int read_vocab(const ts_gguf *g, ts_vocab_spec *v, ts_error *err) {
    if (copy_short(g, "tokenizer.ggml.model", v->model, sizeof v->model, err) != 0 ||
        copy_short(g, "tokenizer.ggml.pre", v->pre, sizeof v->pre, err) != 0)
        return -1;
    ts_gguf_value arr;
    int rc = ts_gguf_get_array(g, "tokenizer.ggml.tokens", TS_GGUF_STRING, &arr, err);
    if (rc < 0) return -1;
    if (rc == 1) return 0; /* no vocabulary in this file */
    if (read_strings(g, &arr, "tokenizer.ggml.tokens", &v->tokens, &v->n_tokens, err) != 0) return -1;
    v->token_types = malloc((size_t)(v->n_tokens ? v->n_tokens : 1) * sizeof *v->token_types);
    if (!v->token_types) return ts_fail(err, "%s: out of memory", g->source);
    for (int32_t i = 0; i < v->n_tokens; i++) v->token_types[i] = TS_TOKEN_NORMAL;
    rc = ts_gguf_get_array(g, "tokenizer.ggml.token_type", TS_GGUF_TYPE_COUNT, &arr, err);
    if (rc < 0) return -1;
    if (rc == 0) {
        if (arr.count != (uint64_t)v->n_tokens)
            return ts_fail(err, "%s: tokenizer.ggml.token_type has %" PRIu64 " entries for %d tokens", g->source, arr.count,
                           v->n_tokens);
        for (int32_t i = 0; i < v->n_tokens; i++) {
            int64_t t;
            if (ts_gguf_array_int(g, &arr, (uint64_t)i, &t, err) != 0) {
                ts_error_prefix(err, "tokenizer.ggml.token_type: ");
                return -1;
            }
            if (t < 0 || t > 6) return ts_fail(err, "%s: token %d has type %" PRId64 ", expected 0..6", g->source, i, t);
            v->token_types[i] = (int32_t)t;
        }
    }
    rc = ts_gguf_get_array(g, "tokenizer.ggml.merges", TS_GGUF_STRING, &arr, err);
    if (rc < 0) return -1;
    if (rc == 0 && read_strings(g, &arr, "tokenizer.ggml.merges", &v->merges, &v->n_merges, err) != 0) return -1;
    if (read_id(g, "tokenizer.ggml.bos_token_id", v->n_tokens, &v->bos_id, err) != 0 ||
        read_id(g, "tokenizer.ggml.eos_token_id", v->n_tokens, &v->eos_id, err) != 0 ||
        read_id(g, "tokenizer.ggml.padding_token_id", v->n_tokens, &v->pad_id, err) != 0 ||
        read_id(g, "tokenizer.ggml.unknown_token_id", v->n_tokens, &v->unk_id, err) != 0)
        return -1;
    if (ts_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err) < 0 ||
        ts_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err) < 0)
        return -1;
    ts_gguf_str tmpl;
    rc = ts_gguf_get_string(g, "tokenizer.chat_template", &tmpl, err);
    if (rc < 0) return -1;
    if (rc == 0 && !(v->chat_template = ts_gguf_strdup(tmpl))) return ts_fail(err, "%s: out of memory", g->source);
    return 0;
}

int ts_gguf_read_vocab(const ts_gguf *g, ts_vocab_spec *v, ts_error *err) {
    ts_vocab_spec_init(v);
    if (read_vocab(g, v, err) != 0) {
        ts_vocab_spec_free(v);
        return -1;
    }
    return 0;
}

int ts_gguf_write_vocab(struct ts_gguf_writer *w, const ts_vocab_spec *v, ts_error *err) {
    if (ts_gguf_writer_set_string(w, "tokenizer.ggml.model", v->model[0] ? v->model : "gpt2", err) != 0) return -1;
    if (v->pre[0] && ts_gguf_writer_set_string(w, "tokenizer.ggml.pre", v->pre, err) != 0) return -1;
    if (ts_gguf_writer_set_string_array(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, (uint64_t)v->n_tokens,
                                        err) != 0)
        return -1;
    int32_t *types = malloc((size_t)(v->n_tokens ? v->n_tokens : 1) * sizeof *types);
    if (!types) return ts_fail(err, "out of memory");
    for (int32_t i = 0; i < v->n_tokens; i++) types[i] = v->token_types ? v->token_types[i] : TS_TOKEN_NORMAL;
    int rc = ts_gguf_writer_set_array(w, "tokenizer.ggml.token_type", TS_GGUF_I32, types, (uint64_t)v->n_tokens, err);
    free(types);
    if (rc != 0) return -1;
    if (v->n_merges > 0 &&
        ts_gguf_writer_set_string_array(w, "tokenizer.ggml.merges", (const char *const *)v->merges, (uint64_t)v->n_merges,
                                        err) != 0)
        return -1;
    const struct {
        const char *key;
        int32_t id;
    } ids[] = {{"tokenizer.ggml.bos_token_id", v->bos_id},
               {"tokenizer.ggml.eos_token_id", v->eos_id},
               {"tokenizer.ggml.unknown_token_id", v->unk_id},
               {"tokenizer.ggml.padding_token_id", v->pad_id}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i].id >= 0 && ts_gguf_writer_set_u32(w, ids[i].key, (uint32_t)ids[i].id, err) != 0) return -1;
    if (ts_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos, err) != 0 ||
        ts_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos, err) != 0)
        return -1;
    if (v->chat_template && ts_gguf_writer_set_string(w, "tokenizer.chat_template", v->chat_template, err) != 0) return -1;
    return 0;
}
