/* The protobuf text-format parser and Triton's ModelConfig schema: every configuration fragment of the
 * seed document (read from ../shared/seeds, exactly as written) alone and inside full config.pbtxt
 * files, realistic Triton LLM configurations (vLLM and TensorRT-LLM backend styles), the text-format
 * features one by one, and malformed configurations, each with its exact "file:line:col: message". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "format/model_repo_config.h"
#include "format/model_repo_schema.h"
#include "format/textproto.h"
#include "support/testlib.h"

/* ---- the seed document's fragments ---- */

#define SEED "seeds/000_daab9e64cad81406.txt"

/* The n-th fenced block (``` ... ```) of the seed, exactly as written between the fence lines. */
static char *seed_block(int n) {
    char path[1024];
    ts_test_shared_path(SEED, path, sizeof path);
    size_t len = 0;
    char *text = ts_test_read_file(path, &len);
    char *p = text, *result = NULL;
    for (int i = 0; p && !result; i++) {
        char *open = strstr(p, "```");
        if (!open) break;
        char *body = strchr(open, '\n');
        if (!body) break;
        body++;
        /* the closing fence is the next line whose first non-blank characters are ``` */
        char *close = body;
        for (;;) {
            char *line_end = strchr(close, '\n');
            char *q = close;
            while (*q == ' ') q++;
            if (!strncmp(q, "```", 3)) break;
            if (!line_end) {
                close = NULL;
                break;
            }
            close = line_end + 1;
        }
        if (!close) break;
        if (i == n) {
            result = malloc((size_t)(close - body) + 1);
            memcpy(result, body, (size_t)(close - body));
            result[close - body] = '\0';
        }
        p = strchr(close, '\n');
    }
    free(text);
    assert_non_null(result);
    return result;
}

static ts_triton_config *parse_ok(const char *text, const char *source) {
    ts_triton_config *c = calloc(1, sizeof *c);
    ts_error err = {{0}};
    int rc = ts_triton_config_parse(text, strlen(text), source, c, &err);
    if (rc != 0) fail_msg("%s did not parse: %s", source, err.message);
    return c;
}

static const char *accel_param(const ts_triton_accelerator *a, const char *key) {
    for (int i = 0; i < a->num_params; i++)
        if (!strcmp(a->params[i].key, key)) return a->params[i].value;
    return NULL;
}

static void test_seed_fragments_are_the_two_config_blocks(void **state) {
    (void)state;
    char *first = seed_block(0), *second = seed_block(1);
    assert_non_null(strstr(first, "optimization {"));
    assert_non_null(strstr(first, "cpu_execution_accelerator : ["));
    assert_non_null(strstr(second, "parameters: ["));
    assert_non_null(strstr(second, "PYTORCH_ENABLE_MPS_FALLBACK"));
    free(first);
    free(second);
}

static void test_seed_enhanced_configuration_alone(void **state) {
    (void)state;
    char *frag = seed_block(0);
    ts_triton_config *c = parse_ok(frag, "seed-1.pbtxt");
    assert_int_equal(c->num_cpu_accelerators, 1);
    assert_int_equal(c->num_gpu_accelerators, 1);
    const ts_triton_accelerator *amx = &c->cpu_accelerators[0], *mps = &c->gpu_accelerators[0];
    assert_string_equal(amx->name, "amx");
    assert_int_equal(amx->num_params, 2);
    assert_string_equal(accel_param(amx, "tile_size"), "32");
    assert_string_equal(accel_param(amx, "quantization_support"), "int4");
    /* positions point at the values as written in the indented fragment */
    assert_int_equal(amx->line, 5);
    assert_int_equal(amx->col, 19);
    assert_int_equal(amx->params[0].line, 6);
    assert_int_equal(amx->params[0].col, 49);
    assert_string_equal(mps->name, "mps");
    assert_string_equal(accel_param(mps, "precision"), "fp16");
    assert_string_equal(accel_param(mps, "use_unified_memory"), "true");
    assert_int_equal(c->num_parameters, 0);
    assert_int_equal(c->cpu_fallback, -1);
    assert_int_equal(c->version_policy, TS_VERSION_POLICY_LATEST);
    assert_int_equal(c->latest_num_versions, 1);
    free(c);
    free(frag);
}

static void test_seed_configuration_template_alone(void **state) {
    (void)state;
    char *frag = seed_block(1);
    ts_triton_config *c = parse_ok(frag, "seed-2.pbtxt");
    assert_int_equal(c->num_cpu_accelerators, 1);
    assert_string_equal(c->cpu_accelerators[0].name, "amx");
    assert_string_equal(accel_param(&c->cpu_accelerators[0], "tile_size"), "32");
    assert_int_equal(c->num_gpu_accelerators, 1);
    assert_string_equal(c->gpu_accelerators[0].name, "mps");
    assert_string_equal(accel_param(&c->gpu_accelerators[0], "use_unified_memory"), "true");
    assert_int_equal(c->num_parameters, 2);
    assert_string_equal(c->parameters[0].key, "MODEL_QUANTIZATION");
    assert_string_equal(c->parameters[0].value, "int4");
    assert_string_equal(c->parameters[1].key, "PYTORCH_ENABLE_MPS_FALLBACK");
    assert_string_equal(c->parameters[1].value, "1");
    assert_true(c->has_quantization);
    assert_int_equal(c->quantization.kind, TS_QUANT_INT4);
    assert_int_equal(c->cpu_fallback, 1);
    free(c);
    free(frag);
}

