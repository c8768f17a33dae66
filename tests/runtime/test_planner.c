/* Memory planner figures for Qwen3-0.6B, Qwen3-8B, Qwen3-30B-A3B and Qwen3-235B-A22B at bf16, int8 and
 * int4, against a hand computation written out here: parameter counts per tensor from the fields of
 * ../shared/configs/<model>.json (read with jansson, not through tessera's config parser), times the
 * storage of each block layout:
 *     bf16   2 bytes per weight                        (16 bits)
 *     f16    2 bytes per weight                        (16 bits)
 *     f32    4 bytes per weight                        (norms, always)
 *     q8_0   34 bytes per 32 weights  (f16 scale + 32 x int8)            = 8.5 bits
 *     q4_k   144 bytes per 256 weights (2 f16 + 12 scale bytes + 128)    = 4.5 bits
 * and the quantization policy: int8 stores every matrix as q8_0; int4 stores the router as f16 and every
 * other matrix, the embedding and output head included, as q4_k (every Qwen3 row length is a multiple
 * of 256, so the iq4_nl fallback of src/quant/scheme.c never applies here). Also: KV cache bytes, the refusal with
 * its numbers, what would fit, and the GPU + CPU split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "format/model_config.h"
#include "runtime/planner.h"
#include "support/testlib.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

typedef struct {
    long long vocab, hidden, layers, heads, kv_heads, head_dim, intermediate, tied, experts, moe_intermediate;
} fields;

static long long get(json_t *root, const char *key, long long fallback) {
    json_t *v = json_object_get(root, key);
    if (json_is_boolean(v)) return json_is_true(v);
    return json_is_integer(v) ? json_integer_value(v) : fallback;
}

static fields read_fields(const char *name) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "configs/%s.json", name);
    ts_test_shared_path(rel, path, sizeof path);
    json_t *root = ts_test_load_json(path);
    fields f = {
        .vocab = get(root, "vocab_size", -1),
        .hidden = get(root, "hidden_size", -1),
        .layers = get(root, "num_hidden_layers", -1),
        .heads = get(root, "num_attention_heads", -1),
        .kv_heads = get(root, "num_key_value_heads", -1),
        .head_dim = get(root, "head_dim", -1),
        .intermediate = get(root, "intermediate_size", -1),
        .tied = get(root, "tie_word_embeddings", 0),
        .experts = get(root, "num_experts", 0),
        .moe_intermediate = get(root, "moe_intermediate_size", 0),
    };
    json_decref(root);
    return f;
}

/* Bytes per weight as a fraction num/den for each storage type. */
typedef struct {
    long long num, den;
} per_weight;

static const per_weight BF16 = {2, 1}, F16 = {2, 1}, F32 = {4, 1}, Q8_0 = {34, 32}, Q4_K = {144, 256};

typedef enum { BF16_SCHEME, INT8_SCHEME, INT4_SCHEME } scheme;

typedef struct {
    long long params;
    long long bytes;
} tally;

static void count(tally *t, long long params, per_weight w) {
    assert_int_equal((params * w.num) % w.den, 0); /* every row fills whole blocks */
    t->params += params;
    t->bytes += params * w.num / w.den;
}

