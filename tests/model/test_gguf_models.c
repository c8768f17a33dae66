/* GGUF files written by llama.cpp's converter compute what the safetensors checkpoints compute:
 * qwen3-tiny-tok in bf16 exactly (the same bf16 numbers) and dialogpt-tiny in f32 exactly. The q8_0
 * file cannot reach the 1e-2: its own weights differ from the bf16 ones by about 1.5 % in the
 * logits of every reference case (a model 32 wide averages little of the per-row rounding, and the
 * 151936 x 32 tied head is itself q8_0), so it is checked two ways: what tessera computes from the
 * stored q8_0 equals what it computes from those weights dequantized to float32 (within 1e-2, the
 * activation rounding of the integer kernels), and both stay within 2e-2 of the bf16 model. The converter left qwen3.rope.freq_base out of the qwen3 files
 * (transformers 5 keeps rope_theta in rope_parameters, where the converter did not look), so those
 * loads pass the base config.json states, 1e6, as a user would with --rope-freq-base. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"
#include "runtime/sequence.h"
#include "support/testlib.h"
#include "tokenizer/model_tokenizer.h"

static ts_backend *g_cpu;

static float *logits_of_quant(const char *path, double rope_theta, const char *quant, const int32_t *ids, int n,
                              int *vocab) {
    ts_model_options mo;
    ts_model_options_init(&mo);
    mo.rope_theta = rope_theta;
    ts_error qerr = {{0}};
    if (quant && ts_quant_scheme_parse(quant, &mo.quant, &qerr) != 0) fail_msg("%s", qerr.message);
    ts_model *m = NULL;
    ts_error err = {{0}};
    if (ts_model_load(path, g_cpu, &mo, &m, &err) != 0) fail_msg("%s", err.message);
    *vocab = m->cfg.vocab_size;
    float *out = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    ts_kv_cache cache;
    ts_kv_seq seq;
    ts_kv_seq_init(&seq);
    assert_int_equal(ts_kv_cache_init_for(&cache, m, n, 1, &err), 0);
    if (ts_seq_forward(m, &cache, &seq, ids, n, 0, out, &err) != 0) fail_msg("%s", err.message);
    ts_kv_seq_release(&cache, &seq);
    ts_kv_cache_destroy(&cache);
    ts_model_free(m);
    return out;
}

static float *logits_of(const char *path, double rope_theta, const int32_t *ids, int n, int *vocab) {
    return logits_of_quant(path, rope_theta, NULL, ids, n, vocab);
}

static void compare(const char *gguf, const char *dir, double rope, double tol) {
    char a[1024], b[1024];
    ts_test_shared_path(gguf, a, sizeof a);
    ts_test_shared_path(dir, b, sizeof b);
    const int32_t ids[] = {785, 1042, 220, 17, 15, 17, 21, 1030, 220, 18, 21, 20, 2849, 13};
    int va = 0, vb = 0;
    float *x = logits_of(a, rope, ids, 14, &va), *y = logits_of(b, 0, ids, 14, &vb);
    assert_int_equal(va, vb);
    double e = ts_test_rel_l2(x, y, (size_t)va);
    if (!(e <= tol)) fail_msg("%s vs %s: relative error %.3g > %g", gguf, dir, e, tol);
    free(x);
    free(y);
}

static void test_qwen3_bf16(void **state) {
    (void)state;
    compare("testdata/gguf/qwen3-tiny-tok-bf16.gguf", "testdata/qwen3-tiny-tok", 1e6, 1e-6);
}

static void test_qwen3_q8_0(void **state) {
    (void)state;
    compare("testdata/gguf/qwen3-tiny-tok-q8_0.gguf", "testdata/qwen3-tiny-tok", 1e6, 2e-2);
    char a[1024];
    ts_test_shared_path("testdata/gguf/qwen3-tiny-tok-q8_0.gguf", a, sizeof a);
    const int32_t ids[] = {785, 1042, 220, 17, 15, 17, 21, 1030, 220, 18, 21, 20, 2849, 13};
    int va = 0, vb = 0;
    float *stored = logits_of(a, 1e6, ids, 14, &va), *dequantized = logits_of_quant(a, 1e6, "f32", ids, 14, &vb);
    double e = ts_test_rel_l2(stored, dequantized, (size_t)va);
    if (!(e <= 1e-2)) fail_msg("q8_0 as stored vs dequantized to float32: relative error %.3g", e);
    free(stored);
    free(dequantized);
}

static void test_dialogpt_f32(void **state) {
    (void)state;
    compare("testdata/gguf/dialogpt-tiny-f32.gguf", "testdata/dialogpt-tiny", 0, 1e-6);
}

/* A matrix quantized on load whose CPU layout is repacked keeps only the packed copy (the converted bytes
 * are freed: an int4 8B would otherwise hold 4.5 GB twice); the embedding keeps its rows for lookups and
 * the tied head; the model computes as before (q8_0 of the bf16 checkpoint within 3e-2 of it, as the
 * stored q8_0 file is). */