/* A full configuration for the seed's Qwen3-235B deployment: the first fragment verbatim between
 * ordinary Triton fields. */
static void test_seed_fragment_in_full_config(void **state) {
    (void)state;
    char *frag = seed_block(0);
    char text[8192];
    snprintf(text, sizeof text,
             "# Qwen3-235B-A22B served by tessera through Triton's model repository layout\n"
             "name: \"qwen3-235b-a22b\"\n"
             "backend: \"tessera\"\n"
             "max_batch_size: 8\n"
             "model_transaction_policy { decoupled: true }\n"
             "input [\n"
             "  { name: \"text_input\" data_type: TYPE_STRING dims: [ 1 ] },\n"
             "  { name: \"stream\" data_type: TYPE_BOOL dims: [ 1 ] optional: true }\n"
             "]\n"
             "output [ { name: \"text_output\" data_type: TYPE_STRING dims: [ -1 ] } ]\n"
             "instance_group [ { count: 1 kind: KIND_AUTO } ]\n"
             "dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 2000 }\n"
             "%s"
             "parameters: [\n"
             "  { key: \"MODEL_QUANTIZATION\" value: { string_value: \"int4\" } },\n"
             "  { key: \"TESSERA_CONTEXT_LENGTH\" value: { string_value: \"32768\" } },\n"
             "  { key: \"TESSERA_KV_CACHE_BYTES\" value: { string_value: \"16GiB\" } },\n"
             "  { key: \"TESSERA_THREADS\" value: { string_value: \"16\" } },\n"
             "  { key: \"TESSERA_MAX_SEQUENCES\" value: { string_value: \"4\" } },\n"
             "  { key: \"TESSERA_CPU_FALLBACK\" value: { string_value: \"true\" } }\n"
             "]\n",
             frag);
    ts_triton_config *c = parse_ok(text, "qwen3-235b-a22b/config.pbtxt");
    assert_string_equal(c->name, "qwen3-235b-a22b");
    assert_true(c->has_name);
    assert_string_equal(c->backend, "tessera");
    assert_int_equal(c->max_batch_size, 8);
    assert_true(c->decoupled);
    assert_int_equal(c->num_inputs, 2);
    assert_string_equal(c->inputs[0].name, "text_input");
    assert_int_equal(c->inputs[0].data_type, TS_TRITON_TYPE_STRING);
    assert_int_equal(c->inputs[0].num_dims, 1);
    assert_int_equal(c->inputs[0].dims[0], 1);
    assert_true(c->inputs[1].optional);
    assert_int_equal(c->num_outputs, 1);
    assert_int_equal(c->outputs[0].dims[0], -1);
    assert_int_equal(c->num_groups, 1);
    assert_int_equal(c->groups[0].kind, TS_TRITON_KIND_AUTO);
    assert_int_equal(c->groups[0].count, 1);
    assert_true(c->has_dynamic_batching);
    assert_int_equal(c->num_preferred_batch_sizes, 2);
    assert_int_equal(c->preferred_batch_sizes[1], 8);
    assert_int_equal(c->max_queue_delay_us, 2000);
    assert_string_equal(c->cpu_accelerators[0].name, "amx");
    assert_string_equal(c->gpu_accelerators[0].name, "mps");
    /* the fragment starts on line 13 of this file, so its positions move by 12 lines */
    assert_int_equal(c->cpu_accelerators[0].line, 17);
    assert_int_equal(c->quantization.kind, TS_QUANT_INT4);
    assert_int_equal(c->context_length, 32768);
    assert_int_equal(c->kv_cache_bytes, 16ull << 30);
    assert_int_equal(c->threads, 16);
    assert_int_equal(c->max_sequences, 4);
    assert_int_equal(c->cpu_fallback, 1);
    assert_int_equal(ts_triton_config_kind(c), TS_TRITON_KIND_AUTO);
    free(c);
    free(frag);
}

static void test_seed_template_in_full_config(void **state) {
    (void)state;
    char *frag = seed_block(1);
    char text[8192];
    snprintf(text, sizeof text,
             "name: \"qwen3\"\n"
             "backend: \"tessera\"\n"
             "max_batch_size: 0\n"
             "version_policy: { latest: { num_versions: 2 } }\n"
             "instance_group [ { kind: KIND_GPU, count: 1, gpus: [ 0 ] } ]\n"
             "%s",
             frag);
    ts_triton_config *c = parse_ok(text, "qwen3/config.pbtxt");
    assert_int_equal(c->latest_num_versions, 2);
    assert_int_equal(c->groups[0].kind, TS_TRITON_KIND_GPU);
    assert_int_equal(c->groups[0].num_gpus, 1);
    assert_int_equal(ts_triton_config_kind(c), TS_TRITON_KIND_GPU);
    assert_int_equal(c->quantization.kind, TS_QUANT_INT4);
    assert_int_equal(c->cpu_fallback, 1);
    assert_string_equal(c->gpu_accelerators[0].name, "mps");
    free(c);
    free(frag);
}

