/* tools/tune.h on small random models: the backward pass's gradients against central finite differences
 * of the loss (every kind of parameter: block scales of q/k/v/o/gate/up/down, the tied embedding or an
 * untied head, every norm), tuning lowers the KL divergence and writes only scales and norms, and bad
 * input is refused with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "format/model_config.h"
#include "format/tensor_table.h"
#include "quant/quantize.h"
#include "support/testlib.h"
#include "tools/tune.h"

static uint64_t g_state;

/* uniform with the variance of a standard normal: what the weights are drawn from */
static double noise(void) { return 1.7320508 * ts_test_randf(&g_state); }

#define MAX_T 64

/* A random model: the float teacher table and the quantized student tensors. */
typedef struct fixture {
    ts_model_config cfg;
    ts_tensor_table teacher;
    ts_tune_tensor st[MAX_T];
    int n_st;
    float *fdata[MAX_T];
    void *qdata[MAX_T];
    int n_f;
} fixture;

static void add(fixture *f, const char *name, int64_t rows, int64_t cols, ts_dtype qtype, double scale, double base) {
    float *w = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)(base + scale * noise());
    ts_tensor_desc d = {0};
    d.name = (char *)name;
    d.dtype = TS_DTYPE_F32;
    snprintf(d.file_dtype, sizeof d.file_dtype, "F32");
    d.ndim = rows == 1 ? 1 : 2;
    d.shape[0] = rows == 1 ? cols : rows;
    d.shape[1] = cols;
    d.data = w;
    d.nbytes = sizeof(float) * (size_t)(rows * cols);
    ts_error err;
    assert_int_equal(ts_tensor_table_add(&f->teacher, &d, &err), 0);
    f->fdata[f->n_f++] = w;
    ts_tune_tensor *t = &f->st[f->n_st++];
    t->name = f->teacher.items[f->teacher.count - 1].name;
    t->rows = rows;
    t->cols = cols;
    t->dtype = qtype;
    size_t bytes = ts_dtype_row_bytes(qtype, cols) * (size_t)rows;
    void *q = malloc(bytes);
    if (qtype == TS_DTYPE_F32) {
        /* the student's norms start a little off the teacher's, as after quantization their best values do */
        float *v = q;
        for (int64_t i = 0; i < rows * cols; i++) v[i] = w[i] * (float)(1.0 + 0.05 * noise());
    } else {
        assert_int_equal(ts_quantize_tensor(qtype, w, TS_DTYPE_F32, rows, cols, q, NULL, 1, &err), 0);
    }
    t->data = q;
    f->qdata[f->n_st - 1] = q;
}

