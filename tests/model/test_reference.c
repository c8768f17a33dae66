/* Every model under ../shared/testdata against the Hugging Face float32 reference on the CPU:
 * last-position logits (relative L2 <= 1e-4), top-1 at every position where the reference's
 * top1-top2 gap exceeds 1e-3, 24 greedy tokens decoded incrementally with the KV cache (equal up to
 * the first step whose recorded margin is below 1e-3), and per-layer hidden states (<= 1e-4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "model/model.h"
#include "support/reference_check.h"
#include "support/testlib.h"

static const ts_ref_tolerance g_tol = {1e-4, 1e-4, 1e-3};

static void check(const char *name) {
    ts_error err = {{0}};
    ts_cpu_options co = {.threads = 2};
    ts_backend *be = ts_cpu_backend_create(&co, &err);
    assert_non_null(be);
    ts_test_check_model_reference(be, name, &g_tol);
    be->ops->destroy(be);
}

static void test_qwen3_tiny_tok(void **state) { (void)state; check("qwen3-tiny-tok"); }
static void test_qwen3_small(void **state) { (void)state; check("qwen3-small"); }
static void test_qwen3moe_small(void **state) { (void)state; check("qwen3moe-small"); }
static void test_qwen2_small(void **state) { (void)state; check("qwen2-small"); }
static void test_dialogpt_tiny(void **state) { (void)state; check("dialogpt-tiny"); }
/* Models ../shared lacks, with references made by transformers 5.17 (tests/data/README.md). */
static void test_llama_small(void **state) {
    (void)state;
    char path[1024];
    check(ts_test_source_path("tests/data/llama-small", path, sizeof path));
}
static void test_qwen3moe_nonorm(void **state) {
    (void)state;
    char path[1024];
    check(ts_test_source_path("tests/data/qwen3moe-nonorm", path, sizeof path));
}

/* A split model (--gpu-layers) with two CPU backends standing in for the GPU and the host: the last
 * `gpu_layers` layers and the head on one, the embedding and the layers before on the other, each with
 * its own KV store. gpu_layers 0 (everything on the host), 1 and 2 of these three- and four-layer models. */
static void check_split(const char *name) {
    ts_error err = {{0}};
    ts_cpu_options co = {.threads = 2};
    ts_backend *dev = ts_cpu_backend_create(&co, &err), *host = ts_cpu_backend_create(&co, &err);
    assert_non_null(dev);
    assert_non_null(host);
    for (int split = 0; split <= 2; split++) {
        ts_model_options mo;
        ts_model_options_init(&mo);
        mo.gpu_layers = split;
        mo.host_be = host;
        ts_test_check_model_reference_opts(dev, name, &g_tol, &mo);
    }
    dev->ops->destroy(dev);
    host->ops->destroy(host);
}

static void test_split_layers(void **state) {
    (void)state;
    char path[1024];
    check_split("qwen3-small");
    check_split("qwen3moe-small");
    check_split("qwen2-small");
    check_split(ts_test_source_path("tests/data/llama-small", path, sizeof path));
}

/* GPT-2 has no split: a clear refusal. */
static void test_split_refused_for_gpt2(void **state) {
    (void)state;
    ts_error err = {{0}};
    ts_cpu_options co = {.threads = 2};
    ts_backend *dev = ts_cpu_backend_create(&co, &err), *host = ts_cpu_backend_create(&co, &err);
    ts_model_options mo;
    ts_model_options_init(&mo);
    mo.gpu_layers = 1;
    mo.host_be = host;
    char dir[1024];
    ts_test_shared_path("testdata/dialogpt-tiny", dir, sizeof dir);
    ts_model *m = NULL;
    assert_int_not_equal(ts_model_load(dir, dev, &mo, &m, &err), 0);
    assert_null(m);
    assert_non_null(strstr(err.message, "--gpu-layers splits models of the llama family"));
    dev->ops->destroy(dev);
    host->ops->destroy(host);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_layers), cmocka_unit_test(test_split_refused_for_gpt2),
        cmocka_unit_test(test_qwen3_tiny_tok), cmocka_unit_test(test_qwen3_small),
        cmocka_unit_test(test_qwen3moe_small), cmocka_unit_test(test_qwen2_small),
        cmocka_unit_test(test_dialogpt_tiny),  cmocka_unit_test(test_llama_small),
        cmocka_unit_test(test_qwen3moe_nonorm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
