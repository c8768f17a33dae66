/* Loading checkpoints: every malformed input yields an error naming the file and the problem, and
 * nothing crashes. Inputs are derived from ../shared/testdata/qwen3-small by editing its header or
 * config.json in a temporary directory. Also: the other config spellings, sharded checkpoints and
 * other stored dtypes load and compute the same logits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "backend/cpu/cpu_backend.h"
#include "format/safetensors.h"
#include "model/model.h"
#include "quant/dequantize.h"
#include "quant/float16.h"
#include "runtime/sequence.h"
#include "support/testlib.h"

typedef struct {
    json_t *header; /* parsed header of the original file */
    uint8_t *data;  /* data section */
    size_t data_len;
    char *config;   /* config.json text */
} checkpoint;

static checkpoint load_original(const char *model) {
    char dir[1024], path[1200];
    ts_test_shared_path("testdata", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s/model.safetensors", dir, model);
    size_t len = 0;
    uint8_t *raw = ts_test_read_file(path, &len);
    uint64_t hlen = 0;
    memcpy(&hlen, raw, 8);
    checkpoint c;
    json_error_t je;
    c.header = json_loadb((const char *)raw + 8, (size_t)hlen, 0, &je);
    assert_non_null(c.header);
    c.data_len = len - 8 - (size_t)hlen;
    c.data = malloc(c.data_len);
    memcpy(c.data, raw + 8 + hlen, c.data_len);
    free(raw);
    snprintf(path, sizeof path, "%s/%s/config.json", dir, model);
    c.config = ts_test_read_file(path, NULL);
    return c;
}

static void free_checkpoint(checkpoint *c) {
    json_decref(c->header);
    free(c->data);
    free(c->config);
}

static void write_safetensors(const char *path, const json_t *header, const uint8_t *data, size_t data_len) {
    char *h = json_dumps(header, JSON_COMPACT);
    uint64_t hlen = strlen(h);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(&hlen, 8, 1, f);
    fwrite(h, 1, hlen, f);
    fwrite(data, 1, data_len, f);
    fclose(f);
    free(h);
}

/* Writes dir/config.json and dir/model.safetensors into a fresh directory. */
static const char *write_model(const char *name, const char *config, const json_t *header, const uint8_t *data,
                               size_t data_len) {
    static char dir[1024];
    char path[1200];
    snprintf(dir, sizeof dir, "%s/%s", ts_test_tmpdir(), name);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/config.json", dir);
    ts_test_write_file(path, config, strlen(config));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, header, data, data_len);
    return dir;
}

/* Loads dir and expects failure with every fragment in the message. */
static void expect_load_error(const char *dir, const char *frag1, const char *frag2) {
    ts_error err = {{0}};
    ts_cpu_options co = {.threads = 1};
    ts_backend *be = ts_cpu_backend_create(&co, &err);
    ts_model *m = NULL;
    int rc = ts_model_load(dir, be, NULL, &m, &err);
    if (rc == 0) fail_msg("loading %s succeeded; expected an error containing \"%s\"", dir, frag1);
    assert_null(m);
    if (!strstr(err.message, frag1) || (frag2 && !strstr(err.message, frag2)))
        fail_msg("error \"%s\" lacks \"%s\"%s%s", err.message, frag1, frag2 ? " / " : "", frag2 ? frag2 : "");
    be->ops->destroy(be);
}

static void test_truncated_file(void **state) {
    (void)state;
    checkpoint c = load_original("qwen3-small");
    const char *dir = write_model("truncated", c.config, c.header, c.data, c.data_len / 2);
    expect_load_error(dir, "model.safetensors", "out of bounds");
    /* a file shorter than its own header */
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    uint64_t hlen = 1000;
    ts_test_write_file(path, &hlen, 8);
    expect_load_error(dir, "model.safetensors", "truncated");
    ts_test_write_file(path, "abc", 3);
    expect_load_error(dir, "model.safetensors", "truncated");
    free_checkpoint(&c);
}

