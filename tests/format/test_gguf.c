/* GGUF reader and writer: the files llama.cpp's converter wrote (../shared/testdata/gguf) read
 * correctly and map onto the same tensors as the safetensors checkpoints; a file written with every
 * metadata type reads back identically; malformed files get clear errors.
 * With arguments this is also the helper test_gguf_py.py drives:
 *   test_gguf --dump FILE           every key (type, value) and tensor info as JSON on stdout
 *   test_gguf --write-sample FILE   a file holding every metadata type and several tensor types */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "format/gguf.h"
#include "format/gguf_model.h"
#include "format/gguf_writer.h"
#include "format/model_config.h"
#include "format/safetensors.h"
#include "quant/dequantize.h"
#include "quant/float16.h"
#include "quant/quantize.h"
#include "support/testlib.h"

/* ------------------------------------------------------------------ dump (for the Python test) */

static json_t *value_json(const ts_gguf *g, const ts_gguf_value *v) {
    switch (v->type) {
    case TS_GGUF_F32:
    case TS_GGUF_F64: return json_real(ts_gguf_value_float(g, v));
    case TS_GGUF_BOOL: return json_boolean(g->data[v->offset] != 0);
    case TS_GGUF_STRING: {
        ts_gguf_str s = ts_gguf_value_str(g, v);
        return json_stringn_nocheck(s.ptr, (size_t)s.len);
    }
    case TS_GGUF_U64: {
        uint64_t u;
        memcpy(&u, g->data + v->offset, 8);
        if (u > (uint64_t)INT64_MAX) {
            char buf[32];
            snprintf(buf, sizeof buf, "%" PRIu64, u);
            return json_pack("{s:s}", "u64", buf);
        }
        return json_integer((json_int_t)u);
    }
    case TS_GGUF_ARRAY: {
        json_t *arr = json_array();
        ts_error err;
        size_t es = ts_gguf_type_size(v->elem_type);
        for (uint64_t i = 0; i < v->count; i++) {
            ts_gguf_value e;
            memset(&e, 0, sizeof e);
            if (es) {
                e.type = v->elem_type;
                e.offset = v->offset + (size_t)i * es;
            } else {
                ts_gguf_array_elem(g, v, i, &e, &err);
            }
            json_array_append_new(arr, value_json(g, &e));
        }
        return json_pack("{s:s,s:o}", "elem", ts_gguf_type_name(v->elem_type), "values", arr);
    }
    default: {
        int64_t i = 0;
        ts_gguf_value_int(g, v, &i);
        return json_integer((json_int_t)i);
    }
    }
}

/* String arrays are walked once rather than element by element (151936 tokens). */
static json_t *kv_json(const ts_gguf *g, const ts_gguf_kv *kv) {
    const ts_gguf_value *v = &kv->value;
    if (v->type == TS_GGUF_ARRAY && v->elem_type == TS_GGUF_STRING) {
        ts_gguf_str *views = malloc((size_t)(v->count ? v->count : 1) * sizeof *views);
        ts_error err;
        ts_gguf_array_strings(g, v, views, &err);
        json_t *arr = json_array();
        for (uint64_t i = 0; i < v->count; i++) json_array_append_new(arr, json_stringn_nocheck(views[i].ptr, (size_t)views[i].len));
        free(views);
        return json_pack("{s:s,s:o}", "elem", "string", "values", arr);
    }
    return value_json(g, v);
}