/* The hand computation, tensor by tensor. */
static tally hand_weights(const fields *f, scheme s) {
    const per_weight embed = s == BF16_SCHEME ? BF16 : s == INT8_SCHEME ? Q8_0 : Q4_K;
    const per_weight matrix = s == BF16_SCHEME ? BF16 : s == INT8_SCHEME ? Q8_0 : Q4_K;
    const per_weight router = s == BF16_SCHEME ? BF16 : s == INT8_SCHEME ? Q8_0 : F16;
    tally t = {0, 0};
    count(&t, f->vocab * f->hidden, embed);               /* model.embed_tokens */
    if (!f->tied) count(&t, f->vocab * f->hidden, embed); /* lm_head */
    count(&t, f->hidden, F32);                            /* model.norm */
    for (long long l = 0; l < f->layers; l++) {
        count(&t, f->heads * f->head_dim * f->hidden, matrix);    /* q_proj [heads*hd, hidden] */
        count(&t, f->kv_heads * f->head_dim * f->hidden, matrix); /* k_proj */
        count(&t, f->kv_heads * f->head_dim * f->hidden, matrix); /* v_proj */
        count(&t, f->hidden * f->heads * f->head_dim, matrix);    /* o_proj [hidden, heads*hd] */
        count(&t, f->head_dim, F32);                              /* q_norm */
        count(&t, f->head_dim, F32);                              /* k_norm */
        count(&t, f->hidden, F32);                                /* input_layernorm */
        count(&t, f->hidden, F32);                                /* post_attention_layernorm */
        if (f->experts > 0) {
            count(&t, f->experts * f->hidden, router); /* mlp.gate [experts, hidden] */
            for (long long e = 0; e < f->experts; e++) {
                count(&t, f->moe_intermediate * f->hidden, matrix); /* experts.e.gate_proj */
                count(&t, f->moe_intermediate * f->hidden, matrix); /* experts.e.up_proj */
                count(&t, f->hidden * f->moe_intermediate, matrix); /* experts.e.down_proj */
            }
        } else {
            count(&t, f->intermediate * f->hidden, matrix); /* gate_proj */
            count(&t, f->intermediate * f->hidden, matrix); /* up_proj */
            count(&t, f->hidden * f->intermediate, matrix); /* down_proj */
        }
    }
    return t;
}

static ts_model_config load_config(const char *name) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "configs/%s.json", name);
    ts_test_shared_path(rel, path, sizeof path);
    ts_model_config c;
    ts_error err;
    if (ts_model_config_load(path, &c, &err) != 0) fail_msg("%s", err.message);
    return c;
}

static ts_quant_scheme quant(scheme s) {
    ts_quant_scheme q = {.kind = s == BF16_SCHEME ? TS_QUANT_BF16 : s == INT8_SCHEME ? TS_QUANT_INT8 : TS_QUANT_INT4};
    return q;
}

static ts_plan *plan_for(const ts_model_config *c, scheme s, int64_t ctx, int batch, ts_device_kind device,
                         uint64_t available, uint64_t host) {
    ts_plan *p = calloc(1, sizeof *p);
    ts_plan_request req = {.config = c,
                           .quant = quant(s),
                           .context_length = ctx,
                           .batch = batch,
                           .kv_elem_bytes = 2,
                           .device = device,
                           .device_bytes = available,
                           .host_bytes = host,
                           .reserve_bytes = -1};
    ts_error err;
    if (ts_plan_compute(&req, p, &err) != 0) fail_msg("%s", err.message);
    return p;
}

static void check_model(const char *name, long long published_params) {
    fields f = read_fields(name);
    ts_model_config c = load_config(name);
    static const scheme schemes[] = {BF16_SCHEME, INT8_SCHEME, INT4_SCHEME};
    static const char *const labels[] = {"bf16", "int8", "int4"};
    for (int i = 0; i < 3; i++) {
        tally hand = hand_weights(&f, schemes[i]);
        /* the parameter count of the checkpoint as published, tied embeddings counted once */
        assert_int_equal(hand.params, published_params);
        ts_plan *p = plan_for(&c, schemes[i], 4096, 2, TS_DEVICE_CPU, 1ull << 40, 0);
        if ((long long)p->weight_bytes != hand.bytes)
            fail_msg("%s at %s: planner %llu bytes, hand computation %lld", name, labels[i],
                     (unsigned long long)p->weight_bytes, hand.bytes);
        assert_int_equal(p->weight_params, hand.params);
        /* the alternatives row agrees with the main figure */
        assert_int_equal(p->alternatives[i].weight_bytes, hand.bytes);
        /* KV cache: 2 (K, V) x layers x kv_heads x head_dim x 2 bytes, for 4096 tokens x 2 sequences */
        long long kv_token = 2 * f.layers * f.kv_heads * f.head_dim * 2;
        assert_int_equal(p->kv_bytes_per_token, kv_token);
        assert_int_equal(p->kv_bytes, kv_token * 4096 * 2);
        assert_int_equal(p->total_bytes,
                         p->weight_bytes + p->kv_bytes + p->activation_bytes + p->scratch_bytes + p->reserve_bytes);
        assert_int_equal(p->reserve_bytes, 256ll << 20);
        fprintf(stderr, "  %-16s %-5s %16lld bytes = %8.2f GiB  (%.3f bits per parameter)\n", name, labels[i],
                hand.bytes, hand.bytes / GIB, 8.0 * (double)hand.bytes / (double)hand.params);
        free(p);
    }
}