/* The configuration Triton's vLLM backend documents for its model repository. */
static void test_vllm_style_config(void **state) {
    (void)state;
    const char *text = "backend: \"vllm\"\n"
                       "\n"
                       "# The usage of device is deferred to the vLLM engine\n"
                       "instance_group [\n"
                       "  {\n"
                       "    count: 1\n"
                       "    kind: KIND_MODEL\n"
                       "  }\n"
                       "]\n"
                       "model_transaction_policy {\n"
                       "  decoupled: True\n"
                       "}\n"
                       "max_batch_size: 0\n"
                       "input [\n"
                       "  {\n"
                       "    name: \"text_input\"\n"
                       "    data_type: TYPE_STRING\n"
                       "    dims: [ 1 ]\n"
                       "  },\n"
                       "  {\n"
                       "    name: \"stream\"\n"
                       "    data_type: TYPE_BOOL\n"
                       "    dims: [ 1 ]\n"
                       "    optional: true\n"
                       "  },\n"
                       "  {\n"
                       "    name: \"sampling_parameters\"\n"
                       "    data_type: TYPE_STRING\n"
                       "    dims: [ 1 ]\n"
                       "    optional: true\n"
                       "  },\n"
                       "  {\n"
                       "    name: \"exclude_input_in_output\"\n"
                       "    data_type: TYPE_BOOL\n"
                       "    dims: [ 1 ]\n"
                       "    optional: true\n"
                       "  }\n"
                       "]\n"
                       "output [\n"
                       "  {\n"
                       "    name: \"text_output\"\n"
                       "    data_type: TYPE_STRING\n"
                       "    dims: [ -1 ]\n"
                       "  }\n"
                       "]\n";
    ts_triton_config *c = parse_ok(text, "vllm_model/config.pbtxt");
    assert_false(c->has_name);
    assert_string_equal(c->backend, "vllm");
    assert_true(c->decoupled);
    assert_int_equal(c->num_inputs, 4);
    assert_string_equal(c->inputs[3].name, "exclude_input_in_output");
    assert_int_equal(c->groups[0].kind, TS_TRITON_KIND_MODEL);
    assert_int_equal(ts_triton_config_kind(c), TS_TRITON_KIND_AUTO);
    free(c);
}

/* In the style of TensorRT-LLM's tensorrt_llm model: repeated keys instead of lists, ':' before
 * message values, string parameters, several scheduling and optimization fields tessera ignores. */
static void test_trtllm_style_config(void **state) {
    (void)state;
    const char *text = "name: \"tensorrt_llm\"\n"
                       "backend: \"tensorrtllm\"\n"
                       "max_batch_size: 64\n"
                       "\n"
                       "model_transaction_policy {\n"
                       "  decoupled: false\n"
                       "}\n"
                       "\n"
                       "dynamic_batching {\n"
                       "    preferred_batch_size: [ 64 ]\n"
                       "    max_queue_delay_microseconds: 100\n"
                       "    default_queue_policy: { max_queue_size: 0 }\n"
                       "}\n"
                       "\n"
                       "input [\n"
                       "  {\n"
                       "    name: \"text_input\"\n"
                       "    data_type: TYPE_STRING\n"
                       "    dims: [ -1 ]\n"
                       "  },\n"
                       "  {\n"
                       "    name: \"max_tokens\"\n"
                       "    data_type: TYPE_INT32\n"
                       "    dims: [ 1 ]\n"
                       "    reshape: { shape: [ ] }\n"
                       "  },\n"
                       "  {\n"
                       "    name: \"end_id\"\n"
                       "    data_type: TYPE_INT32\n"
                       "    dims: [ 1 ]\n"
                       "    reshape: { shape: [ ] }\n"
                       "    optional: true\n"
                       "  }\n"
                       "]\n"
                       "output [\n"
                       "  {\n"
                       "    name: \"text_output\"\n"
                       "    data_type: TYPE_STRING\n"
                       "    dims: [ -1 ]\n"
                       "  },\n"
                       "  {\n"
                       "    name: \"cum_log_probs\"\n"
                       "    data_type: TYPE_FP32\n"
                       "    dims: [ -1 ]\n"
                       "  }\n"
                       "]\n"
                       "instance_group [\n"
                       "  {\n"
                       "    count: 1\n"
                       "    kind : KIND_CPU\n"
                       "  }\n"
                       "]\n"
                       "version_policy: { specific: { versions: [ 1, 3 ] } }\n"
                       "optimization { cuda { graphs: true busy_wait_events: false } priority: PRIORITY_MAX }\n"
                       "parameters: {\n"
                       "  key: \"max_beam_width\"\n"
                       "  value: {\n"
                       "    string_value: \"1\"\n"
                       "  }\n"
                       "}\n"
                       "parameters: {\n"
                       "  key: \"gpt_model_type\"\n"
                       "  value: {\n"
                       "    string_value: \"inflight_fused_batching\"\n"
                       "  }\n"
                       "}\n"
                       "parameters: {\n"
                       "  key: \"MODEL_QUANTIZATION\"\n"
                       "  value: {\n"
                       "    string_value: \"INT8\"\n"
                       "  }\n"
                       "}\n";
    ts_triton_config *c = parse_ok(text, "tensorrt_llm/config.pbtxt");
    assert_string_equal(c->name, "tensorrt_llm");
    assert_int_equal(c->max_batch_size, 64);
    assert_false(c->decoupled);
    assert_int_equal(c->num_preferred_batch_sizes, 1);
    assert_int_equal(c->preferred_batch_sizes[0], 64);
    assert_int_equal(c->max_queue_delay_us, 100);
    assert_int_equal(c->num_inputs, 3);
    assert_int_equal(c->num_outputs, 2);
    assert_int_equal(c->groups[0].kind, TS_TRITON_KIND_CPU);
    assert_int_equal(ts_triton_config_kind(c), TS_TRITON_KIND_CPU);
    assert_int_equal(c->version_policy, TS_VERSION_POLICY_SPECIFIC);
    assert_int_equal(c->num_versions, 2);
    assert_int_equal(c->versions[1], 3);
    assert_int_equal(c->num_parameters, 3);
    assert_string_equal(ts_triton_config_param(c, "gpt_model_type")->value, "inflight_fused_batching");
    assert_int_equal(c->quantization.kind, TS_QUANT_INT8);
    free(c);
}

