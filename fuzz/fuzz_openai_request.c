/* Fuzz target: an OpenAI request body (/v1/completions and /v1/chat/completions) through what the server
 * does before a generation starts: the body as one JSON object, the generation parameters
 * (ts_gen_params_read), then the prompt: messages rendered with the model's chat template and encoded
 * (ts_prompt_chat), a text prompt (or a list of them) encoded, or token ids checked against the
 * vocabulary; the ids are decoded back as the server does for echo and log-probabilities. */
/* fuzz-requires: src/server/prompt.c */
/* fuzz-requires: src/server/gen_params.c */
/* fuzz-max-len: 65536 */
/* fuzz-dict: http_json.dict */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "fuzz_served_model.h"
#include "server/api_error.h"
#include "server/gen_params.h"
#include "server/prompt.h"

static void check_error(const char *what, int rc, const ts_api_error *e) {
    if (rc != 0 && (e->message[0] == '\0' || e->status < 400 || e->status > 599)) {
        fprintf(stderr, "%s failed with status %d and message \"%s\"\n", what, e->status, e->message);
        abort();
    }
}

static void use_ids(const ts_served_model *m, int32_t *ids, int n) {
    char *text = ts_prompt_decode(m, ids, n, 1);
    if (!text) abort();
    free(text);
    free(ids);
}

static void prompt_value(const ts_served_model *m, const json_t *prompt) {
    ts_api_error e = {0};
    int32_t *ids = NULL;
    int n = 0, rc;
    if (json_is_string(prompt)) {
        rc = ts_prompt_encode_text(m, json_string_value(prompt), json_string_length(prompt), &ids, &n, &e);
        check_error("ts_prompt_encode_text", rc, &e);
    } else if (json_is_array(prompt) && json_is_integer(json_array_get(prompt, 0))) {
        rc = ts_prompt_ids(m, prompt, "prompt", &ids, &n, &e);
        check_error("ts_prompt_ids", rc, &e);
    } else {
        return;
    }
    if (rc == 0) use_ids(m, ids, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    ts_served_model *m = fuzz_served_model();
    ts_api_error e = {0};
    json_t *body = ts_api_parse_object((const char *)data, size, &e);
    if (!body) {
        check_error("ts_api_parse_object", -1, &e);
        return 0;
    }
    ts_gen_params p;
    ts_gen_params_init(&p);
    int rc = ts_gen_params_read(body, NULL, &p, &e);
    check_error("ts_gen_params_read", rc, &e);
    ts_gen_params_free(&p);

    if (json_object_get(body, "messages")) {
        int32_t *ids = NULL;
        int n = 0;
        char *rendered = NULL;
        memset(&e, 0, sizeof e);
        rc = ts_prompt_chat(m, body, &ids, &n, &rendered, &e);
        check_error("ts_prompt_chat", rc, &e);
        if (rc == 0) {
            if (!rendered || n <= 0) abort();
            free(rendered);
            use_ids(m, ids, n);
        }
    }
    const json_t *prompt = json_object_get(body, "prompt");
    if (json_is_array(prompt) && !json_is_integer(json_array_get(prompt, 0))) {
        size_t i;
        const json_t *item;
        json_array_foreach(prompt, i, item) {
            if (i >= 8) break;
            prompt_value(m, item);
        }
    } else if (prompt) {
        prompt_value(m, prompt);
    }
    json_decref(body);
    return 0;
}