static void test_qwen3_0_6b(void **state) {
    (void)state;
    check_model("qwen3-0.6b", 596049920ll);
}

static void test_qwen3_8b(void **state) {
    (void)state;
    check_model("qwen3-8b", 8190735360ll);
}

static void test_qwen3_30b_a3b(void **state) {
    (void)state;
    check_model("qwen3-30b-a3b", 30532122624ll);
}

static void test_qwen3_235b_a22b(void **state) {
    (void)state;
    check_model("qwen3-235b-a22b", 235093634560ll);
}

/* The figures the issue quotes: about 438 GiB at bf16 and 124 GiB at int4. */
static void test_235b_headline_figures(void **state) {
    (void)state;
    fields f = read_fields("qwen3-235b-a22b");
    double bf16 = hand_weights(&f, BF16_SCHEME).bytes / GIB, int4 = hand_weights(&f, INT4_SCHEME).bytes / GIB;
    assert_true(bf16 > 437.5 && bf16 < 438.5);
    assert_true(int4 > 123.0 && int4 < 124.0);
}

/* Activations and scratch follow the formula stated in planner.h; checked once by hand for 8B. */
static void test_activation_formula(void **state) {
    (void)state;
    fields f = read_fields("qwen3-8b");
    ts_model_config c = load_config("qwen3-8b");
    ts_plan *p = plan_for(&c, BF16_SCHEME, 8192, 4, TS_DEVICE_CPU, 1ull << 40, 0);
    long long t = 512; /* min(512, context), at least the 4 sequences */
    long long floats = 3 * t * f.hidden + t * (f.heads + 2 * f.kv_heads) * f.head_dim + t * f.heads * f.head_dim +
                       t * 2 * f.intermediate + 4 * f.vocab;
    assert_int_equal(p->activation_bytes, floats * 4);
    /* one head's scores over the step, and q8_k copies (292 bytes per 256) of the widest activation */
    long long scratch = t * 8192 * 4 + t * (f.intermediate / 256) * 292;
    assert_int_equal(p->scratch_bytes, scratch);
    free(p);
}

static void test_refusal_with_numbers(void **state) {
    (void)state;
    ts_model_config c = load_config("qwen3-235b-a22b");
    ts_plan *p = plan_for(&c, BF16_SCHEME, 40960, 1, TS_DEVICE_CPU, 23ull << 30, 0);
    assert_false(p->fits);
    assert_int_equal(p->max_batch, 0);
    assert_int_equal(p->max_context, 0);
    for (int i = 0; i < 3; i++) assert_false(p->alternatives[i].fits);
    char buf[2048];
    ts_plan_refusal(p, buf, sizeof buf);
    assert_string_equal(buf,
                        "the model needs 445.7 GiB (weights 437.9 GiB at bf16, KV cache 7.3 GiB for 40960 tokens x "
                        "1 sequence, activations and scratch 191.4 MiB, reserve 256.0 MiB) but 23.0 GiB is "
                        "available on the CPU; nothing tried fits: even int4 needs 131.0 GiB");
    free(p);

    /* 150 GiB: int4 fits, bf16 and int8 do not */
    p = plan_for(&c, BF16_SCHEME, 40960, 1, TS_DEVICE_CPU, 150ull << 30, 0);
    assert_false(p->alternatives[0].fits);
    assert_false(p->alternatives[1].fits);
    assert_true(p->alternatives[2].fits);
    ts_plan_refusal(p, buf, sizeof buf);
    assert_non_null(strstr(buf, "but 150.0 GiB is available on the CPU; what would fit: int4 would fit (131.0 GiB)"));
    free(p);
}

