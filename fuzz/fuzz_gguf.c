/* Fuzz target: a GGUF image through ts_gguf_parse, then what loading a model does with it: every
 * metadata value read through the typed getters and array walkers, the model configuration from
 * llama.cpp's keys, the tensors renamed into a table (each one read end to end so that ASan checks the
 * offsets), and the vocabulary turned into a tokenizer that encodes and decodes a short text. */
/* fuzz-requires: src/format/gguf.c */
/* fuzz-requires: src/format/gguf_model.c */
/* fuzz-max-len: 65536 */
/* fuzz-dict: gguf.dict */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "format/gguf_model.h"
#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

static volatile uint8_t sink;

static void read_bytes(const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) sink ^= p[i];
}

static void walk_value(const ts_gguf *g, const ts_gguf_value *v, int depth) {
    ts_error err;
    if (v->type == TS_GGUF_STRING) {
        ts_gguf_str s = ts_gguf_value_str(g, v);
        read_bytes(s.ptr, (size_t)s.len);
        return;
    }
    if (v->type != TS_GGUF_ARRAY) {
        int64_t i;
        (void)ts_gguf_value_int(g, v, &i);
        (void)ts_gguf_value_float(g, v);
        return;
    }
    uint64_t shown = v->count < 4 ? v->count : 4;
    for (uint64_t i = 0; i < shown; i++) {
        int64_t iv;
        double dv;
        ts_gguf_value elem;
        (void)ts_gguf_array_int(g, v, i, &iv, &err);
        (void)ts_gguf_array_float(g, v, i, &dv, &err);
        if (ts_gguf_array_elem(g, v, i, &elem, &err) == 0 && depth < TS_GGUF_MAX_ARRAY_DEPTH + 1)
            walk_value(g, &elem, depth + 1);
    }
    if (v->count > 0) {
        ts_gguf_value last;
        (void)ts_gguf_array_elem(g, v, v->count - 1, &last, &err);
    }
    if (v->elem_type == TS_GGUF_STRING) {
        ts_gguf_str *views = malloc((size_t)(v->count ? v->count : 1) * sizeof *views);
        if (views && ts_gguf_array_strings(g, v, views, &err) == 0)
            for (uint64_t i = 0; i < v->count; i++) read_bytes(views[i].ptr, (size_t)views[i].len);
        free(views);
    }
}

static void exercise_tokenizer(const ts_gguf *g) {
    ts_vocab_spec spec;
    ts_error err = {{0}};
    int rc = ts_gguf_read_vocab(g, &spec, &err);
    fuzz_check("ts_gguf_read_vocab", rc, &err);
    if (rc != 0) return;
    ts_tokenizer *tok = NULL;
    if (ts_tokenizer_from_spec(&spec, &tok, &err) == 0) {
        static const char text[] = "Hello <|im_start|>wörld 123\n";
        int32_t *ids = NULL;
        size_t n = 0;
        if (ts_tokenizer_encode(tok, text, sizeof text - 1, 1, &ids, &n, &err) == 0) {
            char *back = NULL;
            size_t len = 0;
            if (ts_tokenizer_decode(tok, ids, n, 0, &back, &len, &err) == 0) free(back);
            free(ids);
        }
        ts_tokenizer_free(tok);
    }
    ts_vocab_spec_free(&spec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    ts_gguf g;
    ts_error err = {{0}};
    int rc = ts_gguf_parse(data, size, "fuzz.gguf", &g, &err);
    fuzz_check("ts_gguf_parse", rc, &err);
    if (rc != 0) return 0;
    for (int64_t i = 0; i < g.n_kv; i++) {
        const ts_gguf_kv *kv = &g.kvs[i];
        if (ts_gguf_find(&g, kv->key) == NULL) abort();
        uint64_t u;
        int64_t s;
        double d;
        int b;
        ts_gguf_str str;
        ts_gguf_value arr;
        (void)ts_gguf_get_uint(&g, kv->key, &u, &err);
        (void)ts_gguf_get_int(&g, kv->key, &s, &err);
        (void)ts_gguf_get_float(&g, kv->key, &d, &err);
        (void)ts_gguf_get_bool(&g, kv->key, &b, &err);
        (void)ts_gguf_get_string(&g, kv->key, &str, &err);
        (void)ts_gguf_get_array(&g, kv->key, TS_GGUF_TYPE_COUNT, &arr, &err);
        walk_value(&g, &kv->value, 0);
    }
    for (int64_t i = 0; i < g.n_tensors; i++) {
        const ts_gguf_tensor_info *t = &g.tensors[i];
        if (ts_gguf_find_tensor(&g, t->name) == NULL) abort();
        read_bytes(g.data + g.data_offset + t->offset, t->nbytes);
    }

    ts_tensor_table plain;
    ts_tensor_table_init(&plain);
    (void)ts_gguf_add_to_table(&g, &plain, &err);
    ts_tensor_table_free(&plain);

    ts_model_config *cfg = malloc(sizeof *cfg);
    ts_error cfg_err = {{0}};
    rc = cfg ? ts_gguf_model_config(&g, cfg, &cfg_err) : 1;
    if (cfg) fuzz_check("ts_gguf_model_config", rc, &cfg_err);
    if (rc == 0) {
        ts_tensor_table table;
        ts_tensor_table_init(&table);
        ts_error_clear(&err);
        rc = ts_gguf_model_tensors(&g, cfg, &table, &err);
        fuzz_check("ts_gguf_model_tensors", rc, &err);
        if (rc == 0)
            for (int i = 0; i < table.count; i++) read_bytes(table.items[i].data, table.items[i].nbytes);
        ts_tensor_table_free(&table);
    }
    free(cfg);
    exercise_tokenizer(&g);
    ts_gguf_free(&g);
    return 0;
}
