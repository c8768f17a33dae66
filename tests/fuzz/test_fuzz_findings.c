/* What the fuzz targets found, one test each, checked by behaviour rather than by the absence of a crash:
 * each input that once crashed, hung or exhausted memory is now refused with the message a user can act
 * on, and the neighbouring valid inputs still load. (fuzz.replay_* tests replay the same inputs, kept in
 * fuzz/regressions/, under the sanitizers.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/clock.h"
#include "format/gguf.h"
#include "format/gguf_model.h"
#include "format/json_util.h"
#include "format/model_config.h"
#include "support/testlib.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer.h"

static void expect_config_error(const char *json, const char *fragment) {
    ts_model_config *c = malloc(sizeof *c);
    ts_error err = {{0}};
    assert_int_equal(ts_model_config_parse(json, "config.json", c, &err), -1);
    if (!strstr(err.message, fragment)) fail_msg("error \"%s\" lacks \"%s\"", err.message, fragment);
    free(c);
}

/* A real number beyond long long's range was converted to long long (undefined behaviour). */
static void test_json_integer_from_huge_real(void **state) {
    (void)state;
    json_t *obj = json_loads("{\"a\": 3.18e26, \"b\": -9.3e18, \"c\": 9.223372036854775808e18, \"d\": 16.0, "
                             "\"e\": -9.223372036854775808e18}",
                             0, NULL);
    assert_non_null(obj);
    long long v = 0;
    int found = 0;
    ts_error err = {{0}};
    const char *refused[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ts_json_get_int(obj, refused[i], "x.json", &v, &found, &err), -1);
        assert_non_null(strstr(err.message, "must be an integer"));
    }
    assert_int_equal(ts_json_get_int(obj, "d", "x.json", &v, &found, &err), 0);
    assert_int_equal(v, 16);
    assert_int_equal(ts_json_get_int(obj, "e", "x.json", &v, &found, &err), 0);
    assert_true(v == (-9223372036854775807LL - 1));
    json_decref(obj);
    expect_config_error("{\"model_type\": \"qwen3\", \"vocab_size\": 3.18e26}", "\"vocab_size\" must be an integer");
}

#define MOE_CONFIG(layers, only)                                                                                    \
    "{\"model_type\": \"qwen3_moe\", \"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": " layers \
    ", \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 100, \"num_experts\": 4, "          \
    "\"num_experts_per_tok\": 2, \"moe_intermediate_size\": 16, \"mlp_only_layers\": [" only "]}"

/* mlp_only_layers was checked against num_hidden_layers only, and written into a 512-entry table. */
static void test_mlp_only_layers_beyond_table(void **state) {
    (void)state;
    expect_config_error(MOE_CONFIG("100000", "99999"), "100000 layers; at most 512 are supported");
    ts_model_config *c = malloc(sizeof *c);
    ts_error err = {{0}};
    assert_int_equal(ts_model_config_parse(MOE_CONFIG("512", "0, 511"), "config.json", c, &err), 0);
    assert_false(ts_model_config_layer_is_moe(c, 511));
    assert_false(ts_model_config_layer_is_moe(c, 0));
    assert_true(ts_model_config_layer_is_moe(c, 1));
    free(c);
}

/* GPT-2's default n_inner, 4 * n_embd, overflowed int. */
static void test_gpt2_n_embd_overflow(void **state) {
    (void)state;
    expect_config_error("{\"model_type\": \"gpt2\", \"n_embd\": 2147483600, \"n_layer\": 1, \"n_head\": 1, "
                        "\"n_positions\": 10, \"vocab_size\": 10}",
                        "n_embd 2147483600 is out of range");
}

/* Token ids beyond int were truncated and could land inside the vocabulary (2^32 + 1 became 1). */
static void test_eos_id_beyond_int(void **state) {
    (void)state;
    expect_config_error("{\"model_type\": \"qwen3\", \"hidden_size\": 64, \"intermediate_size\": 64, "
                        "\"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"vocab_size\": 100, "
                        "\"eos_token_id\": [4294967297]}",
                        "\"eos_token_id\"[0] must be an integer token id");
    expect_config_error("{\"model_type\": \"qwen3\", \"hidden_size\": 64, \"intermediate_size\": 64, "
                        "\"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"vocab_size\": 100, "
                        "\"eos_token_id\": 4294967297}",
                        "\"eos_token_id\" is 4294967297, out of range");
}

static int render(const char *tpl, char **out, ts_error *err) {
    ts_jinja_template *t = NULL;
    *out = NULL;
    if (ts_jinja_parse(tpl, strlen(tpl), "t.jinja", &t, err) != 0) return -1;
    json_t *vars = json_object();
    size_t len = 0;
    int rc = ts_jinja_render(t, vars, NULL, out, &len, err);
    json_decref(vars);
    ts_jinja_free(t);
    return rc;
}

/* A number literal longer than the lexer's 64-byte buffer overflowed it (the fraction and exponent
 * were copied without a bound); then a too-long exponent made the first fix loop forever. */
static void test_jinja_long_number_literals(void **state) {
    (void)state;
    char tpl[512], *out = NULL;
    ts_error err = {{0}};
    const char *digits70 = "1234567890123456789012345678901234567890123456789012345678901234567890";
    const char *forms[] = {"{{ %s }}", "{{ %s.5 }}", "{{ 1.%s }}", "{{ 1e%s }}", "{{ 1%s }}"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        snprintf(tpl, sizeof tpl, forms[i], digits70);
        assert_int_equal(render(tpl, &out, &err), -1);
        assert_string_equal(err.message, "t.jinja:1:4: number literal longer than 63 digits");
    }
    /* 63 characters still fit, and ordinary literals keep their values */
    assert_int_equal(render("{{ 1.5e3 }} {{ 1_000 }} {{ 0.25 }} {{ 2e-2 }}", &out, &err), 0);
    assert_string_equal(out, "1500.0 1000 0.25 0.02");
    free(out);
    snprintf(tpl, sizeof tpl, "{{ 0.%.61s }}", "000000000000000000000000000000000000000000000000000000000000000");
    assert_int_equal(render(tpl, &out, &err), 0);
    assert_string_equal(out, "0.0");
    free(out);
}