/* ---- text-format features, on the schema-free tree ---- */

static ts_tp_doc *tree(const char *text) {
    ts_tp_doc *doc = NULL;
    ts_error err = {{0}};
    if (ts_tp_parse(text, strlen(text), "t.pbtxt", &doc, &err) != 0) fail_msg("parse failed: %s", err.message);
    return doc;
}

static void test_strings_and_escapes(void **state) {
    (void)state;
    ts_tp_doc *doc = tree("a: \"x\\x41\\101\\u00e9\\U0001F600\\n\\t\\\\\\\"\\'\\?\"\n"
                          "b: 'single \"quoted\"'\n"
                          "c: \"adjacent \" 'literals' \" join\" # and a comment\n"
                          "d: \"\\ud83d\\ude00\" e: \"\"\n");
    const ts_tp_node *root = ts_tp_root(doc);
    const ts_tp_node *a = ts_tp_get(root, "a");
    const char want_a[] = "xAA\xc3\xa9\xf0\x9f\x98\x80\n\t\\\"'?";
    assert_int_equal(a->text_len, sizeof want_a - 1);
    assert_memory_equal(a->text, want_a, sizeof want_a - 1);
    assert_string_equal(ts_tp_get(root, "b")->text, "single \"quoted\"");
    assert_string_equal(ts_tp_get(root, "c")->text, "adjacent literals join");
    assert_string_equal(ts_tp_get(root, "d")->text, "\xf0\x9f\x98\x80");
    assert_int_equal(ts_tp_get(root, "e")->text_len, 0);
    ts_tp_free(doc);
}