static void test_quantized_on_load_held_once(void **state) {
    (void)state;
    char b[1024];
    ts_test_shared_path("testdata/qwen3-tiny-tok", b, sizeof b);
    ts_model_options mo;
    ts_model_options_init(&mo);
    ts_error err = {{0}};
    if (ts_quant_scheme_parse("q8_0", &mo.quant, &err) != 0) fail_msg("%s", err.message);
    ts_model *m = NULL;
    if (ts_model_load(b, g_cpu, &mo, &m, &err) != 0) fail_msg("%s", err.message);
    assert_non_null(m->tok_embed.host);
    int freed = 0;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const ts_weight *ws[3] = {&m->layers[l].wq, &m->layers[l].w_up, &m->layers[l].w_down};
        for (int i = 0; i < 3; i++) {
            if ((ws[i]->host == NULL) != (ws[i]->host_unused != 0))
                fail_msg("layer %d matrix %d: host %p with host_unused %d", l, i, ws[i]->host, ws[i]->host_unused);
            freed += ws[i]->host == NULL;
        }
    }
    /* every x86 table packs Q8_0 (the generic one, with features hidden, does not) */
    if (ts_cpu_kernels_active()->mm_packed[TS_DTYPE_Q8_0] && freed != 3 * m->cfg.num_layers)
        fail_msg("%d of %d repacked q8_0 matrices still hold their converted bytes", 3 * m->cfg.num_layers - freed,
                 3 * m->cfg.num_layers);
    ts_model_free(m);
    const int32_t ids[] = {785, 1042, 220, 17, 15, 17, 21, 1030, 220, 18, 21, 20, 2849, 13};
    int va = 0, vb = 0;
    float *q = logits_of_quant(b, 0, "q8_0", ids, 14, &va), *f = logits_of(b, 0, ids, 14, &vb);
    double e = ts_test_rel_l2(q, f, (size_t)va);
    if (!(e <= 3e-2)) fail_msg("q8_0 on load vs bf16: relative error %.3g", e);
    free(q);
    free(f);
}

/* The vocabulary inside the GGUF file tokenizes like the model's tokenizer.json. */
static void test_gguf_tokenizer(void **state) {
    (void)state;
    char a[1024], b[1024];
    ts_test_shared_path("testdata/gguf/qwen3-tiny-tok-q8_0.gguf", a, sizeof a);
    ts_test_shared_path("testdata/qwen3-tiny-tok", b, sizeof b);
    ts_tokenizer *ta = NULL, *tb = NULL;
    ts_error err = {{0}};
    if (ts_tokenizer_for_model(a, NULL, &ta, &err) != 0) fail_msg("%s", err.message);
    if (ts_tokenizer_for_model(b, NULL, &tb, &err) != 0) fail_msg("%s", err.message);
    const char *text = "<|im_start|>user\nI'm here, you're there; 東京は日本の首都です。 🦙 def f(x):\n\treturn 3.14<|im_end|>";
    int32_t *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    assert_int_equal(ts_tokenizer_encode(ta, text, strlen(text), 1, &ia, &na, &err), 0);
    assert_int_equal(ts_tokenizer_encode(tb, text, strlen(text), 1, &ib, &nb, &err), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(ia, ib, na * sizeof(int32_t));
    free(ia);
    free(ib);
    ts_tokenizer_free(ta);
    ts_tokenizer_free(tb);
}

int main(void) {
    ts_error err = {{0}};
    ts_cpu_options co = {.threads = 2};
    g_cpu = ts_cpu_backend_create(&co, &err);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_bf16), cmocka_unit_test(test_qwen3_q8_0), cmocka_unit_test(test_dialogpt_f32),
        cmocka_unit_test(test_gguf_tokenizer), cmocka_unit_test(test_quantized_on_load_held_once),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    g_cpu->ops->destroy(g_cpu);
    return rc;
}
