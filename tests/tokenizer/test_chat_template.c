/* Chat templates end to end: every case of ../shared/testdata/chat-template-cases.json (Qwen3's template,
 * thinking on and off, multi-turn) renders byte for byte and tokenizes to the listed ids; Qwen3's tool
 * calling and reasoning_content paths, tiny-code's ChatML template, DialoGPT's turns joined by
 * <|endoftext|>, and templates from a ts_vocab_spec and from tokenizer_config.json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support/testlib.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

static char *render(const ts_chat_template *t, const char *messages_json, int add_gen, int thinking, const char *tools_json) {
    json_error_t je;
    json_t *messages = json_loads(messages_json, 0, &je);
    if (!messages) fail_msg("bad test JSON: %s", je.text);
    json_t *tools = tools_json ? json_loads(tools_json, 0, &je) : NULL;
    ts_chat_options opt;
    ts_chat_options_init(&opt);
    opt.add_generation_prompt = add_gen;
    opt.enable_thinking = thinking;
    opt.tools = tools;
    char *out;
    size_t len;
    ts_error err = {{0}};
    if (ts_chat_render(t, messages, &opt, &out, &len, &err)) fail_msg("%s", err.message);
    assert_int_equal(strlen(out), len);
    json_decref(messages);
    json_decref(tools);
    return out;
}

static void test_qwen3_reference_cases(void **state) {
    (void)state;
    char path[1024];
    ts_error err = {{0}};
    ts_chat_template *t;
    ts_tokenizer *tok;
    const char *dir = ts_test_shared_path("testdata/qwen3-tiny-tok", path, sizeof path);
    if (ts_chat_template_load_dir(dir, &t, &err)) fail_msg("%s", err.message);
    if (ts_tokenizer_load_dir(dir, &tok, &err)) fail_msg("%s", err.message);
    char cpath[1024];
    json_t *root = ts_test_load_json(ts_test_shared_path("testdata/chat-template-cases.json", cpath, sizeof cpath));
    const json_t *cases = json_object_get(root, "cases");
    assert_true(json_array_size(cases) >= 8);
    size_t i;
    const json_t *c;
    json_array_foreach(cases, i, c) {
        ts_chat_options opt;
        ts_chat_options_init(&opt);
        opt.add_generation_prompt = json_is_true(json_object_get(c, "add_generation_prompt"));
        opt.enable_thinking = json_is_true(json_object_get(c, "enable_thinking"));
        char *out;
        size_t len;
        if (ts_chat_render(t, json_object_get(c, "messages"), &opt, &out, &len, &err)) fail_msg("case %zu: %s", i, err.message);
        const char *want = json_string_value(json_object_get(c, "text"));
        if (strcmp(out, want)) fail_msg("case %zu renders\n%s\nexpected\n%s", i, out, want);
        int n_want;
        int32_t *want_ids = ts_test_json_ids(json_object_get(c, "ids"), &n_want);
        int32_t *ids;
        size_t n;
        assert_int_equal(ts_tokenizer_encode(tok, out, len, 1, &ids, &n, &err), 0);
        assert_int_equal(n, (size_t)n_want);
        assert_memory_equal(ids, want_ids, n * sizeof *ids);
        free(ids);
        free(want_ids);
        free(out);
    }
    json_decref(root);
    /* the tokenizer carries the same template */
    ts_chat_template *from_tok;
    assert_int_equal(ts_chat_template_from_tokenizer(tok, &from_tok, &err), 0);
    assert_string_equal(ts_chat_template_source(from_tok), ts_chat_template_source(t));
    ts_chat_template_free(from_tok);
    ts_tokenizer_free(tok);
    ts_chat_template_free(t);
}

static ts_chat_template *qwen3(void) {
    char path[1024];
    ts_error err = {{0}};
    ts_chat_template *t;
    if (ts_chat_template_load_dir(ts_test_shared_path("testdata/qwen3-tiny-tok", path, sizeof path), &t, &err))
        fail_msg("%s", err.message);
    return t;
}

/* Expected texts below were produced by transformers' environment (jinja2 3.1, trim_blocks, lstrip_blocks,
 * tojson with ensure_ascii=False) from the same template. */
static void test_qwen3_tools(void **state) {
    (void)state;
    ts_chat_template *t = qwen3();
    char *out = render(t,
                       "[{\"role\": \"system\", \"content\": \"Be helpful.\"},"
                       " {\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
                       " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": \"function\", \"function\":"
                       " {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"°C\"}}}]},"
                       " {\"role\": \"tool\", \"content\": \"{\\\"temp\\\": 21.5}\"},"
                       " {\"role\": \"tool\", \"content\": \"sunny\"}]",
                       1, -1,
                       "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the "
                       "weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
                       "\"string\"}}, \"required\": [\"city\"]}}}]");
    const char *want =
        "<|im_start|>system\nBe helpful.\n\n# Tools\n\nYou may call one or more functions to assist with the user "
        "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": "
        "\"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", \"parameters\": "
        "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n</tools>"
        "\n\nFor each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
        "<args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", "
        "\"unit\": \"°C\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{\"temp\": 21.5}\n"
        "</tool_response>\n<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
    if (strcmp(out, want)) fail_msg("got\n%s", out);
    free(out);
    ts_chat_template_free(t);
}