static void test_bad_header_json(void **state) {
    (void)state;
    checkpoint c = load_original("qwen3-small");
    const char *dir = write_model("badjson", c.config, c.header, c.data, c.data_len);
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *bad = "{\"a\": [1, 2";
    uint64_t hlen = strlen(bad);
    uint8_t buf[64];
    memcpy(buf, &hlen, 8);
    memcpy(buf + 8, bad, hlen);
    ts_test_write_file(path, buf, 8 + hlen);
    expect_load_error(dir, "model.safetensors", "bad header JSON");
    /* valid JSON, wrong structure */
    const char *notobj = "[1,2,3]";
    hlen = strlen(notobj);
    memcpy(buf, &hlen, 8);
    memcpy(buf + 8, notobj, hlen);
    ts_test_write_file(path, buf, 8 + hlen);
    expect_load_error(dir, "model.safetensors", "not a JSON object");
    /* an absurd header length is refused before any allocation */
    hlen = (uint64_t)1 << 62;
    memcpy(buf, &hlen, 8);
    ts_test_write_file(path, buf, 16);
    expect_load_error(dir, "model.safetensors", "header length");
    free_checkpoint(&c);
}

static void test_offsets_out_of_bounds(void **state) {
    (void)state;
    checkpoint c = load_original("qwen3-small");
    json_t *e = json_object_get(c.header, "model.norm.weight");
    json_t *off = json_object_get(e, "data_offsets");
    json_array_set_new(off, 1, json_integer((json_int_t)c.data_len + 4096));
    const char *dir = write_model("oob", c.config, c.header, c.data, c.data_len);
    expect_load_error(dir, "model.norm.weight", "out of bounds");
    /* inverted offsets */
    json_array_set_new(off, 0, json_integer(100));
    json_array_set_new(off, 1, json_integer(50));
    dir = write_model("oob2", c.config, c.header, c.data, c.data_len);
    expect_load_error(dir, "model.norm.weight", "out of bounds");
    free_checkpoint(&c);
}

static void test_size_disagrees_with_shape(void **state) {
    (void)state;
    checkpoint c = load_original("qwen3-small");
    json_t *e = json_object_get(c.header, "model.norm.weight");
    json_array_set_new(json_object_get(e, "shape"), 0, json_integer(129));
    const char *dir = write_model("size", c.config, c.header, c.data, c.data_len);
    expect_load_error(dir, "model.norm.weight", "expected 258 bytes");
    free_checkpoint(&c);
}

static void test_missing_tensor(void **state) {
    (void)state;
    checkpoint c = load_original("qwen3-small");
    json_object_del(c.header, "model.layers.2.self_attn.k_proj.weight");
    const char *dir = write_model("missing", c.config, c.header, c.data, c.data_len);
    expect_load_error(dir, "missing tensor \"model.layers.2.self_attn.k_proj.weight\"", "expected shape [64, 128]");
    free_checkpoint(&c);
}

static void test_shape_mismatch(void **state) {
    (void)state;
    checkpoint c = load_original("qwen3-small");
    char *cfg = c.config;
    /* 8 heads of 32 -> 4 heads: q_proj no longer matches */
    char *p = strstr(cfg, "\"num_attention_heads\": 8");
    assert_non_null(p);
    memcpy(p, "\"num_attention_heads\": 4", strlen("\"num_attention_heads\": 4"));
    const char *dir = write_model("shape", cfg, c.header, c.data, c.data_len);
    expect_load_error(dir, "\"model.layers.0.self_attn.q_proj.weight\" has shape [256, 128]",
                      "configuration implies [128, 128]");
    free_checkpoint(&c);
}

static void test_unknown_architecture(void **state) {
    (void)state;
    checkpoint c = load_original("qwen3-small");
    char *p = strstr(c.config, "\"model_type\": \"qwen3\"");
    assert_non_null(p);
    memcpy(p, "\"model_type\": \"mamba\"", strlen("\"model_type\": \"mamba\""));
    const char *dir = write_model("arch", c.config, c.header, c.data, c.data_len);
    expect_load_error(dir, "config.json", "unknown architecture \"mamba\"");
    free_checkpoint(&c);
}