static int dump_main(const char *path) {
    ts_gguf g;
    ts_error err;
    if (ts_gguf_open(path, &g, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    json_t *kvs = json_object(), *tensors = json_array();
    for (int64_t i = 0; i < g.n_kv; i++)
        json_object_set_new(kvs, g.kvs[i].key,
                            json_pack("{s:s,s:o}", "type", ts_gguf_type_name(g.kvs[i].value.type), "value", kv_json(&g, &g.kvs[i])));
    for (int64_t i = 0; i < g.n_tensors; i++) {
        const ts_gguf_tensor_info *t = &g.tensors[i];
        json_t *ne = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(ne, json_integer(t->ne[d]));
        json_array_append_new(tensors, json_pack("{s:s,s:i,s:o,s:I,s:I}", "name", t->name, "type", t->ggml_type, "ne", ne,
                                                 "offset", (json_int_t)(g.data_offset + t->offset), "nbytes",
                                                 (json_int_t)t->nbytes));
    }
    json_t *root = json_pack("{s:i,s:i,s:I,s:o,s:o}", "version", (int)g.version, "alignment", (int)g.alignment,
                             "data_offset", (json_int_t)g.data_offset, "kv", kvs, "tensors", tensors);
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(17) | JSON_ENSURE_ASCII);
    fputs(text, stdout);
    free(text);
    json_decref(root);
    ts_gguf_free(&g);
    return 0;
}

/* ------------------------------------------------------------------ the sample file */

/* Values shared with test_gguf_py.py (which checks them through gguf-py's reader). */
static int write_sample(const char *path, ts_error *err) {
    ts_gguf_writer *w = ts_gguf_writer_new();
    static const char *strs[] = {"alpha", "", "γλώσσα", "tab\there"};
    static const int32_t i32s[] = {-7, 0, 2147483647, -2147483647 - 1};
    static const float f32s[] = {1.5f, -0.0f, 3.25e-20f, 65504.0f};
    static const uint8_t bools[] = {1, 0, 1};
    static const uint64_t u64s[] = {0, 18446744073709551615ull};
    /* [[1, 2], [3]] as u16 arrays, encoded by hand */
    uint8_t nested[12 + 2 * 12 + 3 * 2];
    uint8_t *p = nested;
    uint32_t at = TS_GGUF_ARRAY, et = TS_GGUF_U16;
    uint64_t n2 = 2, n1 = 1;
    uint16_t v1 = 1, v2 = 2, v3 = 3;
    memcpy(p, &at, 4), p += 4;
    memcpy(p, &n2, 8), p += 8;
    memcpy(p, &et, 4), p += 4;
    memcpy(p, &n2, 8), p += 8;
    memcpy(p, &v1, 2), p += 2;
    memcpy(p, &v2, 2), p += 2;
    memcpy(p, &et, 4), p += 4;
    memcpy(p, &n1, 8), p += 8;
    memcpy(p, &v3, 2), p += 2;
    int rc = ts_gguf_writer_set_string(w, "general.architecture", "sample", err) |
             ts_gguf_writer_set_u8(w, "t.u8", 200, err) | ts_gguf_writer_set_i8(w, "t.i8", -100, err) |
             ts_gguf_writer_set_u16(w, "t.u16", 65000, err) | ts_gguf_writer_set_i16(w, "t.i16", -32000, err) |
             ts_gguf_writer_set_u32(w, "t.u32", 4000000000u, err) | ts_gguf_writer_set_i32(w, "t.i32", -2000000000, err) |
             ts_gguf_writer_set_f32(w, "t.f32", 0.1f, err) | ts_gguf_writer_set_bool(w, "t.bool", 1, err) |
             ts_gguf_writer_set_string(w, "t.string", "héllo\nwörld", err) |
             ts_gguf_writer_set_u64(w, "t.u64", 18000000000000000000ull, err) |
             ts_gguf_writer_set_i64(w, "t.i64", -9000000000000000000ll, err) |
             ts_gguf_writer_set_f64(w, "t.f64", 2.718281828459045, err) |
             ts_gguf_writer_set_string_array(w, "t.strings", strs, 4, err) |
             ts_gguf_writer_set_array(w, "t.i32s", TS_GGUF_I32, i32s, 4, err) |
             ts_gguf_writer_set_array(w, "t.f32s", TS_GGUF_F32, f32s, 4, err) |
             ts_gguf_writer_set_array(w, "t.bools", TS_GGUF_BOOL, bools, 3, err) |
             ts_gguf_writer_set_array(w, "t.u64s", TS_GGUF_U64, u64s, 2, err) |
             ts_gguf_writer_set_array(w, "t.empty", TS_GGUF_U8, NULL, 0, err) |
             ts_gguf_writer_set_encoded(w, "t.nested", TS_GGUF_ARRAY, nested, sizeof nested, err) |
             ts_gguf_writer_set_u32(w, "general.alignment", 64, err);
    /* tensors: f32 [3, 5], f16 [7], bf16 [2, 3, 4], q8_0 [2, 64], q4_k [256] */
    static float f32[15], f16src[7], bfsrc[24], q8src[128], q4src[256];
    static uint16_t f16[7], bf[24];
    static uint8_t q8[2 * 2 * 34], q4k[144];
    for (int i = 0; i < 15; i++) f32[i] = (float)i * 0.5f - 3;
    for (int i = 0; i < 7; i++) f16src[i] = (float)i / 3.0f;
    for (int i = 0; i < 24; i++) bfsrc[i] = (float)(i * i) * 0.01f;
    for (int i = 0; i < 128; i++) q8src[i] = sinf((float)i);
    for (int i = 0; i < 256; i++) q4src[i] = cosf((float)i * 0.3f);
    ts_quantize_row(TS_DTYPE_F16, f16src, f16, 7);
    ts_quantize_row(TS_DTYPE_BF16, bfsrc, bf, 24);
    ts_quantize_row(TS_DTYPE_Q8_0, q8src, q8, 128);
    ts_quantize_row(TS_DTYPE_Q4_K, q4src, q4k, 256);
    int64_t s1[2] = {3, 5}, s2[1] = {7}, s3[3] = {2, 3, 4}, s4[2] = {2, 64}, s5[1] = {256};
    if (rc == 0)
        rc = ts_gguf_writer_add_tensor(w, "t.f32", 0, 2, s1, f32, sizeof f32, err) |
             ts_gguf_writer_add_tensor(w, "t.f16", 1, 1, s2, f16, sizeof f16, err) |
             ts_gguf_writer_add_tensor(w, "t.bf16", 30, 3, s3, bf, sizeof bf, err) |
             ts_gguf_writer_add_tensor(w, "t.q8_0", 8, 2, s4, q8, sizeof q8, err) |
             ts_gguf_writer_add_tensor(w, "t.q4_k", 12, 1, s5, q4k, sizeof q4k, err);
    if (rc == 0) rc = ts_gguf_writer_write(w, path, err);
    ts_gguf_writer_free(w);
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ shared files */

static void open_shared(const char *rel, ts_gguf *g) {
    char path[4096];
    ts_error err = {{0}};
    ts_test_shared_path(rel, path, sizeof path);
    if (ts_gguf_open(path, g, &err) != 0) fail_msg("%s", err.message);
}

static void test_reads_shared_files(void **state) {
    (void)state;
    ts_gguf g;
    ts_error err = {{0}};
    open_shared("testdata/gguf/qwen3-tiny-tok-bf16.gguf", &g);
    assert_int_equal(g.version, 3);
    assert_int_equal(g.n_kv, 24);
    assert_int_equal(g.n_tensors, 24);
    assert_int_equal(g.alignment, 32);
    ts_gguf_str s;
    assert_int_equal(ts_gguf_get_string(&g, "general.architecture", &s, &err), 0);
    assert_int_equal((int)s.len, 5);
    assert_memory_equal(s.ptr, "qwen3", 5);
    uint64_t u;
    assert_int_equal(ts_gguf_get_uint(&g, "qwen3.block_count", &u, &err), 0);
    assert_int_equal(u, 2);
    double eps;
    assert_int_equal(ts_gguf_get_float(&g, "qwen3.attention.layer_norm_rms_epsilon", &eps, &err), 0);
    assert_true(fabs(eps - 1e-6) < 1e-12);
    /* typed getters refuse the wrong type, naming the key */
    assert_int_equal(ts_gguf_get_string(&g, "qwen3.block_count", &s, &err), -1);
    assert_non_null(strstr(err.message, "qwen3.block_count"));
    assert_non_null(strstr(err.message, "expected string"));
    int b;
    assert_int_equal(ts_gguf_get_bool(&g, "general.name", &b, &err), -1);
    assert_int_equal(ts_gguf_get_uint(&g, "no.such.key", &u, &err), 1);
    ts_gguf_value arr;
    assert_int_equal(ts_gguf_get_array(&g, "tokenizer.ggml.tokens", TS_GGUF_STRING, &arr, &err), 0);
    assert_int_equal(arr.count, 151936);
    assert_int_equal(ts_gguf_get_array(&g, "tokenizer.ggml.token_type", TS_GGUF_STRING, &arr, &err), -1);
    const ts_gguf_tensor_info *t = ts_gguf_find_tensor(&g, "blk.0.attn_q.weight");
    assert_non_null(t);
    assert_int_equal(t->ggml_type, 30);
    assert_int_equal(t->ne[0], 32);
    assert_int_equal(t->ne[1], 64);
    assert_int_equal(t->nbytes, 4096);

    ts_tensor_table table;
    ts_tensor_table_init(&table);
    assert_int_equal(ts_gguf_add_to_table(&g, &table, &err), 0);
    const ts_tensor_desc *d = ts_tensor_table_find(&table, "blk.0.attn_q.weight");
    assert_non_null(d);
    assert_int_equal(d->dtype, TS_DTYPE_BF16);
    assert_int_equal(d->ndim, 2);
    assert_int_equal(d->shape[0], 64); /* row-major: ne reversed */
    assert_int_equal(d->shape[1], 32);
    assert_string_equal(d->file_dtype, "BF16");
    ts_gguf_free(&g);
    ts_tensor_table_free(&table);

    open_shared("testdata/gguf/dialogpt-tiny-f32.gguf", &g);
    assert_int_equal(g.n_tensors, 28);
    assert_int_equal(ts_gguf_get_float(&g, "gpt2.attention.layer_norm_epsilon", &eps, &err), 0);
    assert_true(fabs(eps - 1e-5) < 1e-10);
    ts_gguf_free(&g);
}

static void load_safetensors(const char *dir_rel, ts_tensor_table *t, ts_model_config *cfg) {
    char dir[4096], cfgp[4200];
    ts_error err = {{0}};
    ts_test_shared_path(dir_rel, dir, sizeof dir);
    ts_tensor_table_init(t);
    if (ts_safetensors_load_dir(dir, t, &err) != 0) fail_msg("%s", err.message);
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    if (cfg && ts_model_config_load(cfgp, cfg, &err) != 0) fail_msg("%s", err.message);
}

static void load_gguf_model(const char *rel, ts_model_config *cfg, ts_tensor_table *t, ts_vocab_spec *vocab) {
    char path[4096];
    ts_error err = {{0}};
    ts_test_shared_path(rel, path, sizeof path);
    ts_tensor_table_init(t);
    if (ts_gguf_load_model(path, cfg, t, vocab, &err) != 0) fail_msg("%s", err.message);
}

static float *as_f32(const ts_tensor_desc *d) {
    int64_t n = ts_tensor_numel(d);
    float *f = malloc((size_t)n * sizeof *f);
    ts_dequantize_row(d->dtype, d->data, f, n);
    return f;
}

static void test_qwen3_bf16_matches_safetensors(void **state) {
    (void)state;
    ts_tensor_table st, gg;
    ts_model_config cst, cg;
    ts_vocab_spec vocab;
    load_safetensors("testdata/qwen3-tiny-tok", &st, &cst);
    load_gguf_model("testdata/gguf/qwen3-tiny-tok-bf16.gguf", &cg, &gg, &vocab);
    assert_int_equal(gg.count, st.count);
    assert_true(gg.gguf_layout);
    int identical = 0;
    for (int i = 0; i < st.count; i++) {
        const ts_tensor_desc *a = &st.items[i], *b = ts_tensor_table_find(&gg, a->name);
        if (!b) fail_msg("GGUF lacks %s", a->name);
        assert_int_equal(a->ndim, b->ndim);
        for (int k = 0; k < a->ndim; k++) assert_int_equal(a->shape[k], b->shape[k]);
        if (b->dtype == TS_DTYPE_BF16) {
            assert_int_equal(a->nbytes, b->nbytes);
            assert_memory_equal(a->data, b->data, a->nbytes);
            identical++;
        } else { /* norms are stored as f32 by the converter: the same values widened */
            float *fa = as_f32(a), *fb = as_f32(b);
            assert_memory_equal(fa, fb, (size_t)ts_tensor_numel(a) * sizeof(float));
            free(fa);
            free(fb);
        }
    }
    assert_int_equal(identical, 15);
    /* configuration: everything config.json says, except the rope base the converter left out */
    assert_int_equal(cg.arch, TS_ARCH_QWEN3);
    assert_int_equal(cg.hidden_size, cst.hidden_size);
    assert_int_equal(cg.intermediate_size, cst.intermediate_size);
    assert_int_equal(cg.num_layers, cst.num_layers);
    assert_int_equal(cg.num_heads, cst.num_heads);
    assert_int_equal(cg.num_kv_heads, cst.num_kv_heads);
    assert_int_equal(cg.head_dim, cst.head_dim);
    assert_int_equal(cg.vocab_size, cst.vocab_size);
    assert_int_equal(cg.max_position_embeddings, cst.max_position_embeddings);
    assert_int_equal(cg.tie_word_embeddings, 1);
    assert_int_equal(cg.qk_norm, 1);
    assert_int_equal(cg.attention_bias, 0);
    assert_true(fabs(cg.norm_eps - cst.norm_eps) < 1e-12);
    assert_true(cg.rope_theta == 10000.0); /* llama.cpp's default: this file has no rope.freq_base */
    assert_int_equal(cg.bos_token_id, 151643);
    assert_int_equal(cg.num_eos, 1);
    assert_int_equal(cg.eos_token_ids[0], 151645);
    assert_int_equal(cg.dtype, TS_DTYPE_BF16);
    /* vocabulary */
    assert_int_equal(vocab.n_tokens, 151936);
    assert_int_equal(vocab.n_merges, 151387);
    assert_string_equal(vocab.model, "gpt2");
    assert_string_equal(vocab.pre, "qwen2");
    assert_string_equal(vocab.tokens[0], "!");
    assert_string_equal(vocab.tokens[151645], "<|im_end|>");
    assert_int_equal(vocab.token_types[151645], TS_TOKEN_CONTROL);
    assert_int_equal(vocab.token_types[0], TS_TOKEN_NORMAL);
    assert_int_equal(vocab.eos_id, 151645);
    assert_int_equal(vocab.pad_id, 151643);
    assert_non_null(vocab.chat_template);
    assert_non_null(strstr(vocab.chat_template, "<|im_start|>"));
    ts_vocab_spec_free(&vocab);
    ts_tensor_table_free(&st);
    ts_tensor_table_free(&gg);
}

/* The converter quantized the bf16 weights with gguf-py's Q8_0 (bit-exact with ggml's reference):
 * our reference quantizer must give the very same bytes from the safetensors values. */
static void test_qwen3_q8_0_is_our_reference_quantization(void **state) {
    (void)state;
    ts_tensor_table st, gg;
    ts_model_config cst, cg;
    load_safetensors("testdata/qwen3-tiny-tok", &st, &cst);
    load_gguf_model("testdata/gguf/qwen3-tiny-tok-q8_0.gguf", &cg, &gg, NULL);
    int quantized = 0;
    for (int i = 0; i < gg.count; i++) {
        const ts_tensor_desc *b = &gg.items[i], *a = ts_tensor_table_find(&st, b->name);
        assert_non_null(a);
        if (b->dtype != TS_DTYPE_Q8_0) continue;
        int64_t rows = a->shape[0], cols = a->shape[1];
        uint8_t *q = malloc(b->nbytes);
        ts_error err = {{0}};
        assert_int_equal(ts_quantize_tensor_ref(TS_DTYPE_Q8_0, a->data, a->dtype, rows, cols, q, 1, &err), 0);
        assert_memory_equal(q, b->data, b->nbytes);
        free(q);
        quantized++;
    }
    assert_int_equal(quantized, 15);
    assert_int_equal(cg.dtype, TS_DTYPE_Q8_0);
    ts_tensor_table_free(&st);
    ts_tensor_table_free(&gg);
}

static void test_dialogpt_matches_safetensors_transposed(void **state) {
    (void)state;
    ts_tensor_table st, gg;
    ts_model_config cst, cg;
    load_safetensors("testdata/dialogpt-tiny", &st, &cst);
    load_gguf_model("testdata/gguf/dialogpt-tiny-f32.gguf", &cg, &gg, NULL);
    assert_int_equal(cg.arch, TS_ARCH_GPT2);
    assert_int_equal(cg.hidden_size, 32);
    assert_int_equal(cg.intermediate_size, 128);
    assert_int_equal(cg.num_heads, 4);
    assert_int_equal(cg.head_dim, 8);
    assert_int_equal(cg.vocab_size, 50257);
    assert_int_equal(cg.max_position_embeddings, 1024);
    assert_int_equal(cg.activation, TS_ACT_GELU_TANH);
    assert_int_equal(cg.attention_bias, 1);
    assert_int_equal(cg.tie_word_embeddings, 1);
    assert_int_equal(gg.count, 28);
    int transposed = 0;
    for (int i = 0; i < gg.count; i++) {
        const ts_tensor_desc *b = &gg.items[i], *a = ts_tensor_table_find(&st, b->name);
        if (!a) fail_msg("safetensors lacks %s", b->name);
        const float *fa = a->data, *fb = b->data;
        size_t len = strlen(b->name);
        int conv = len > 7 && b->ndim == 2 && strstr(b->name, ".h.") && !strstr(b->name, "ln_");
        if (conv) { /* [in, out] in safetensors, [out, in] here */
            assert_int_equal(a->shape[0], b->shape[1]);
            assert_int_equal(a->shape[1], b->shape[0]);
            for (int64_t o = 0; o < b->shape[0]; o++)
                for (int64_t k = 0; k < b->shape[1]; k++) assert_true(fb[o * b->shape[1] + k] == fa[k * a->shape[1] + o]);
            transposed++;
        } else {
            assert_int_equal(a->nbytes, b->nbytes);
            assert_memory_equal(a->data, b->data, a->nbytes);
        }
    }
    assert_int_equal(transposed, 8);
    ts_tensor_table_free(&st);
    ts_tensor_table_free(&gg);
}

/* ------------------------------------------------------------------ model writer */

static ts_gguf_model_tensor *table_as_write_list(const ts_tensor_table *t, int out_in) {
    ts_gguf_model_tensor *list = calloc((size_t)t->count, sizeof *list);
    for (int i = 0; i < t->count; i++) {
        const ts_tensor_desc *d = &t->items[i];
        list[i] = (ts_gguf_model_tensor){d->name, d->dtype, d->ndim, {d->shape[0], d->shape[1], d->shape[2], d->shape[3]},
                                         d->data, d->nbytes, out_in};
    }
    return list;
}

static void assert_tables_equal(const ts_tensor_table *a, const ts_tensor_table *b) {
    assert_int_equal(a->count, b->count);
    for (int i = 0; i < a->count; i++) {
        const ts_tensor_desc *x = &a->items[i], *y = ts_tensor_table_find(b, x->name);
        if (!y) fail_msg("missing %s", x->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->ndim, y->ndim);
        for (int k = 0; k < x->ndim; k++) assert_int_equal(x->shape[k], y->shape[k]);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
}

static void test_rewrite_qwen3_roundtrip(void **state) {
    (void)state;
    ts_tensor_table a, b;
    ts_model_config ca, cb;
    ts_vocab_spec va, vb;
    ts_error err = {{0}};
    load_gguf_model("testdata/gguf/qwen3-tiny-tok-q8_0.gguf", &ca, &a, &va);
    ca.rope_theta = 1000000.0;
    char out[4096];
    snprintf(out, sizeof out, "%s/qwen3-rewrite.gguf", ts_test_tmpdir());
    ts_gguf_model_tensor *list = table_as_write_list(&a, 1);
    if (ts_gguf_write_model(out, &ca, list, a.count, &va, "rewrite", &err) != 0) fail_msg("%s", err.message);
    ts_tensor_table_init(&b);
    if (ts_gguf_load_model(out, &cb, &b, &vb, &err) != 0) fail_msg("%s", err.message);
    assert_tables_equal(&a, &b);
    assert_true(cb.rope_theta == 1000000.0);
    assert_int_equal(cb.head_dim, ca.head_dim);
    assert_int_equal(cb.vocab_size, ca.vocab_size);
    assert_int_equal(cb.dtype, TS_DTYPE_Q8_0);
    assert_int_equal(vb.n_tokens, va.n_tokens);
    assert_int_equal(vb.n_merges, va.n_merges);
    for (int i = 0; i < va.n_tokens; i += 997) assert_string_equal(va.tokens[i], vb.tokens[i]);
    assert_string_equal(va.merges[va.n_merges - 1], vb.merges[vb.n_merges - 1]);
    assert_string_equal(va.chat_template, vb.chat_template);
    assert_int_equal(vb.eos_id, va.eos_id);
    /* the metadata llama.cpp needs */
    ts_gguf g;
    assert_int_equal(ts_gguf_open(out, &g, &err), 0);
    uint64_t u;
    assert_int_equal(ts_gguf_get_uint(&g, "general.quantization_version", &u, &err), 0);
    assert_int_equal(u, 2);
    assert_int_equal(ts_gguf_get_uint(&g, "general.file_type", &u, &err), 0);
    assert_int_equal(u, 7);
    assert_int_equal(ts_gguf_get_uint(&g, "qwen3.attention.key_length", &u, &err), 0);
    assert_int_equal(u, 16);
    assert_non_null(ts_gguf_find_tensor(&g, "blk.1.attn_k_norm.weight"));
    ts_gguf_free(&g);
    free(list);
    ts_vocab_spec_free(&va);
    ts_vocab_spec_free(&vb);
    ts_tensor_table_free(&a);
    ts_tensor_table_free(&b);
}

/* Written from the Hugging Face safetensors ([in, out] Conv1D), the tensors equal those of the file
 * llama.cpp's converter produced. */
static void test_write_gpt2_from_safetensors_matches_converter(void **state) {
    (void)state;
    ts_tensor_table st, mine, theirs;
    ts_model_config cst, cm, ct;
    ts_error err = {{0}};
    load_safetensors("testdata/dialogpt-tiny", &st, &cst);
    char out[4096];
    snprintf(out, sizeof out, "%s/dialogpt.gguf", ts_test_tmpdir());
    ts_gguf_model_tensor *list = table_as_write_list(&st, 0);
    if (ts_gguf_write_model(out, &cst, list, st.count, NULL, NULL, &err) != 0) fail_msg("%s", err.message);
    ts_tensor_table_init(&mine);
    if (ts_gguf_load_model(out, &cm, &mine, NULL, &err) != 0) fail_msg("%s", err.message);
    load_gguf_model("testdata/gguf/dialogpt-tiny-f32.gguf", &ct, &theirs, NULL);
    assert_tables_equal(&theirs, &mine);
    /* raw GGUF names and shapes too */
    ts_gguf a, b;
    char theirs_path[4096];
    ts_test_shared_path("testdata/gguf/dialogpt-tiny-f32.gguf", theirs_path, sizeof theirs_path);
    assert_int_equal(ts_gguf_open(out, &a, &err), 0);
    assert_int_equal(ts_gguf_open(theirs_path, &b, &err), 0);
    assert_int_equal(a.n_tensors, b.n_tensors);
    for (int64_t i = 0; i < b.n_tensors; i++) {
        const ts_gguf_tensor_info *x = &b.tensors[i], *y = ts_gguf_find_tensor(&a, x->name);
        if (!y) fail_msg("written file lacks %s", x->name);
        assert_memory_equal(x->ne, y->ne, sizeof x->ne);
        assert_int_equal(x->ggml_type, y->ggml_type);
    }
    static const char *keys[] = {"gpt2.block_count", "gpt2.context_length", "gpt2.embedding_length",
                                 "gpt2.feed_forward_length", "gpt2.attention.head_count"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        uint64_t ua, ub;
        assert_int_equal(ts_gguf_get_uint(&a, keys[k], &ua, &err), 0);
        assert_int_equal(ts_gguf_get_uint(&b, keys[k], &ub, &err), 0);
        assert_int_equal(ua, ub);
    }
    ts_gguf_free(&a);
    ts_gguf_free(&b);
    free(list);
    ts_tensor_table_free(&st);
    ts_tensor_table_free(&mine);
    ts_tensor_table_free(&theirs);
}

/* Synthetic llama and qwen3_moe models: the writer permutes llama's q/k rows and merges experts as
 * llama.cpp does, and the loader undoes both. */
static void synth_tensor(ts_gguf_model_tensor *t, const char *name, ts_dtype dt, int ndim, int64_t r, int64_t c,
                         uint64_t *seed) {
    t->name = strdup(name);
    t->dtype = dt;
    t->ndim = ndim;
    t->shape[0] = r;
    t->shape[1] = ndim > 1 ? c : 1;
    t->shape[2] = t->shape[3] = 1;
    int64_t n = r * (ndim > 1 ? c : 1);
    float *f = malloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++) f[i] = ts_test_randf(seed);
    t->nbytes = ts_dtype_row_bytes(dt, n);
    void *q = malloc(t->nbytes);
    ts_quantize_row(dt, f, q, n);
    t->data = q;
    t->out_in_layout = 1;
    free(f);
}

static void free_synth(ts_gguf_model_tensor *t, int n) {
    for (int i = 0; i < n; i++) {
        free((void *)t[i].name);
        free((void *)t[i].data);
    }
}

static void test_llama_permutation_roundtrip(void **state) {
    (void)state;
    ts_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = TS_ARCH_LLAMA;
    c.hidden_size = 64;
    c.intermediate_size = 96;
    c.num_layers = 1;
    c.num_heads = 2;
    c.num_kv_heads = 1;
    c.head_dim = 64;
    c.vocab_size = 40;
    c.max_position_embeddings = 128;
    c.norm_eps = 1e-5;
    c.rope_theta = 500000;
    c.rope_kind = TS_ROPE_LLAMA3;
    c.rope_factor = 8;
    c.rope_low_freq_factor = 1;
    c.rope_high_freq_factor = 4;
    c.rope_original_max_position = 8192;
    c.bos_token_id = c.pad_token_id = -1;
    ts_gguf_model_tensor t[12];
    uint64_t seed = 5;
    synth_tensor(&t[0], "model.embed_tokens.weight", TS_DTYPE_Q8_0, 2, 40, 64, &seed);
    synth_tensor(&t[1], "model.layers.0.self_attn.q_proj.weight", TS_DTYPE_Q4_0, 2, 128, 64, &seed);
    synth_tensor(&t[2], "model.layers.0.self_attn.k_proj.weight", TS_DTYPE_F16, 2, 64, 64, &seed);
    synth_tensor(&t[3], "model.layers.0.self_attn.v_proj.weight", TS_DTYPE_F16, 2, 64, 64, &seed);
    synth_tensor(&t[4], "model.layers.0.self_attn.o_proj.weight", TS_DTYPE_F16, 2, 64, 128, &seed);
    synth_tensor(&t[5], "model.layers.0.mlp.gate_proj.weight", TS_DTYPE_F32, 2, 96, 64, &seed);
    synth_tensor(&t[6], "model.layers.0.mlp.up_proj.weight", TS_DTYPE_F32, 2, 96, 64, &seed);
    synth_tensor(&t[7], "model.layers.0.mlp.down_proj.weight", TS_DTYPE_Q8_0, 2, 64, 96, &seed);
    synth_tensor(&t[8], "model.layers.0.input_layernorm.weight", TS_DTYPE_F32, 1, 64, 1, &seed);
    synth_tensor(&t[9], "model.layers.0.post_attention_layernorm.weight", TS_DTYPE_F32, 1, 64, 1, &seed);
    synth_tensor(&t[10], "model.norm.weight", TS_DTYPE_F32, 1, 64, 1, &seed);
    synth_tensor(&t[11], "lm_head.weight", TS_DTYPE_Q8_0, 2, 40, 64, &seed);
    char out[4096];
    ts_error err = {{0}};
    snprintf(out, sizeof out, "%s/llama.gguf", ts_test_tmpdir());
    if (ts_gguf_write_model(out, &c, t, 12, NULL, "synthetic llama", &err) != 0) fail_msg("%s", err.message);
    /* In the file, GGUF row h*64 + 2i + j holds HF row h*64 + j*32 + i (one kv head here). */
    ts_gguf g;
    assert_int_equal(ts_gguf_open(out, &g, &err), 0);
    const ts_gguf_tensor_info *k = ts_gguf_find_tensor(&g, "blk.0.attn_k.weight");
    assert_non_null(k);
    const uint16_t *raw = (const uint16_t *)(g.data + g.data_offset + k->offset), *hf = t[2].data;
    for (int i = 0; i < 32; i++)
        for (int j = 0; j < 2; j++) assert_memory_equal(raw + (2 * i + j) * 64, hf + (j * 32 + i) * 64, 128);
    assert_non_null(ts_gguf_find_tensor(&g, "rope_freqs.weight"));
    assert_non_null(ts_gguf_find_tensor(&g, "output.weight"));
    uint64_t u;
    assert_int_equal(ts_gguf_get_uint(&g, "llama.rope.dimension_count", &u, &err), 0);
    assert_int_equal(u, 64);
    ts_gguf_free(&g);

    ts_tensor_table tab;
    ts_model_config c2;
    ts_tensor_table_init(&tab);
    if (ts_gguf_load_model(out, &c2, &tab, NULL, &err) != 0) fail_msg("%s", err.message);
    for (int i = 0; i < 12; i++) {
        const ts_tensor_desc *d = ts_tensor_table_find(&tab, t[i].name);
        if (!d) fail_msg("missing %s", t[i].name);
        assert_int_equal(d->nbytes, t[i].nbytes);
        assert_memory_equal(d->data, t[i].data, t[i].nbytes);
    }
    assert_non_null(ts_tensor_table_find(&tab, "rope_freqs.weight"));
    assert_int_equal(c2.rope_kind, TS_ROPE_LLAMA3);
    assert_true(fabs(c2.rope_factor - 8) < 1e-6);
    assert_true(fabs(c2.rope_high_freq_factor - 4) < 1e-3);
    assert_true(abs(c2.rope_original_max_position - 8192) <= 1);
    assert_int_equal(c2.tie_word_embeddings, 0);
    assert_int_equal(c2.num_kv_heads, 1);
    ts_tensor_table_free(&tab);
    free_synth(t, 12);
}

static void test_qwen3moe_experts_roundtrip(void **state) {
    (void)state;
    ts_tensor_table st, gg;
    ts_model_config c, cg;
    ts_error err = {{0}};
    load_safetensors("testdata/qwen3moe-small", &st, &c);
    char out[4096];
    snprintf(out, sizeof out, "%s/moe.gguf", ts_test_tmpdir());
    ts_gguf_model_tensor *list = table_as_write_list(&st, 1);
    if (ts_gguf_write_model(out, &c, list, st.count, NULL, NULL, &err) != 0) fail_msg("%s", err.message);
    ts_tensor_table_init(&gg);
    if (ts_gguf_load_model(out, &cg, &gg, NULL, &err) != 0) fail_msg("%s", err.message);
    assert_tables_equal(&st, &gg);
    assert_int_equal(cg.num_experts, c.num_experts);
    assert_int_equal(cg.num_experts_per_tok, c.num_experts_per_tok);
    assert_int_equal(cg.moe_intermediate_size, c.moe_intermediate_size);
    assert_int_equal(cg.norm_topk_prob, c.norm_topk_prob);
    assert_int_equal(cg.tie_word_embeddings, c.tie_word_embeddings);
    ts_gguf g;
    assert_int_equal(ts_gguf_open(out, &g, &err), 0);
    const ts_gguf_tensor_info *e = ts_gguf_find_tensor(&g, "blk.0.ffn_down_exps.weight");
    assert_non_null(e);
    assert_int_equal(e->n_dims, 3);
    assert_int_equal(e->ne[0], c.moe_intermediate_size);
    assert_int_equal(e->ne[1], c.hidden_size);
    assert_int_equal(e->ne[2], c.num_experts);
    assert_non_null(ts_gguf_find_tensor(&g, "blk.0.ffn_gate_inp.weight"));
    ts_gguf_free(&g);
    free(list);
    ts_tensor_table_free(&st);
    ts_tensor_table_free(&gg);
}

static void test_sample_roundtrip(void **state) {
    (void)state;
    char out[4096];
    ts_error err = {{0}};
    snprintf(out, sizeof out, "%s/sample.gguf", ts_test_tmpdir());
    if (write_sample(out, &err) != 0) fail_msg("%s", err.message);
    ts_gguf g;
    if (ts_gguf_open(out, &g, &err) != 0) fail_msg("%s", err.message);
    assert_int_equal(g.alignment, 64);
    assert_int_equal(g.data_offset % 64, 0);
    int64_t i;
    uint64_t u;
    double f;
    int b;
    assert_int_equal(ts_gguf_get_int(&g, "t.i8", &i, &err), 0);
    assert_int_equal(i, -100);
    assert_int_equal(ts_gguf_get_uint(&g, "t.u64", &u, &err), 0);
    assert_true(u == 18000000000000000000ull);
    assert_int_equal(ts_gguf_get_int(&g, "t.u64", &i, &err), -1); /* does not fit int64 */
    assert_int_equal(ts_gguf_get_int(&g, "t.i64", &i, &err), 0);
    assert_true(i == -9000000000000000000ll);
    assert_int_equal(ts_gguf_get_uint(&g, "t.i16", &u, &err), -1); /* negative */
    assert_int_equal(ts_gguf_get_float(&g, "t.f32", &f, &err), 0);
    assert_true((float)f == 0.1f);
    assert_int_equal(ts_gguf_get_float(&g, "t.f64", &f, &err), 0);
    assert_true(f == 2.718281828459045);
    assert_int_equal(ts_gguf_get_bool(&g, "t.bool", &b, &err), 0);
    assert_int_equal(b, 1);
    ts_gguf_value arr, e;
    assert_int_equal(ts_gguf_get_array(&g, "t.strings", TS_GGUF_STRING, &arr, &err), 0);
    ts_gguf_str views[4];
    ts_gguf_array_strings(&g, &arr, views, &err);
    assert_int_equal((int)views[1].len, 0);
    assert_memory_equal(views[2].ptr, "γλώσσα", strlen("γλώσσα"));
    assert_int_equal(ts_gguf_get_array(&g, "t.nested", TS_GGUF_ARRAY, &arr, &err), 0);
    assert_int_equal(arr.count, 2);
    assert_int_equal(ts_gguf_array_elem(&g, &arr, 1, &e, &err), 0);
    assert_int_equal(e.elem_type, TS_GGUF_U16);
    assert_int_equal(e.count, 1);
    assert_int_equal(ts_gguf_array_int(&g, &e, 0, &i, &err), 0);
    assert_int_equal(i, 3);
    assert_int_equal(ts_gguf_get_array(&g, "t.i32s", TS_GGUF_I32, &arr, &err), 0);
    assert_int_equal(ts_gguf_array_int(&g, &arr, 3, &i, &err), 0);
    assert_true(i == -2147483647 - 1);
    const ts_gguf_tensor_info *t = ts_gguf_find_tensor(&g, "t.bf16");
    assert_int_equal(t->n_dims, 3);
    assert_int_equal(t->ne[0], 4);
    assert_int_equal(t->ne[2], 2);
    for (int64_t k = 0; k < g.n_tensors; k++) assert_int_equal(g.tensors[k].offset % 64, 0);
    ts_gguf_free(&g);

    /* a failed write leaves nothing at the destination */
    ts_gguf_writer *w = ts_gguf_writer_new();
    float x[4] = {0};
    int64_t shape[1] = {4};
    assert_int_equal(ts_gguf_writer_add_tensor(w, "x", 0, 1, shape, x, sizeof x, &err), 0);
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/no/such/dir/out.gguf", ts_test_tmpdir());
    assert_int_equal(ts_gguf_writer_write(w, bad, &err), -1);
    assert_false(ts_file_exists(bad));
    /* writer argument checks */
    assert_int_equal(ts_gguf_writer_add_tensor(w, "x", 0, 1, shape, x, sizeof x, &err), -1);
    assert_non_null(strstr(err.message, "added twice"));
    assert_int_equal(ts_gguf_writer_add_tensor(w, "y", 0, 1, shape, x, 8, &err), -1);
    assert_int_equal(ts_gguf_writer_add_tensor(w, "z", 2, 1, shape, x, sizeof x, &err), -1);
    assert_non_null(strstr(err.message, "blocks"));
    uint8_t junk[5] = {9, 0, 0, 0, 0};
    assert_int_equal(ts_gguf_writer_set_encoded(w, "bad", TS_GGUF_ARRAY, junk, sizeof junk, &err), -1);
    ts_gguf_writer_free(w);
}

/* ------------------------------------------------------------------ malformed files */

typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static void put(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u32(bb *b, uint32_t v) { put(b, &v, 4); }
static void u64(bb *b, uint64_t v) { put(b, &v, 8); }
static void str(bb *b, const char *s) {
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void header(bb *b, uint32_t version, uint64_t nt, uint64_t nkv) {
    put(b, "GGUF", 4);
    u32(b, version);
    u64(b, nt);
    u64(b, nkv);
}
static void kv_u32(bb *b, const char *k, uint32_t v) {
    str(b, k);
    u32(b, TS_GGUF_U32);
    u32(b, v);
}
static void tinfo(bb *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    str(b, name);
    u32(b, nd);
    for (uint32_t i = 0; i < nd; i++) u64(b, ne[i]);
    u32(b, type);
    u64(b, off);
}
static void pad_data(bb *b, size_t data_bytes) {
    while (b->n % 32) put(b, "", 1);
    for (size_t i = 0; i < data_bytes; i++) put(b, "\x11", 1);
}

/* A valid file: two kvs, two f32 tensors of 8 values each. */
static void valid(bb *b) {
    header(b, 3, 2, 2);
    kv_u32(b, "a.count", 7);
    str(b, "a.name");
    u32(b, TS_GGUF_STRING);
    str(b, "tiny");
    uint64_t ne[2] = {4, 2};
    tinfo(b, "w", 2, ne, 0, 0);
    tinfo(b, "v", 1, ne, 0, 32);
    pad_data(b, 64);
}

static void expect_error(bb *b, const char *fragment, int line) {
    ts_gguf g;
    ts_error err = {{0}};
    int rc = ts_gguf_parse(b->p, b->n, "bad.gguf", &g, &err);
    if (rc == 0) {
        ts_gguf_free(&g);
        fail_msg("line %d: a malformed file was accepted (expected \"%s\")", line, fragment);
    }
    if (!strstr(err.message, fragment) || !strstr(err.message, "bad.gguf"))
        fail_msg("line %d: error \"%s\" lacks \"%s\"", line, err.message, fragment);
    free(b->p);
    memset(b, 0, sizeof *b);
}
#define EXPECT(frag) expect_error(&b, frag, __LINE__)

static void test_malformed_files(void **state) {
    (void)state;
    bb b = {0};
    uint64_t ne2[2] = {4, 2}, ne1[1] = {8};

    valid(&b);
    ts_gguf g;
    ts_error err = {{0}};
    assert_int_equal(ts_gguf_parse(b.p, b.n, "ok.gguf", &g, &err), 0);
    ts_gguf_free(&g);
    free(b.p);
    memset(&b, 0, sizeof b);

    put(&b, "GG", 2);
    EXPECT("too short");
    put(&b, "GGML", 4), u32(&b, 3), u64(&b, 0), u64(&b, 0);
    EXPECT("expected \"GGUF\"");
    header(&b, 1, 0, 0);
    EXPECT("version 1 is not supported");
    header(&b, 4, 0, 0);
    EXPECT("unsupported GGUF version 4");
    header(&b, 0x03000000u, 0, 0);
    EXPECT("big-endian");
    put(&b, "GGUF", 4), u32(&b, 3), put(&b, "\1\0\0", 3);
    EXPECT("tensor count");
    header(&b, 3, 1ull << 40, 0);
    EXPECT("tensor count 1099511627776 is absurd");
    header(&b, 3, 0, ~0ull);
    EXPECT("metadata count 18446744073709551615 is absurd");
    header(&b, 3, 0, 1), u64(&b, 1ull << 50), put(&b, "abcdefghijklmn", 14);
    EXPECT("string length 1125899906842624 exceeds");
    header(&b, 3, 0, 1), str(&b, ""), u32(&b, 4), u32(&b, 1);
    EXPECT("key is empty");
    header(&b, 3, 0, 1), str(&b, "k"), u32(&b, 99), u32(&b, 1), u32(&b, 1);
    EXPECT("unknown value type 99");
    header(&b, 3, 0, 1), str(&b, "k"), u32(&b, TS_GGUF_ARRAY), u32(&b, TS_GGUF_U32), u64(&b, 1ull << 60), u64(&b, 0);
    EXPECT("array of 1152921504606846976 u32 elements cannot fit");
    header(&b, 3, 0, 1), str(&b, "k"), u32(&b, TS_GGUF_ARRAY), u32(&b, 13), u64(&b, 1), u64(&b, 0);
    EXPECT("unknown array element type 13");
    header(&b, 3, 0, 1), str(&b, "k"), u32(&b, TS_GGUF_ARRAY), u32(&b, TS_GGUF_STRING), u64(&b, 2), str(&b, "x"), u64(&b, 99);
    EXPECT("string length 99 exceeds");
    header(&b, 3, 0, 1), str(&b, "k"), u32(&b, TS_GGUF_STRING), u64(&b, 40), put(&b, "short", 5);
    EXPECT("string length 40 exceeds");
    header(&b, 3, 0, 1), str(&b, "k"), u32(&b, TS_GGUF_BOOL), put(&b, "\2", 1), u64(&b, 0);
    EXPECT("bool value is 2");
    header(&b, 3, 0, 2), kv_u32(&b, "dup", 1), kv_u32(&b, "dup", 2), u64(&b, 0);
    EXPECT("\"dup\" appears twice");
    header(&b, 3, 0, 1), str(&b, "general.alignment"), u32(&b, TS_GGUF_STRING), str(&b, "32"), u64(&b, 0);
    EXPECT("expected u32");
    header(&b, 3, 0, 1), kv_u32(&b, "general.alignment", 24), u64(&b, 0);
    EXPECT("power of two");
    header(&b, 3, 0, 1), str(&b, "k"), u32(&b, TS_GGUF_U32), put(&b, "\1\0", 2);
    EXPECT("truncated");
    {
        /* arrays nested deeper than the limit */
        header(&b, 3, 0, 1);
        str(&b, "deep");
        u32(&b, TS_GGUF_ARRAY);
        for (int d = 0; d < TS_GGUF_MAX_ARRAY_DEPTH + 1; d++) u32(&b, TS_GGUF_ARRAY), u64(&b, 1);
        u32(&b, TS_GGUF_U8), u64(&b, 0);
        for (int d = 0; d < 40; d++) u64(&b, 0);
        EXPECT("nested more than");
    }
    header(&b, 3, 1, 0), tinfo(&b, "this-tensor-name-is-far-too-long-to-be-valid-in-gguf-files-really-x", 1, ne1, 0, 0), pad_data(&b, 32);
    EXPECT("more than the 64");
    header(&b, 3, 1, 0), u64(&b, 8), put(&b, "bad\0name", 8), u32(&b, 1), u64(&b, 8), u32(&b, 0), u64(&b, 0), pad_data(&b, 32);
    EXPECT("NUL byte");
    header(&b, 3, 1, 0), tinfo(&b, "t", 0, ne1, 0, 0), pad_data(&b, 32);
    EXPECT("has 0 dimensions");
    header(&b, 3, 1, 0), str(&b, "t"), u32(&b, 5), pad_data(&b, 128);
    EXPECT("has 5 dimensions");
    {
        uint64_t big[2] = {1ull << 40, 1ull << 40};
        header(&b, 3, 1, 0), tinfo(&b, "t", 2, big, 0, 0), pad_data(&b, 32);
        EXPECT("overflows 64 bits");
    }
    {
        uint64_t neg[1] = {~0ull};
        header(&b, 3, 1, 0), tinfo(&b, "t", 1, neg, 0, 0), pad_data(&b, 32);
        EXPECT("out of range");
    }
    header(&b, 3, 1, 0), tinfo(&b, "t", 1, ne1, 4, 0), pad_data(&b, 32);
    EXPECT("unknown ggml type 4");
    header(&b, 3, 1, 0), tinfo(&b, "t", 1, ne1, 1000, 0), pad_data(&b, 32);
    EXPECT("unknown ggml type 1000");
    {
        uint64_t ne48[1] = {48};
        header(&b, 3, 1, 0), tinfo(&b, "t", 1, ne48, 2, 0), pad_data(&b, 64);
        EXPECT("not a multiple of its block size 32");
    }
    header(&b, 3, 1, 0), tinfo(&b, "t", 1, ne1, 0, 3), pad_data(&b, 64);
    EXPECT("not a multiple of the alignment 32");
    header(&b, 3, 1, 0), tinfo(&b, "t", 1, ne1, 0, 1ull << 62), pad_data(&b, 64);
    EXPECT("runs past the end");
    header(&b, 3, 1, 0), tinfo(&b, "t", 2, ne2, 0, 0), pad_data(&b, 31);
    EXPECT("runs past the end");
    header(&b, 3, 2, 0), tinfo(&b, "t", 1, ne1, 0, 0), tinfo(&b, "t", 1, ne1, 0, 32), pad_data(&b, 64);
    EXPECT("\"t\" appears twice");
    header(&b, 3, 1, 0), tinfo(&b, "t", 1, ne1, 0, 0);
    EXPECT("tensor data would start");
    header(&b, 3, 1, 1), kv_u32(&b, "k", 1), str(&b, "t"), u32(&b, 2), u64(&b, 4);
    EXPECT("truncated");
    header(&b, 3, 2, 0), tinfo(&b, "t", 1, ne1, 0, 0), put(&b, "\xff\xff\xff\xff\xff\xff\xff\x0f", 8), pad_data(&b, 64);
    EXPECT("tensor 1 name");
}

/* Every prefix of a valid file shorter than its data fails cleanly; random byte flips never crash. */
static void test_truncations_and_flips(void **state) {
    (void)state;
    char path[4096];
    ts_error err = {{0}};
    snprintf(path, sizeof path, "%s/sample-trunc.gguf", ts_test_tmpdir());
    assert_int_equal(write_sample(path, &err), 0);
    size_t len;
    uint8_t *img = ts_test_read_file(path, &len);
    ts_gguf g;
    assert_int_equal(ts_gguf_parse(img, len, "s", &g, &err), 0);
    size_t data_end = 0;
    for (int64_t i = 0; i < g.n_tensors; i++) {
        size_t end = g.data_offset + g.tensors[i].offset + g.tensors[i].nbytes;
        data_end = end > data_end ? end : data_end;
    }
    ts_gguf_free(&g);
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact-size copy so ASan sees any overread */
        memcpy(copy, img, n);
        int rc = ts_gguf_parse(copy, n, "s", &g, &err);
        if (rc == 0) ts_gguf_free(&g);
        if (n < data_end) assert_int_equal(rc, -1);
        else assert_int_equal(rc, 0);
        free(copy);
    }
    uint64_t seed = 99;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, img, len);
        int flips = 1 + (int)(ts_test_rand(&seed) % 4);
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)(ts_test_rand(&seed) % len);
            copy[at] ^= (uint8_t)(1u << (ts_test_rand(&seed) % 8));
        }
        if (ts_gguf_parse(copy, len, "s", &g, &err) == 0) {
            /* whatever was accepted must be internally consistent */
            for (int64_t i = 0; i < g.n_tensors; i++)
                assert_true(g.data_offset + g.tensors[i].offset + g.tensors[i].nbytes <= len);
            ts_gguf_free(&g);
        }
        free(copy);
    }
    free(img);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--dump")) return dump_main(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--write-sample")) {
        ts_error err = {{0}};
        if (write_sample(argv[2], &err) != 0) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_shared_files),
        cmocka_unit_test(test_qwen3_bf16_matches_safetensors),
        cmocka_unit_test(test_qwen3_q8_0_is_our_reference_quantization),
        cmocka_unit_test(test_dialogpt_matches_safetensors_transposed),
        cmocka_unit_test(test_rewrite_qwen3_roundtrip),
        cmocka_unit_test(test_write_gpt2_from_safetensors_matches_converter),
        cmocka_unit_test(test_llama_permutation_roundtrip),
        cmocka_unit_test(test_qwen3moe_experts_roundtrip),
        cmocka_unit_test(test_sample_roundtrip),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_truncations_and_flips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