static void test_what_would_fit_fewer_sequences_or_context(void **state) {
    (void)state;
    ts_model_config c = load_config("qwen3-8b");
    const uint64_t avail = 24ull << 30;
    ts_plan *p = plan_for(&c, BF16_SCHEME, 40960, 8, TS_DEVICE_CPU, avail, 0);
    assert_false(p->fits);
    int b = p->max_batch;
    int64_t ctx = p->max_context;
    assert_true(b >= 1 && b < 8);
    assert_true(ctx >= 1 && ctx < 40960);
    free(p);
    /* the boundaries really are boundaries */
    p = plan_for(&c, BF16_SCHEME, 40960, b, TS_DEVICE_CPU, avail, 0);
    assert_true(p->fits);
    free(p);
    p = plan_for(&c, BF16_SCHEME, 40960, b + 1, TS_DEVICE_CPU, avail, 0);
    assert_false(p->fits);
    free(p);
    p = plan_for(&c, BF16_SCHEME, ctx, 8, TS_DEVICE_CPU, avail, 0);
    assert_true(p->fits);
    free(p);
    p = plan_for(&c, BF16_SCHEME, ctx + 1, 8, TS_DEVICE_CPU, avail, 0);
    assert_false(p->fits);
    char buf[2048];
    ts_plan_refusal(p, buf, sizeof buf);
    assert_non_null(strstr(buf, "what would fit: int8 would fit"));
    free(p);
}

/* With a GPU: the last N layers on the GPU, the rest on the CPU. Checked against per-layer bytes by
 * hand (every layer of this model is the same): the GPU holds Q4_K as 32-value groups of codes with their scale
 * and minimum codes and the super-block's d and dmin (148 bytes a 256), the CPU as the file has it (144). */
static void test_gpu_cpu_split(void **state) {
    (void)state;
    fields f = read_fields("qwen3-235b-a22b");
    ts_model_config c = load_config("qwen3-235b-a22b");
    const uint64_t gpu = 80ull << 30, host = 512ull << 30;
    ts_plan *p = plan_for(&c, INT4_SCHEME, 40960, 1, TS_DEVICE_CUDA, gpu, host);
    assert_false(p->fits);
    assert_int_equal(p->reserve_bytes, 1ll << 30);
    assert_int_equal(p->split_quant.kind, TS_QUANT_INT4);
    int n = p->split_gpu_layers;
    assert_true(n > 0 && n < f.layers);

    /* per layer at int4: attention and experts q4_k, router f16, norms f32; plus its KV cache */
    long long q4k[2][2] = {{144, 256}, {148, 256}}; /* bytes a weight as a fraction: on the CPU, on the GPU */
    long long layer_on[2], head_on[2];
    for (int g = 0; g < 2; g++) {
        long long attn = (f.heads * f.head_dim * f.hidden * 2 + f.kv_heads * f.head_dim * f.hidden * 2) * q4k[g][0] / q4k[g][1];
        long long experts = f.experts * 3 * f.moe_intermediate * f.hidden * q4k[g][0] / q4k[g][1];
        layer_on[g] = attn + experts + f.experts * f.hidden * 2 + (2 * f.head_dim + 2 * f.hidden) * 4;
        head_on[g] = f.vocab * f.hidden * q4k[g][0] / q4k[g][1];
    }
    long long kv_layer = 2 * f.kv_heads * f.head_dim * 2 * 40960;
    long long head = head_on[1] + f.hidden * 4; /* output head and final norm */
    long long work = (long long)(p->activation_bytes + p->scratch_bytes);
    long long on_gpu = head + n * (layer_on[1] + kv_layer) + work + (1ll << 30);
    long long on_gpu_one_more = on_gpu + layer_on[1] + kv_layer;
    assert_int_equal(p->split_gpu_bytes, on_gpu);
    assert_true(on_gpu <= (long long)gpu);
    assert_true(on_gpu_one_more > (long long)gpu);
    long long on_cpu = head_on[0] + (f.layers - n) * (layer_on[0] + kv_layer) + work + (256ll << 20);
    assert_int_equal(p->split_cpu_bytes, on_cpu);

    char buf[2048], want[256];
    ts_plan_refusal(p, buf, sizeof buf);
    snprintf(want, sizeof want, "what would fit: int4 with %d of 94 layers on the GPU and the rest on the CPU", n);
    assert_non_null(strstr(buf, want));
    fprintf(stderr, "  235B int4 on an 80 GiB GPU: %d layers on the GPU (%.1f GiB), %lld on the CPU (%.1f GiB)\n", n,
            on_gpu / GIB, f.layers - n, on_cpu / GIB);
    free(p);
}

/* --gpu-layers N asked for explicitly: the plan's total is the GPU's side of that split (the same bytes as
 * the suggestion for N), the CPU's side is checked against host memory, and a refusal names both. */