static void test_qwen3_reasoning_content(void **state) {
    (void)state;
    ts_chat_template *t = qwen3();
    /* after the last user turn, reasoning is kept (from reasoning_content or from <think> in content) */
    char *out = render(t,
                       "[{\"role\": \"user\", \"content\": \"Q1\"},"
                       " {\"role\": \"assistant\", \"content\": \"A1\", \"reasoning_content\": \"R1\"},"
                       " {\"role\": \"user\", \"content\": \"Q2\"},"
                       " {\"role\": \"assistant\", \"content\": \"<think>\\nR2\\n</think>\\n\\nA2\"}]",
                       0, 1, NULL);
    const char *want = "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2"
                       "<|im_end|>\n<|im_start|>assistant\n<think>\nR2\n</think>\n\nA2<|im_end|>\n";
    if (strcmp(out, want)) fail_msg("got\n%s", out);
    free(out);
    ts_chat_template_free(t);
}

static void test_tiny_code_chatml(void **state) {
    (void)state;
    char path[1024];
    ts_error err = {{0}};
    ts_chat_template *t;
    if (ts_chat_template_load_dir(ts_test_shared_path("models/tiny-code/model", path, sizeof path), &t, &err))
        fail_msg("%s", err.message);
    char *out = render(t, "[{\"role\": \"user\", \"content\": \"def f():\"}]", 1, -1, NULL);
    assert_string_equal(out, "<|im_start|>user\ndef f():<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    ts_chat_template_free(t);
}

static void test_dialogpt_turns_joined_by_eos(void **state) {
    (void)state;
    char path[1024];
    ts_error err = {{0}};
    ts_chat_template *t;
    const char *dir = ts_test_shared_path("testdata/dialogpt-tiny", path, sizeof path);
    if (ts_chat_template_load_dir(dir, &t, &err)) fail_msg("%s", err.message);
    char *out = render(t, "[{\"role\": \"user\", \"content\": \"Hi!\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"},"
                          " {\"role\": \"user\", \"content\": \"How are you?\"}]", 1, -1, NULL);
    assert_string_equal(out, "Hi!<|endoftext|>Hello.<|endoftext|>How are you?<|endoftext|>");
    ts_tokenizer *tok;
    if (ts_tokenizer_load_dir(dir, &tok, &err)) fail_msg("%s", err.message);
    int32_t *ids;
    size_t n;
    assert_int_equal(ts_tokenizer_encode(tok, out, strlen(out), 1, &ids, &n, &err), 0);
    assert_int_equal(ids[n - 1], 50256);
    free(ids);
    free(out);
    ts_chat_template *from_tok;
    assert_int_equal(ts_chat_template_from_tokenizer(tok, &from_tok, &err), 0);
    out = render(from_tok, "[{\"role\": \"user\", \"content\": \"x\"}]", 1, -1, NULL);
    assert_string_equal(out, "x<|endoftext|>");
    free(out);
    ts_chat_template_free(from_tok);
    ts_tokenizer_free(tok);
    ts_chat_template_free(t);
}

/* tokenizer_config.json with a list of named templates: "default" is chosen. */
static void test_config_template_list(void **state) {
    (void)state;
    char dir[1024], file[1200];
    snprintf(dir, sizeof dir, "%s/chat-config", ts_test_tmpdir());
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    const char *cfg = "{\"eos_token\": {\"content\": \"</s>\"}, \"chat_template\": [{\"name\": \"tool_use\", \"template\": "
                      "\"T\"}, {\"name\": \"default\", \"template\": \"{% for m in messages %}[{{ m.role }}]{{ m.content "
                      "}}{{ eos_token }}{% endfor %}\"}]}";
    snprintf(file, sizeof file, "%s/tokenizer_config.json", dir);
    ts_test_write_file(file, cfg, strlen(cfg));
    ts_chat_template *t;
    ts_error err = {{0}};
    if (ts_chat_template_load_dir(dir, &t, &err)) fail_msg("%s", err.message);
    char *out = render(t, "[{\"role\": \"user\", \"content\": \"a\"}]", 1, -1, NULL);
    assert_string_equal(out, "[user]a</s>");
    free(out);
    ts_chat_template_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_reference_cases),
        cmocka_unit_test(test_qwen3_tools),
        cmocka_unit_test(test_qwen3_reasoning_content),
        cmocka_unit_test(test_tiny_code_chatml),
        cmocka_unit_test(test_dialogpt_turns_joined_by_eos),
        cmocka_unit_test(test_config_template_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