static void test_unsupported_dtype(void **state) {
    (void)state;
    checkpoint c = load_original("qwen3-small");
    /* The same bytes declared as int16: a real dtype, but not one weights can have. */
    json_t *e = json_object_get(c.header, "model.layers.1.mlp.up_proj.weight");
    json_object_set_new(e, "dtype", json_string("I16"));
    const char *dir = write_model("dtype", c.config, c.header, c.data, c.data_len);
    expect_load_error(dir, "model.layers.1.mlp.up_proj.weight", "type I16, which tessera cannot compute with");
    json_object_set_new(e, "dtype", json_string("Q9"));
    dir = write_model("dtype2", c.config, c.header, c.data, c.data_len);
    expect_load_error(dir, "model.layers.1.mlp.up_proj.weight", "unknown dtype \"Q9\"");
    free_checkpoint(&c);
}

static void test_bad_config(void **state) {
    (void)state;
    checkpoint c = load_original("qwen3-small");
    const char *dir = write_model("cfg", "{\"model_type\": \"qwen3\", ", c.header, c.data, c.data_len);
    expect_load_error(dir, "config.json:1:", "invalid JSON");
    dir = write_model("cfg2", "{\"model_type\": \"qwen3\", \"vocab_size\": 2048}", c.header, c.data, c.data_len);
    expect_load_error(dir, "config.json", "required key \"hidden_size\" is missing");
    dir = write_model("cfg3", "{\"model_type\": \"qwen3\", \"vocab_size\": \"many\"}", c.header, c.data, c.data_len);
    expect_load_error(dir, "config.json", "\"vocab_size\" must be an integer");
    free_checkpoint(&c);
}

static void test_no_model_files(void **state) {
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/empty", ts_test_tmpdir());
    mkdir(dir, 0755);
    expect_load_error(dir, "empty", "no config.json");
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    checkpoint c = load_original("qwen3-small");
    ts_test_write_file(path, c.config, strlen(c.config));
    expect_load_error(dir, "empty", "no model.safetensors");
    expect_load_error("/nonexistent/model", "/nonexistent/model", "no such file");
    free_checkpoint(&c);
}

/* ----- the same model in other spellings, shards and dtypes computes the same logits ----- */

static float *last_logits(const char *dir, const int32_t *ids, int n) {
    ts_error err = {{0}};
    ts_cpu_options co = {.threads = 2};
    ts_backend *be = ts_cpu_backend_create(&co, &err);
    ts_model *m = NULL;
    if (ts_model_load(dir, be, NULL, &m, &err) != 0) fail_msg("%s: %s", dir, err.message);
    float *logits = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    ts_kv_cache cache;
    ts_kv_seq seq;
    ts_kv_seq_init(&seq);
    assert_int_equal(ts_kv_cache_init_for(&cache, m, n, 1, &err), 0);
    if (ts_seq_forward(m, &cache, &seq, ids, n, 0, logits, &err) != 0) fail_msg("%s", err.message);
    ts_kv_seq_release(&cache, &seq);
    ts_kv_cache_destroy(&cache);
    ts_model_free(m);
    be->ops->destroy(be);
    return logits;
}

/* Rewrites every BF16 tensor of the checkpoint as F32 (exact) or F16, into one file or two shards. */
static void convert_checkpoint(const checkpoint *c, const char *dir, const char *dtype, int shards) {
    json_t *hdr[2] = {json_object(), json_object()};
    json_t *index = json_object();
    uint8_t *out[2] = {malloc(c->data_len * 2 + 16), malloc(c->data_len * 2 + 16)};
    size_t used[2] = {0, 0};
    const char *key;
    json_t *e;
    int i = 0;
    json_object_foreach(c->header, key, e) {
        if (!strcmp(key, "__metadata__")) continue;
        int s = shards > 1 ? (i++ % 2) : 0;
        json_t *off = json_object_get(e, "data_offsets");
        size_t b = (size_t)json_integer_value(json_array_get(off, 0)), end = (size_t)json_integer_value(json_array_get(off, 1));
        size_t count = (end - b) / 2;
        const uint16_t *src = (const uint16_t *)(c->data + b);
        size_t start = used[s];
        for (size_t k = 0; k < count; k++) {
            float f = ts_bf16_to_f32(src[k]);
            if (!strcmp(dtype, "F32")) {
                memcpy(out[s] + used[s], &f, 4);
                used[s] += 4;
            } else {
                uint16_t h = ts_f32_to_f16(f);
                memcpy(out[s] + used[s], &h, 2);
                used[s] += 2;
            }
        }
        json_t *ne = json_object();
        json_object_set_new(ne, "dtype", json_string(dtype));
        json_object_set(ne, "shape", json_object_get(e, "shape"));
        json_object_set_new(ne, "data_offsets", json_pack("[I, I]", (json_int_t)start, (json_int_t)used[s]));
        json_object_set_new(hdr[s], key, ne);
        char shard_name[64];
        snprintf(shard_name, sizeof shard_name, "model-%05d-of-%05d.safetensors", s + 1, shards);
        json_object_set_new(index, key, json_string(shard_name));
    }
    mkdir(dir, 0755);
    char path[1200];
    if (shards == 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        write_safetensors(path, hdr[0], out[0], used[0]);
    } else {
        for (int s = 0; s < 2; s++) {
            snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, shards);
            write_safetensors(path, hdr[s], out[s], used[s]);
        }
        json_t *idx = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)(used[0] + used[1]),
                                "weight_map", index);
        index = NULL;
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        json_dump_file(idx, path, JSON_INDENT(2));
        json_decref(idx);
    }
    json_decref(index);
    json_decref(hdr[0]);
    json_decref(hdr[1]);
    free(out[0]);
    free(out[1]);
}