static void test_requested_gpu_layers(void **state) {
    (void)state;
    ts_model_config c = load_config("qwen3-235b-a22b");
    const uint64_t gpu = 80ull << 30, host = 512ull << 30;
    ts_plan *suggested = plan_for(&c, INT4_SCHEME, 40960, 1, TS_DEVICE_CUDA, gpu, host);
    int n = suggested->split_gpu_layers;
    assert_true(n > 1);
    ts_plan *p = calloc(1, sizeof *p);
    ts_plan_request req = {.config = &c, .quant = quant(INT4_SCHEME), .context_length = 40960, .batch = 1,
                           .kv_elem_bytes = 2, .device = TS_DEVICE_CUDA, .device_bytes = gpu, .host_bytes = host,
                           .reserve_bytes = -1, .gpu_layers = n};
    ts_error err;
    if (ts_plan_compute(&req, p, &err) != 0) fail_msg("%s", err.message);
    assert_true(p->fits);
    assert_true(p->host_side_fits);
    assert_int_equal(p->total_bytes, suggested->split_gpu_bytes);
    assert_int_equal(p->host_side_bytes, suggested->split_cpu_bytes);
    char *text = ts_plan_format_text(p);
    char want[128];
    snprintf(want, sizeof want, "the last %d of 94 layers, their KV cache and the output head on the GPU", n);
    assert_non_null(strstr(text, want));
    free(text);

    /* one layer more does not fit the GPU */
    req.gpu_layers = n + 1;
    if (ts_plan_compute(&req, p, &err) != 0) fail_msg("%s", err.message);
    assert_false(p->fits);
    assert_true(p->host_side_fits);
    char buf[2048];
    ts_plan_refusal(p, buf, sizeof buf);
    snprintf(want, sizeof want, "with the last %d of 94 layers on the GPU, the GPU side needs", n + 1);
    assert_non_null(strstr(buf, want));

    /* the CPU's side must fit the host too */
    req.gpu_layers = n;
    req.host_bytes = 8ull << 30;
    if (ts_plan_compute(&req, p, &err) != 0) fail_msg("%s", err.message);
    assert_false(p->fits);
    assert_false(p->host_side_fits);

    /* every layer (or more) on the GPU is the plain plan; a negative count is refused */
    req.host_bytes = host;
    req.gpu_layers = 94;
    if (ts_plan_compute(&req, p, &err) != 0) fail_msg("%s", err.message);
    assert_int_equal(p->req.gpu_layers, 0);
    assert_int_equal(p->total_bytes, suggested->total_bytes);
    req.gpu_layers = -2;
    assert_int_equal(ts_plan_compute(&req, p, &err), -1);
    assert_non_null(strstr(err.message, "--gpu-layers"));
    free(p);
    free(suggested);
}

static void test_text_and_json(void **state) {
    (void)state;
    ts_model_config c = load_config("qwen3-30b-a3b");
    ts_plan *p = plan_for(&c, INT4_SCHEME, 32768, 4, TS_DEVICE_CPU, 64ull << 30, 0);
    char *text = ts_plan_format_text(p);
    assert_non_null(strstr(text, "experts gate/up/down     q4_k      18432"));
    assert_non_null(strstr(text, "router                   f16          48"));
    assert_non_null(strstr(text, "token embedding          q4_k          1          311,164,928"));
    free(text);
    json_t *j = ts_plan_to_json(p);
    json_t *bytes = json_object_get(j, "bytes");
    assert_int_equal(json_integer_value(json_object_get(bytes, "weights")), (json_int_t)p->weight_bytes);
    assert_int_equal(json_integer_value(json_object_get(bytes, "total")), (json_int_t)p->total_bytes);
    assert_string_equal(json_string_value(json_object_get(j, "quantization")), "int4");
    assert_true(json_is_true(json_object_get(j, "fits")));
    assert_int_equal(json_array_size(json_object_get(j, "weights")), p->num_rows);
    json_decref(j);
    free(p);
}

/* The tensor walk of every architecture against the checkpoints themselves: the parameters the
 * planner counts equal the elements stored in model.safetensors (read from its JSON header). */