static void test_numbers(void **state) {
    (void)state;
    ts_tp_doc *doc = tree("h: 0x1F o: 017 n: -5 big: 18446744073709551615 over: 18446744073709551616\n"
                          "e: 1e-3 d: .5 f: 2.5f g: 1f i: inf j: -inf k: nan l: -Infinity m: - 7\n");
    const ts_tp_node *r = ts_tp_root(doc);
    ts_error err;
    int64_t i;
    uint64_t u;
    double d;
    assert_int_equal(ts_tp_int(doc, ts_tp_get(r, "h"), INT64_MIN, INT64_MAX, &i, &err), 0);
    assert_int_equal(i, 31);
    assert_int_equal(ts_tp_int(doc, ts_tp_get(r, "o"), INT64_MIN, INT64_MAX, &i, &err), 0);
    assert_int_equal(i, 15);
    assert_int_equal(ts_tp_int(doc, ts_tp_get(r, "n"), INT64_MIN, INT64_MAX, &i, &err), 0);
    assert_int_equal(i, -5);
    assert_int_equal(ts_tp_uint(doc, ts_tp_get(r, "big"), UINT64_MAX, &u, &err), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(ts_tp_uint(doc, ts_tp_get(r, "over"), UINT64_MAX, &u, &err), -1);
    assert_string_equal(err.message,
                        "t.pbtxt:1:54: field over: 18446744073709551616 is out of range (0 to 18446744073709551615)");
    assert_int_equal(ts_tp_double(doc, ts_tp_get(r, "e"), &d, &err), 0);
    assert_true(d == 1e-3);
    assert_int_equal(ts_tp_double(doc, ts_tp_get(r, "d"), &d, &err), 0);
    assert_true(d == 0.5);
    assert_int_equal(ts_tp_double(doc, ts_tp_get(r, "f"), &d, &err), 0);
    assert_true(d == 2.5);
    assert_true(ts_tp_get(r, "g")->is_float);
    assert_int_equal(ts_tp_int(doc, ts_tp_get(r, "g"), INT64_MIN, INT64_MAX, &i, &err), -1);
    assert_string_equal(err.message, "t.pbtxt:2:26: field g expects an integer, found number 1f");
    assert_int_equal(ts_tp_double(doc, ts_tp_get(r, "i"), &d, &err), 0);
    assert_true(d > 1e308);
    assert_int_equal(ts_tp_double(doc, ts_tp_get(r, "j"), &d, &err), 0);
    assert_true(d < -1e308);
    assert_int_equal(ts_tp_double(doc, ts_tp_get(r, "k"), &d, &err), 0);
    assert_true(d != d);
    assert_int_equal(ts_tp_double(doc, ts_tp_get(r, "l"), &d, &err), 0);
    assert_true(d < -1e308);
    assert_int_equal(ts_tp_int(doc, ts_tp_get(r, "m"), INT64_MIN, INT64_MAX, &i, &err), 0);
    assert_int_equal(i, -7);
    ts_tp_free(doc);
}

static void test_booleans_where_the_schema_says_bool(void **state) {
    (void)state;
    static const char *const spellings[] = {"true", "True", "t", "1", "false", "False", "f", "0"};
    for (int i = 0; i < 8; i++) {
        char text[128];
        snprintf(text, sizeof text, "model_transaction_policy { decoupled: %s }", spellings[i]);
        ts_triton_config *c = parse_ok(text, "b.pbtxt");
        assert_int_equal(c->decoupled, i < 4);
        free(c);
    }
}

static void test_structure_delimiters_lists_and_repeats(void **state) {
    (void)state;
    ts_tp_doc *doc = tree("m < x: 1; y: 2, >\n"
                          "m: { x: 3 }\n"
                          "r: [1, 2]; r: 3\n"
                          "l [ { x: 1 }, < x: 2 > ]\n"
                          "empty: []\n"
                          "nested { inner { deeper: \"z\" } }\n");
    const ts_tp_node *r = ts_tp_root(doc);
    assert_int_equal(ts_tp_count(r, "m"), 2);
    assert_int_equal(ts_tp_count(r, "r"), 3);
    assert_int_equal(ts_tp_count(r, "l"), 2);
    assert_int_equal(ts_tp_count(r, "empty"), 0);
    const ts_tp_node *m = ts_tp_get(r, "m");
    assert_int_equal(m->kind, TS_TP_MESSAGE);
    assert_string_equal(ts_tp_get(m, "x")->text, "3");
    const ts_tp_node *l = ts_tp_get(r, "l");
    assert_int_equal(l->kind, TS_TP_MESSAGE);
    assert_int_equal(l->value_line, 4);
    assert_int_equal(l->value_col, 15);
    const ts_tp_node *deeper = ts_tp_get(ts_tp_get(ts_tp_get(r, "nested"), "inner"), "deeper");
    assert_string_equal(deeper->text, "z");
    ts_tp_free(doc);
}

static void test_map_entries_both_ways(void **state) {
    (void)state;
    /* a map<string,string> as repeated entries and as a list; a map<string, ModelParameter> both ways */
    const char *text =
        "optimization { execution_accelerators {\n"
        "  cpu_execution_accelerator { name: \"avx2\" parameters { key: \"threads\" value: \"4\" } }\n"
        "  cpu_execution_accelerator: [ { name: \"generic\"\n"
        "    parameters: [ { key: \"tile_size\", value: \"64\" }, { key: \"tile_size\", value: \"16\" } ] } ]\n"
        "} }\n"
        "parameters { key: \"TESSERA_THREADS\" value { string_value: \"2\" } }\n"
        "parameters: [ { key: \"other\" value: { string_value: \"x\" } } ]\n";
    ts_triton_config *c = parse_ok(text, "map.pbtxt");
    assert_int_equal(c->num_cpu_accelerators, 2);
    assert_string_equal(accel_param(&c->cpu_accelerators[0], "threads"), "4");
    /* a map keeps the last value of a key */
    assert_int_equal(c->cpu_accelerators[1].num_params, 1);
    assert_string_equal(accel_param(&c->cpu_accelerators[1], "tile_size"), "16");
    assert_int_equal(c->threads, 2);
    assert_string_equal(ts_triton_config_param(c, "other")->value, "x");
    free(c);
}

static void test_byte_sizes_and_switches(void **state) {
    (void)state;
    uint64_t b;
    assert_int_equal(ts_parse_byte_size("8GiB", &b), 0);
    assert_true(b == 8ull << 30);
    assert_int_equal(ts_parse_byte_size("512 MiB", &b), 0);
    assert_true(b == 512ull << 20);
    assert_int_equal(ts_parse_byte_size("2G", &b), 0);
    assert_true(b == 2ull << 30);
    assert_int_equal(ts_parse_byte_size("1.5GB", &b), 0);
    assert_true(b == 1500000000ull);
    assert_int_equal(ts_parse_byte_size("1073741824", &b), 0);
    assert_true(b == 1073741824ull);
    assert_int_equal(ts_parse_byte_size("12 parsecs", &b), -1);
    assert_int_equal(ts_parse_byte_size("-1G", &b), -1);
    assert_int_equal(ts_parse_switch("On"), 1);
    assert_int_equal(ts_parse_switch("no"), 0);
    assert_int_equal(ts_parse_switch("maybe"), -1);
}

/* ---- malformed configurations ---- */

typedef struct {
    const char *text;
    const char *error;
} bad_case;

static void expect_error(const char *text, const char *expected) {
    ts_triton_config *c = calloc(1, sizeof *c);
    ts_error err = {{0}};
    int rc = ts_triton_config_parse(text, strlen(text), "bad.pbtxt", c, &err);
    free(c);
    if (rc == 0) fail_msg("accepted:\n%s", text);
    if (strcmp(err.message, expected) != 0)
        fail_msg("for:\n%s\nexpected: %s\n   found: %s", text, expected, err.message);
}

static void test_malformed_configurations(void **state) {
    (void)state;
    static const bad_case cases[] = {
        {"name: \"m\"\nmax_batch: 8\n",
         "bad.pbtxt:2:1: message type inference.ModelConfig has no field named \"max_batch\""},
        {"optimization { execution_accelerators { cpu_execution_accelerator [ { nam: \"amx\" } ] } }",
         "bad.pbtxt:1:71: message type inference.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator has no "
         "field named \"nam\""},
        {"max_batch_size: \"8\"", "bad.pbtxt:1:17: field max_batch_size (int32) of inference.ModelConfig expects an "
                                  "integer, found string \"8\""},
        {"max_batch_size: 8.5",
         "bad.pbtxt:1:17: field max_batch_size (int32) of inference.ModelConfig expects an integer, found number 8.5"},
        {"max_batch_size: 3000000000",
         "bad.pbtxt:1:17: field max_batch_size (int32) of inference.ModelConfig: 3000000000 is out of range "
         "(-2147483648 to 2147483647)"},
        {"version_policy { latest { num_versions: -1 } }",
         "bad.pbtxt:1:41: field num_versions (uint32) of inference.ModelVersionPolicy.Latest: -1 is out of range (0 "
         "to 4294967295)"},
        {"instance_group [ { kind: KIND_TPU } ]",
         "bad.pbtxt:1:26: field kind (inference.ModelInstanceGroup.Kind) of inference.ModelInstanceGroup: KIND_TPU is "
         "not a value of enum inference.ModelInstanceGroup.Kind (expected one of KIND_AUTO, KIND_GPU, KIND_CPU, "
         "KIND_MODEL)"},
        {"model_transaction_policy { decoupled: \"true\" }",
         "bad.pbtxt:1:39: field decoupled (bool) of inference.ModelTransactionPolicy expects true or false, found "
         "string \"true\""},
        {"model_transaction_policy { decoupled: 2 }",
         "bad.pbtxt:1:39: field decoupled (bool) of inference.ModelTransactionPolicy expects true or false, found "
         "number 2"},
        {"name: \"a\"\nname: \"b\"\n",
         "bad.pbtxt:2:1: non-repeated field name of inference.ModelConfig is given twice (first at 1:1)"},
        {"version_policy {\n  latest { num_versions: 2 }\n  all { }\n}\n",
         "bad.pbtxt:3:3: field all of inference.ModelVersionPolicy is in oneof policy_choice together with latest, "
         "given at 2:3; set only one of them"},
        {"dynamic_batching { }\nsequence_batching { }\n",
         "bad.pbtxt:2:1: field sequence_batching of inference.ModelConfig is in oneof scheduling_choice together "
         "with dynamic_batching, given at 1:1; set only one of them"},
        {"optimization {\n  execution_accelerators {\n    cpu_execution_accelerator : [ { name : \"amx\" } ]\n  }\n",
         "bad.pbtxt:5:1: expected '}' to close the message opened at 1:14, found end of input"},
        {"name: \"abc\n", "bad.pbtxt:1:7: string is not terminated before the end of the line"},
        {"name: \"a\\qb\"", "bad.pbtxt:1:9: invalid escape sequence '\\q' in string"},
        {"name \"m\"", "bad.pbtxt:1:6: expected ':' or '{' after field name \"name\", found string \"m\""},
        {"input [ { name: \"a\" } { name: \"b\" } ]",
         "bad.pbtxt:1:23: expected ',' or ']' in the list opened at 1:7, found '{'"},
        {"input { name: \"text_input\" data_type: TYPE_STRING dims: [ 1, ] }",
         "bad.pbtxt:1:62: expected a value after ',', found ']'"},
        {"input { name: \"text_input\" dims [ 1 ] }",
         "bad.pbtxt:1:33: a list of scalar values for field \"dims\" needs ':' after the field name"},
        {"dynamic_batching: 5",
         "bad.pbtxt:1:19: field dynamic_batching (inference.ModelDynamicBatching) of inference.ModelConfig is a "
         "message; expected '{', found number 5"},
        {"name { }",
         "bad.pbtxt:1:6: field name (string) of inference.ModelConfig is a scalar; expected ':' and a value, found a "
         "message"},
        {"name: [ \"a\" ]",
         "bad.pbtxt:1:7: field name of inference.ModelConfig is not repeated; a list [...] is not allowed"},
        {"max_batch_size: 08", "bad.pbtxt:1:17: invalid octal number 08 (a leading 0 means octal)"},
        {"name: \"m\" @", "bad.pbtxt:1:11: unexpected character '@'"},
        {"optimization < graph { level: 1 } }",
         "bad.pbtxt:1:35: expected '>' to close the message opened at 1:14, found '}'"},
        {"}", "bad.pbtxt:1:1: unexpected '}': no message is open"},
        {": 5", "bad.pbtxt:1:1: expected a field name, found ':'"},
        {"parameters { key: \"MODEL_QUANTIZATION\" value: \"int4\" }",
         "bad.pbtxt:1:47: field value (inference.ModelParameter) of inference.ModelConfig.ParametersEntry is a "
         "message; expected '{', found string \"int4\""},
        {"optimization { execution_accelerators { gpu_execution_accelerator [ { name: \"mps\" parameters { key: "
         "\"precision\" value: { string_value: \"fp16\" } } } ] } }",
         "bad.pbtxt:1:120: field value (string) of "
         "inference.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator.ParametersEntry is a scalar; expected "
         "':' and a value, found a message"},
        {"name: \"\\x\"", "bad.pbtxt:1:8: escape '\\x' needs one or two hexadecimal digits"},
        {"name: \"\\ud800\"", "bad.pbtxt:1:8: high surrogate \\ud800 is not followed by a low surrogate"},
        {"optimization { graph { level: 1e } }", "bad.pbtxt:1:31: invalid number 1e: the exponent has no digits"},
        {"max_batch_size: -abc", "bad.pbtxt:1:18: expected a number after '-', found identifier abc"},
        {"name: \"m\"\nmax_batch_size:\n",
         "bad.pbtxt:3:1: expected a value for field \"max_batch_size\", found end of input"},
        /* extraction: Triton's rules and tessera's conventions */
        {"input [ { name: \"text_input\" data_type: TYPE_INT32 dims: [ 1 ] } ]",
         "bad.pbtxt:1:9: input text_input must have data_type TYPE_STRING, found TYPE_INT32"},
        {"output [ { name: \"logits\" data_type: TYPE_FP32 dims: [ -1 ] } ]",
         "bad.pbtxt:1:10: tessera serves text generation: among the outputs there must be text_output (TYPE_STRING); "
         "found 1 output(s), first \"logits\""},
        {"parameters: [ { key: \"MODEL_QUANTIZATION\" value: { string_value: \"int3\" } } ]",
         "bad.pbtxt:1:66: parameter MODEL_QUANTIZATION: unknown quantization \"int3\" (expected int4, int8, fp16, "
         "bf16, none, or one of f32, q8_0, q4_0, q4_1, iq4_nl, iq4_xs, q4_k, q5_k, q6_k)"},
        {"parameters { key: \"PYTORCH_ENABLE_MPS_FALLBACK\" value: { string_value: \"maybe\" } }",
         "bad.pbtxt:1:72: parameter PYTORCH_ENABLE_MPS_FALLBACK is \"maybe\"; expected 1 or 0 (true/false, yes/no, "
         "on/off)"},
        {"parameters { key: \"TESSERA_CPU_FALLBACK\" value: { string_value: \"1\" } }\n"
         "parameters { key: \"PYTORCH_ENABLE_MPS_FALLBACK\" value: { string_value: \"0\" } }\n",
         "bad.pbtxt:2:72: parameter PYTORCH_ENABLE_MPS_FALLBACK is \"0\" but the other CPU-fallback switch says on"},
        {"parameters { key: \"TESSERA_THREAD\" value: { string_value: \"4\" } }",
         "bad.pbtxt:1:59: unknown parameter TESSERA_THREAD (tessera reads MODEL_QUANTIZATION, TESSERA_CPU_FALLBACK, "
         "TESSERA_CONTEXT_LENGTH, TESSERA_KV_CACHE_BYTES, TESSERA_THREADS, TESSERA_MAX_SEQUENCES)"},
        {"parameters { key: \"TESSERA_CONTEXT_LENGTH\" value: { string_value: \"32k\" } }",
         "bad.pbtxt:1:67: parameter TESSERA_CONTEXT_LENGTH is \"32k\"; expected a whole number from 1 to 16777216"},
        {"version_policy { latest { num_versions: 0 } }",
         "bad.pbtxt:1:41: version_policy latest needs num_versions of 1 or more"},
        {"version_policy { specific { } }", "bad.pbtxt:1:27: version_policy specific lists no versions"},
        {"instance_group [ { kind: KIND_CPU gpus: [ 0 ] } ]",
         "bad.pbtxt:1:43: instance_group of kind KIND_CPU cannot list gpus"},
        {"optimization { execution_accelerators { cpu_execution_accelerator { parameters { key: \"threads\" value: "
         "\"2\" } } } }",
         "bad.pbtxt:1:67: an entry of cpu_execution_accelerator needs a name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_error(cases[i].text, cases[i].error);
    assert_true(sizeof cases / sizeof cases[0] >= 20);
}

static void test_nesting_limit(void **state) {
    (void)state;
    char text[400] = "";
    for (int i = 0; i < 70; i++) strcat(text, "x { ");
    expect_error(text, "bad.pbtxt:1:259: messages are nested more than 64 deep");
}

static void test_node_limit(void **state) {
    (void)state;
    size_t n = (size_t)TS_TP_MAX_NODES + 1;
    char *text = malloc(n * 4 + 1);
    for (size_t i = 0; i < n; i++) memcpy(text + 4 * i, "a:1 ", 4);
    ts_tp_doc *doc = NULL;
    ts_error err = {{0}};
    assert_int_equal(ts_tp_parse(text, n * 4, "big.pbtxt", &doc, &err), -1);
    assert_string_equal(err.message, "big.pbtxt:1:1048577: more than 262144 fields and values; this is not a "
                                     "configuration tessera reads");
    free(text);
}

/* Truncating a valid configuration at every byte never crashes and always reports a position. */
static void test_every_truncation_is_handled(void **state) {
    (void)state;
    char *frag = seed_block(1);
    size_t n = strlen(frag);
    for (size_t cut = 0; cut < n; cut++) {
        char *copy = malloc(cut ? cut : 1);
        memcpy(copy, frag, cut);
        ts_triton_config *c = calloc(1, sizeof *c);
        ts_error err = {{0}};
        if (ts_triton_config_parse(copy, cut, "cut.pbtxt", c, &err) != 0)
            assert_non_null(strstr(err.message, "cut.pbtxt:"));
        free(c);
        free(copy);
    }
    free(frag);
}

/* Random byte edits of the seed's configurations: every result parses or fails with a positioned
 * error; run under the sanitizers this also shows that no input reads or writes out of bounds. */
static void test_random_mutations(void **state) {
    (void)state;
    char *frags[2] = {seed_block(0), seed_block(1)};
    static const char alphabet[] = "{}<>[]:,;-#\"'\\\n 0123456789.eExXfinatTF_abz\x01\xff";
    uint64_t rng = 12345;
    for (int iter = 0; iter < 4000; iter++) {
        const char *base = frags[iter & 1];
        size_t n = strlen(base);
        char *copy = malloc(n + 8);
        memcpy(copy, base, n);
        int edits = 1 + (int)(ts_test_rand(&rng) % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)(ts_test_rand(&rng) % n);
            uint64_t kind = ts_test_rand(&rng) % 3;
            char c = alphabet[ts_test_rand(&rng) % (sizeof alphabet - 1)];
            if (kind == 0) copy[at] = c;                                            /* replace */
            else if (kind == 1) memmove(copy + at, copy + at + 1, n - at - 1), n--; /* delete */
            else memmove(copy + at + 1, copy + at, n - at), copy[at] = c, n++;      /* insert */
        }
        ts_triton_config *c = calloc(1, sizeof *c);
        ts_error err = {{0}};
        if (ts_triton_config_parse(copy, n, "mut.pbtxt", c, &err) != 0 && strncmp(err.message, "mut.pbtxt:", 10) != 0)
            fail_msg("error without a position: %s", err.message);
        free(c);
        free(copy);
    }
    free(frags[0]);
    free(frags[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_fragments_are_the_two_config_blocks),
        cmocka_unit_test(test_seed_enhanced_configuration_alone),
        cmocka_unit_test(test_seed_configuration_template_alone),
        cmocka_unit_test(test_seed_fragment_in_full_config),
        cmocka_unit_test(test_seed_template_in_full_config),
        cmocka_unit_test(test_vllm_style_config),
        cmocka_unit_test(test_trtllm_style_config),
        cmocka_unit_test(test_strings_and_escapes),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_booleans_where_the_schema_says_bool),
        cmocka_unit_test(test_structure_delimiters_lists_and_repeats),
        cmocka_unit_test(test_map_entries_both_ways),
        cmocka_unit_test(test_byte_sizes_and_switches),
        cmocka_unit_test(test_malformed_configurations),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_node_limit),
        cmocka_unit_test(test_every_truncation_is_handled),
        cmocka_unit_test(test_random_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