static void check_variant(const char *model, const char *variant, const char *dtype, int shards, const char *config,
                          double tol) {
    checkpoint c = load_original(model);
    char dir[1024], ref_dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", ts_test_tmpdir(), variant);
    convert_checkpoint(&c, dir, dtype, shards);
    snprintf(path, sizeof path, "%s/config.json", dir);
    ts_test_write_file(path, config ? config : c.config, strlen(config ? config : c.config));
    ts_test_shared_path("testdata", ref_dir, sizeof ref_dir);
    strncat(ref_dir, "/", sizeof ref_dir - strlen(ref_dir) - 1);
    strncat(ref_dir, model, sizeof ref_dir - strlen(ref_dir) - 1);
    int32_t ids[] = {5, 17, 300, 1023, 42, 7, 99, 1500};
    float *a = last_logits(ref_dir, ids, 8), *b = last_logits(dir, ids, 8);
    double rel = ts_test_rel_l2(b, a, 2048);
    if (rel > tol) fail_msg("%s: relative difference %.3g > %g", variant, rel, tol);
    free(a);
    free(b);
    free_checkpoint(&c);
}

static void test_sharded_f32(void **state) {
    (void)state;
    check_variant("qwen3-small", "sharded-f32", "F32", 2, NULL, 1e-6); /* bf16 -> f32 is exact */
}

static void test_f16(void **state) {
    (void)state;
    check_variant("qwen2-small", "f16", "F16", 1, NULL, 1e-3);
}

static void test_classic_spelling(void **state) {
    (void)state;
    /* released-checkpoint spelling: rope_theta and torch_dtype at top level, num_experts */
    const char *cfg =
        "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"model_type\": \"qwen3_moe\", \"torch_dtype\": \"bfloat16\","
        "\"hidden_size\": 128, \"intermediate_size\": 256, \"moe_intermediate_size\": 64, \"num_attention_heads\": 4,"
        "\"num_key_value_heads\": 2, \"head_dim\": 32, \"num_hidden_layers\": 3, \"num_experts\": 16,"
        "\"num_experts_per_tok\": 4, \"norm_topk_prob\": true, \"decoder_sparse_step\": 1, \"mlp_only_layers\": [],"
        "\"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"rope_scaling\": null, \"max_position_embeddings\": 4096,"
        "\"tie_word_embeddings\": false, \"vocab_size\": 2048, \"use_sliding_window\": false}";
    check_variant("qwen3moe-small", "classic", "F32", 1, cfg, 1e-6);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_file),     cmocka_unit_test(test_bad_header_json),
        cmocka_unit_test(test_offsets_out_of_bounds), cmocka_unit_test(test_size_disagrees_with_shape),
        cmocka_unit_test(test_missing_tensor),     cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_unknown_architecture), cmocka_unit_test(test_unsupported_dtype),
        cmocka_unit_test(test_bad_config),         cmocka_unit_test(test_no_model_files),
        cmocka_unit_test(test_sharded_f32),        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_classic_spelling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