static long long safetensors_numel(const char *model) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "testdata/%s/model.safetensors", model);
    ts_test_shared_path(rel, path, sizeof path);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint64_t hlen = 0;
    assert_int_equal(fread(&hlen, 1, 8, f), 8);
    char *header = malloc(hlen + 1);
    assert_int_equal(fread(header, 1, hlen, f), hlen);
    fclose(f);
    json_error_t je;
    json_t *root = json_loadb(header, hlen, 0, &je);
    free(header);
    assert_non_null(root);
    long long total = 0;
    const char *key;
    json_t *t;
    json_object_foreach(root, key, t) {
        if (!strcmp(key, "__metadata__")) continue;
        long long n = 1;
        json_t *shape = json_object_get(t, "shape");
        for (size_t i = 0; i < json_array_size(shape); i++) n *= json_integer_value(json_array_get(shape, i));
        total += n;
    }
    json_decref(root);
    return total;
}

static void test_tensor_walk_matches_checkpoints(void **state) {
    (void)state;
    static const char *const models[] = {"qwen3-small", "qwen2-small", "qwen3moe-small", "dialogpt-tiny"};
    for (int i = 0; i < 4; i++) {
        char rel[256], path[1024];
        snprintf(rel, sizeof rel, "testdata/%s/config.json", models[i]);
        ts_test_shared_path(rel, path, sizeof path);
        ts_model_config c;
        ts_error err;
        if (ts_model_config_load(path, &c, &err) != 0) fail_msg("%s", err.message);
        ts_quant_scheme none = {.kind = TS_QUANT_NONE};
        uint64_t bytes;
        int64_t params;
        assert_int_equal(ts_plan_weight_bytes(&c, &none, &bytes, &params, &err), 0);
        long long stored = safetensors_numel(models[i]);
        if (params != stored)
            fail_msg("%s: planner counts %lld parameters, the checkpoint stores %lld", models[i], (long long)params,
                     stored);
    }
}

/* GPT-2 small's well-known count, by hand from DialoGPT-small's config (n_embd 768, 12 layers, 1024
 * positions, vocabulary 50257): embeddings, per layer c_attn/c_proj/c_fc/c_proj with biases and two
 * LayerNorms, the final LayerNorm. */
static void test_gpt2_parameter_count(void **state) {
    (void)state;
    ts_model_config c = load_config("dialogpt-small");
    const long long d = 768, v = 50257, pos = 1024, layers = 12;
    long long per_layer = (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * (2 * d);
    long long hand = v * d + pos * d + layers * per_layer + 2 * d;
    assert_int_equal(hand, 124439808ll);
    ts_quant_scheme none = {.kind = TS_QUANT_NONE};
    uint64_t bytes;
    int64_t params;
    ts_error err;
    assert_int_equal(ts_plan_weight_bytes(&c, &none, &bytes, &params, &err), 0);
    assert_int_equal(params, hand);
}

static void test_incomplete_config_is_refused(void **state) {
    (void)state;
    ts_model_config c;
    memset(&c, 0, sizeof c);
    ts_plan_request req = {.config = &c};
    ts_plan p;
    ts_error err;
    assert_int_equal(ts_plan_compute(&req, &p, &err), -1);
    assert_string_equal(err.message,
                        "planner: the model configuration is incomplete (layers, hidden size, heads, vocabulary)");
}

/* Bytes of a row as each device keeps it: the file's on the CPU; on a CUDA device Q4_K with two code bytes a
 * group and d, dmin once per 256, IQ4_XS with an int8 sub-scale a group and its d once per 256, the rest as in
 * the file (test_cuda_ops checks these against what the module allocates). */
static void test_device_row_bytes(void **state) {
    (void)state;
    const ts_dtype same[] = {TS_DTYPE_F32, TS_DTYPE_F16, TS_DTYPE_BF16, TS_DTYPE_Q8_0, TS_DTYPE_Q4_0,
                             TS_DTYPE_IQ4_NL, TS_DTYPE_Q5_K, TS_DTYPE_Q6_K};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        assert_int_equal(ts_plan_row_bytes_on(TS_DEVICE_CUDA, same[i], 4096), ts_dtype_row_bytes(same[i], 4096));
        assert_int_equal(ts_plan_row_bytes_on(TS_DEVICE_CPU, same[i], 4096), ts_dtype_row_bytes(same[i], 4096));
    }
    assert_int_equal(ts_plan_row_bytes_on(TS_DEVICE_CPU, TS_DTYPE_Q4_K, 4096), 4096 / 256 * 144);
    assert_int_equal(ts_plan_row_bytes_on(TS_DEVICE_CUDA, TS_DTYPE_Q4_K, 4096), 4096 / 32 * 18 + 4096 / 256 * 4);
    assert_int_equal(ts_plan_row_bytes_on(TS_DEVICE_CUDA, TS_DTYPE_Q4_1, 4096), ts_dtype_row_bytes(TS_DTYPE_Q4_1, 4096));
    assert_int_equal(ts_plan_row_bytes_on(TS_DEVICE_CPU, TS_DTYPE_IQ4_XS, 4096), 4096 / 256 * 136);
    assert_int_equal(ts_plan_row_bytes_on(TS_DEVICE_CUDA, TS_DTYPE_IQ4_XS, 4096), 4096 / 32 * 17 + 4096 / 256 * 2);
    /* the 8B at int4 (Q4_K) takes 4.625 / 4.5 of its file's bytes on the GPU */
    ts_model_config c = load_config("qwen3-8b");
    ts_plan *cpu = plan_for(&c, INT4_SCHEME, 4096, 1, TS_DEVICE_CPU, 1ull << 40, 0);
    ts_plan *gpu = plan_for(&c, INT4_SCHEME, 4096, 1, TS_DEVICE_CUDA, 1ull << 40, 0);
    double ratio = (double)gpu->weight_bytes / (double)cpu->weight_bytes;
    assert_true(ratio > 1.026 && ratio < 1.029);
    assert_true(gpu->alternatives[2].weight_bytes == gpu->weight_bytes);
    free(cpu);
    free(gpu);
}