/* A vocabulary id of 16 million in a 100-byte tokenizer.json sized every token table for 16 million
 * entries: 0.7 GB to load it, 2.3 GB through the vocabulary spec. Ids must now stay within about twice
 * the number of tokens the file lists. */
static void test_tokenizer_sparse_ids(void **state) {
    (void)state;
    ts_tokenizer *tok = NULL;
    ts_error err = {{0}};
    const char *sparse = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 16777215, \"b\": 0}, \"merges\": []}}";
    assert_int_equal(ts_tokenizer_load_json(sparse, strlen(sparse), NULL, 0, "tokenizer.json", &tok, &err), -1);
    assert_string_equal(err.message,
                        "tokenizer.json: vocab entry \"a\" has id 16777215 (expected an integer in 0..1027 for 2 tokens)");
    const char *added = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": "
                        "[{\"id\": 16777000, \"content\": \"<x>\", \"special\": true}]}";
    assert_int_equal(ts_tokenizer_load_json(added, strlen(added), NULL, 0, "tokenizer.json", &tok, &err), -1);
    assert_string_equal(err.message,
                        "tokenizer.json: added_tokens[0] needs \"content\" and an \"id\" in 0..1027 (for 2 tokens)");
    /* a few holes, as some real vocabularies have, are fine */
    const char *holes = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 900}, \"merges\": []}, "
                        "\"added_tokens\": [{\"id\": 1000, \"content\": \"<x>\", \"special\": true}]}";
    assert_int_equal(ts_tokenizer_load_json(holes, strlen(holes), NULL, 0, "tokenizer.json", &tok, &err), 0);
    assert_int_equal(ts_tokenizer_vocab_size(tok), 1001);
    ts_tokenizer_free(tok);
}

static double render_seconds(const char *tpl, ts_error *err) {
    char *out = NULL;
    double t0 = ts_now_seconds();
    int rc = render(tpl, &out, err);
    double t = ts_now_seconds() - t0;
    free(out);
    assert_int_equal(rc, -1);
    return t;
}

/* Work inside one evaluation step that grows with its operands was not counted: `range(50011) | unique`
 * compared 1.25 billion pairs within a handful of steps. Comparisons, scans by filters, tests, methods
 * and `in` now count against the step limit, so each of these stops at once with the limit's message. */
static void test_jinja_quadratic_work_is_bounded(void **state) {
    (void)state;
    const char *tpls[] = {
        "{% for i in range(050011) | unique %}x{% endfor %}",
        "{{ range(200000) | sort(reverse=true) | first }}",
        "{% set big = range(1000000) | list %}{% for i in range(1000000) %}{{ -1 in big }}{% endfor %}",
        ("{% set a = range(300000) | list %}{% set b = range(300000) | list %}"
         "{% for i in range(1000000) %}{{ [a] == [b] }}{% endfor %}"),
        "{% set big = range(1000000) | list %}{% for i in range(1000000) %}{{ big | select('equalto', -1) | list }}{% endfor %}",
        "{% set s = 'x' * 1000000 %}{% for i in range(1000000) %}{{ s.count('y') }}{% endfor %}",
    };
    for (size_t i = 0; i < sizeof tpls / sizeof tpls[0]; i++) {
        ts_error err = {{0}};
        double t = render_seconds(tpls[i], &err);
        if (!strstr(err.message, "evaluation steps")) fail_msg("template %zu: %s", i, err.message);
        if (t > 5.0) fail_msg("template %zu took %.1f s to reach the limit", i, t);
    }
}

/* An expert tensor of zero bytes claimed 17 billion experts, each a table entry (a 700 MB allocation). */
static void test_gguf_empty_expert_tensor(void **state) {
    (void)state;
    char path[1024];
    ts_test_source_path("fuzz/regressions/gguf/empty-expert-tensor.gguf", path, sizeof path);
    size_t len = 0;
    uint8_t *data = ts_test_read_file(path, &len);
    ts_gguf g;
    ts_error err = {{0}};
    assert_int_equal(ts_gguf_parse(data, len, "x.gguf", &g, &err), 0);
    ts_model_config *cfg = malloc(sizeof *cfg);
    assert_int_equal(ts_gguf_model_config(&g, cfg, &err), 0);
    ts_tensor_table table;
    ts_tensor_table_init(&table);
    assert_int_equal(ts_gguf_model_tensors(&g, cfg, &table, &err), -1);
    assert_string_equal(err.message, "x.gguf: expert tensor \"blk.0.ffn_down_exps.weight\" holds 0 bytes, not "
                                     "17179869186 equal non-empty experts");
    ts_tensor_table_free(&table);
    free(cfg);
    ts_gguf_free(&g);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_integer_from_huge_real),
        cmocka_unit_test(test_mlp_only_layers_beyond_table),
        cmocka_unit_test(test_gpt2_n_embd_overflow),
        cmocka_unit_test(test_eos_id_beyond_int),
        cmocka_unit_test(test_jinja_long_number_literals),
        cmocka_unit_test(test_tokenizer_sparse_ids),
        cmocka_unit_test(test_jinja_quadratic_work_is_bounded),
        cmocka_unit_test(test_gguf_empty_expert_tensor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