static void fixture_init(fixture *f, int qwen2, uint64_t seed) {
    memset(f, 0, sizeof *f);
    g_state = seed;
    char json[1024];
    snprintf(json, sizeof json,
             "{\"architectures\": [\"%s\"], \"model_type\": \"%s\", \"hidden_size\": 64, \"intermediate_size\": 256,"
             "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16, \"num_hidden_layers\": 2,"
             "\"vocab_size\": 96, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0, \"max_position_embeddings\": 128,"
             "\"tie_word_embeddings\": %s, \"hidden_act\": \"silu\"}",
             qwen2 ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM", qwen2 ? "qwen2" : "qwen3", qwen2 ? "false" : "true");
    ts_error err;
    assert_int_equal(ts_model_config_parse(json, "test", &f->cfg, &err), 0);
    ts_tensor_table_init(&f->teacher);
    static char names[MAX_T][96];
    int k = 0;
#define NAME(...) (snprintf(names[k], sizeof names[k], __VA_ARGS__), names[k++])
    const ts_dtype types[3] = {TS_DTYPE_IQ4_NL, TS_DTYPE_Q4_0, TS_DTYPE_Q8_0};
    add(f, NAME("model.embed_tokens.weight"), 96, 64, TS_DTYPE_IQ4_NL, 0.5, 0);
    if (qwen2) add(f, NAME("lm_head.weight"), 96, 64, TS_DTYPE_Q4_0, 0.5, 0);
    for (int l = 0; l < 2; l++) {
        add(f, NAME("model.layers.%d.self_attn.q_proj.weight", l), 64, 64, types[l % 3], 0.15, 0);
        add(f, NAME("model.layers.%d.self_attn.k_proj.weight", l), 32, 64, types[(l + 1) % 3], 0.15, 0);
        add(f, NAME("model.layers.%d.self_attn.v_proj.weight", l), 32, 64, types[(l + 2) % 3], 0.15, 0);
        add(f, NAME("model.layers.%d.self_attn.o_proj.weight", l), 64, 64, types[l % 3], 0.15, 0);
        add(f, NAME("model.layers.%d.mlp.gate_proj.weight", l), 256, 64, l ? TS_DTYPE_Q4_1 : types[1], 0.15, 0);
        add(f, NAME("model.layers.%d.mlp.up_proj.weight", l), 256, 64, TS_DTYPE_IQ4_NL, 0.15, 0);
        /* the 256-wide rows take the super-block types: two scales a block (Q4_K, Q5_K), one at its end (Q6_K)
         * or at its start (IQ4_XS) */
        const ts_dtype down[2][2] = {{TS_DTYPE_Q4_K, TS_DTYPE_Q6_K}, {TS_DTYPE_Q5_K, TS_DTYPE_IQ4_XS}};
        add(f, NAME("model.layers.%d.mlp.down_proj.weight", l), 64, 256, down[qwen2][l], 0.1, 0);
        add(f, NAME("model.layers.%d.input_layernorm.weight", l), 1, 64, TS_DTYPE_F32, 0.2, 1.0);
        add(f, NAME("model.layers.%d.post_attention_layernorm.weight", l), 1, 64, TS_DTYPE_F32, 0.2, 1.0);
        if (qwen2) {
            add(f, NAME("model.layers.%d.self_attn.q_proj.bias", l), 1, 64, TS_DTYPE_F32, 0.3, 0.0);
            add(f, NAME("model.layers.%d.self_attn.k_proj.bias", l), 1, 32, TS_DTYPE_F32, 0.3, 0.0);
            add(f, NAME("model.layers.%d.self_attn.v_proj.bias", l), 1, 32, TS_DTYPE_F32, 0.3, 0.0);
        } else {
            add(f, NAME("model.layers.%d.self_attn.q_norm.weight", l), 1, 16, TS_DTYPE_F32, 0.2, 1.0);
            add(f, NAME("model.layers.%d.self_attn.k_norm.weight", l), 1, 16, TS_DTYPE_F32, 0.2, 1.0);
        }
    }
    add(f, NAME("model.norm.weight"), 1, 64, TS_DTYPE_F32, 0.2, 1.0);
#undef NAME
}

static void fixture_free(fixture *f) {
    for (int i = 0; i < f->n_f; i++) free(f->fdata[i]);
    for (int i = 0; i < f->n_st; i++) free(f->qdata[i]);
    ts_tensor_table_free(&f->teacher);
}

static void random_ids(int32_t *ids, int n, int vocab) {
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((ts_test_randf(&g_state) + 1.0f) * 0.5f * (float)vocab) % vocab;
}

static void check_gradients(int qwen2) {
    fixture f;
    fixture_init(&f, qwen2, qwen2 ? 11 : 7);
    enum { T = 24 };
    int32_t ids[T];
    random_ids(ids, T, 96);
    ts_tune_options o;
    ts_tune_options_init(&o);
    o.exact_scales = 1; /* float16 rounding would make the loss a step function of the scales */
    o.threads = 1;
    ts_error err = {{0}};
    double loss;
    int64_t np = 0;
    int rc = ts_tune_loss_and_grads(&f.cfg, &f.teacher, f.st, f.n_st, ids, T, &o, NULL, NULL, &loss, NULL, &np, &err);
    if (rc) fprintf(stderr, "%s\n", err.message);
    assert_int_equal(rc, 0);
    assert_true(np > 100);
    assert_true(loss > 1e-3); /* quantized and perturbed: the student differs from the teacher */
    float *p = malloc(sizeof(float) * (size_t)np), *g = malloc(sizeof(float) * (size_t)np), *q = malloc(sizeof(float) * (size_t)np);
    assert_int_equal(ts_tune_loss_and_grads(&f.cfg, &f.teacher, f.st, f.n_st, ids, T, &o, NULL, p, &loss, NULL, &np, &err), 0);
    /* away from the starting point, where every multiplier is 1 */
    for (int64_t i = 0; i < np; i++) p[i] += (float)(0.05 * noise());
    assert_int_equal(ts_tune_loss_and_grads(&f.cfg, &f.teacher, f.st, f.n_st, ids, T, &o, p, NULL, &loss, g, &np, &err), 0);
    double gmax = 0;
    for (int64_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(g[i]));
    assert_true(gmax > 0);
    /* every 7th parameter plus the largest gradients: scales of every matrix kind and every norm */
    int checked = 0, bad = 0;
    for (int64_t i = 0; i < np; i += 7) {
        const double h = 2e-3;
        double lp, lm;
        memcpy(q, p, sizeof(float) * (size_t)np);
        q[i] = p[i] + (float)h;
        const double hp = (double)q[i] - p[i];
        assert_int_equal(ts_tune_loss_and_grads(&f.cfg, &f.teacher, f.st, f.n_st, ids, T, &o, q, NULL, &lp, NULL, &np, &err), 0);
        q[i] = p[i] - (float)h;
        const double hm = (double)p[i] - q[i];
        assert_int_equal(ts_tune_loss_and_grads(&f.cfg, &f.teacher, f.st, f.n_st, ids, T, &o, q, NULL, &lm, NULL, &np, &err), 0);
        const double fd = (lp - lm) / (hp + hm);
        const double tol = 0.03 * fabs(fd) + 2e-3 * gmax;
        if (fabs(fd - g[i]) > tol) {
            if (bad < 10) fprintf(stderr, "param %lld: finite difference %.6g, backward %.6g\n", (long long)i, fd, g[i]);
            bad++;
        }
        checked++;
    }
    fprintf(stderr, "%s: %d of %lld parameters checked, %d off (largest gradient %.3g, loss %.4f)\n",
            qwen2 ? "qwen2 (biases, untied head)" : "qwen3 (q/k norms, tied embedding)", checked, (long long)np, bad, gmax, loss);
    assert_int_equal(bad, 0);
    free(p), free(g), free(q);
    fixture_free(&f);
}

static void test_gradients_qwen3(void **state) {
    (void)state;
    check_gradients(0);
}

static void test_gradients_qwen2(void **state) {
    (void)state;
    check_gradients(1);
}

/* Tuning lowers the KL divergence, and the bytes it writes are the new scales: the same loss is read back
 * from the student's tensors afterwards. Codes (everything but each block's first two bytes) stay. */
static void test_tuning_lowers_kl(void **state) {
    (void)state;
    fixture f;
    fixture_init(&f, 0, 3);
    enum { T = 32, WINDOWS = 4 };
    int32_t ids[T * WINDOWS];
    random_ids(ids, T * WINDOWS, 96);
    uint8_t *before[MAX_T];
    for (int i = 0; i < f.n_st; i++) {
        size_t bytes = ts_dtype_row_bytes(f.st[i].dtype, f.st[i].cols) * (size_t)f.st[i].rows;
        before[i] = malloc(bytes);
        memcpy(before[i], f.st[i].data, bytes);
    }
    ts_tune_options o;
    ts_tune_options_init(&o);
    o.ctx = T;
    o.steps = 40;
    o.windows_per_step = 2;
    o.lr = 1e-2;
    o.threads = 1;
    o.quiet = 1;
    ts_error err = {{0}};
    double loss0 = 0, loss1 = 0;
    int64_t np;
    for (int w = 0; w < WINDOWS; w++) {
        double l;
        assert_int_equal(ts_tune_loss_and_grads(&f.cfg, &f.teacher, f.st, f.n_st, ids + w * T, T, &o, NULL, NULL, &l, NULL, &np, &err), 0);
        loss0 += l / WINDOWS;
    }
    ts_tune_report rep;
    int rc = ts_tune_quantized(&f.cfg, &f.teacher, f.st, f.n_st, ids, T * WINDOWS, &o, &rep, &err);
    if (rc) fprintf(stderr, "%s\n", err.message);
    assert_int_equal(rc, 0);
    assert_int_equal(rep.tuned_matrices, 15);
    assert_int_equal(rep.fixed_matrices, 0);
    assert_int_equal(rep.tuned_norms, 9);
    for (int w = 0; w < WINDOWS; w++) {
        double l;
        assert_int_equal(ts_tune_loss_and_grads(&f.cfg, &f.teacher, f.st, f.n_st, ids + w * T, T, &o, NULL, NULL, &l, NULL, &np, &err), 0);
        loss1 += l / WINDOWS;
    }
    fprintf(stderr, "KL a token: %.5f before, %.5f after 40 steps (first step %.5f, last %.5f)\n", loss0, loss1, rep.kl_first,
            rep.kl_last);
    assert_true(loss1 < 0.8 * loss0);
    int scales_moved = 0;
    for (int i = 0; i < f.n_st; i++) {
        const ts_tune_tensor *t = &f.st[i];
        size_t rb = ts_dtype_row_bytes(t->dtype, t->cols);
        if (t->dtype == TS_DTYPE_F32) {
            free(before[i]);
            continue;
        }
        /* the bytes of each block's float16 scales (d, and dmin or m where the type has one) */
        const int k = ts_dtype_get(t->dtype)->block_size == 256;
        size_t bb = rb / (size_t)(t->cols / (k ? 256 : 32)), lo = t->dtype == TS_DTYPE_Q6_K ? 208 : 0;
        size_t hi = lo + (t->dtype == TS_DTYPE_Q4_K || t->dtype == TS_DTYPE_Q5_K || t->dtype == TS_DTYPE_Q4_1 ? 4 : 2);
        for (size_t off = 0; off < rb * (size_t)t->rows; off++) {
            const uint8_t a = before[i][off], b = ((const uint8_t *)t->data)[off];
            if (off % bb >= lo && off % bb < hi) scales_moved += a != b;
            else assert_int_equal(a, b);
        }
        free(before[i]);
    }
    assert_true(scales_moved > 100);
    fixture_free(&f);
}

/* Each cycle through the windows visits every window once, in the text's order or in one fixed shuffle. */
static void test_window_order(void **state) {
    (void)state;
    const int64_t windows = 1000;
    int64_t *text = ts_tune_window_order(windows, 0), *a = ts_tune_window_order(windows, 1),
            *b = ts_tune_window_order(windows, 1);
    assert_non_null(text);
    assert_non_null(a);
    assert_non_null(b);
    int seen[1000] = {0}, moved = 0;
    for (int64_t i = 0; i < windows; i++) {
        assert_int_equal(text[i], i);
        assert_true(a[i] >= 0 && a[i] < windows);
        seen[a[i]]++;
        assert_int_equal(a[i], b[i]); /* the same order on every run */
        moved += a[i] != i;
    }
    for (int64_t i = 0; i < windows; i++) assert_int_equal(seen[i], 1);
    assert_true(moved > 900);
    free(text), free(a), free(b);
    int64_t *one = ts_tune_window_order(1, 1);
    assert_non_null(one);
    assert_int_equal(one[0], 0);
    free(one);
}

static void test_refusals(void **state) {
    (void)state;
    fixture f;
    fixture_init(&f, 0, 5);
    int32_t ids[64];
    random_ids(ids, 64, 96);
    ts_tune_options o;
    ts_tune_options_init(&o);
    o.ctx = 32;
    o.steps = 1;
    o.quiet = 1;
    o.threads = 1;
    ts_tune_report rep;
    ts_error err = {{0}};
    /* too few tokens for one window */
    assert_int_not_equal(ts_tune_quantized(&f.cfg, &f.teacher, f.st, f.n_st, ids, 16, &o, &rep, &err), 0);
    assert_non_null(strstr(err.message, "at least one window of 32"));
    /* a token outside the vocabulary */
    ids[5] = 96;
    assert_int_not_equal(ts_tune_quantized(&f.cfg, &f.teacher, f.st, f.n_st, ids, 64, &o, &rep, &err), 0);
    assert_non_null(strstr(err.message, "outside the vocabulary of 96"));
    ids[5] = 1;
    /* a tensor missing from the quantized model */
    const char *saved = f.st[3].name;
    f.st[3].name = "renamed";
    assert_int_not_equal(ts_tune_quantized(&f.cfg, &f.teacher, f.st, f.n_st, ids, 64, &o, &rep, &err), 0);
    assert_non_null(strstr(err.message, saved));
    f.st[3].name = saved;
    /* a model whose float copies cannot fit: refused with numbers before anything is allocated */
    ts_model_config huge = f.cfg;
    huge.hidden_size = 1 << 20;
    huge.vocab_size = 1 << 20;
    assert_int_not_equal(ts_tune_quantized(&huge, &f.teacher, f.st, f.n_st, ids, 64, &o, &rep, &err), 0);
    assert_non_null(strstr(err.message, "tuning needs about"));
    assert_non_null(strstr(err.message, "available"));
    /* an architecture the pass does not have */
    ts_model_config gpt2 = f.cfg;
    gpt2.arch = TS_ARCH_GPT2;
    assert_int_not_equal(ts_tune_quantized(&gpt2, &f.teacher, f.st, f.n_st, ids, 64, &o, &rep, &err), 0);
    assert_non_null(strstr(err.message, "dense Llama, Qwen2 and Qwen3"));
    fixture_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_qwen3),
        cmocka_unit_test(test_gradients_qwen2),
        cmocka_unit_test(test_tuning_lowers_kl),
        cmocka_unit_test(test_window_order),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
