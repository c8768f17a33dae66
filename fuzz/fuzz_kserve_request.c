/* Fuzz target: a KServe v2 inference request (/v2/models/M/infer and generate) through
 * ts_kserve_parse_request: the JSON object optionally followed by binary tensor data. An input that
 * starts with a line "Inference-Header-Content-Length: N" passes N as that header (the rest is the
 * body), so that both the JSON-only and the binary extension paths are reached. Then every element of
 * every input is read back (BYTES elements, scalars), the request-level and per-tensor parameters go
 * through ts_gen_params_read, and a text_input is encoded as the server would. The body is also read
 * as a /generate request (text_input and parameters in one JSON object). */
/* fuzz-requires: src/server/kserve_tensor.c */
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
#include "server/kserve_tensor.h"
#include "server/prompt.h"

static const char HEADER[] = "Inference-Header-Content-Length: ";

static void check_error(const char *what, int rc, const ts_api_error *e) {
    if (rc != 0 && (e->message[0] == '\0' || e->status < 400 || e->status > 599)) {
        fprintf(stderr, "%s failed with status %d and message \"%s\"\n", what, e->status, e->message);
        abort();
    }
}

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    ts_served_model *m = fuzz_served_model();
    const char *body = (const char *)data;
    size_t len = size;
    char header_value[32];
    const char *header = NULL;
    if (size > sizeof HEADER - 1 && !memcmp(data, HEADER, sizeof HEADER - 1)) {
        const char *line = body + sizeof HEADER - 1;
        const char *nl = memchr(line, '\n', size - (sizeof HEADER - 1));
        if (!nl || (size_t)(nl - line) >= sizeof header_value) return 0;
        memcpy(header_value, line, (size_t)(nl - line));
        header_value[nl - line] = '\0';
        header = header_value;
        len = size - (size_t)(nl + 1 - body);
        body = nl + 1;
    }
    /* An exact-size copy, so that a read past the body's end is caught. */
    char *copy = malloc(len ? len : 1);
    if (!copy) return 0;
    memcpy(copy, body, len);

    ts_kserve_request req;
    ts_api_error e = {0};
    int rc = ts_kserve_parse_request(copy, len, header, &req, &e);
    check_error("ts_kserve_parse_request", rc, &e);
    if (rc == 0) {
        for (int i = 0; i < req.num_inputs; i++) {
            const ts_kserve_tensor *t = &req.inputs[i];
            if (ts_kserve_input(&req, t->name) == NULL) abort();
            for (size_t b = 0; t->raw && b < t->raw_len; b++) sink ^= t->raw[b];
            if (!strcmp(t->datatype, "BYTES")) {
                int64_t shown = t->count < 64 ? t->count : 64;
                for (int64_t k = 0; k < shown; k++) {
                    const char *s;
                    size_t slen;
                    memset(&e, 0, sizeof e);
                    int r = ts_kserve_bytes_at(t, k, &s, &slen, &e);
                    check_error("ts_kserve_bytes_at", r, &e);
                    if (r == 0) {
                        for (size_t b = 0; b < slen; b++) sink ^= (uint8_t)s[b];
                        if (k == 0 && !strcmp(t->name, "text_input")) {
                            int32_t *ids = NULL;
                            int n = 0;
                            memset(&e, 0, sizeof e);
                            r = ts_prompt_encode_text(m, s, slen, &ids, &n, &e);
                            check_error("ts_prompt_encode_text", r, &e);
                            free(ids);
                        }
                    }
                }
            } else {
                memset(&e, 0, sizeof e);
                json_t *scalar = ts_kserve_scalar(t, &e);
                if (!scalar) check_error("ts_kserve_scalar", -1, &e);
                json_decref(scalar);
            }
        }
        if (req.parameters) {
            ts_gen_params p;
            ts_gen_params_init(&p);
            memset(&e, 0, sizeof e);
            int r = ts_gen_params_read(req.parameters, "parameters.", &p, &e);
            check_error("ts_gen_params_read", r, &e);
            ts_gen_params_free(&p);
        }
    }
    ts_kserve_request_free(&req); /* also after a failure: the request may hold what was parsed so far */

    /* The same body as a /generate request: text_input and parameters at the top level or in "parameters". */
    memset(&e, 0, sizeof e);
    json_t *gen = ts_api_parse_object(copy, len, &e);
    if (!gen) {
        check_error("ts_api_parse_object", -1, &e);
    } else {
        const json_t *params = json_object_get(gen, "parameters");
        const json_t *sources[2] = {json_is_object(params) ? params : NULL, gen};
        const char *prefixes[2] = {"parameters.", ""};
        for (int k = 0; k < 2; k++) {
            if (!sources[k]) continue;
            ts_gen_params p;
            ts_gen_params_init(&p);
            memset(&e, 0, sizeof e);
            rc = ts_gen_params_read(sources[k], prefixes[k], &p, &e);
            check_error("ts_gen_params_read", rc, &e);
            ts_gen_params_free(&p);
        }
        const char *input = NULL;
        int found = 0;
        memset(&e, 0, sizeof e);
        rc = ts_field_string(gen, "text_input", "text_input", &input, &found, &e);
        check_error("ts_field_string", rc, &e);
        if (rc == 0 && found) {
            int32_t *ids = NULL;
            int n = 0;
            rc = ts_prompt_encode_text(m, input, json_string_length(json_object_get(gen, "text_input")), &ids, &n, &e);
            check_error("ts_prompt_encode_text", rc, &e);
            free(ids);
        }
        json_decref(gen);
    }
    free(copy);
    return 0;
}