/* Tensor rules in the scheme count in the weights' bytes; a rule for a layer the model lacks is refused. */
static void test_tensor_rules(void **state) {
    (void)state;
    ts_model_config c = load_config("qwen3-0.6b");
    ts_quant_scheme plain, mixed;
    ts_error err = {{0}};
    assert_int_equal(ts_quant_scheme_parse("int4", &plain, &err), 0);
    assert_int_equal(ts_quant_scheme_parse("int4:token_embd=q8_0", &mixed, &err), 0);
    uint64_t b_plain = 0, b_mixed = 0;
    int64_t params = 0;
    assert_int_equal(ts_plan_weight_bytes(&c, &plain, &b_plain, &params, &err), 0);
    assert_int_equal(ts_plan_weight_bytes(&c, &mixed, &b_mixed, &params, &err), 0);
    /* the tied embedding, vocab x hidden, from 4.5 (Q4_K) to 8.5 bits a weight */
    assert_int_equal(b_mixed - b_plain, (uint64_t)c.vocab_size * (uint64_t)c.hidden_size / 2);
    ts_plan_request req = {.config = &c, .context_length = 1024, .batch = 1};
    assert_int_equal(ts_quant_scheme_parse("int4:blk.28.ffn_down=q6_k", &req.quant, &err), 0);
    ts_plan p;
    assert_int_equal(ts_plan_compute(&req, &p, &err), -1);
    assert_non_null(strstr(err.message, "planner: quantization rules: rule 1 names layer 28, but the model has 28 layers"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_rules),
        cmocka_unit_test(test_device_row_bytes),
        cmocka_unit_test(test_qwen3_0_6b),
        cmocka_unit_test(test_qwen3_8b),
        cmocka_unit_test(test_qwen3_30b_a3b),
        cmocka_unit_test(test_qwen3_235b_a22b),
        cmocka_unit_test(test_235b_headline_figures),
        cmocka_unit_test(test_activation_formula),
        cmocka_unit_test(test_refusal_with_numbers),
        cmocka_unit_test(test_what_would_fit_fewer_sequences_or_context),
        cmocka_unit_test(test_gpu_cpu_split),
        cmocka_unit_test(test_requested_gpu_layers),
        cmocka_unit_test(test_text_and_json),
        cmocka_unit_test(test_tensor_walk_matches_checkpoints),
        cmocka_unit_test(test_gpt2_parameter_count),
        cmocka_unit_test(test_incomplete_config_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
