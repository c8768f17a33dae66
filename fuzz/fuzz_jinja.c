/* Fuzz target: a chat template through ts_jinja_parse, then ts_jinja_render with a fixed conversation
 * (system, user, assistant with a tool call, tool result), tools, and the usual variables, under limits
 * smaller than the defaults so that each input stays fast; the limits themselves are what is tested. */
/* fuzz-max-len: 16384 */
/* fuzz-dict: jinja.dict */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "tokenizer/jinja.h"

static const char VARIABLES[] =
    "{\"messages\": ["
    "{\"role\": \"system\", \"content\": \"You are terse.\"},"
    "{\"role\": \"user\", \"content\": \"What is 2+2? <think>no</think> \\u00e9\\ud83c\\udf89\"},"
    "{\"role\": \"assistant\", \"content\": \"\", \"reasoning_content\": \"add\","
    " \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 2}}}]},"
    "{\"role\": \"tool\", \"content\": \"4\"},"
    "{\"role\": \"assistant\", \"content\": \"<think>\\nsum\\n</think>\\n\\n4\"},"
    "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"thanks\"}]}],"
    "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"add\", \"description\": \"adds\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"number\"}}, \"required\": [\"a\"]}}}],"
    "\"add_generation_prompt\": true, \"enable_thinking\": false,"
    "\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"numbers\": [3, 1.5, -2, null, true],"
    /* the variables tests/tokenizer/test_jinja.c renders with, so that its templates (seeds) render too */
    "\"msgs\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"Hi\"}],"
    "\"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2]}, \"s\": \"Hello, World\", \"n\": 7, \"f\": 2.5,"
    "\"l\": [3, 1, 2], \"e\": [], \"u\": \"na\u00efve \u00c9T\u00c9\", \"none\": null, \"t\": true,"
    "\"people\": [{\"name\": \"Ann\", \"age\": 30, \"admin\": true}, {\"name\": \"Bob\", \"age\": 25}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    static json_t *variables;
    if (!variables) {
        json_error_t je;
        variables = json_loads(VARIABLES, 0, &je);
        if (!variables) abort();
    }
    ts_jinja_template *tpl = NULL;
    ts_error err = {{0}};
    int rc = ts_jinja_parse((const char *)data, size, "fuzz.jinja", &tpl, &err);
    fuzz_check("ts_jinja_parse", rc, &err);
    if (rc != 0) {
        if (tpl) abort();
        return 0;
    }
    ts_jinja_limits limits = ts_jinja_default_limits();
    limits.max_output = 64 << 10;
    limits.max_memory = 8 << 20;
    limits.max_steps = 200000;
    limits.max_depth = 32;
    char *out = NULL;
    size_t out_len = 0;
    rc = ts_jinja_render(tpl, variables, &limits, &out, &out_len, &err);
    fuzz_check("ts_jinja_render", rc, &err);
    if (rc == 0) {
        if (out_len > limits.max_output || strlen(out) > out_len) abort();
        free(out);
    }
    ts_jinja_free(tpl);
    return 0;
}
